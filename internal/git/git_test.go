package git

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Context
		err  bool
	}{
		{in: "https://github.com/u/r.git", want: Context{URL: "https://github.com/u/r.git"}},
		{in: "https://github.com/u/r.git#main", want: Context{URL: "https://github.com/u/r.git", Ref: "main"}},
		{in: "https://github.com/u/r.git#main:sub/dir", want: Context{URL: "https://github.com/u/r.git", Ref: "main", Folder: "sub/dir"}},
		{in: "/srv/git/app#dev", want: Context{URL: "/srv/git/app", Ref: "dev"}},
		{in: "#main", err: true},
		{in: "/x#main:../etc", err: true},
		{in: "/x#--upload-pack=evil", err: true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.err {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%q) = %v, want ErrInvalid", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

// newRepo makes a real repository with one commit on branch main.
func newRepo(t *testing.T, files map[string]string) (dir string, commit func(msg string, files map[string]string) string) {
	t.Helper()
	dir = t.TempDir()
	g := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	g("init", "-q", "-b", "main")
	commit = func(msg string, files map[string]string) string {
		for name, body := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		g("add", "-A")
		g("commit", "-q", "-m", msg)
		return g("rev-parse", "HEAD")
	}
	commit("initial", files)
	return dir, commit
}

func TestHeadAndCheckout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo, commit := newRepo(t, map[string]string{"app/Dockerfile": "FROM scratch\n", "README": "x"})
	if !IsGit(repo) {
		t.Fatalf("IsGit(%s) = false", repo)
	}
	if IsGit(t.TempDir()) {
		t.Fatal("IsGit(empty dir) = true")
	}
	c, err := Parse(repo + "#main:app")
	if err != nil {
		t.Fatal(err)
	}
	first, err := Head(ctx, c, "")
	if err != nil {
		t.Fatal(err)
	}
	second := commit("second", map[string]string{"app/Dockerfile": "FROM scratch\nENV A=1\n"})
	head, err := Head(ctx, c, "")
	if err != nil || head != second || head == first {
		t.Fatalf("Head = %s, %v; want %s (not %s)", head, err, second, first)
	}

	sha, dir, err := Checkout(ctx, c, "", "", filepath.Join(t.TempDir(), "co"))
	if err != nil {
		t.Fatal(err)
	}
	if sha != second {
		t.Fatalf("checked out %s, want %s", sha, second)
	}
	b, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil || !strings.Contains(string(b), "ENV A=1") {
		t.Fatalf("Dockerfile = %q, %v", b, err)
	}
	// An older commit by SHA.
	sha, dir, err = Checkout(ctx, c, "", first, filepath.Join(t.TempDir(), "old"))
	if err != nil || sha != first {
		t.Fatalf("Checkout(first) = %s, %v", sha, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "Dockerfile")); strings.Contains(string(b), "ENV") {
		t.Fatalf("old checkout has new content: %q", b)
	}

	missing, _ := Parse(repo + "#nope")
	if _, err := Head(ctx, missing, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Head(missing branch) = %v, want ErrNotFound", err)
	}
	noFolder, _ := Parse(repo + "#main:nothere")
	if _, _, err := Checkout(ctx, noFolder, "", "", filepath.Join(t.TempDir(), "nf")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Checkout(missing folder) = %v, want ErrNotFound", err)
	}
}

func TestTokenNeverInErrors(t *testing.T) {
	t.Parallel()
	const token = "s3cr3t-token-value"
	c, _ := Parse("http://127.0.0.1:1/nothing.git#main")
	_, err := Head(context.Background(), c, token)
	if err == nil {
		t.Fatal("Head of an unreachable remote succeeded")
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks the token: %v", err)
	}
}
