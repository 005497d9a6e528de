// Package git fetches task contexts from git repositories and reads branch
// heads for commit triggers. It runs the real git command: contexts may be
// any URL git understands (https, ssh, file) or a local repository path.
//
// Access tokens are handed to git through GIT_CONFIG_* environment entries
// as an HTTP Authorization header, so they never appear on a command line
// (visible in the process table), in the remote URL or in error messages.
package git

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// ErrInvalid marks a malformed context string.
var ErrInvalid = errdefs.New("invalid git context", errdefs.ErrInvalid)

// ErrNotFound marks a branch or repository that does not exist.
var ErrNotFound = errdefs.New("git ref not found", errdefs.ErrNotFound)

// Context is a parsed task context: a repository, a ref and a folder.
// Its string form is ACR's: url#ref:folder.
type Context struct {
	// URL is what git clones: a URL or a local repository path.
	URL string
	// Ref is a branch name or a commit SHA ("" means the default branch).
	Ref string
	// Folder is the sub-directory of the repository used as the build
	// context ("" for the root).
	Folder string
}

func (c Context) String() string {
	s := c.URL
	if c.Ref != "" || c.Folder != "" {
		s += "#" + c.Ref
	}
	if c.Folder != "" {
		s += ":" + c.Folder
	}
	return s
}

// Branch returns the branch a commit trigger watches: the ref unless it is a
// commit SHA, else "" (the default branch). ACR defaults to master; we
// resolve the remote's default branch instead.
func (c Context) Branch() string {
	if isSHA(c.Ref) {
		return ""
	}
	return c.Ref
}

// IsGit reports whether s names a git context rather than a local folder:
// a URL, a path ending in .git, or a directory that is a git repository.
func IsGit(s string) bool {
	base, _, _ := strings.Cut(s, "#")
	if strings.Contains(base, "://") || strings.HasPrefix(base, "git@") {
		return true
	}
	if strings.HasSuffix(base, ".git") || strings.Contains(s, "#") {
		return true
	}
	if fi, err := os.Stat(filepath.Join(base, ".git")); err == nil && fi != nil {
		return true
	}
	if fi, err := os.Stat(filepath.Join(base, "HEAD")); err == nil && !fi.IsDir() {
		if _, err := os.Stat(filepath.Join(base, "objects")); err == nil {
			return true // a bare repository
		}
	}
	return false
}

// Parse parses "url[#ref][:folder]".
func Parse(s string) (Context, error) {
	if s == "" {
		return Context{}, fmt.Errorf("empty context: %w", ErrInvalid)
	}
	base, frag, hasFrag := strings.Cut(s, "#")
	c := Context{URL: base}
	if hasFrag {
		ref, folder, _ := strings.Cut(frag, ":")
		c.Ref, c.Folder = ref, strings.Trim(folder, "/")
	}
	if c.URL == "" {
		return Context{}, fmt.Errorf("context %q has no repository URL: %w", s, ErrInvalid)
	}
	if strings.Contains(c.Folder, "..") {
		return Context{}, fmt.Errorf("context %q: folder must stay inside the repository: %w", s, ErrInvalid)
	}
	if strings.HasPrefix(c.Ref, "-") || strings.HasPrefix(c.URL, "-") {
		return Context{}, fmt.Errorf("context %q: ref and URL must not start with '-': %w", s, ErrInvalid)
	}
	return c, nil
}

func isSHA(s string) bool {
	if len(s) < 7 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

// remote returns the URL git should use; local paths get file:// so that
// shallow clones work.
func (c Context) remote() string {
	if strings.Contains(c.URL, "://") || strings.HasPrefix(c.URL, "git@") {
		return c.URL
	}
	abs, err := filepath.Abs(c.URL)
	if err != nil {
		return c.URL
	}
	return "file://" + abs
}

// run runs git with args in dir, with the token (if any) as an HTTP
// Authorization header. The token never reaches the returned error.
func run(ctx context.Context, dir, token string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	env := append(os.Environ(),
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/true",
		"GIT_CONFIG_NOSYSTEM=1",
	)
	n := 0
	var cred string
	addConfig := func(k, v string) {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", n, k), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", n, v))
		n++
	}
	addConfig("protocol.file.allow", "always")
	addConfig("advice.detachedHead", "false")
	if token != "" {
		cred = base64.StdEncoding.EncodeToString([]byte("x-access-token:" + token))
		addConfig("http.extraHeader", "Authorization: Basic "+cred)
	}
	env = append(env, fmt.Sprintf("GIT_CONFIG_COUNT=%d", n))
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if token != "" {
			// The header form first: it contains the token's own base64.
			msg = strings.ReplaceAll(msg, cred, "***")
			msg = strings.ReplaceAll(msg, token, "***")
			msg = strings.ReplaceAll(msg, base64.RawStdEncoding.EncodeToString([]byte(token)), "***")
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("git %s: %w", args[0], ctx.Err())
		}
		return "", fmt.Errorf("git %s: %s: %w", args[0], msg, err)
	}
	return stdout.String(), nil
}

// Head returns the commit the context's ref points to on the remote: the
// branch head, the commit itself for a SHA, or the default branch's head.
func Head(ctx context.Context, c Context, token string) (string, error) {
	if isSHA(c.Ref) {
		return c.Ref, nil
	}
	ref := "HEAD"
	if c.Ref != "" {
		ref = "refs/heads/" + c.Ref
	}
	out, err := run(ctx, "", token, "ls-remote", "--", c.remote(), ref)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if sha, name, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok && name == ref {
			return sha, nil
		}
	}
	return "", fmt.Errorf("%s in %s: %w", ref, c.URL, ErrNotFound)
}

// Checkout fetches the context into dir (which must not exist or be empty)
// at commit (or at the ref's head when commit is ""), and returns the
// commit checked out and the directory of the context's folder.
func Checkout(ctx context.Context, c Context, token, commit, dir string) (sha, contextDir string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	if _, err := run(ctx, dir, "", "init", "-q", "."); err != nil {
		return "", "", err
	}
	want := commit
	if want == "" {
		switch {
		case isSHA(c.Ref):
			want = c.Ref
		case c.Ref != "":
			want = "refs/heads/" + c.Ref
		default:
			want = "HEAD"
		}
	}
	if _, err := run(ctx, dir, token, "fetch", "-q", "--depth", "1", "--", c.remote(), want); err != nil {
		if !isSHA(want) {
			return "", "", err
		}
		// Some servers refuse fetching an unadvertised commit shallowly:
		// fetch everything and check out the commit.
		if _, err2 := run(ctx, dir, token, "fetch", "-q", "--", c.remote(), "+refs/heads/*:refs/remotes/origin/*"); err2 != nil {
			return "", "", err
		}
	}
	target := "FETCH_HEAD"
	if isSHA(want) {
		target = want
	}
	if _, err := run(ctx, dir, "", "checkout", "-q", "--detach", target); err != nil {
		return "", "", err
	}
	out, err := run(ctx, dir, "", "rev-parse", "HEAD")
	if err != nil {
		return "", "", err
	}
	sha = strings.TrimSpace(out)
	contextDir = dir
	if c.Folder != "" {
		contextDir = filepath.Join(dir, filepath.FromSlash(c.Folder))
		if fi, err := os.Stat(contextDir); err != nil || !fi.IsDir() {
			return "", "", fmt.Errorf("folder %q not found at commit %s of %s: %w", c.Folder, short(sha), c.URL, ErrNotFound)
		}
	}
	return sha, contextDir, nil
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
