#!/usr/bin/env bash
# Benchmarks a real `gantry server` registry against CNCF Distribution
# (Debian's docker-registry) in one run and prints MB/s, requests/s and the
# ratios: blob push and pull (8 MiB blobs, concurrency 8), manifest PUT and
# GET. gantry is measured through its access control (admin credentials and
# the Docker token flow), as clients use it.
#
#   scripts/bench.sh [gantry-bench flags...]
#
# The server runs with its default durability (safe: fsync before a push is
# acknowledged); GANTRY_STORAGE_DURABILITY=fast scripts/bench.sh measures
# the fast mode.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
command -v docker-registry >/dev/null 2>&1 || "$root/scripts/setup.sh"
# shellcheck source=scripts/gantry-server.sh
. "$root/scripts/gantry-server.sh"

work="$(mktemp -d -t gantry-bench-XXXXXX)"
trap 'gantry_stop; rm -rf "$work"' EXIT

gantry_build
(cd "$root" && go build -o "$work/gantry-bench" ./cmd/gantry-bench)
gantry_start "$work"
port="$(free_port)"
"$GANTRY_BIN" registry create -n bench --listen "127.0.0.1:$port" -o none

"$work/gantry-bench" --gantry "http://127.0.0.1:$port" --username "$GANTRY_USERNAME" --password "$GANTRY_PASSWORD" "$@"
