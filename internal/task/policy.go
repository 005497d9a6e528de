package task

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/task/source"
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

// checkContext refuses a local context that reads the server's data
// directory (its database, keys, blobs and run workspaces) and, unless
// anyFolder (the admin set it), one outside every context root. Remote git
// contexts pass.
func (s *Service) checkContext(context string, anyFolder bool) error {
	p := source.Policy{DataDir: s.dataDir, Roots: s.contextRoots}
	if err := p.Check(context, anyFolder); err != nil {
		return invalid("context", "%v", err)
	}
	return nil
}

// checkRunContext repeats checkContext when a run starts: the roots may
// have changed, and a folder may have been replaced by a link since.
func (s *Service) checkRunContext(t *Task) error {
	if err := s.checkContext(t.Context, t.ContextAdmin); err != nil {
		return fmt.Errorf("task %s: %w", t.Name, err)
	}
	if p := source.LocalPath(t.Context); p != "" {
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
