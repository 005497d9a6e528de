#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite (pinned in scripts/tools.sh)
# against a registry and fails unless it reports 0 failures and 0 errors.
#
#   scripts/conformance.sh HOST:PORT
#
# Uses OCI_VERSION=dev (upload cancel, digest headers, tag parameters) with
# every default data set, plain HTTP. OCI_USERNAME and OCI_PASSWORD are passed
# through; OCI_REPO1/OCI_REPO2 default to conformance/repo1 and repo2. The
# report goes to $OCI_RESULTS_DIR (default: a temporary directory, printed).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -ne 1 ]; then
	echo "usage: $0 HOST:PORT" >&2
	exit 2
fi
"$root/scripts/tools.sh"

results="${OCI_RESULTS_DIR:-$(mktemp -d -t gantry-conformance-XXXXXX)}"
mkdir -p "$results"
log="$results/output.txt"

set +e
(
	cd "$results"
	env OCI_REGISTRY="$1" \
		OCI_TLS=disabled \
		OCI_VERSION=dev \
		OCI_REPO1="${OCI_REPO1:-conformance/repo1}" \
		OCI_REPO2="${OCI_REPO2:-conformance/repo2}" \
		OCI_USERNAME="${OCI_USERNAME:-}" \
		OCI_PASSWORD="${OCI_PASSWORD:-}" \
		OCI_RESULTS_DIR="$results" \
		"$root/.tools/bin/conformance"
) >"$log" 2>&1
status=$?
set -e

# The suite's own summary: "  Pass....: N", "  FAIL....: N", "  Error...: N".
count() { sed -n "s/^ *$1\.*: *\([0-9]*\)$/\1/p" "$log" | head -1; }
pass="$(count Pass)"
fail="$(count FAIL)"
errs="$(count Error)"
echo "conformance: ${pass:-?} passed, ${fail:-?} failed, ${errs:-?} errors (report: $results)"
if [ -z "$pass" ] || [ "${fail:-1}" != 0 ] || [ "${errs:-1}" != 0 ] || [ "$pass" = 0 ]; then
	sed -n '/^Errors:/,/^API conformance:/p' "$log" | head -100 >&2
	echo "conformance: FAILED (exit $status)" >&2
	exit 1
fi
