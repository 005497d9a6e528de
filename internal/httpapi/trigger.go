package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/task"
	"github.com/gantryhq/gantry/internal/trigger"
)

// Triggers is what the control API needs of the trigger service.
type Triggers interface {
	Describe(ctx context.Context, registry, task string) (trigger.Info, error)
	WebhookHandler() http.Handler
	WebhookSecret(ctx context.Context, registry, task string) (string, error)
	RotateWebhookSecret(ctx context.Context, registry, task string) (string, error)
	RefreshRegistries(ctx context.Context) error
}

// WithTriggers serves webhooks and adds trigger state to task and run
// answers.
func WithTriggers(t Triggers) Option { return func(s *Server) { s.triggers = t } }

func (s *Server) triggerRoutes() {
	// The webhook authenticates by its HMAC signature, not by credentials.
	s.mux.Handle(trigger.WebhookPattern, s.triggers.WebhookHandler())
	s.mux.HandleFunc("GET /v1/registries/{reg}/tasks/{name}/webhook", s.authed(s.webhookSecret))
	s.mux.HandleFunc("POST /v1/registries/{reg}/tasks/{name}/webhook/rotate", s.authed(s.rotateWebhookSecret))
}

func (s *Server) webhookSecret(w http.ResponseWriter, r *http.Request) error {
	return s.webhook(w, r, s.triggers.WebhookSecret)
}

func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *http.Request) error {
	return s.webhook(w, r, s.triggers.RotateWebhookSecret)
}

// webhook answers a task's webhook URL path and secret; the secret is the
// key to queue runs, so only writers of the task may read it.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request, get func(context.Context, string, string) (string, error)) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := s.check(r, auth.OpWrite, taskScope(reg, name)); err != nil {
		return err
	}
	secret, err := get(r.Context(), reg, name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, api.Webhook{Path: trigger.WebhookPath(reg, name), Secret: secret})
}

// addTriggerInfo fills a task's answer with what its triggers watch and
// last saw.
func (s *Server) addTriggerInfo(ctx context.Context, t *api.Task) error {
	if s.triggers == nil {
		return nil
	}
	info, err := s.triggers.Describe(ctx, t.Registry, t.Name)
	if err != nil {
		return err
	}
	if st := t.Trigger.SourceTrigger; st != nil {
		st.LastCommit = info.Commit.Head
		st.WebhookPath = info.Commit.WebhookPath
		if info.Commit.LastError != "" {
			st.LastError = info.Commit.LastError
		}
	}
	current := map[string]trigger.TrackedImage{}
	for _, ti := range info.Base.Tracked {
		current[ti.Image] = ti
	}
	for i, d := range t.Step.BaseImageDependencies {
		if ti, ok := current[d.Image]; ok {
			t.Step.BaseImageDependencies[i].CurrentDigest = ti.Current
			t.Step.BaseImageDependencies[i].Watched = ti.Watched
		}
	}
	next := map[string]time.Time{}
	last := map[string]time.Time{}
	for _, tm := range info.Timers {
		next[tm.Name], last[tm.Name] = tm.NextFire, tm.LastFire
	}
	for i, tt := range t.Trigger.TimerTriggers {
		t.Trigger.TimerTriggers[i].NextRun = timePtr(next[tt.Name])
		t.Trigger.TimerTriggers[i].LastRun = timePtr(last[tt.Name])
	}
	return nil
}

// chainLinks returns the chain of runs that led to a run, origin first.
func (s *Server) chainLinks(ctx context.Context, registry, id string) ([]api.ChainLink, error) {
	chain, err := s.tasks.Chain(ctx, registry, id)
	if err != nil {
		return nil, err
	}
	links := make([]api.ChainLink, 0, len(chain))
	for i := len(chain) - 1; i >= 0; i-- {
		r := chain[i]
		links = append(links, api.ChainLink{
			Registry: r.Registry, RunID: r.ID, Task: r.TaskName, Trigger: r.Trigger, Status: r.Status,
			Description: describeRun(r),
		})
	}
	return links, nil
}

// describeRun says what started a run and what it pushed.
func describeRun(r *task.Run) string {
	var cause string
	switch c := r.Cause; {
	case c.Commit != nil:
		ref := c.Commit.Repository
		if c.Commit.Branch != "" {
			ref += "#" + c.Commit.Branch
		}
		cause = fmt.Sprintf("commit %s on %s", short(c.Commit.Commit, 12), ref)
	case c.ImageUpdate != nil:
		cause = fmt.Sprintf("%s moved to %s", c.ImageUpdate.Image, short(c.ImageUpdate.NewDigest, 19))
		if c.ImageUpdate.RunID != "" {
			cause += " (pushed by run " + c.ImageUpdate.RunID + ")"
		}
	case c.Timer != nil:
		cause = fmt.Sprintf("timer %s (%s) at %s", c.Timer.Name, c.Timer.Schedule, c.Timer.Time.UTC().Format(time.RFC3339))
	default:
		cause = "started by hand"
	}
	if len(r.OutputImages) == 0 {
		return cause
	}
	pushed := ""
	for i, img := range r.OutputImages {
		if i > 0 {
			pushed += ", "
		}
		pushed += img.Repository + ":" + img.Tag + "@" + short(img.Digest, 19)
	}
	return cause + "; pushed " + pushed
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
