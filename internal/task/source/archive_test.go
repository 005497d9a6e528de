package source

import (
	"archive/tar"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry is one archive member: a file (body), a directory (dir) or a symlink
// (link), or a hard link (hard).
type entry struct {
	name, body, link, hard string
	dir                    bool
}

// writeArchive writes entries as a gzipped tar and returns its path.
func writeArchive(t *testing.T, entries []entry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "context.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		switch {
		case e.dir:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		case e.hard != "":
			h.Typeflag, h.Linkname = tar.TypeLink, e.hard
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	f.Close()
	return p
}

// workDir returns a work directory inside a directory of its own, so that
// anything written outside it shows in its parent.
func workDir(t *testing.T) (parent, dir string) {
	t.Helper()
	parent = t.TempDir()
	dir = filepath.Join(parent, "work")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return parent, dir
}

// tree lists the paths under dir ("" when empty).
func tree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return strings.Join(out, " ")
}

func TestExtractArchiveRefusesEscapes(t *testing.T) {
	t.Parallel()
	proof := entry{name: "ARCHIVE-ESCAPE-PROOF.txt", body: "inside\n"}
	tests := []struct {
		name    string
		entries []entry
		want    string
	}{
		{"symlink chain", []entry{proof, {name: "a", link: "."}, {name: "b", link: "a/.."}, {name: "b/ARCHIVE-ESCAPE-PROOF.txt", body: "escaped\n"}},
			`archive entry "b": symlink to "a/.." leads outside the work directory`},
		{"longer chain", []entry{proof, {name: "d/e", dir: true}, {name: "d/e/l", link: "."}, {name: "up", link: "d/e/l/../../.."}, {name: "up/x", body: "escaped\n"}},
			`archive entry "up": symlink to "d/e/l/../../.." leads outside the work directory`},
		{"absolute symlink", []entry{proof, {name: "etc", link: "/etc"}}, `archive entry "etc": symlink to "/etc" leads outside the work directory`},
		{"dotdot symlink", []entry{proof, {name: "sub/up", link: "../../x"}}, `archive entry "sub/up": symlink to "../../x" leads outside the work directory`},
		{"dotdot path", []entry{proof, {name: "../ARCHIVE-ESCAPE-PROOF.txt", body: "escaped\n"}}, `archive entry "../ARCHIVE-ESCAPE-PROOF.txt": the path leads outside the work directory`},
		{"absolute path", []entry{proof, {name: "/tmp/x", body: "escaped\n"}}, `archive entry "/tmp/x": the path leads outside the work directory`},
		// Each symlink leads inside when it is made; x, made later, turns a
		// into a way out.
		{"chain completed later", []entry{proof, {name: "y", dir: true}, {name: "a", link: "x/y/../.."}, {name: "x", link: "."}},
			`archive entry "a": symlink to "x/y/../.." leads outside the work directory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parent, dir := workDir(t)
			err := Extract(writeArchive(t, tt.entries), dir)
			if err == nil || err.Error() != tt.want {
				t.Errorf("err = %v\nwant  %s", err, tt.want)
			}
			if got := tree(t, parent); got != "work" {
				t.Errorf("after a refused archive the work directory's parent holds %q; want only an empty work", got)
			}
		})
	}
}

func TestExtractArchiveInside(t *testing.T) {
	t.Parallel()
	_, dir := workDir(t)
	err := Extract(writeArchive(t, []entry{
		{name: "./", dir: true},
		{name: "src/app.txt", body: "app\n"},
		{name: "lib", link: "src"},
		{name: "src/self", link: "../src/./app.txt"},
		{name: "lib/through.txt", body: "through\n"}, // written through an inside symlink
		{name: "dangling", link: "not/yet/there"},
		{name: "repl", link: "src/app.txt"},
		{name: "repl", body: "replaced\n"}, // a file replaces a symlink, not its target
		{name: "hard", hard: "src/app.txt"},
	}), dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"src/app.txt": "app\n", "src/through.txt": "through\n", "lib/self": "app\n", "repl": "replaced\n"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(dir, "dangling")); err != nil || l != "not/yet/there" {
		t.Errorf("dangling = %q, %v", l, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "hard")); !os.IsNotExist(err) {
		t.Errorf("hard links are skipped: %v", err)
	}
}

func TestCopyDirRefusesEscapes(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "a"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "f.txt"), []byte("f\n"), 0o644)
	os.Symlink("a/f.txt", filepath.Join(src, "inside"))
	_, dst := workDir(t)
	if err := Copy(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "inside")); err != nil || string(b) != "f\n" {
		t.Errorf("inside = %q, %v", b, err)
	}

	for name, link := range map[string]string{"passwd": "/etc/passwd", "up": "../..", "chain": "inside/../.."} {
		t.Run(name, func(t *testing.T) {
			src := t.TempDir()
			os.WriteFile(filepath.Join(src, "a.txt"), []byte("a\n"), 0o644)
			os.Symlink(link, filepath.Join(src, name))
			parent, dst := workDir(t)
			err := Copy(src, dst)
			if want := name + `: symlink to "` + link + `" leads outside the work directory`; err == nil || err.Error() != want {
				t.Errorf("err = %v; want %s", err, want)
			}
			if got := tree(t, parent); got != "work" {
				t.Errorf("after a refused copy: %q", got)
			}
		})
	}
}
