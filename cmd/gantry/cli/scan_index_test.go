package cli

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/testenv"
)

// putManifest pushes a manifest body with its media type and returns its
// digest.
func putManifest(t *testing.T, registry, repo, ref, mediaType string, body []byte) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+registry+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(body))
	req.SetBasicAuth("admin", "cli-test-admin")
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT manifest %s:%s: %s", repo, ref, resp.Status)
	}
	return resp.Header.Get("Docker-Content-Digest")
}

// imageManifest is an OCI image manifest of one uncompressed layer,
// uploaded to repo.
func imageManifest(t *testing.T, registry, repo, layer string) []byte {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": uploadBlob(t, registry, repo, cfg), "size": len(cfg)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": uploadBlob(t, registry, repo, []byte(layer)), "size": len(layer)}},
	})
	return m
}

// TestScanIndexAndDatabaseArtifact: a multi-platform index is scanned per
// platform (an Alpine image and a Debian one), its findings carry their
// platform, and each platform image gets its own report; the database is
// imported from an OCI artifact in a gantry registry (gantry vulndb
// update); oras discover lists what a scan attached.
func TestScanIndexAndDatabaseArtifact(t *testing.T) {
	addr := scanRegistry(t)

	// The database as an OCI artifact: a zip of OSV files in a layer.
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for name, body := range map[string]string{"alpine/ALPINE-TEST-2024-0001.json": alpineAdvisory, "debian/DEBIAN-TEST-0001.json": debianAdvisory} {
		w, _ := zw.Create(name)
		w.Write([]byte(body))
	}
	zw.Close()
	empty := []byte("{}")
	art, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"artifactType":  "application/vnd.osv.database.v1",
		"config":        map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": uploadBlob(t, addr, "osv/db", empty), "size": 2},
		"layers":        []any{map[string]any{"mediaType": "application/zip", "digest": uploadBlob(t, addr, "osv/db", zb.Bytes()), "size": zb.Len()}},
	})
	putManifest(t, addr, "osv/db", "2024-05", "application/vnd.oci.image.manifest.v1+json", art)
	var imp api.VulnDBImport
	if err := json.Unmarshal([]byte(must(t, "vulndb", "update", "--source", addr+"/osv/db:2024-05")), &imp); err != nil {
		t.Fatal(err)
	}
	if imp.Added != 2 || imp.Ecosystems["Alpine"] != 1 || imp.Ecosystems["Debian"] != 1 {
		t.Fatalf("vulndb update: %+v", imp)
	}
	if code, _, errOut := gantry(t, "", "vulndb", "update", "--source", addr+"/osv/db:nope"); code != 1 || !strings.Contains(errOut, "osv/db:nope") {
		t.Fatalf("update from a missing artifact: exit %d\n%s", code, errOut)
	}

	alpine := imageManifest(t, addr, "multi", tarLayer(t, map[string][]byte{"etc/os-release": []byte(alpineRelease), "lib/apk/db/installed": []byte(apkInstalled)}))
	debian := imageManifest(t, addr, "multi", tarLayer(t, map[string][]byte{"etc/os-release": []byte(debianRelease), "var/lib/dpkg/status": []byte(dpkgStatus)}))
	amd := putManifest(t, addr, "multi", "amd64", "application/vnd.oci.image.manifest.v1+json", alpine)
	arm := putManifest(t, addr, "multi", "arm64", "application/vnd.oci.image.manifest.v1+json", debian)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{
			map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd, "size": len(alpine), "platform": map[string]string{"os": "linux", "architecture": "amd64"}},
			map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm, "size": len(debian), "platform": map[string]string{"os": "linux", "architecture": "arm64"}},
		},
	})
	idx := putManifest(t, addr, "multi", "v1", "application/vnd.oci.image.index.v1+json", index)

	var rep api.ScanReport
	if err := json.Unmarshal([]byte(must(t, "scan", addr+"/multi:v1")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Digest != idx || len(rep.Platforms) != 2 || rep.Platforms[0].Platform != "linux/amd64" || rep.Platforms[1].Platform != "linux/arm64" ||
		rep.Platforms[1].OS != "Debian GNU/Linux 12 (bookworm)" || len(rep.Vulnerabilities) != 3 {
		t.Fatalf("index scan: %+v", rep)
	}
	// The Debian advisory names the source package, openssl: it affects
	// the binary packages openssl and libssl3.
	byID := map[string]api.ScanVulnerability{}
	for _, v := range rep.Vulnerabilities {
		byID[v.ID+" "+v.Package.Name] = v
		byID[v.ID] = v
	}
	if lib := byID["DEBIAN-TEST-0001 libssl3"]; lib.Package.Source != "openssl" || lib.Package.Version != "3.0.9-1" {
		t.Fatalf("libssl3 finding: %+v", lib)
	}
	deb := byID["DEBIAN-TEST-0001 openssl"]
	if deb.Package.Ecosystem != "Debian:12" || deb.Package.Version != "3.0.9-1" || deb.FixedVersion != "3.0.11-1~deb12u1" ||
		deb.Severity != "medium" || deb.SeveritySource != "advisory" || len(deb.Platforms) != 1 || deb.Platforms[0] != "linux/arm64" {
		t.Fatalf("Debian finding: %+v", deb)
	}
	if a := byID["ALPINE-TEST-2024-0001"]; len(a.Platforms) != 1 || a.Platforms[0] != "linux/amd64" {
		t.Fatalf("Alpine finding: %+v", a)
	}
	// Each platform image has its own report.
	if err := json.Unmarshal([]byte(must(t, "scan", "show", "-r", "contoso", "--image", "multi@"+arm)), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Digest != arm || len(rep.Vulnerabilities) != 2 || rep.Vulnerabilities[0].ID != "DEBIAN-TEST-0001" {
		t.Fatalf("report of the arm64 image: %+v", rep)
	}

	// oras discover sees the SBOM and the report attached to a platform
	// image, and the report attached to the index.
	oras := testenv.Tool(t, "oras")
	out, err := exec.Command(oras, "discover", "--plain-http", "-u", "admin", "-p", "cli-test-admin", "--format", "json", addr+"/multi@"+arm).CombinedOutput()
	if err != nil {
		t.Fatalf("oras discover: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "application/spdx+json") || !strings.Contains(string(out), "application/vnd.gantry.scan.report.v1+json") {
		t.Fatalf("oras discover of the arm64 image:\n%s", out)
	}
	out, err = exec.Command(oras, "discover", "--plain-http", "-u", "admin", "-p", "cli-test-admin", "--format", "json", addr+"/multi@"+idx).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "application/vnd.gantry.scan.report.v1+json") {
		t.Fatalf("oras discover of the index: %v\n%s", err, out)
	}
}
