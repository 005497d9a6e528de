#!/usr/bin/env bash
# Starts and stops gantry's private Docker Engine.
#
#   scripts/engine.sh start   start dockerd (if not running) and wait until it answers
#   scripts/engine.sh stop    stop the dockerd this script started (by its PID file)
#   scripts/engine.sh status  exit 0 if the engine this script manages is running
#   scripts/engine.sh env     print the DOCKER_HOST export for this engine
#
# The engine runs with --iptables=false --ip6tables=false --bridge=none, its own data
# root and socket under $GANTRY_ENGINE_DIR (default /tmp/gantry-engine). Containers
# use the host network; nothing leaves loopback.
set -euo pipefail

dir=${GANTRY_ENGINE_DIR:-/tmp/gantry-engine}
sock="$dir/docker.sock"
pidfile="$dir/dockerd.pid"

running() {
	[ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

case "${1:-}" in
start)
	mkdir -p "$dir"
	if running; then
		echo "engine: already running (pid $(cat "$pidfile"))" >&2
	else
		rm -f "$sock"
		# containerd's own state goes under the exec root so two engines never share it.
		nohup dockerd \
			--iptables=false --ip6tables=false --bridge=none \
			--data-root "$dir/root" --exec-root "$dir/exec" \
			--pidfile "$pidfile" -H "unix://$sock" \
			>"$dir/dockerd.log" 2>&1 &
		for _ in $(seq 1 120); do
			if [ -S "$sock" ] && DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then
				break
			fi
			sleep 0.25
		done
		if ! DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then
			echo "engine: dockerd did not start; last log lines:" >&2
			tail -20 "$dir/dockerd.log" >&2
			exit 1
		fi
		echo "engine: started (pid $(cat "$pidfile"), socket $sock)" >&2
	fi
	;;
stop)
	if running; then
		pid=$(cat "$pidfile")
		kill "$pid"
		for _ in $(seq 1 80); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
		echo "engine: stopped (pid $pid)" >&2
	fi
	;;
env)
	echo "export DOCKER_HOST=unix://$sock"
	;;
status)
	if running; then
		echo "engine: running (pid $(cat "$pidfile"), socket $sock)"
	else
		echo "engine: not running"
		exit 1
	fi
	;;
*)
	echo "usage: $0 start|stop|status|env" >&2
	exit 2
	;;
esac
