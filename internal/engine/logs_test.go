package engine

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunLog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600)) }
	l := newRunLog(&buf, now)
	l.mask("s3cret", "abc", "-----BEGIN KEY-----\nline-two-of-key\n")
	l.Printf("Logging in with s3cret")
	w := l.output("validate-base-image")
	fmt.Fprint(w, "\x1b[32mValidating Image\x1b[0m\nBACKGROUND_")
	fmt.Fprint(w, "COLOR: Red\r\n")
	fmt.Fprint(w, "progress 10%\rprogress 100%\n")
	fmt.Fprint(w, "\x1b[31mERROR: Invalid Color:\x1b[0m Red\n")
	fmt.Fprint(w, "key line-two-of-key and abc\nno newline at the end")
	w.Close()
	l.Printf("two\nlines")
	want := strings.Join([]string{
		"2026/01/02 02:04:05 Logging in with ***",
		"validate-base-image | Validating Image",
		"validate-base-image | BACKGROUND_COLOR: Red",
		"validate-base-image | progress 100%",
		"validate-base-image | ERROR: Invalid Color: Red",
		"validate-base-image | key *** and abc",
		"validate-base-image | no newline at the end",
		"2026/01/02 02:04:05 two",
		"2026/01/02 02:04:05 lines",
	}, "\n") + "\n"
	if got := buf.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
}

func TestLineWriterSplitsLongLines(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := newRunLog(&buf, time.Now)
	w := l.output("s")
	w.Write(bytes.Repeat([]byte("x"), maxLine+10))
	w.Close()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 || len(lines[0]) != len("s | ")+maxLine {
		t.Errorf("got %d lines of %d bytes", len(lines), len(lines[0]))
	}
}

func TestRegistryKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://index.docker.io/v1/": "docker.io", "registry-1.docker.io": "docker.io", "docker.io": "docker.io",
		"127.0.0.1:5000": "127.0.0.1:5000", "http://127.0.0.1:5000/": "127.0.0.1:5000", "Contoso.azurecr.io": "contoso.azurecr.io",
	} {
		if got := registryKey(in); got != want {
			t.Errorf("registryKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHostPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/workspace": "/root", "/workspace/a/b": "/root/a/b", "/workspace/../etc": "", "/workspacex": "", "/src": "",
	} {
		got, err := hostPath("/root", in)
		if (want == "") != (err != nil) || got != want {
			t.Errorf("hostPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestInside(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "ctx", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o600))
	must(os.Symlink(outside, filepath.Join(root, "out")))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "ctx", "Dockerfile")))
	must(os.Symlink("sub", filepath.Join(root, "ctx", "in")))
	for p, ok := range map[string]bool{"ctx": true, "ctx/in": true, "out": false, "ctx/Dockerfile": false, ".": true} {
		_, err := inside(root, filepath.Join(root, p))
		if (err == nil) != ok {
			t.Errorf("inside(%s) = %v, want ok=%v", p, err, ok)
		}
	}
}
