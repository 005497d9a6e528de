package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/standin"
	"github.com/gantryhq/gantry/internal/testenv"
)

// hostPackageVersion reads a package's version from this machine's dpkg
// database.
func hostPackageVersion(t *testing.T, status []byte, pkg string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^Package: ` + regexp.QuoteMeta(pkg) + `\n(?:[^\n]+\n)*?Version: (\S+)`).FindSubmatch(status)
	if m == nil {
		testenv.Require(t, "no %s in this machine's dpkg database", pkg)
	}
	return string(m[1])
}

// TestScanEngineBuiltImage scans an image built on the test engine with
// this machine's real Debian 12 package database (/var/lib/dpkg/status and
// /etc/os-release) and a real Go binary, pushed with the engine: Debian
// and Go packages are found, a Debian advisory written for the installed
// libc6 matches (and its fixed version is the one after), and the Go
// vulnerability database finds the binary's golang.org/x/text v0.3.7.
func TestScanEngineBuiltImage(t *testing.T) {
	engine := dockertest.Engine(t)
	status, err := os.ReadFile("/var/lib/dpkg/status")
	if err != nil {
		testenv.Require(t, "this machine has no dpkg database: %v", err)
	}
	release, err := os.ReadFile("/etc/os-release")
	if err != nil || !strings.Contains(string(release), `VERSION_ID="12"`) {
		testenv.Require(t, "this machine is not Debian 12: %v", err)
	}
	libc := hostPackageVersion(t, status, "libc6")

	url := startServer(t)
	useServer(t, url, "admin", "cli-test-admin")
	addr := freeAddr(t)
	must(t, "registry", "create", "-n", "contoso", "--listen", addr)

	adv := fmt.Sprintf(`{"id": "DEBIAN-TEST-LIBC", "modified": "2024-01-01T00:00:00Z",
	 "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}],
	 "affected": [{"package": {"ecosystem": "Debian:12", "name": "glibc"},
	  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "%s+1"}]}]}]}`, libc)
	must(t, "vulndb", "import", testenv.WriteTree(t, map[string]string{"DEBIAN-TEST-LIBC.json": adv}))
	must(t, "vulndb", "import", testenv.GoVulnDB(t))

	local := dockertest.Name(t, "gantry-test/debian-app") + ":1"
	dockertest.BuildImage(t, engine, local, map[string]string{
		"Dockerfile": "FROM scratch\nCOPY os-release /etc/os-release\nCOPY status /var/lib/dpkg/status\nCOPY app /usr/local/bin/app\n",
		"os-release": string(release),
		"status":     string(status),
		"app":        string(vulnerableGoBinary(t)),
	})
	dst := addr + "/debian-app:1"
	if _, err := standin.Push(t.Context(), engine, local, dst, &docker.AuthConfig{Username: "admin", Password: "cli-test-admin", ServerAddress: addr}); err != nil {
		t.Fatal(err)
	}

	var rep api.ScanReport
	if err := json.Unmarshal([]byte(must(t, "scan", dst)), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status != "scanned" || rep.Packages < 100 || !strings.HasPrefix(rep.OS, "Debian GNU/Linux 12") {
		t.Fatalf("scan: status %s, %d packages, os %q", rep.Status, rep.Packages, rep.OS)
	}
	var libcFinding, textFinding bool
	for _, v := range rep.Vulnerabilities {
		switch {
		case v.ID == "DEBIAN-TEST-LIBC":
			libcFinding = v.Package.Ecosystem == "Debian:12" && v.Package.Version == libc && v.FixedVersion == libc+"+1" &&
				v.Severity == "high" && v.SeveritySource == "cvss_v3"
			if !libcFinding {
				t.Errorf("libc finding: %+v", v)
			}
		case v.ID == "GO-2022-1059" && v.Package.Name == "golang.org/x/text":
			textFinding = v.Package.Version == "v0.3.7" || v.Package.Version == "0.3.7"
		}
	}
	if !libcFinding || !textFinding {
		t.Fatalf("findings (libc %v, x/text %v): %+v", libcFinding, textFinding, rep.Vulnerabilities)
	}
}
