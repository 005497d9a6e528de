#!/usr/bin/env bash
# Soak test: runs a real `gantry server` (loopback only) under concurrent
# pushes, pulls, deletes and GC, wrong passwords, slow and truncated bodies,
# kills it with SIGKILL halfway and restarts it; at the end checks every
# remaining tag's manifests and blobs by digest and that every acknowledged
# push is there, runs a final GC and checks that the blob directory holds
# exactly the live data, and prints the server's RSS, open files,
# goroutines, WAL size and disk usage before and after that GC.
#
#   scripts/soak.sh --minutes N [gantry-bench soak flags...]
#
# Bounded: N minutes of traffic (default 2) plus about half a minute of
# checks; a few thousand requests a minute. Exits non-zero if anything
# acknowledged was lost or corrupt, a request failed with 5xx outside the
# restart, the disk did not return to the live data, or RSS or the WAL went
# beyond their bounds (--max-rss-mib 200, --max-wal-mib 64).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d -t gantry-soak-XXXXXX)"
trap 'rm -rf "$work"' EXIT

"$root/scripts/build.sh" "$work/gantry" >/dev/null
(cd "$root" && go build -o "$work/gantry-bench" ./cmd/gantry-bench)
mkdir -p "$work/soak"
status=0
"$work/gantry-bench" soak --gantry-bin "$work/gantry" --dir "$work/soak" "$@" || status=$?
if [ "$status" -ne 0 ] && [ -f "$work/soak/server.log" ]; then
	echo "== last lines of the server log" >&2
	tail -40 "$work/soak/server.log" >&2
fi
exit "$status"
