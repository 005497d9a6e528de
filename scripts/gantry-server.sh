#!/usr/bin/env bash
# Helpers to build gantry and run a throw-away server, for scripts.
# Source it, then:
#   gantry_build            builds a static bin/gantry (scripts/build.sh)
#   gantry_start DIR        starts `gantry server` with data in DIR on a free
#                           port; sets GANTRY_SERVER, GANTRY_USERNAME,
#                           GANTRY_PASSWORD and GANTRY_PID
#   gantry_stop             stops it (by PID)
#   free_port               prints a free loopback port

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GANTRY_BIN="$root/bin/gantry"

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

gantry_build() {
	"$root/scripts/build.sh" "$GANTRY_BIN"
}

gantry_start() {
	local dir="$1"
	mkdir -p "$dir"
	local port
	port="$(free_port)"
	export GANTRY_SERVER="http://127.0.0.1:$port"
	export GANTRY_USERNAME=admin
	export GANTRY_PASSWORD="${GANTRY_ADMIN_PASSWORD:-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')}"
	export GANTRY_CONFIG_DIR="$dir/cli"
	GANTRY_ADMIN_PASSWORD="$GANTRY_PASSWORD" "$GANTRY_BIN" server --data "$dir/data" --listen "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
	GANTRY_PID=$!
	for _ in $(seq 1 100); do
		if "$GANTRY_BIN" version -o none >/dev/null 2>&1 && curl -fsS "$GANTRY_SERVER/v1/version" >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$GANTRY_PID" 2>/dev/null; then
			echo "gantry server exited; log:" >&2
			cat "$dir/server.log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "gantry server did not answer; log:" >&2
	tail -20 "$dir/server.log" >&2
	return 1
}

gantry_stop() {
	if [ -n "${GANTRY_PID:-}" ]; then
		kill "$GANTRY_PID" 2>/dev/null || true
		wait "$GANTRY_PID" 2>/dev/null || true
		GANTRY_PID=""
	fi
}
