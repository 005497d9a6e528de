package vulndb_test

import (
	"archive/zip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/vulndb"
)

// goOSVDir returns the data/osv directory of golang.org/x/vulndb.
func goOSVDir(t testing.TB) string { return testenv.GoVulnDB(t) }

// osvFiles lists the *.json files of dir.
func osvFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) < 1000 {
		t.Fatalf("%s: %d OSV files, %v", dir, len(files), err)
	}
	return files
}

// importGoVulnDB imports the Go vulnerability database into a fresh DB.
func importGoVulnDB(t testing.TB) (*vulndb.DB, vulndb.ImportResult) {
	t.Helper()
	v := newDB(t)
	res, err := v.ImportDir(context.Background(), goOSVDir(t), "dir:golang.org/x/vulndb/data/osv")
	if err != nil {
		t.Fatal(err)
	}
	return v, res
}

func TestGoVulnDB(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := goOSVDir(t)
	files := osvFiles(t, dir)
	start := time.Now()
	v, res := importGoVulnDB(t)
	t.Logf("imported %d files in %v: %+v", len(files), time.Since(start), res)
	if res.Files != len(files) || res.Added != len(files) || len(res.Ignored) != 0 {
		t.Errorf("import of %d files: %+v", len(files), res)
	}
	st, err := v.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Some advisories have no affected entry (withdrawn ones, say).
	if st.Advisories != len(files) || len(st.Ecosystems) != 1 || st.Ecosystems[0].Ecosystem != "Go" || st.Ecosystems[0].Advisories < len(files)*95/100 {
		t.Errorf("stats %+v for %d files", st, len(files))
	}

	start = time.Now()
	m, err := v.Matcher(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded the matcher in %v", time.Since(start))
	ids := func(pkgs ...vulndb.Package) string {
		var out []string
		for _, f := range m.Match(pkgs) {
			out = append(out, f.ID+"<"+f.FixedVersion)
		}
		return strings.Join(out, " ")
	}
	text := "golang.org/x/text"
	for _, c := range []struct {
		version, want string
	}{
		{"v0.3.2", "GO-2020-0015<0.3.3 GO-2021-0113<0.3.7 GO-2022-1059<0.3.8 GO-2026-5970<0.39.0 GO-2026-6629<0.41.0"},
		{"v0.3.3", "GO-2021-0113<0.3.7 GO-2022-1059<0.3.8 GO-2026-5970<0.39.0 GO-2026-6629<0.41.0"},
		{"v0.3.8", "GO-2026-5970<0.39.0 GO-2026-6629<0.41.0"},
		{"v0.41.0", ""},
		{"(devel)", ""},
	} {
		if got := ids(vulndb.Package{Ecosystem: "Go", Name: text, Version: c.version}); got != c.want {
			t.Errorf("%s@%s: %s\nwant %s", text, c.version, got, c.want)
		}
	}
	std := m.Match([]vulndb.Package{{Ecosystem: "Go", Name: "stdlib", Version: "go1.20.1"}})
	if len(std) < 20 {
		t.Errorf("stdlib go1.20.1: %d findings, want many", len(std))
	}
	if a, err := v.Advisory(ctx, "CVE-2022-32149"); err != nil || a.ID != "GO-2022-1059" || a.Affected[0].Ranges != "introduced 0, fixed 0.3.8" {
		t.Errorf("Advisory(CVE-2022-32149) = %+v, %v", a, err)
	}

	// Again: nothing changes.
	gen := m.Version()
	res, err = v.ImportDir(ctx, dir, "again")
	if err != nil {
		t.Fatal(err)
	}
	if res.Unchanged != len(files) || res.Added+res.Updated != 0 {
		t.Errorf("second import %+v", res)
	}
	if g, _ := v.Generation(ctx); g != gen {
		t.Errorf("generation %d after an import that changed nothing, was %d", g, gen)
	}
}

func TestGoVulnDBZip(t *testing.T) {
	t.Parallel()
	files := osvFiles(t, goOSVDir(t))
	p := filepath.Join(t.TempDir(), "osv.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create("vulndb/data/osv/" + filepath.Base(name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	v := newDB(t)
	start := time.Now()
	res, err := v.ImportZip(context.Background(), f, fi.Size(), "zip:"+p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("imported the zip (%d bytes) in %v", fi.Size(), time.Since(start))
	if res.Files != len(files) || res.Added != len(files) || res.Ecosystems["Go"] < len(files)*95/100 {
		t.Errorf("zip import %+v of %d files", res, len(files))
	}
	m, err := v.Matcher(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Match([]vulndb.Package{{Ecosystem: "Go", Name: "golang.org/x/text", Version: "v0.3.7"}}); len(got) != 3 || got[0].ID != "GO-2022-1059" {
		t.Errorf("golang.org/x/text@v0.3.7: %+v", got)
	}
}

// benchPackages are n packages as a Go binary's build info lists them:
// modules of the database at versions in and out of their ranges, and
// modules it does not know.
func benchPackages(t testing.TB, dir string, n int) []vulndb.Package {
	t.Helper()
	var pkgs []vulndb.Package
	seen := map[string]bool{"stdlib": true, "toolchain": true}
	versions := []string{"v0.0.1", "v1.2.3", "v0.3.7", "v2.0.0+incompatible", "v0.0.0-20220101000000-abcdefabcdef"}
	for i, name := range osvFiles(t, dir) {
		if len(pkgs) >= n*2/3 {
			break
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var a struct {
			Affected []struct {
				Package struct{ Name string }
			}
		}
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatal(err)
		}
		if len(a.Affected) > 0 && !seen[a.Affected[0].Package.Name] {
			seen[a.Affected[0].Package.Name] = true
			pkgs = append(pkgs, vulndb.Package{Ecosystem: "Go", Name: a.Affected[0].Package.Name, Version: versions[i%len(versions)]})
		}
	}
	pkgs = append(pkgs, vulndb.Package{Ecosystem: "Go", Name: "stdlib", Version: "go1.21.3"})
	for i := len(pkgs); i < n; i++ {
		pkgs = append(pkgs, vulndb.Package{Ecosystem: "Go", Name: "example.com/unknown/" + strings.Repeat("x", i%7) + string(rune('a'+i%26)), Version: "v1.0.0"})
	}
	return pkgs
}

// BenchmarkMatch matches 300 packages (one image's SBOM) against the Go
// vulnerability database.
func BenchmarkMatch(b *testing.B) {
	v, _ := importGoVulnDB(b)
	m, err := v.Matcher(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	pkgs := benchPackages(b, goOSVDir(b), 300)
	b.ReportAllocs()
	b.ResetTimer()
	findings := 0
	for b.Loop() {
		findings = len(m.Match(pkgs))
	}
	b.ReportMetric(float64(findings), "findings/op")
}

// BenchmarkMatcherLoad loads the snapshot of the Go vulnerability
// database.
func BenchmarkMatcherLoad(b *testing.B) {
	v, _ := importGoVulnDB(b)
	if _, err := v.Generation(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := vulndb.LoadMatcher(context.Background(), v); err != nil {
			b.Fatal(err)
		}
	}
}
