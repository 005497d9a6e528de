package task

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/git"
	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/taskfile"
)

// WithContextRoots sets the folders under which a non-admin caller may name
// a local context: a folder, a file:// git URL or a local git repository
// (gantry server --context-root). Without any, only the admin may.
func WithContextRoots(roots []string) Option {
	return func(s *Service) { s.contextRoots = roots }
}

// WithPrivilegedRegistries names the registries whose task steps may ask
// for privileged: true or the host network explicitly (gantry server
// --allow-privileged-steps); elsewhere such a task file is refused.
func WithPrivilegedRegistries(names []string) Option {
	return func(s *Service) { s.privileged = slices.Clone(names) }
}

// WithBuildNetwork sets the network of builds' RUN instructions when a
// build asks for none (the server's engine.buildNetwork: none, default or
// host); the engine's default is none.
func WithBuildNetwork(mode string) Option {
	return func(s *Service) { s.buildNetwork = mode }
}

// localContextPath returns the server path a context reads: the folder, or
// the repository of a file:// or local-path git URL; "" for none or a
// remote git URL.
func localContextPath(c string) string {
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

// resolvePath is p made absolute with its symbolic links resolved as far as
// they exist, so that a link cannot lead a context out of where it seems
// to be.
func resolvePath(p string) string {
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

// checkContext refuses a local context that reads the server's data
// directory (its database, keys, blobs and run workspaces) and, unless
// anyFolder (the admin set it), one outside every context root. Remote git
// contexts pass.
func (s *Service) checkContext(context string, anyFolder bool) error {
	p := localContextPath(context)
	if p == "" {
		return nil
	}
	if !filepath.IsAbs(p) && !anyFolder {
		return invalid("context", "local context %q must be an absolute path", p)
	}
	real := resolvePath(p)
	if within(real, resolvePath(s.dataDir)) || within(resolvePath(s.dataDir), real) {
		return invalid("context", "local context %s reads the server's data directory, which no context may", p)
	}
	if anyFolder {
		return nil
	}
	for _, root := range s.contextRoots {
		if within(real, resolvePath(root)) {
			return nil
		}
	}
	if len(s.contextRoots) == 0 {
		return invalid("context", "local context %s: this server allows local contexts to its admin only; the admin allows folders for everyone with gantry server --context-root DIR", p)
	}
	return invalid("context", "local context %s is not under a context root (%s); the admin allows more with gantry server --context-root DIR",
		p, strings.Join(s.contextRoots, ", "))
}

// checkRunContext repeats checkContext when a run starts: the roots may
// have changed, and a folder may have been replaced by a link since.
func (s *Service) checkRunContext(t *Task) error {
	if err := s.checkContext(t.Context, t.ContextAdmin); err != nil {
		return fmt.Errorf("task %s: %w", t.Name, err)
	}
	if p := localContextPath(t.Context); p != "" {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("context %q is neither a git repository nor a directory on the server", t.Context)
		}
	}
	return nil
}

// keepTokensFromSteps handles the task credentials that log in to one of
// gantry's own registries with a user name and password (a token's, which
// the control API would also accept, and which does not expire with the
// run): they become engine-only (no step finds them in its Docker config)
// and the password is exchanged for a refresh token of that registry valid
// for ttl, which the engine presents instead (docs/security.md). A login
// the registry refuses is left as it is: the run's login check reports it.
func (s *Service) keepTokensFromSteps(ctx context.Context, creds []engine.Credential, ttl time.Duration) error {
	for i := range creds {
		c := &creds[i]
		if c.Username == auth.RunUsername {
			continue
		}
		reg, ok, err := s.regs.LocalRegistry(ctx, c.Registry)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		c.EngineOnly = true
		tok, err := s.ids.RegistryRefreshToken(ctx, reg.Name, c.Username, c.Password, ttl)
		if err != nil {
			s.log.InfoContext(ctx, "task credential not exchanged for a refresh token", "registry", reg.Name, "user", c.Username, "err", err)
			continue
		}
		c.IdentityToken, c.Password = tok, ""
	}
	return nil
}

// checkFileEscalations refuses an inline task file that asks for privileged
// steps or the host network on a registry where the admin has not allowed
// them, when the task is created or its file changed: the check every run
// makes, early, so that nothing is created. Best effort: a file that does
// not render without a run (its values, secrets or alias sources) is
// checked when it runs.
func (s *Service) checkFileEscalations(ctx context.Context, t *Task) error {
	if t.Kind != KindFile || len(t.FileContent) == 0 || slices.Contains(s.privileged, t.Registry) {
		return nil
	}
	opts := taskfile.Options{
		File: cmp.Or(t.File, taskfile.DefaultFile),
		Run: taskfile.Run{ID: "check", Registry: "registry.invalid", RegistryName: t.Registry, TaskName: t.Name,
			OS: "linux", Architecture: "amd64", Date: s.now()},
		ResolveSecret: func(context.Context, string, string) (string, error) { return "secret", nil },
	}
	for _, k := range slices.Sorted(maps.Keys(t.Spec.Values)) {
		opts.Set = append(opts.Set, k+"="+t.Spec.Values[k])
	}
	r, err := taskfile.Render(ctx, t.FileContent, opts)
	if err != nil {
		return nil
	}
	p, err := plan.New(r)
	if err != nil {
		return nil
	}
	if err := p.Escalations(plan.PrivilegedHint(t.Registry)); err != nil {
		return invalid("file", "%v", err)
	}
	return nil
}
