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
#
# A second engine, Podman serving its Docker-compatible API, takes the engine name as
# a second argument (no second argument, or "dockerd", means dockerd):
#
#   scripts/engine.sh start podman    write its config files, start `podman system
#                                     service` (if not running), wait until it answers
#   scripts/engine.sh stop podman     stop the service this script started (by its PID
#                                     file), then its containers and any conmon left
#   scripts/engine.sh status podman   exit 0 if that service is running
#   scripts/engine.sh env podman      print the GANTRY_PODMAN_HOST export
#
# Everything of Podman's lives under $GANTRY_PODMAN_DIR (default /tmp/gantry-podman):
# root/ (images, containers, volumes), run/ and runc/ (per-boot state), its config
# files (containers.conf, storage.conf, home/.config/containers/ registries.conf,
# policy.json and registries.d/), podman.log, events.log and the socket podman.sock;
# nothing in /etc/containers is read or written. See docs/engines.md (Podman: running it).
set -euo pipefail

# ---------------------------------------------------------------------------------
# Podman: `scripts/engine.sh start|stop|status|env podman`.

pdir=${GANTRY_PODMAN_DIR:-/tmp/gantry-podman}
psock="$pdir/podman.sock"
ppidfile="$pdir/podman.pid"

# Host paths podman 4.3 writes whatever its configuration says (the root blob-info
# cache of pulls and pushes, the short-name alias cache, the directory of network
# namespaces). stop removes what podman left there when start found them absent.
podman_host_paths="/var/lib/containers /var/cache/containers /run/netns"

# The service and every podman command this script runs read only the config files
# under $pdir. conmon hands CONTAINERS_CONF and HOME on to the `podman container
# cleanup` it runs when a container exits; the storage location travels as flags.
podman_env() {
	export CONTAINERS_CONF="$pdir/containers.conf"
	export CONTAINERS_STORAGE_CONF="$pdir/storage.conf"
	# registries.conf and policy.json are looked up in $HOME/.config/containers
	# first, and a registries.conf found there (unlike one named by
	# CONTAINERS_REGISTRIES_CONF) also keeps /etc/containers/registries.conf.d out.
	# This HOME keeps root's ~/.docker/config.json (credentials) out as well.
	export HOME="$pdir/home"
	export TMPDIR="$pdir/tmp"
	unset CONTAINERS_REGISTRIES_CONF XDG_RUNTIME_DIR XDG_CONFIG_HOME XDG_DATA_HOME REGISTRY_AUTH_FILE
}

podman_local() {
	podman --root "$pdir/root" --runroot "$pdir/run" "$@"
}

podman_write_config() {
	# An (empty) registries.d here replaces /etc/containers/registries.d.
	mkdir -p "$pdir/home/.config/containers/registries.d" "$pdir/tmp" "$pdir/networks" \
		"$pdir/no-network-plugins" "$pdir/bin" "$pdir/runc"
	cat >"$pdir/containers.conf" <<CONF
# Written by scripts/engine.sh on every start; edits are lost.
[containers]
# The sandbox has no CAP_SYS_RESOURCE: podman's default rlimits (raised to the
# hard maximum) fail with "error setting rlimit type 7: operation not permitted".
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
# Host network for containers the podman CLI creates. Through the Docker API a
# container without NetworkMode "host" still asks for a bridge (and fails, see
# [network]); RUN in builds shares the host network either way.
netns = "host"
# dockerd sets no pids limit; podman's default is 1024.
pids_limit = 0
log_driver = "k8s-file"
# Debian's catatonit (static), mounted as /run/podman-init for --init.
init_path = "/usr/libexec/podman/catatonit"

[network]
# No bridge may ever be created: the CNI backend with an empty plugin directory
# makes any request for a bridge network fail instead of creating one.
network_backend = "cni"
cni_plugin_dirs = ["$pdir/no-network-plugins"]
network_config_dir = "$pdir/networks"

[engine]
cgroup_manager = "cgroupfs"
# No journald here.
events_logger = "file"
events_logfile_path = "$pdir/events.log"
# Per-boot state; file locks here instead of the host-wide /dev/shm/libpod_lock.
tmp_dir = "$pdir/run/libpod"
lock_type = "file"
image_copy_tmp_dir = "$pdir/tmp"
runtime = "runc"

[engine.runtimes]
# runc keeps its state under $pdir/runc instead of /run/runc.
runc = ["$pdir/bin/runc"]
CONF
	cat >"$pdir/bin/runc" <<CONF
#!/bin/sh
exec /usr/bin/runc --root "$pdir/runc" "\$@"
CONF
	chmod 0755 "$pdir/bin/runc"
	cat >"$pdir/storage.conf" <<CONF
# Written by scripts/engine.sh on every start; edits are lost.
[storage]
# Kernel overlayfs on ext4 (native diff); vfs would copy every layer in full.
driver = "overlay"
graphroot = "$pdir/root"
runroot = "$pdir/run"
CONF
	cat >"$pdir/home/.config/containers/registries.conf" <<CONF
# Written by scripts/engine.sh on every start; edits are lost.
# Short names resolve to docker.io, as with dockerd.
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"

# gantry registries listen on 127.0.0.1:<port> over plain HTTP. A prefix without
# a port matches every port of that host in podman 4.3 (containers/image 5.23),
# which its source calls unintended; see docs/engines.md (Podman: plain-HTTP registries on 127.0.0.1).
[[registry]]
location = "127.0.0.1"
insecure = true

[[registry]]
location = "localhost"
insecure = true
CONF
	cat >"$pdir/home/.config/containers/policy.json" <<CONF
{"default": [{"type": "insecureAcceptAnything"}]}
CONF
}

podman_running() {
	[ -f "$ppidfile" ] || return 1
	local pid
	pid=$(cat "$ppidfile")
	kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = podman ]
}

podman_answers() {
	[ -S "$psock" ] && DOCKER_HOST="unix://$psock" docker version >/dev/null 2>&1
}

# waitpids PID...: wait up to 20 s for the processes to exit, then SIGKILL them.
waitpids() {
	local pid alive
	for _ in $(seq 1 80); do
		alive=0
		for pid in "$@"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ "$alive" = 0 ] && return 0
		sleep 0.25
	done
	for pid in "$@"; do
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
	done
}

# The conmon processes of this service's containers and exec sessions (each names
# $pdir/ in its arguments; an exec session's conmon lingers for minutes after the
# exec ends), and the processes they watch.
podman_leftovers() {
	local p c stat conmons=()
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = conmon ] || continue
		tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -q "^$pdir/" || continue
		conmons+=("${p#/proc/}")
	done
	[ ${#conmons[@]} -gt 0 ] || return 0
	printf '%s\n' "${conmons[@]}"
	for p in /proc/[0-9]*; do
		stat=$(cat "$p/stat" 2>/dev/null) || continue
		stat=${stat##*) }    # "<state> <ppid> ..." after the command name
		stat=${stat#* }
		for c in "${conmons[@]}"; do
			[ "${stat%% *}" = "$c" ] && echo "${p#/proc/}"
		done
	done
	return 0
}

podman_main() {
	case "$1" in
	start)
		mkdir -p "$pdir"
		if podman_running; then
			echo "engine: podman already running (pid $(cat "$ppidfile"))" >&2
			return 0
		fi
		# tmp_dir and runroot hold per-boot state and must not survive a reboot
		# (podman expects a tmpfs there; /tmp here is not one).
		local boot path
		boot=$(cat /proc/sys/kernel/random/boot_id)
		if [ -f "$pdir/boot_id" ] && [ "$(cat "$pdir/boot_id")" != "$boot" ]; then
			rm -rf "$pdir/run" "$pdir/runc"
		fi
		echo "$boot" >"$pdir/boot_id"
		for path in $podman_host_paths; do
			[ -e "$path" ] || echo "$path" >>"$pdir/host-paths-created"
		done
		podman_write_config
		podman_env
		rm -f "$psock"
		nohup podman --root "$pdir/root" --runroot "$pdir/run" \
			system service --time=0 "unix://$psock" \
			>"$pdir/podman.log" 2>&1 &
		echo $! >"$ppidfile"
		for _ in $(seq 1 120); do
			podman_answers && break
			podman_running || break
			sleep 0.25
		done
		if ! podman_answers; then
			echo "engine: podman did not start; last log lines:" >&2
			tail -20 "$pdir/podman.log" >&2
			podman_main stop >/dev/null 2>&1 || true
			exit 1
		fi
		echo "engine: podman started (pid $(cat "$ppidfile"), socket $psock)" >&2
		;;
	stop)
		# Only what a start of this script left: its PID file says so.
		[ -f "$ppidfile" ] || return 0
		local pid left path
		pid=$(cat "$ppidfile")
		if podman_running; then
			kill "$pid"
			waitpids "$pid"
			echo "engine: podman stopped (pid $pid)" >&2
		fi
		# Containers outlive the service (conmon watches them): stop them, as
		# dockerd does when it shuts down, and unmount every container root
		# (the build container of a failed build stays mounted otherwise).
		podman_env
		podman_local stop --all --time 5 >/dev/null 2>&1 || true
		podman_local unmount --all >/dev/null 2>&1 || true
		left=$(podman_leftovers | sort -u)
		if [ -n "$left" ]; then
			# shellcheck disable=SC2086
			kill $left 2>/dev/null || true
			# shellcheck disable=SC2086
			waitpids $left
			echo "engine: podman: stopped leftover processes" $left >&2
		fi
		if [ -f "$pdir/host-paths-created" ]; then
			for path in $(sort -u "$pdir/host-paths-created"); do
				case "$path" in
				/var/lib/containers) rm -f "$path/cache/blob-info-cache-v1.boltdb" && rmdir "$path/cache" ;;
				/var/cache/containers) rm -f "$path/short-name-aliases.conf" "$path/short-name-aliases.conf.lock" ;;
				# podman bind-mounts it onto itself before it sets up a network
				# namespace (only for a network other than the host's).
				/run/netns) [ -n "$(ls -A "$path")" ] || umount "$path" ;;
				esac 2>/dev/null || true
				rmdir "$path" 2>/dev/null || true
			done
			rm -f "$pdir/host-paths-created"
		fi
		rm -f "$ppidfile"
		;;
	env)
		echo "export GANTRY_PODMAN_HOST=unix://$psock"
		;;
	status)
		if podman_running; then
			echo "engine: podman running (pid $(cat "$ppidfile"), socket $psock)"
		else
			echo "engine: podman not running"
			exit 1
		fi
		;;
	*)
		echo "usage: $0 start|stop|status|env podman" >&2
		exit 2
		;;
	esac
}

case "${2:-dockerd}" in
dockerd) ;;
podman)
	podman_main "${1:-}"
	exit 0
	;;
*)
	echo "usage: $0 start|stop|status|env [dockerd|podman]" >&2
	exit 2
	;;
esac

# ---------------------------------------------------------------------------------
# dockerd: `scripts/engine.sh start|stop|status|env`.

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
