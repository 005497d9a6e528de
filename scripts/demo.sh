#!/usr/bin/env bash
# The main job: runs the walkthrough (`gantry demo`) on this machine.
# Installs what is missing (Debian packages), starts a private Docker Engine
# if none is running, builds a static gantry, runs the demo, and stops the
# engine it started. Arguments go to `gantry demo` (e.g. --keep).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/setup.sh
started_engine=0
if ! scripts/engine.sh status >/dev/null 2>&1; then
	scripts/engine.sh start
	started_engine=1
fi
keep=0
for a in "$@"; do
	[ "$a" = "--keep" ] && keep=1
done
cleanup() {
	if [ "$started_engine" = 1 ] && [ "$keep" = 0 ]; then
		scripts/engine.sh stop || true
	fi
}
trap cleanup EXIT
eval "$(scripts/engine.sh env)"

echo "demo: building gantry" >&2
scripts/build.sh bin/gantry
bin/gantry demo "$@"
