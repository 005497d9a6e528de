#!/bin/bash
# bench-alias.sh [REV]: how long the first and second `gantry` (alias) step
# take after each of 4 server starts, for this tree's binary and, when REV is
# given, for REV's (built from a temporary worktree). Needs the engine
# (scripts/engine.sh start). A benchmark to rerun, not a test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
eval "$("$root/scripts/engine.sh" env)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; git -C "$root" worktree remove --force "$tmp/tree" 2>/dev/null || true' EXIT
(cd "$root" && CGO_ENABLED=0 go build -o "$tmp/gantry-this" ./cmd/gantry)
bins=("$tmp/gantry-this")
if [ $# -gt 0 ]; then
	git -C "$root" worktree add -q "$tmp/tree" "$1"
	(cd "$tmp/tree" && CGO_ENABLED=0 go build -o "$tmp/gantry-rev" ./cmd/gantry)
	bins+=("$tmp/gantry-rev")
fi
port=7391
for bin in "${bins[@]}"; do
	echo "== $(basename "$bin")"
	d=$(mktemp -d -p "$tmp")
	export GANTRY_CONFIG_DIR=$d/cfg GANTRY_SERVER=http://127.0.0.1:$port GANTRY_USERNAME=admin GANTRY_PASSWORD=bench-alias-admin
	mkdir -p "$d/ctx"
	printf 'version: v1.1.0\nsteps:\n  - cmd: gantry version -o tsv\n' > "$d/ctx/acr-task.yaml"
	for i in 1 2 3 4; do
		GANTRY_ADMIN_PASSWORD=bench-alias-admin "$bin" server --data "$d/data" --listen 127.0.0.1:$port >/dev/null 2>"$d/log" &
		pid=$!
		for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v1/version" >/dev/null && break; sleep 0.1; done
		[ "$i" = 1 ] && "$bin" registry create -n bench -o none
		t=()
		for _ in 1 2; do
			s=$(date +%s%N)
			"$bin" run -r bench "$d/ctx" >/dev/null 2>&1 || echo "run failed" >&2
			t+=($(( ($(date +%s%N) - s) / 1000000 )))
		done
		echo "start $i: first alias run ${t[0]} ms, second ${t[1]} ms"
		kill "$pid"
		wait "$pid" 2>/dev/null || true
	done
done
