package scan

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/sbom"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/vulndb"
)

// newService is a scan service over a fresh database with one registry.
func newService(t testing.TB) (*Service, *db.DB) {
	t.Helper()
	dir := t.TempDir()
	d := testenv.DB(t, filepath.Join(dir, "db"))
	st := testenv.Store(t, d, filepath.Join(dir, "blobs"))
	testenv.CreateRegistries(t, st, "contoso")
	return New(d, st, vulndb.New(d, nil), sbom.New(d, nil)), d
}

// storeRows stores n reports of images whose packages are pkgs, as scans
// leave them, and returns their digests.
func storeRows(t testing.TB, s *Service, n int, pkgs []storedPackage) []string {
	t.Helper()
	ctx := context.Background()
	var digests []string
	for i := range n {
		dg := fmt.Sprintf("sha256:%064x", i+1)
		rep := &Report{Image: "contoso/app@" + dg, Digest: dg, Status: StatusScanned, ScannedAt: time.Now().UTC(), Vulnerabilities: []Vulnerability{}}
		g := []group{{Digest: dg, Status: StatusScanned, Packages: pkgs}}
		if err := s.storeReport(ctx, "contoso", "app", row{digest: dg, report: rep, groups: g}); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, dg)
	}
	return digests
}

const advisory = `{"id": "ALPINE-TEST-1", "aliases": ["CVE-2099-1"], "modified": "2024-01-01T00:00:00Z",
 "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
 "affected": [{"package": {"ecosystem": "Alpine:v3.18", "name": "zlib"},
  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.13-r0"}]}]}]}`

// TestRescanFindsNewlyAffected: an import rematches stored packages: the
// image with the vulnerable version is newly affected and its stored
// report has the finding; the fixed one is not; a second rescan finds
// nothing new.
func TestRescanFindsNewlyAffected(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	vuln := storeRows(t, s, 1, []storedPackage{{Ecosystem: "Alpine:v3.18", Name: "zlib", Version: "1.2.12-r9"}})
	fixedPkgs := []storedPackage{{Ecosystem: "Alpine:v3.18", Name: "zlib", Version: "1.2.13-r0"}}
	fixed := fmt.Sprintf("sha256:%064x", 99)
	rep := &Report{Digest: fixed, Status: StatusScanned, Vulnerabilities: []Vulnerability{}}
	if err := s.storeReport(ctx, "contoso", "lib", row{digest: fixed, report: rep, groups: []group{{Digest: fixed, Status: StatusScanned, Packages: fixedPkgs}}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.json"), []byte(advisory), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.vulns.ImportDir(ctx, dir, "test"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Rescan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Images != 2 || res.Changed != 1 || len(res.Affected) != 1 || res.Affected[0].Digest != vuln[0] ||
		len(res.Affected[0].New) != 1 || res.Affected[0].New[0] != "ALPINE-TEST-1" {
		t.Fatalf("rescan: %+v", res)
	}
	got, err := s.report(ctx, "contoso", digest.Digest(vuln[0]))
	if err != nil {
		t.Fatal(err)
	}
	if got.RescannedAt == nil || len(got.Vulnerabilities) != 1 || got.Vulnerabilities[0].Severity != "critical" ||
		got.Vulnerabilities[0].FixedVersion != "1.2.13-r0" || got.Summary.Critical != 1 {
		t.Fatalf("stored report after the rescan: %+v", got)
	}
	again, err := s.Rescan(ctx)
	if err != nil || again.Changed != 0 || len(again.Affected) != 0 {
		t.Fatalf("second rescan: %+v, %v", again, err)
	}

	// Quarantine follows the rescan; the allowlist (by alias) lifts it.
	if err := s.SetPolicy(ctx, "contoso", "", Policy{Quarantine: vulndb.SeverityHigh}); err != nil {
		t.Fatal(err)
	}
	if rep, _ := s.report(ctx, "contoso", digest.Digest(vuln[0])); rep.Summary.AtOrAbove(vulndb.SeverityHigh) != 1 {
		t.Fatalf("findings at or above high: %+v", rep.Summary)
	}
	if err := s.Allow(ctx, AllowEntry{Registry: "contoso", ID: "CVE-2099-1"}); err != nil {
		t.Fatal(err)
	}
	if rep, _ := s.report(ctx, "contoso", digest.Digest(vuln[0])); rep.Summary.AtOrAbove(vulndb.SeverityHigh) != 0 || rep.Summary.Allowlisted != 1 {
		t.Fatalf("after allowlisting the alias: %+v", rep.Summary)
	}
	if err := s.Allow(ctx, AllowEntry{Registry: "contoso", ID: "CVE-2099-2", Expires: time.Now().Add(-time.Hour)}); err == nil {
		t.Fatal("an allowlist entry that expired already was accepted")
	}
}

// BenchmarkRescan rematches 1,000 stored SBOMs (300 Go packages each, at
// versions that differ between images) against the Go vulnerability
// database after an import that adds one advisory affecting a tenth of
// them: what follows every database update.
func BenchmarkRescan(b *testing.B) {
	s, _ := newService(b)
	ctx := context.Background()
	if _, err := s.vulns.ImportDir(ctx, testenv.GoVulnDB(b), "golang.org/x/vulndb"); err != nil {
		b.Fatal(err)
	}
	pkgs := goPackages(b, 300)
	for i := range 1000 {
		rotated := make([]storedPackage, len(pkgs))
		for k, p := range pkgs {
			p.Version = benchVersions[(k+i)%len(benchVersions)]
			rotated[k] = p
		}
		if i%10 == 0 {
			rotated = append(rotated, storedPackage{Ecosystem: "Go", Name: "example.com/bench/lib", Version: "v1.0.0"})
		}
		dg := fmt.Sprintf("sha256:%064x", i+1)
		rep := &Report{Digest: dg, Status: StatusScanned, Vulnerabilities: []Vulnerability{}}
		if err := s.storeReport(ctx, "contoso", "app", row{digest: dg, report: rep, groups: []group{{Digest: dg, Status: StatusScanned, Packages: rotated}}}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Rescan(ctx); err != nil {
		b.Fatal(err)
	}
	var affected int
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		dir := b.TempDir()
		adv := fmt.Sprintf(`{"id": "BENCH-%d", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "Go", "name": "example.com/bench/lib"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.%d.0"}]}]}]}`, n, n)
		if err := os.WriteFile(filepath.Join(dir, "a.json"), []byte(adv), 0o644); err != nil {
			b.Fatal(err)
		}
		if _, err := s.vulns.ImportDir(ctx, dir, "bench"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := s.Rescan(ctx)
		if err != nil || res.Images != 1000 {
			b.Fatalf("rescan: %+v, %v", res, err)
		}
		affected = len(res.Affected)
	}
	b.ReportMetric(float64(affected), "affected/op")
}

var benchVersions = []string{"v0.0.1", "v1.2.3", "v0.3.7", "v0.0.0-20220101000000-abcdefabcdef", "v0.9.0", "v2.1.0"}

// goPackages lists n Go packages from the database's advisories, at
// versions some of which they affect.
func goPackages(t testing.TB, n int) []storedPackage {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testenv.GoVulnDB(t), "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []storedPackage
	for i, f := range files {
		if len(out) >= n {
			break
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var a struct {
			Affected []struct{ Package struct{ Name string } }
		}
		if json.Unmarshal(b, &a) != nil || len(a.Affected) == 0 || seen[a.Affected[0].Package.Name] {
			continue
		}
		seen[a.Affected[0].Package.Name] = true
		out = append(out, storedPackage{Ecosystem: "Go", Name: a.Affected[0].Package.Name, Version: benchVersions[i%len(benchVersions)]})
	}
	return out
}
