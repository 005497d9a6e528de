#!/usr/bin/env bash
# Benchmarks a gantry registry against CNCF Distribution (Debian's
# docker-registry) in one run and prints MB/s, requests/s and the ratios.
#
#   scripts/bench.sh [gantry-bench flags...]
#
# For now the gantry side is gantry-bench's own in-process registry served
# from a separate process on a loopback port (the same handler and store as
# `gantry server`, without access control); switch to a real server with
# --gantry URL --username U --password P.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
command -v docker-registry >/dev/null 2>&1 || "$root/scripts/setup.sh"

work="$(mktemp -d -t gantry-bench-XXXXXX)"
bin="$work/gantry-bench"
(cd "$root" && go build -o "$bin" ./cmd/gantry-bench)

server=""
cleanup() {
	if [ -n "$server" ]; then
		kill "$server" 2>/dev/null || true
		wait "$server" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

case " $* " in
*" --gantry"*)
	exec_args=("$@")
	;;
*)
	# The gantry side: an in-process registry in a process of its own.
	"$bin" --serve 127.0.0.1:0 >"$work/server.log" 2>&1 &
	server=$!
	for _ in $(seq 1 100); do
		grep -q '^http://' "$work/server.log" 2>/dev/null && break
		sleep 0.1
	done
	url="$(grep -m1 '^http://' "$work/server.log" || true)"
	if [ -z "$url" ]; then
		cat "$work/server.log" >&2
		exit 1
	fi
	exec_args=(--gantry "$url" "$@")
	;;
esac

"$bin" "${exec_args[@]}"
