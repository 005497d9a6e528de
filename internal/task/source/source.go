// Package source fetches and guards task contexts: where a context is on
// the server (LocalPath, Resolve), which local contexts a task may name
// (Policy), where a git context's remote is (Origin), and filling a run's
// workspace with a context: a git checkout or a folder copy (Fetch), or an
// uploaded archive (Extract).
package source

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/gantryhq/gantry/internal/git"
)

// LocalPath returns the server path a context reads: the folder, or the
// repository of a file:// or local-path git URL; "" for none or a remote
// git URL.
func LocalPath(c string) string {
	if c == "" {
		return ""
	}
	if !git.IsGit(c) {
		return c
	}
	gc, err := git.Parse(c)
	if err != nil {
		base, _, _ := strings.Cut(c, "#")
		gc.URL = base
	}
	if p, ok := strings.CutPrefix(gc.URL, "file://"); ok {
		return p
	}
	if strings.Contains(gc.URL, "://") || strings.HasPrefix(gc.URL, "git@") {
		return ""
	}
	if host, _, ok := strings.Cut(gc.URL, ":"); ok && !strings.Contains(host, "/") {
		return "" // scp-like user@host:path
	}
	return gc.URL
}

// Resolve is p made absolute with its symbolic links resolved as far as
// they exist, so that a link cannot lead a context out of where it seems
// to be.
func Resolve(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	// The deepest existing parent, resolved, then the rest.
	dir, rest := abs, ""
	for dir != filepath.Dir(dir) {
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = filepath.Dir(dir)
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest)
		}
	}
	return abs
}

// within reports whether p is root or under it (both resolved).
func within(p, root string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// Policy says which local contexts a task may name.
type Policy struct {
	// DataDir is the server's data directory, which no context may read.
	DataDir string
	// Roots are the folders under which a non-admin caller may name a
	// local context (gantry server --context-root).
	Roots []string
}

// Check refuses a local context that reads the server's data directory
// (its database, keys, blobs and run workspaces) and, unless anyFolder (the
// admin set it), one outside every context root. Remote git contexts pass.
// The error says why, for the caller to wrap as an invalid field.
func (p Policy) Check(context string, anyFolder bool) error {
	path := LocalPath(context)
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) && !anyFolder {
		return fmt.Errorf("local context %q must be an absolute path", path)
	}
	real := Resolve(path)
	if within(real, Resolve(p.DataDir)) || within(Resolve(p.DataDir), real) {
		return fmt.Errorf("local context %s reads the server's data directory, which no context may", path)
	}
	if anyFolder {
		return nil
	}
	for _, root := range p.Roots {
		if within(real, Resolve(root)) {
			return nil
		}
	}
	if len(p.Roots) == 0 {
		return fmt.Errorf("local context %s: this server allows local contexts to its admin only; the admin allows folders for everyone with gantry server --context-root DIR", path)
	}
	return fmt.Errorf("local context %s is not under a context root (%s); the admin allows more with gantry server --context-root DIR",
		path, strings.Join(p.Roots, ", "))
}

// Origin returns where a git context's remote is ("scheme://host[:port]",
// lowercase), "" for a local repository or folder.
func Origin(context string) string {
	if context == "" || !git.IsGit(context) {
		return ""
	}
	c, err := git.Parse(context)
	if err != nil {
		return context
	}
	if rest, ok := strings.CutPrefix(c.URL, "git@"); ok {
		host, _, _ := strings.Cut(rest, ":")
		return "ssh://" + strings.ToLower(host)
	}
	if !strings.Contains(c.URL, "://") {
		return ""
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return c.URL
	}
	if u.Scheme == "file" {
		return ""
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// Request is a task's context to fetch into a run's workspace.
type Request struct {
	// Context is the task's context: a git URL or a folder on the server.
	Context string
	// Token returns the git access token; it is called for git contexts
	// only.
	Token func(ctx context.Context) (string, error)
	// Want is the commit to check out ("" for the branch's head).
	Want string
	// Cloning is called with the repository before a git context is
	// cloned, to log it.
	Cloning func(repo string)
}

// Fetched is where a fetched context is.
type Fetched struct {
	// Dir is the directory of the build context (under the workspace).
	Dir string
	// Commit and Branch are the checked-out commit of a git context.
	Commit string
	Branch string
}

// Fetch fills the workspace ws with a context: a git checkout, or a copy
// of a folder on the server.
func Fetch(ctx context.Context, req Request, ws string) (Fetched, error) {
	if !git.IsGit(req.Context) {
		fi, err := os.Stat(Resolve(req.Context))
		if err != nil || !fi.IsDir() {
			return Fetched{}, fmt.Errorf("context %q is neither a git repository nor a directory on the server", req.Context)
		}
		if err := Copy(Resolve(req.Context), ws); err != nil {
			return Fetched{}, fmt.Errorf("copying the context %s: %w", req.Context, err)
		}
		return Fetched{Dir: ws}, nil
	}
	gc, err := git.Parse(req.Context)
	if err != nil {
		return Fetched{}, err
	}
	token, err := req.Token(ctx)
	if err != nil {
		return Fetched{}, err
	}
	if req.Cloning != nil {
		req.Cloning(gc.String())
	}
	sha, dir, err := git.Checkout(ctx, gc, token, req.Want, ws)
	if err != nil {
		return Fetched{}, fmt.Errorf("fetching the context %s: %w", gc, err)
	}
	return Fetched{Dir: dir, Commit: sha, Branch: gc.Branch()}, nil
}
