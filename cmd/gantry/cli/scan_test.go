package cli

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/testenv"
)

// tarLayer builds an uncompressed layer of the files.
func tarLayer(t *testing.T, files map[string][]byte) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// vulnerableGoBinary builds a Go program linking golang.org/x/text v0.3.7,
// which GO-2021-0113 and GO-2022-1059 affect (fixed in v0.3.7 and v0.3.8).
func vulnerableGoBinary(t *testing.T) []byte {
	t.Helper()
	dir := testenv.WriteTree(t, map[string]string{
		"go.mod": "module example.com/app\n\ngo 1.21\n\nrequire golang.org/x/text v0.3.7\n",
		"main.go": `package main

import (
	"fmt"

	"golang.org/x/text/language"
)

func main() { fmt.Println(language.English) }
`,
	})
	run := func(args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			testenv.Require(t, "building a Go program with golang.org/x/text v0.3.7: %v\n%s", err, out)
		}
	}
	run("mod", "tidy")
	run("build", "-trimpath", "-o", "app", ".")
	b, err := os.ReadFile(filepath.Join(dir, "app"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestScanGate drives the security-scan gate against a real server: an
// OSV import, a scan of an image with a real Alpine package database and a
// real Go binary, --fail-on exit codes, the referrers attached, the Go
// vulnerability database matched by a rescan, quarantine and the
// allowlist, and an image with no package reported as unscanned.
func TestScanGate(t *testing.T) {
	addr := scanRegistry(t)

	must(t, "vulndb", "import", testenv.WriteTree(t, map[string]string{"ALPINE-TEST-2024-0001.json": alpineAdvisory}))
	var db api.VulnDB
	if err := json.Unmarshal([]byte(must(t, "vulndb", "show")), &db); err != nil {
		t.Fatal(err)
	}
	if db.Advisories != 1 || len(db.Ecosystems) != 1 || db.Ecosystems[0].Ecosystem != "Alpine" {
		t.Fatalf("vulndb show: %+v", db)
	}

	// A bad file fails the whole import, naming the file and the field;
	// the database is unchanged.
	bad := testenv.WriteTree(t, map[string]string{
		"good.json": strings.Replace(alpineAdvisory, "ALPINE-TEST-2024-0001", "ALPINE-TEST-2024-0002", 1),
		"bad.json":  `{"id": "BAD-1", "modified": 5}`,
	})
	if code, _, errOut := gantry(t, "", "vulndb", "import", bad); code != 1 || !strings.Contains(errOut, "bad.json") || !strings.Contains(errOut, "modified") {
		t.Fatalf("import of a bad file: exit %d\n%s", code, errOut)
	}
	if err := json.Unmarshal([]byte(must(t, "vulndb", "show")), &db); err != nil || db.Advisories != 1 {
		t.Fatalf("vulndb show after a failed import: %+v %v", db, err)
	}

	layer := tarLayer(t, map[string][]byte{
		"etc/os-release":       []byte(alpineRelease),
		"lib/apk/db/installed": []byte(apkInstalled),
		"usr/local/bin/app":    vulnerableGoBinary(t),
		"usr/share/doc/README": []byte("hello"),
	})
	digest := pushImage(t, addr, "app", "v1", layer)

	var rep api.ScanReport
	if err := json.Unmarshal([]byte(must(t, "scan", "-r", "contoso", "--image", "app:v1")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Digest != digest || rep.Status != "scanned" || rep.Packages < 4 || rep.OS != "Alpine Linux v3.18" {
		t.Fatalf("scan: %+v", rep)
	}
	if len(rep.Vulnerabilities) != 1 {
		t.Fatalf("scan found %d vulnerabilities, want the one Alpine advisory: %+v", len(rep.Vulnerabilities), rep.Vulnerabilities)
	}
	v := rep.Vulnerabilities[0]
	if v.ID != "ALPINE-TEST-2024-0001" || v.Package.Name != "busybox" || v.Package.Version != "1.36.1-r2" ||
		v.Package.Ecosystem != "Alpine:v3.18" || v.FixedVersion != "1.36.1-r10" || v.Severity != "high" ||
		v.SeveritySource != "cvss_v3" || v.Score != 7.5 || len(v.Aliases) != 1 || v.Aliases[0] != "CVE-2099-0001" {
		t.Fatalf("finding: %+v", v)
	}
	if rep.Summary.High != 1 || rep.Summary.Critical != 0 {
		t.Fatalf("summary: %+v", rep.Summary)
	}

	// --fail-on, with the image named by its login server.
	code, _, errOut := gantry(t, "", "scan", addr+"/app:v1", "--fail-on", "high")
	if code != 1 || !strings.Contains(errOut, "1 finding at or above high") || !strings.Contains(errOut, "ALPINE-TEST-2024-0001 busybox 1.36.1-r2 (fixed in 1.36.1-r10)") {
		t.Fatalf("--fail-on high: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := gantry(t, "", "scan", addr+"/app:v1", "--fail-on", "critical"); code != 0 {
		t.Fatalf("--fail-on critical: exit %d\n%s", code, errOut)
	}
	if code, out, _ := gantry(t, "", "scan", addr+"/app:v1", "-o", "table"); code != 0 || !strings.Contains(out, "ALPINE-TEST-2024-0001") || !strings.Contains(out, "1 high") {
		t.Fatalf("-o table: exit %d\n%s", code, out)
	}
	if code, out, _ := gantry(t, "", "scan", addr+"/app:v1", "-o", "sarif"); code != 0 || !strings.Contains(out, `"version": "2.1.0"`) || !strings.Contains(out, `"ruleId": "ALPINE-TEST-2024-0001"`) {
		t.Fatalf("-o sarif: exit %d\n%s", code, out)
	}
	if code, _, errOut := gantry(t, "", "scan", "-r", "contoso", "--image", "app:v1", "--fail-on", "severe"); code != 2 || !strings.Contains(errOut, "--fail-on") {
		t.Fatalf("--fail-on severe: exit %d\n%s", code, errOut)
	}

	// The SBOM and the report are referrers of the image.
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/app/referrers/"+digest, nil)
	req.SetBasicAuth("admin", "cli-test-admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var idx struct {
		Manifests []struct {
			ArtifactType string `json:"artifactType"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &idx); err != nil {
		t.Fatalf("referrers: %v\n%s", err, body)
	}
	types := map[string]int{}
	for _, m := range idx.Manifests {
		types[m.ArtifactType]++
	}
	if types["application/spdx+json"] != 1 || types["application/vnd.cyclonedx+json"] != 1 || types["application/vnd.gantry.scan.report.v1+json"] != 1 {
		t.Fatalf("referrers after two scans: %s", body)
	}

	// The Go vulnerability database: the rescan finds the Go binary's
	// golang.org/x/text v0.3.7 affected, without reading the image again.
	var imp api.VulnDBImport
	if err := json.Unmarshal([]byte(must(t, "vulndb", "import", testenv.GoVulnDB(t))), &imp); err != nil {
		t.Fatal(err)
	}
	if imp.Added < 1000 || imp.Rescan.Images < 1 || len(imp.Rescan.Affected) == 0 {
		t.Fatalf("Go vulndb import: added %d, rescan %+v", imp.Added, imp.Rescan)
	}
	if err := json.Unmarshal([]byte(must(t, "scan", "show", "-r", "contoso", "--image", "app:v1")), &rep); err != nil {
		t.Fatal(err)
	}
	var goFinding *api.ScanVulnerability
	for i, v := range rep.Vulnerabilities {
		if v.ID == "GO-2022-1059" {
			goFinding = &rep.Vulnerabilities[i]
		}
	}
	if rep.RescannedAt == nil || goFinding == nil || goFinding.Package.Name != "golang.org/x/text" || goFinding.FixedVersion != "0.3.8" ||
		goFinding.Package.Ecosystem != "Go" {
		t.Fatalf("scan show after the rescan: %+v", rep)
	}

	// The impact of an advisory, asked by its alias.
	var im api.ScanImpact
	if err := json.Unmarshal([]byte(must(t, "scan", "impact", "--id", "CVE-2099-0001")), &im); err != nil {
		t.Fatal(err)
	}
	if im.ID != "ALPINE-TEST-2024-0001" || len(im.Images) != 1 || im.Images[0].Digest != digest || im.Images[0].Repository != "app" ||
		len(im.Images[0].Packages) != 1 || im.Images[0].Packages[0] != "busybox 1.36.1-r2" {
		t.Fatalf("scan impact: %+v", im)
	}
	if code, _, errOut := gantry(t, "", "scan", "impact", "--id", "CVE-0000-0000"); code != 1 || !strings.Contains(errOut, "CVE-0000-0000") {
		t.Fatalf("impact of an unknown advisory: exit %d\n%s", code, errOut)
	}

	// Quarantine: pulls of an image with a high finding are refused.
	must(t, "registry", "update", "-n", "contoso", "--quarantine-severity", "high")
	pull := func() (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/app/manifests/v1", nil)
		req.SetBasicAuth("admin", "cli-test-admin")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, msg := pull(); code != http.StatusForbidden || !strings.Contains(msg, "DENIED") || !strings.Contains(msg, "quarantined: 1 finding at or above high") ||
		!strings.Contains(msg, "gantry scan show -r contoso --image app@"+digest) {
		t.Fatalf("pull of a quarantined image: %d %s", code, msg)
	}
	// The allowlist (by alias) lets it through; an expired entry would not.
	must(t, "scan", "allowlist", "add", "--id", "CVE-2099-0001", "-r", "contoso", "--expires", "720h", "--reason", "test")
	if code, msg := pull(); code != http.StatusOK {
		t.Fatalf("pull after allowlisting: %d %s", code, msg)
	}
	if out := must(t, "scan", "allowlist", "list", "-o", "table"); !strings.Contains(out, "CVE-2099-0001") {
		t.Fatalf("allowlist list:\n%s", out)
	}
	must(t, "scan", "allowlist", "remove", "--id", "CVE-2099-0001", "-r", "contoso")
	if code, _ := pull(); code != http.StatusForbidden {
		t.Fatalf("pull after removing the allowlist entry: %d", code)
	}

	// A repository's own policy replaces its registry's there.
	must(t, "registry", "update", "-n", "contoso", "--quarantine-severity", "none")
	if code, msg := pull(); code != http.StatusOK {
		t.Fatalf("pull without quarantine: %d %s", code, msg)
	}
	must(t, "scan", "policy", "set", "-r", "contoso", "--repository", "app", "--quarantine-severity", "high")
	if code, msg := pull(); code != http.StatusForbidden || !strings.Contains(msg, "quarantined") {
		t.Fatalf("pull under the repository's policy: %d %s", code, msg)
	}
	var pol api.ScanPolicy
	if err := json.Unmarshal([]byte(must(t, "scan", "policy", "show", "-r", "contoso", "--repository", "other")), &pol); err != nil || !pol.Inherited || pol.QuarantineSeverity != "" {
		t.Fatalf("policy of a repository without one: %+v %v", pol, err)
	}
	must(t, "scan", "policy", "remove", "-r", "contoso", "--repository", "app")
	if code, msg := pull(); code != http.StatusOK {
		t.Fatalf("pull after removing the repository's policy: %d %s", code, msg)
	}
	if code, _, errOut := gantry(t, "", "scan", "policy", "remove", "-r", "contoso", "--repository", "app"); code != 1 || !strings.Contains(errOut, "no scan policy of its own") {
		t.Fatalf("removing a policy twice: exit %d\n%s", code, errOut)
	}

	// Scan on push: a pushed image is scanned in the background.
	must(t, "registry", "update", "-n", "contoso", "--scan-on-push", "true", "--quarantine-severity", "none")
	pushed := pushImage(t, addr, "pushed", "v1", layer)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, out, _ := gantry(t, "", "scan", "show", "-r", "contoso", "--image", "pushed:v1")
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Digest != pushed || len(rep.Vulnerabilities) < 2 {
				t.Fatalf("scan on push: %v %+v", err, rep)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pushed image was not scanned within 30 s: %s", out)
		}
	}
	if out := must(t, "registry", "show", "-n", "contoso"); !strings.Contains(out, `"scanOnPush": true`) || strings.Contains(out, "quarantineSeverity") {
		t.Fatalf("registry show after the policy change:\n%s", out)
	}
	if out := must(t, "registry", "update", "-n", "contoso", "--scan-on-push", "false"); strings.Contains(out, `"scanOnPush"`) {
		t.Fatalf("registry update --scan-on-push false:\n%s", out)
	}

	// An image with nothing identifiable is unscanned, never clean.
	pushImage(t, addr, "opaque", "v1", tarLayer(t, map[string][]byte{"data/blob.bin": []byte("no packages here")}))
	code, out, errOut := gantry(t, "", "scan", "-r", "contoso", "--image", "opaque:v1", "--fail-on", "low")
	if code != 1 || !strings.Contains(out, `"status": "unscanned"`) || !strings.Contains(errOut, "no package could be identified") {
		t.Fatalf("scan of an image without packages: exit %d\n%s%s", code, out, errOut)
	}
}
