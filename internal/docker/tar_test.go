package docker

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/testenv"
)

func TestIgnorePatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		patterns []string
		path     string
		want     bool
	}{
		{[]string{"*.log"}, "a.log", true},
		{[]string{"*.log"}, "dir/a.log", false}, // * does not cross /
		{[]string{"**/*.log"}, "dir/sub/a.log", true},
		{[]string{"**/*.log"}, "a.log", true},
		{[]string{"node_modules"}, "node_modules/x/y.js", true}, // a directory excludes its contents
		{[]string{"./build/"}, "build/out.o", true},
		{[]string{"build"}, "src/build", false},
		{[]string{"**/build"}, "src/build/x", true},
		{[]string{"*", "!keep"}, "keep", false},
		{[]string{"*", "!keep"}, "other", true},
		{[]string{"*.md", "!README.md"}, "README.md", false},
		{[]string{"*.md", "!README.md", "README*"}, "README.md", true}, // last match wins
		{[]string{"docs", "!docs/keep.txt"}, "docs/keep.txt", false},
		{[]string{"docs", "!docs/keep.txt"}, "docs/other.txt", true},
		{[]string{"a?c"}, "abc", true},
		{[]string{"a?c"}, "a/c", false},
		{[]string{"[a-c]at"}, "bat", true},
		{[]string{"[^a-c]at"}, "bat", false}, // Go's path.Match syntax, as docker
		{[]string{"[^a-c]at"}, "rat", true},
		{[]string{`\*star`}, "*star", true},
		{[]string{`\*star`}, "xstar", false},
		{[]string{"file.txt"}, "fileXtxt", false}, // . is literal
		{[]string{"a/**/b"}, "a/b", true},
		{[]string{"a/**/b"}, "a/x/y/b", true},
		{[]string{"a/**"}, "a/x", true},
		{[]string{"#comment-is-not-parsed-here"}, "x", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v~%s", tt.patterns, tt.path), func(t *testing.T) {
			t.Parallel()
			m, err := newMatcher(tt.patterns)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.excluded(tt.path); got != tt.want {
				t.Errorf("excluded = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := newMatcher([]string{"!"}); err == nil {
		t.Error(`"!" accepted`)
	}
	if _, err := newMatcher([]string{"[abc"}); err == nil {
		t.Error(`"[abc" accepted`)
	}
}

func TestReadIgnoreFile(t *testing.T) {
	t.Parallel()
	name := filepath.Join(t.TempDir(), ".dockerignore")
	if err := os.WriteFile(name, []byte("\uFEFF# comment\n\n  *.log  \n!keep.log\n   \n# another\n./build/\n/abs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readIgnoreFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"*.log", "!keep.log", "build", "abs"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("patterns = %q, want %q", got, want)
	}
	if got, err := readIgnoreFile(filepath.Join(t.TempDir(), "none")); err != nil || got != nil {
		t.Errorf("missing file: %q, %v", got, err)
	}
}

type entry struct {
	name, link string
	typ        byte
	mode       int64
	body       string
	uid, gid   int
}

func readTar(t *testing.T, r io.Reader) []entry {
	t.Helper()
	var es []entry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return es
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		es = append(es, entry{name: h.Name, link: h.Linkname, typ: h.Typeflag, mode: h.Mode, body: string(body), uid: h.Uid, gid: h.Gid})
	}
}

func names(es []entry) string {
	var n []string
	for _, e := range es {
		n = append(n, e.name)
	}
	return strings.Join(n, " ")
}

func TestTarDir(t *testing.T) {
	t.Parallel()
	dir := testenv.WriteTree(t, map[string]string{
		"b.txt":             "b",
		"a/x.log":           "log",
		"a/z.txt":           "z",
		"run.sh":            "#!/bin/sh\n",
		"node_modules/m.js": "m",
	})
	if err := os.Chmod(filepath.Join(dir, "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := TarDir(&buf, dir); err != nil {
		t.Fatal(err)
	}
	es := readTar(t, &buf)
	if got, want := names(es), "a/ a/x.log a/z.txt b.txt link node_modules/ node_modules/m.js run.sh"; got != want {
		t.Errorf("entries = %q, want %q", got, want)
	}
	for _, e := range es {
		if e.uid != 0 || e.gid != 0 {
			t.Errorf("%s: owner %d:%d", e.name, e.uid, e.gid)
		}
		switch e.name {
		case "run.sh":
			if e.mode != 0o755 || e.typ != tar.TypeReg || e.body != "#!/bin/sh\n" {
				t.Errorf("run.sh: %+v", e)
			}
		case "link":
			if e.typ != tar.TypeSymlink || e.link != "b.txt" {
				t.Errorf("link: %+v", e)
			}
		case "a/":
			if e.typ != tar.TypeDir || e.mode != 0o755 {
				t.Errorf("a/: %+v", e)
			}
		}
	}

	// Same tree, same stream.
	var again bytes.Buffer
	if err := TarDir(&again, dir); err != nil {
		t.Fatal(err)
	}
	var first bytes.Buffer
	_ = TarDir(&first, dir)
	if !bytes.Equal(first.Bytes(), again.Bytes()) {
		t.Error("TarDir is not deterministic")
	}

	buf.Reset()
	if err := TarDir(&buf, dir, "**/*.log", "node_modules"); err != nil {
		t.Fatal(err)
	}
	if got, want := names(readTar(t, &buf)), "a/ a/z.txt b.txt link run.sh"; got != want {
		t.Errorf("with excludes: %q, want %q", got, want)
	}
	// An exception below an excluded directory is still found.
	buf.Reset()
	if err := TarDir(&buf, dir, "a", "!a/z.txt"); err != nil {
		t.Fatal(err)
	}
	if got, want := names(readTar(t, &buf)), "a/z.txt b.txt link node_modules/ node_modules/m.js run.sh"; got != want {
		t.Errorf("with exception: %q, want %q", got, want)
	}
}

func TestTarBuildContext(t *testing.T) {
	t.Parallel()
	dir := testenv.WriteTree(t, map[string]string{
		".dockerignore":    "# nothing of this\n*\n!src\n",
		"build/Dockerfile": "FROM scratch\n",
		"src/main.go":      "package main\n",
		"secret.env":       "TOKEN=x\n",
		"docs/manual.md":   "# m\n",
	})
	var buf bytes.Buffer
	if err := TarBuildContext(&buf, dir, "build/Dockerfile"); err != nil {
		t.Fatal(err)
	}
	if got, want := names(readTar(t, &buf)), ".dockerignore build/Dockerfile src/ src/main.go"; got != want {
		t.Errorf("entries = %q, want %q", got, want)
	}
	// No .dockerignore: everything.
	dir2 := testenv.WriteTree(t, map[string]string{"Dockerfile": "FROM scratch\n", "x": "x"})
	buf.Reset()
	if err := TarBuildContext(&buf, dir2, ""); err != nil {
		t.Fatal(err)
	}
	if got, want := names(readTar(t, &buf)), "Dockerfile x"; got != want {
		t.Errorf("entries = %q, want %q", got, want)
	}
}

func TestTarFiles(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"Dockerfile":        "FROM scratch\n",
		"etc/app/conf.yaml": "a: 1\n",
		"bin/tool":          "\x7fELF....",
		"entry.sh":          "#!/bin/sh\necho hi\n",
	}
	var a, b bytes.Buffer
	if err := TarFiles(&a, files); err != nil {
		t.Fatal(err)
	}
	if err := TarFiles(&b, files); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("TarFiles is not deterministic")
	}
	es := readTar(t, &a)
	if got, want := names(es), "Dockerfile bin/ bin/tool entry.sh etc/ etc/app/ etc/app/conf.yaml"; got != want {
		t.Errorf("entries = %q, want %q", got, want)
	}
	modes := map[string]int64{}
	for _, e := range es {
		modes[e.name] = e.mode
	}
	for name, want := range map[string]int64{"Dockerfile": 0o644, "bin/": 0o755, "bin/tool": 0o755, "entry.sh": 0o755, "etc/app/conf.yaml": 0o644} {
		if modes[name] != want {
			t.Errorf("%s: mode %o, want %o", name, modes[name], want)
		}
	}
	if err := TarFiles(io.Discard, map[string]string{"../escape": "x"}); err == nil {
		t.Error("../escape accepted")
	}
}
