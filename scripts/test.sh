#!/usr/bin/env bash
# Runs every gantry test on this machine: installs what the tests need
# (Debian packages, pinned client tools), starts a private Docker Engine and
# Podman's Docker-compatible service if they are not running, runs vet, the Go
# tests (unit and integration, which must not skip here), the OCI conformance
# suite against a real `gantry server` and a 2-minute soak, then stops what it
# started.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/setup.sh
scripts/tools.sh

started_engine=0
if ! scripts/engine.sh status >/dev/null 2>&1; then
	scripts/engine.sh start
	started_engine=1
fi
started_podman=0
cleanup() {
	if [ "$started_podman" = 1 ]; then
		scripts/engine.sh stop podman || true
	fi
	if [ "$started_engine" = 1 ]; then
		scripts/engine.sh stop || true
	fi
}
trap cleanup EXIT
# Podman serves the same Docker API as a second engine (GANTRY_PODMAN_HOST).
if ! scripts/engine.sh status podman >/dev/null 2>&1; then
	scripts/engine.sh start podman
	started_podman=1
fi
eval "$(scripts/engine.sh env)"
eval "$(scripts/engine.sh env podman)"
export GANTRY_REQUIRE_INTEGRATION=1
export PATH="$root/.tools/bin:$PATH"

echo "== go vet, staticcheck" >&2
test -z "$(gofmt -l .)" || { echo "gofmt: these files are not formatted:" >&2; gofmt -l . >&2; exit 1; }
go vet ./...
staticcheck ./...
echo "== go test (dockerd)" >&2
go test -count=1 -timeout 60m "$@" ./...
# The engine client, the builds and the task engine also on Podman: the same
# tests with DOCKER_HOST pointing at Podman's service (docs/engines.md). One
# test at a time: Podman 4.3's image store can lose a tag that one client adds
# while another removes a tag of the same image, and these tests share images.
echo "== go test (podman): internal/docker internal/engine" >&2
DOCKER_HOST="$GANTRY_PODMAN_HOST" go test -count=1 -p 1 -parallel 1 -timeout 30m "$@" ./internal/docker/... ./internal/engine/...
echo "== OCI conformance against gantry server" >&2
scripts/conformance-server.sh
# Two minutes of mixed traffic and abuse with a kill -9 in the middle; fails
# on anything lost, 5xx, or RSS/WAL/disk beyond their bounds (scripts/soak.sh).
echo "== soak (2 minutes)" >&2
scripts/soak.sh --minutes 2
echo "== all tests passed" >&2
