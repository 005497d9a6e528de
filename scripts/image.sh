#!/usr/bin/env bash
# Builds the gantry server image (the Dockerfile at the root) on the engine
# of DOCKER_HOST. No base image is pulled: the build context is a temporary
# directory holding a static gantry built by scripts/build.sh, the host's CA
# bundle and Debian's static busybox (for the gantry CLI image of steps; see
# the Dockerfile).
#
# Usage: scripts/image.sh [--no-busybox] [TAG] [docker build flags...]
#   TAG defaults to gantry:<version> (the version scripts/build.sh stamps).
#   Flags after TAG go to docker build, e.g. --label k=v.
# Environment: GANTRY_BIN, a static gantry binary to use instead of
# building one; CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt);
# BUSYBOX, the static busybox (default /bin/busybox or /usr/bin/busybox).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# The context's modes become the image's: /etc must be readable by 65532.
umask 022
busybox_wanted=1
if [ "${1:-}" = "--no-busybox" ]; then
	busybox_wanted=0
	shift
fi
tag="${1:-}"
[ $# -gt 0 ] && shift

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

if [ -n "${GANTRY_BIN:-}" ]; then
	cp "$GANTRY_BIN" "$ctx/gantry"
else
	"$root/scripts/build.sh" "$ctx/gantry"
fi
if [ -z "$tag" ]; then
	version="$("$ctx/gantry" --version | awk '{print $2}')"
	tag="gantry:${version//+/_}"
fi

ca="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [ ! -s "$ca" ]; then
	echo "image: no CA bundle at $ca (install ca-certificates or set CA_BUNDLE)" >&2
	exit 1
fi
fs="$ctx/rootfs"
mkdir -p "$fs/etc/ssl/certs" "$fs/tmp" "$fs/usr/bin" "$ctx/data"
cp "$ca" "$fs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\ngantry:x:65532:65532:gantry:/data:/sbin/nologin\n' >"$fs/etc/passwd"
printf 'root:x:0:\ngantry:x:65532:\n' >"$fs/etc/group"
chmod 0644 "$fs/etc/passwd" "$fs/etc/group" "$fs/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$fs/tmp"
chmod 0755 "$ctx/data"
if [ "$busybox_wanted" = 1 ]; then
	bb="${BUSYBOX:-}"
	for p in /bin/busybox /usr/bin/busybox; do
		[ -z "$bb" ] && [ -x "$p" ] && bb="$p"
	done
	if [ -z "$bb" ]; then
		echo "image: no busybox (install busybox-static, set BUSYBOX, or pass --no-busybox)" >&2
		exit 1
	fi
	if command -v file >/dev/null && ! file -L "$bb" | grep -q 'statically linked'; then
		echo "image: $bb is not statically linked (install busybox-static)" >&2
		exit 1
	fi
	cp "$bb" "$fs/usr/bin/busybox"
	chmod 0755 "$fs/usr/bin/busybox"
fi
cp "$root/Dockerfile" "$ctx/Dockerfile"

# The build's progress goes to stderr; stdout is the tag alone.
docker build --tag "$tag" "$@" "$ctx" >&2
echo "$tag"
