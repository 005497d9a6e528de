package cli

import (
	_ "embed"
	"testing"
)

// scanRegistry starts a server, logs in to it as admin and creates the
// registry contoso on a free address, which it returns.
func scanRegistry(t *testing.T) string {
	t.Helper()
	url := startServer(t)
	useServer(t, url, "admin", "cli-test-admin")
	addr := freeAddr(t)
	must(t, "registry", "create", "-n", "contoso", "--listen", addr)
	return addr
}

// The fixtures of the scan tests: the release and package database of an
// Alpine 3.18 and a Debian 12 image, and an OSV advisory for each.
var (
	//go:embed testdata/scan-alpine-os-release
	alpineRelease string
	//go:embed testdata/scan-apk-installed
	apkInstalled string
	// alpineAdvisory affects busybox before 1.36.1-r10: a version that
	// string comparison would put after 1.36.1-r2 ("r10" < "r2") is the fix.
	//
	//go:embed testdata/scan-alpine-advisory.json
	alpineAdvisory string

	//go:embed testdata/scan-debian-os-release
	debianRelease string
	//go:embed testdata/scan-dpkg-status
	dpkgStatus string
	// debianAdvisory affects openssl before 3.0.11-1~deb12u1: 3.0.9-1 is
	// affected, and Debian's ordering puts the fix (with ~) above it.
	//
	//go:embed testdata/scan-debian-advisory.json
	debianAdvisory string
)
