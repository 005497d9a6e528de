#!/usr/bin/env bash
# Installs the pinned registry client tools the integration tests and
# scripts/conformance.sh use into .tools/bin: crane, oras, the OCI
# distribution-spec conformance suite, staticcheck, and pebble (the ACME
# test server of internal/certs). Idempotent: a tool already built at the
# pinned version is kept.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
mkdir -p "$bin"

# name|package@version
tools=(
	"crane|github.com/google/go-containerregistry/cmd/crane@v0.22.1"
	"oras|oras.land/oras/cmd/oras@v1.3.6"
	"conformance|github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111"
	"staticcheck|honnef.co/go/tools/cmd/staticcheck@v0.8.2"
	"pebble|github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3"
)

for t in "${tools[@]}"; do
	name="${t%%|*}"
	pkg="${t#*|}"
	stamp="$bin/.$name.version"
	if [ -x "$bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg" ]; then
		continue
	fi
	echo "tools: installing $pkg" >&2
	# Installed in module mode at the pinned version, whatever the caller's
	# GOFLAGS (e.g. -mod=vendor) say.
	GOBIN="$bin" GOFLAGS= go install "$pkg"
	echo "$pkg" >"$stamp"
done
