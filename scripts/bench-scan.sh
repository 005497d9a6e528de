#!/usr/bin/env bash
# Scan benchmark: the same image scanned by a real `gantry server` and by the
# osv-scanner command line (v2.6.0, built with `go install` from the Go module
# proxy; it needs Go 1.27, which the go command fetches as the toolchain
# go1.27.3 for this build only), both offline against the Go vulnerability
# database (golang.org/x/vulndb, fetched through the module proxy).
#
#   scripts/bench-scan.sh [--rounds N]
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
work="$(mktemp -d -t gantry-bench-scan-XXXXXX)"
trap 'rm -rf "$work"' EXIT

tools="$root/.tools/bin"
mkdir -p "$tools"
if [ ! -x "$tools/osv-scanner" ]; then
	echo "bench-scan: building osv-scanner v2.6.0 (toolchain go1.27.3)" >&2
	GOTOOLCHAIN=go1.27.3 GOBIN="$tools" go install github.com/google/osv-scanner/v2/cmd/osv-scanner@v2.6.0
fi
vulndb="$(cd "$root" && go mod download -json golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018 | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')/data/osv"

"$root/scripts/build.sh" "$work/gantry" >/dev/null
(cd "$root" && go build -o "$work/gantry-bench" ./cmd/gantry-bench)
"$work/gantry-bench" scan --gantry-bin "$work/gantry" --osv-scanner "$tools/osv-scanner" --vulndb "$vulndb" --dir "$work" "$@"
