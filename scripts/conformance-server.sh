#!/usr/bin/env bash
# Runs the OCI conformance suite against a real `gantry server`: builds
# gantry, starts a server in a temporary directory, creates a registry,
# runs scripts/conformance.sh with admin credentials (so the Docker token
# flow is exercised), and stops the server.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/gantry-server.sh
. "$root/scripts/gantry-server.sh"

work="$(mktemp -d -t gantry-conf-XXXXXX)"
trap 'gantry_stop; rm -rf "$work"' EXIT

gantry_build
gantry_start "$work"
port="$(free_port)"
"$GANTRY_BIN" registry create -n conformance --listen "127.0.0.1:$port" -o none
OCI_USERNAME="$GANTRY_USERNAME" OCI_PASSWORD="$GANTRY_PASSWORD" OCI_RESULTS_DIR="$work/results" \
	"$root/scripts/conformance.sh" "127.0.0.1:$port"
