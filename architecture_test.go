// Package gantry_test keeps docs/architecture.md true: it names every
// package of the module (and no package that is gone), and the layering
// rules it states hold for the imports of the code.
package gantry_test

import (
	"bufio"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/gantryhq/gantry/"

// packages returns the module's packages (directories with non-test Go
// files), as paths relative to the module root, with the module packages
// each imports (test files excluded).
func packages(t *testing.T) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(p))
		imports := pkgs[dir]
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if rel, ok := strings.CutPrefix(path, module); ok && !slices.Contains(imports, rel) {
				imports = append(imports, rel)
			}
		}
		pkgs[dir] = imports
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// documented returns the packages the layout block of docs/architecture.md
// names ("internal/engine/   ..." lines), and the doc's text.
func documented(t *testing.T) (map[string]bool, string) {
	t.Helper()
	b, err := os.ReadFile("docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	in := false
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	entry := regexp.MustCompile(`^([a-z][a-z0-9-]*(?:/[a-z0-9-]+)*)/\s`)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## Layout"):
			in = true
		case in && strings.HasPrefix(line, "## "):
			in = false
		case in:
			if m := entry.FindStringSubmatch(line); m != nil {
				named[m[1]] = true
			}
		}
	}
	return named, string(b)
}

// TestArchitectureNamesEveryPackage: every package is in the layout, and
// every Go package the layout names exists.
func TestArchitectureNamesEveryPackage(t *testing.T) {
	pkgs := packages(t)
	named, _ := documented(t)
	for p := range pkgs {
		if !named[p] {
			t.Errorf("docs/architecture.md does not name package %s in its layout", p)
		}
	}
	for p := range named {
		if _, ok := pkgs[p]; !ok && (strings.HasPrefix(p, "internal/") || strings.HasPrefix(p, "cmd/") || p == "api" || p == "client") {
			t.Errorf("docs/architecture.md names %s, which is not a package", p)
		}
	}
}

// TestArchitectureLayering checks the rules of the doc's "Layering"
// section: each rule there is stated in backticks and checked here.
func TestArchitectureLayering(t *testing.T) {
	pkgs := packages(t)
	_, doc := documented(t)
	section := doc[strings.Index(doc, "## Layering"):]
	if i := strings.Index(section[3:], "\n## "); i >= 0 {
		section = section[:i+3]
	}
	under := func(p, prefix string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }

	// Leaves: import no package of the module but other leaves.
	leaves := regexp.MustCompile("`([a-z/]+)`").FindAllStringSubmatch(lineOf(t, section, "- Leaves:"), -1)
	if len(leaves) == 0 {
		t.Fatal(`docs/architecture.md: the Layering section lists no leaves ("- Leaves: ...")`)
	}
	isLeaf := map[string]bool{}
	for _, m := range leaves {
		isLeaf[m[1]] = true
	}
	for p := range isLeaf {
		if _, ok := pkgs[p]; !ok {
			t.Errorf("leaf %s is not a package", p)
		}
		for _, q := range pkgs[p] {
			if !isLeaf[q] {
				t.Errorf("%s is listed as a leaf but imports %s, which is not one", p, q)
			}
		}
	}
	rules := []struct {
		doc string // stated in the doc's section
		ok  func(p, q string) bool
	}{
		{"`api` imports no package of the module", func(p, q string) bool { return p != "api" }},
		{"`client` imports only `api`", func(p, q string) bool { return p != "client" || q == "api" }},
		{"only `internal/server` imports `internal/httpapi`", func(p, q string) bool { return q != "internal/httpapi" || p == "internal/server" }},
		{"only `cmd/gantry/cli` and `internal/demo` import `internal/server`; only they and `cmd/gantry-bench` (its soak drives a real server) import `client`", func(p, q string) bool {
			return (q != "internal/server" && q != "client") || p == "cmd/gantry/cli" || p == "internal/demo" ||
				(q == "client" && p == "cmd/gantry-bench")
		}},
		{"nothing imports `cmd/...`", func(p, q string) bool { return !under(q, "cmd") || p == "cmd/gantry" }},
		{"domain packages do not import the engine adapter's test helpers (`internal/docker/dockertest`)", func(p, q string) bool {
			return q != "internal/docker/dockertest"
		}},
		{"only tests and test helpers import `internal/testenv` (and `internal/testenv/stack`)", func(p, q string) bool {
			return !under(q, "internal/testenv") || under(p, "internal/testenv") || p == "internal/docker/dockertest"
		}},
		{"`internal/task/source` and `internal/task/worker`, do not import `internal/task`", func(p, q string) bool {
			return q != "internal/task" || !under(p, "internal/task/source") && !under(p, "internal/task/worker")
		}},
	}
	for _, r := range rules {
		if !strings.Contains(section, r.doc) {
			t.Errorf("docs/architecture.md's Layering section does not state %q", r.doc)
		}
		for p, qs := range pkgs {
			for _, q := range qs {
				if !r.ok(p, q) {
					t.Errorf("%s imports %s: breaks %q", p, q, r.doc)
				}
			}
		}
	}
}

// lineOf returns the bullet of text that starts with prefix, with its
// continuation lines (indented).
func lineOf(t *testing.T, text, prefix string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		for _, c := range lines[i+1:] {
			if !strings.HasPrefix(c, "  ") {
				break
			}
			l += " " + strings.TrimSpace(c)
		}
		return l
	}
	return ""
}
