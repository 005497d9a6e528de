#!/usr/bin/env bash
# Installs the Debian packages gantry's demo and tests need, if missing.
# Idempotent; safe to run on every invocation.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && file -L /bin/busybox 2>/dev/null | grep -q static || need+=(busybox-static)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v git >/dev/null 2>&1 || need+=(git)
command -v file >/dev/null 2>&1 || need+=(file)
# systemd-analyze checks deploy/gantry.service offline (cmd/gantry TestSystemdUnit).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)

# Podman, the second engine (scripts/engine.sh start podman). It runs as root on the
# host network with kernel overlayfs, so its recommended rootless helpers (uidmap,
# slirp4netns, fuse-overlayfs, buildah) are left out; catatonit is its --init.
lean=()
command -v podman >/dev/null 2>&1 || lean+=(podman)
[ -x /usr/libexec/podman/catatonit ] || lean+=(catatonit)

if [ ${#need[@]} -gt 0 ] || [ ${#lean[@]} -gt 0 ]; then
	echo "setup: installing ${need[*]} ${lean[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	if [ ${#need[@]} -gt 0 ]; then
		apt-get install -y -qq "${need[@]}" >/dev/null
	fi
	if [ ${#lean[@]} -gt 0 ]; then
		apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
	fi
fi
# The docker.io package may have started the system daemon on the default
# bridge; gantry runs its own daemon (scripts/engine.sh) and needs none other.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
	systemctl stop docker docker.socket >/dev/null 2>&1 || true
fi

# The Go vulnerability database (OSV JSON), which the scan tests and the demo
# import: served as the Go module golang.org/x/vulndb through the module proxy.
GANTRY_VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
go mod download golang.org/x/vulndb@"$GANTRY_VULNDB_VERSION" >/dev/null
