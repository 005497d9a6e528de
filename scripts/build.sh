#!/usr/bin/env bash
# Builds a static, stripped gantry binary stamped with its version, commit
# and build date (internal/buildinfo), the one place the release ldflags are
# set. Usage: scripts/build.sh [OUTPUT]   (default bin/gantry)
#
# The version is the latest v<semver> tag as git describe tells it, without
# the "v" (0.14.0, or 0.14.0-3-g1a2b3c4 three commits later, "-dirty" with
# uncommitted changes); without such a tag it is 0.0.0-dev. VERSION, COMMIT
# and DATE in the environment override what git and the clock say;
# SOURCE_DATE_EPOCH sets the date for reproducible builds. Extra go build
# flags can be passed in GOFLAGS.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/bin/gantry}"
case "$out" in
/*) ;;
*) out="$PWD/$out" ;;
esac

cd "$root"
version="${VERSION:-}"
commit="${COMMIT:-}"
date="${DATE:-}"
if git rev-parse --git-dir >/dev/null 2>&1; then
	if [ -z "$version" ]; then
		version="$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || true)"
	fi
	if [ -z "$commit" ]; then
		commit="$(git rev-parse HEAD)"
		git diff --quiet HEAD -- 2>/dev/null || commit="$commit-dirty"
	fi
fi
version="${version#v}"
version="${version:-0.0.0-dev}"
commit="${commit:-unknown}"
if [ -z "$date" ]; then
	if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
		date="$(date -u -d "@$SOURCE_DATE_EPOCH" +%FT%TZ)"
	else
		date="$(date -u +%FT%TZ)"
	fi
fi

pkg=github.com/gantryhq/gantry/internal/buildinfo
# Static (modernc.org/sqlite is pure Go): the binary runs FROM scratch and
# goes into the gantry CLI image steps run.
CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X $pkg.version=$version -X $pkg.commit=$commit -X $pkg.date=$date" \
	-o "$out" ./cmd/gantry
echo "built $out: gantry $version (commit $commit, built $date)" >&2
