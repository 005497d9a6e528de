package task

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLocalContextPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      "",
		"/srv/ctx":                              "/srv/ctx",
		"file:///srv/repo.git#main":             "/srv/repo.git",
		"/srv/repo.git#main:sub":                "/srv/repo.git",
		"https://github.com/contoso/app.git":    "",
		"git@github.com:contoso/app.git":        "",
		"user@host:repo.git":                    "",
		"https://github.com/contoso/app#main:x": "",
	} {
		if got := localContextPath(in); got != want {
			t.Errorf("localContextPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckContext(t *testing.T) {
	data := t.TempDir()
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A link under a root that leads into the data directory.
	if err := os.Symlink(filepath.Join(data, "keys"), filepath.Join(root, "keys-link")); err != nil {
		t.Fatal(err)
	}
	s := &Service{dataDir: data, contextRoots: []string{root}}
	cases := []struct {
		context string
		admin   bool
		want    string // "" for allowed
	}{
		{filepath.Join(root, "app"), false, ""},
		{"file://" + filepath.Join(root, "app"), false, ""},
		{"https://github.com/contoso/app.git", false, ""},
		{outside, false, "is not under a context root"},
		{"file://" + outside + "#main", false, "is not under a context root"},
		{outside, true, ""},
		{filepath.Join(data, "keys"), false, "data directory"},
		{filepath.Join(data, "keys"), true, "data directory"},
		{filepath.Join(root, "keys-link"), false, "data directory"},
		{filepath.Join(root, "keys-link", "sub"), true, "data directory"},
		{filepath.Dir(data), true, "data directory"},
		{"relative/dir", false, "absolute path"},
		{filepath.Join(root, "app", "..", "..", filepath.Base(outside)), false, "is not under a context root"},
	}
	for _, c := range cases {
		err := s.checkContext(c.context, c.admin)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("checkContext(%q, admin=%v) = %v, want allowed", c.context, c.admin, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalid)):
			t.Errorf("checkContext(%q, admin=%v) = %v, want an invalid error with %q", c.context, c.admin, err, c.want)
		}
	}
	none := &Service{dataDir: data}
	if err := none.checkContext(outside, false); err == nil || !strings.Contains(err.Error(), "--context-root") {
		t.Errorf("without roots: %v, want the setting named", err)
	}
}
