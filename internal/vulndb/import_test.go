package vulndb_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/vulndb"
)

// goAdvisory is a Go advisory for example.com/<pkg>, fixed in fixed.
func goAdvisory(id, modified, pkg, fixed, summary string) string {
	return fmt.Sprintf(`{"id": %q, "modified": %q, "summary": %q, "aliases": ["CVE-%s"],
  "affected": [{"package": {"ecosystem": "Go", "name": "example.com/%s"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": %q}]}]}]}`, id, modified, summary, id, pkg, fixed)
}

// snapshot is what an import that fails must leave unchanged.
func snapshot(t *testing.T, v *vulndb.DB) string {
	t.Helper()
	ctx := context.Background()
	st, err := v.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g, err := v.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%+v generation %d", st, g)
}

func TestImportInvalidIsAtomic(t *testing.T) {
	t.Parallel()
	good := goAdvisory("GO-GOOD", "2024-01-01T00:00:00Z", "good", "1.0.0", "good")
	for _, c := range []struct {
		name, bad string
		want      string // in the message
		tooLarge  bool
	}{
		{"json type error", `{"id": "GO-BAD", "modified": 5}`, `osv/sub/bad.json: modified: JSON number where string is wanted`, false},
		{"json type error deep", `{"id": "GO-BAD", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": 7, "name": "x"}}]}`,
			`osv/sub/bad.json: affected.package.ecosystem: JSON number where string is wanted`, false},
		{"not json", `{"id": `, `osv/sub/bad.json: invalid JSON`, false},
		{"no id", `{"modified": "2024-01-01T00:00:00Z"}`, `osv/sub/bad.json: id: missing`, false},
		{"bad time", `{"id": "GO-BAD", "modified": "yesterday"}`, `osv/sub/bad.json: modified: "yesterday" is not an RFC 3339 time`, false},
		{"bad semver", strings.Replace(goAdvisory("GO-BAD", "2024-01-01T00:00:00Z", "bad", "1.0.0", ""), `"1.0.0"`, `"x.y"`, 1),
			`osv/sub/bad.json: affected[0].ranges[0].events[1]: invalid version "x.y" for ecosystem Go: not a SemVer 2.0 version`, false},
		{"bad ecosystem version", `{"id": "A-BAD", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "Alpine:v3.18", "name": "x"},
			"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "x.y"}]}]}]}`,
			`osv/sub/bad.json: affected[0].ranges[0].events[1]: invalid version "x.y" for ecosystem Alpine:v3.18: does not start with a digit`, false},
		{"bad range type", strings.Replace(goAdvisory("GO-BAD", "2024-01-01T00:00:00Z", "bad", "1.0.0", ""), `"SEMVER"`, `"FOO"`, 1),
			`osv/sub/bad.json: affected[0].ranges[0].type: "FOO" is not a range type`, false},
		{"two fields in an event", strings.Replace(goAdvisory("GO-BAD", "2024-01-01T00:00:00Z", "bad", "1.0.0", ""), `{"introduced": "0"}`, `{"introduced": "0", "fixed": "1.0.0"}`, 1),
			`osv/sub/bad.json: affected[0].ranges[0].events[0]: want exactly one of introduced, fixed, last_affected, limit`, false},
		{"huge string", goAdvisory("GO-BAD", "2024-01-01T00:00:00Z", strings.Repeat("x", 5000), "1.0.0", ""),
			`osv/sub/bad.json: affected[0].package.name: 5012 bytes, more than the limit of 4096`, true},
		{"huge file", goAdvisory("GO-BAD", "2024-01-01T00:00:00Z", "bad", "1.0.0", strings.Repeat("x", 4<<20)),
			`osv/sub/bad.json: 4194` /* size */, true},
		{"too many events", strings.Replace(goAdvisory("GO-BAD", "2024-01-01T00:00:00Z", "bad", "1.0.0", ""), `{"introduced": "0"}`, strings.Repeat(`{"introduced": "0"}, `, 10_002)+`{"introduced": "0"}`, 1),
			`osv/sub/bad.json: affected[0].ranges[0].events: 10004 entries, more than the limit of 10000`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			v := newDB(t)
			if _, err := v.ImportDir(ctx, testenv.WriteTree(t, map[string]string{"a.json": goAdvisory("GO-OLD", "2024-01-01T00:00:00Z", "old", "1.0.0", "")}), "first"); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, v)
			files := map[string]string{"osv/good.json": good, "osv/sub/bad.json": c.bad}
			for _, imp := range []struct {
				name string
				run  func() error
			}{
				{"dir", func() error { _, err := v.ImportDir(ctx, testenv.WriteTree(t, files), "second"); return err }},
				{"zip", func() error {
					z := zipOf(t, files)
					_, err := v.ImportZip(ctx, bytes.NewReader(z), int64(len(z)), "second")
					return err
				}},
			} {
				err := imp.run()
				if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, errdefs.ErrInvalid) || errors.Is(err, errdefs.ErrTooLarge) != c.tooLarge {
					t.Errorf("%s: error %.300v\nwant one with %q (invalid, too large %v)", imp.name, err, c.want, c.tooLarge)
				}
				if after := snapshot(t, v); after != before {
					t.Errorf("%s: database changed by a failed import:\n%s\nwas\n%s", imp.name, after, before)
				}
				if _, err := v.Advisory(ctx, "GO-GOOD"); !errors.Is(err, errdefs.ErrNotFound) {
					t.Errorf("%s: the good file of a failed import was stored (%v)", imp.name, err)
				}
			}
		})
	}
}

func TestImportMergesByModified(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v := newDB(t)
	imp := func(files map[string]string) vulndb.ImportResult {
		t.Helper()
		res, err := v.ImportDir(ctx, testenv.WriteTree(t, files), "test")
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	gen := func() int64 {
		g, err := v.Generation(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	match := func(pkg string) []string {
		m, err := v.Matcher(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range m.Match([]vulndb.Package{{"Go", "example.com/" + pkg, "v0.1.0"}}) {
			out = append(out, f.ID+" "+f.Summary)
		}
		return out
	}
	res := imp(map[string]string{"GO-1.json": goAdvisory("GO-1", "2024-01-01T00:00:00Z", "a", "1.0.0", "first"),
		"GO-2.json": goAdvisory("GO-2", "2024-01-01T00:00:00Z", "b", "1.0.0", "two")})
	if res.Added != 2 || gen() != 1 {
		t.Fatalf("first import %+v, generation %d", res, gen())
	}
	// Older and equal: kept.
	res = imp(map[string]string{"GO-1.json": goAdvisory("GO-1", "2023-01-01T00:00:00Z", "other", "1.0.0", "older"),
		"GO-2.json": goAdvisory("GO-2", "2024-01-01T00:00:00Z", "b", "1.0.0", "same")})
	if res.Unchanged != 2 || res.Added+res.Updated != 0 || gen() != 1 {
		t.Errorf("older import %+v, generation %d", res, gen())
	}
	if got := match("a"); len(got) != 1 || got[0] != "GO-1 first" {
		t.Errorf("after older import: %v", got)
	}
	// Newer: replaces, with its affected entries and aliases.
	res = imp(map[string]string{"x/GO-1.json": goAdvisory("GO-1", "2024-06-01T00:00:00.5+02:00", "c", "1.0.0", "newer")})
	if res.Updated != 1 || res.Unchanged != 0 || gen() != 2 {
		t.Errorf("newer import %+v, generation %d", res, gen())
	}
	if got := match("a"); len(got) != 0 {
		t.Errorf("old affected entry still matches: %v", got)
	}
	if got := match("c"); len(got) != 1 || got[0] != "GO-1 newer" {
		t.Errorf("after newer import: %v", got)
	}
	if a, err := v.Advisory(ctx, "CVE-GO-1"); err != nil || a.Summary != "newer" || a.Modified != time.Date(2024, 5, 31, 22, 0, 0, 5e8, time.UTC) {
		t.Errorf("Advisory: %+v, %v", a, err)
	}
	// The same ID twice in one import: the newer wins.
	res = imp(map[string]string{"a/GO-3.json": goAdvisory("GO-3", "2024-01-01T00:00:00Z", "d", "1.0.0", "old"),
		"b/GO-3.json": goAdvisory("GO-3", "2024-02-01T00:00:00Z", "d", "1.0.0", "new")})
	if res.Added != 1 || res.Unchanged != 1 {
		t.Errorf("duplicate import %+v", res)
	}
	if got := match("d"); len(got) != 1 || got[0] != "GO-3 new" {
		t.Errorf("duplicate: %v", got)
	}
}

func TestImportZip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v := newDB(t)
	z := zipOf(t, map[string]string{
		"GO-1.json":              goAdvisory("GO-1", "2024-01-01T00:00:00Z", "a", "1.0.0", ""),
		"deep/er/down/GO-2.json": goAdvisory("GO-2", "2024-01-01T00:00:00Z", "b", "1.0.0", ""),
		"deep/":                  "",
		"index.txt":              "not OSV",
	})
	res, err := v.ImportZip(ctx, bytes.NewReader(z), int64(len(z)), "zip:test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 2 || res.Added != 2 || res.Ecosystems["Go"] != 2 {
		t.Errorf("result %+v", res)
	}
	if st, _ := v.Stats(ctx); st.Source != "zip:test" {
		t.Errorf("source %q", st.Source)
	}
	if _, err := v.ImportZip(ctx, bytes.NewReader([]byte("PK not a zip")), 12, "zip:bad"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("not a zip: %v", err)
	}
}

// TestImportZipBombs checks that an entry that declares or inflates to too
// much is refused quickly, naming the file.
func TestImportZipBombs(t *testing.T) {
	t.Parallel()
	// An entry declaring 100 bytes whose data inflates to 64 MiB.
	var raw bytes.Buffer
	fw, err := flate.NewWriter(&raw, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for range 64 {
		_, _ = fw.Write(zeros)
	}
	_ = fw.Close()
	var lying bytes.Buffer
	zw := zip.NewWriter(&lying)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "osv/liar.json", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(nil),
		CompressedSize64: uint64(raw.Len()), UncompressedSize64: 100})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(raw.Bytes())
	_ = zw.Close()

	huge := zipOf(t, map[string]string{"osv/huge.json": goAdvisory("GO-1", "2024-01-01T00:00:00Z", "a", "1.0.0", strings.Repeat(" ", 64<<20))})

	for _, c := range []struct {
		name string
		zip  []byte
		lim  vulndb.Limits
		want string
	}{
		{"declared size lies", lying.Bytes(), vulndb.Limits{}, "osv/liar.json: uncompressed data does not match the declared size of 100 bytes"},
		{"huge compressible entry", huge, vulndb.Limits{}, "osv/huge.json: 67109118 bytes uncompressed, more than the limit of 4194304"},
		{"total size", zipOf(t, map[string]string{"a/1.json": goAdvisory("GO-1", "2024-01-01T00:00:00Z", "a", "1.0.0", ""),
			"a/2.json": goAdvisory("GO-2", "2024-01-01T00:00:00Z", "a", "1.0.0", "")}), vulndb.Limits{TotalSize: 300}, "the import exceeds the limit of 300 bytes uncompressed"},
		{"file count", zipOf(t, map[string]string{"1.json": goAdvisory("GO-1", "2024-01-01T00:00:00Z", "a", "1.0.0", ""),
			"2.json": goAdvisory("GO-2", "2024-01-01T00:00:00Z", "a", "1.0.0", "")}), vulndb.Limits{Files: 1}, "more than the limit of 1 files"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v := newDB(t)
			v.SetLimits(c.lim)
			start := time.Now()
			_, err := v.ImportZip(context.Background(), bytes.NewReader(c.zip), int64(len(c.zip)), "zip:bomb")
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, errdefs.ErrTooLarge) {
				t.Errorf("error %v, want one with %q (too large)", err, c.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refusing took %v", d)
			}
			if st, _ := v.Stats(context.Background()); st.Advisories != 0 {
				t.Errorf("stored %d advisories", st.Advisories)
			}
		})
	}
}

func TestImportDirSymlinks(t *testing.T) {
	t.Parallel()
	outside := testenv.WriteTree(t, map[string]string{"GO-OUT.json": goAdvisory("GO-OUT", "2024-01-01T00:00:00Z", "out", "1.0.0", "")})
	dir := testenv.WriteTree(t, map[string]string{"GO-IN.json": goAdvisory("GO-IN", "2024-01-01T00:00:00Z", "in", "1.0.0", "")})
	for name, target := range map[string]string{
		"out.json":  filepath.Join(outside, "GO-OUT.json"),
		"outdir":    outside,
		"same.json": "GO-IN.json",
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	v := newDB(t)
	res, err := v.ImportDir(context.Background(), dir, "dir")
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 1 || res.Unchanged != 1 || len(res.Ignored) != 1 || res.Ignored[0].File != "out.json" {
		t.Errorf("result %+v: want GO-IN (twice, by a link inside), out.json ignored, outdir not followed", res)
	}
	if _, err := v.Advisory(context.Background(), "GO-OUT"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("GO-OUT imported through a link out of the directory: %v", err)
	}
}
