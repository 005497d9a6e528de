package trigger

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gantryhq/gantry/internal/git"
	"github.com/gantryhq/gantry/internal/task"
)

// WebhookPattern is the control API route of the webhook handler, for
// http.ServeMux. The handler reads the {registry} and {task} wildcards.
const WebhookPattern = "POST /v1/webhooks/{registry}/{task}"

// WebhookPath returns the path of a task's webhook endpoint; the git host
// is configured with the control API's address plus this path, the content
// type application/json, the push event and the task's WebhookSecret.
func WebhookPath(registry, taskName string) string {
	return "/v1/webhooks/" + url.PathEscape(registry) + "/" + url.PathEscape(taskName)
}

// maxPayload bounds a webhook body (GitHub caps payloads at 25 MB; push
// payloads are far smaller).
const maxPayload = 5 << 20

// errSignature is a delivery that fails authentication.
var errSignature = errors.New("webhook signature verification failed")

func secretBinding(taskID string) string { return "trigger/" + taskID + "/webhook-secret" }

// WebhookSecret returns the secret a task's webhook deliveries are signed
// with, creating it on first use. It is for the admin configuring the git
// host; it is stored sealed and never logged.
func (s *Service) WebhookSecret(ctx context.Context, registry, taskName string) (string, error) {
	id, unlock, err := s.lockSecret(ctx, registry, taskName)
	if err != nil {
		return "", err
	}
	defer unlock()
	secret, err := s.loadSecret(ctx, id)
	if err != nil || secret != "" {
		return secret, err
	}
	return s.newSecret(ctx, id)
}

// RotateWebhookSecret replaces a task's webhook secret and returns the new
// one; deliveries signed with the old one are refused from then on.
func (s *Service) RotateWebhookSecret(ctx context.Context, registry, taskName string) (string, error) {
	id, unlock, err := s.lockSecret(ctx, registry, taskName)
	if err != nil {
		return "", err
	}
	defer unlock()
	return s.newSecret(ctx, id)
}

// lockSecret finds a task that has a git context and locks its webhook
// secret; the caller unlocks it.
func (s *Service) lockSecret(ctx context.Context, registry, taskName string) (taskID string, unlock func(), err error) {
	t, err := s.tasks.GetTask(ctx, registry, taskName)
	if err != nil {
		return "", nil, err
	}
	if t.Context == "" || !git.IsGit(t.Context) {
		return "", nil, fmt.Errorf("task %s/%s: %w", registry, taskName, ErrNoGitContext)
	}
	return t.ID, s.locks.lock("secret/" + t.ID), nil
}

func (s *Service) newSecret(ctx context.Context, taskID string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a webhook secret: %w", err)
	}
	secret := hex.EncodeToString(b)
	sealed, err := s.sealer.Seal([]byte(secret), secretBinding(taskID))
	if err != nil {
		return "", err
	}
	_, err = s.db.W.ExecContext(ctx, `INSERT INTO trigger_webhooks(task_id, secret, created_at) VALUES (?, ?, ?)
		ON CONFLICT(task_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at`,
		taskID, sealed, formatTime(s.clock.Now()))
	if err != nil {
		return "", fmt.Errorf("storing the webhook secret: %w", err)
	}
	return secret, nil
}

// loadSecret returns a task's webhook secret, "" if it has none.
func (s *Service) loadSecret(ctx context.Context, taskID string) (string, error) {
	var sealed []byte
	err := s.db.R.QueryRowContext(ctx, `SELECT secret FROM trigger_webhooks WHERE task_id = ?`, taskID).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the webhook secret: %w", err)
	}
	b, err := s.sealer.Open(sealed, secretBinding(taskID))
	if err != nil {
		return "", fmt.Errorf("opening the webhook secret: %w", err)
	}
	return string(b), nil
}

// WebhookResponse is the JSON body the webhook endpoint answers with.
type WebhookResponse struct {
	// Status is "queued" or "ignored" (or "error" with Reason).
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Run is the queued run's ID.
	Run      string `json:"run,omitempty"`
	Registry string `json:"registry,omitempty"`
	Commit   string `json:"commit,omitempty"`
}

// WebhookHandler returns the handler of push webhooks, to be mounted
// without the control API's authentication at WebhookPattern: deliveries
// authenticate with their signature. It accepts GitHub deliveries
// (X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>, X-GitHub-Event:
// push), Gitea, Gogs and Forgejo ones (X-Gitea-Signature and the like: the
// hex HMAC) and GitLab ones (X-Gitlab-Token: the secret itself,
// X-Gitlab-Event: Push Hook). Answers: 401 for a missing or wrong
// signature (also for an unknown task or one without a secret), 202 with
// {"status":"queued","run":...} when a run was queued, 202 with
// {"status":"ignored","reason":...} for other events, other branches, a
// disabled trigger or a commit already seen.
func (s *Service) WebhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, code := s.serveWebhook(r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(resp)
	})
}

// pathTask returns the registry and task of a webhook request: the mux's
// wildcards, else the last two path segments.
func pathTask(r *http.Request) (string, string) {
	reg, name := r.PathValue("registry"), r.PathValue("task")
	if reg == "" {
		reg = r.PathValue("reg")
	}
	if name == "" {
		name = r.PathValue("name")
	}
	if reg == "" || name == "" {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if len(parts) >= 2 {
			reg, name = parts[len(parts)-2], parts[len(parts)-1]
		}
	}
	return reg, name
}

func (s *Service) serveWebhook(r *http.Request) (WebhookResponse, int) {
	ctx := r.Context()
	if !s.started.Load() || s.stopped.Load() {
		return WebhookResponse{Status: "error", Reason: "triggers are not running"}, http.StatusServiceUnavailable
	}
	if r.Method != http.MethodPost {
		return WebhookResponse{Status: "error", Reason: "method not allowed"}, http.StatusMethodNotAllowed
	}
	reg, name := pathTask(r)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		return WebhookResponse{Status: "error", Reason: "reading the body"}, http.StatusBadRequest
	}
	if len(body) > maxPayload {
		return WebhookResponse{Status: "error", Reason: "payload too large"}, http.StatusRequestEntityTooLarge
	}
	unauthorized := WebhookResponse{Status: "error", Reason: errSignature.Error()}
	t, err := s.tasks.GetTask(ctx, reg, name)
	if err != nil {
		if errors.Is(err, task.ErrNotFound) {
			s.log.InfoContext(ctx, "webhook for an unknown task", "registry", reg, "task", name)
			return unauthorized, http.StatusUnauthorized
		}
		return WebhookResponse{Status: "error", Reason: "internal error"}, http.StatusInternalServerError
	}
	secret, err := s.loadSecret(ctx, t.ID)
	if err != nil {
		s.log.ErrorContext(ctx, "webhook: reading the secret", "registry", reg, "task", name, "err", err)
		return WebhookResponse{Status: "error", Reason: "internal error"}, http.StatusInternalServerError
	}
	if err := verifySignature(r.Header, body, secret); err != nil {
		s.log.InfoContext(ctx, "webhook refused", "registry", reg, "task", name, "err", err)
		return unauthorized, http.StatusUnauthorized
	}
	resp, code := s.handlePush(ctx, t, r.Header, body)
	result := resp.Status
	if resp.Reason != "" {
		result += ": " + resp.Reason
	}
	if _, err := s.db.W.ExecContext(ctx, `UPDATE trigger_webhooks SET last_delivery = ?, last_result = ? WHERE task_id = ?`,
		formatTime(s.clock.Now()), result, t.ID); err != nil {
		s.log.WarnContext(ctx, "webhook: recording the delivery", "err", err)
	}
	return resp, code
}

// verifySignature checks a delivery's signature with the task's secret, in
// constant time. A task without a secret accepts nothing.
func verifySignature(h http.Header, body []byte, secret string) error {
	if secret == "" {
		return fmt.Errorf("the task has no webhook secret: %w", errSignature)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	want := mac.Sum(nil)
	if sig := h.Get("X-Hub-Signature-256"); sig != "" {
		hexSig, ok := strings.CutPrefix(sig, "sha256=")
		got, err := hex.DecodeString(hexSig)
		if !ok || err != nil || !hmac.Equal(got, want) {
			return fmt.Errorf("X-Hub-Signature-256: %w", errSignature)
		}
		return nil
	}
	for _, name := range []string{"X-Gitea-Signature", "X-Forgejo-Signature", "X-Gogs-Signature"} {
		if sig := h.Get(name); sig != "" {
			got, err := hex.DecodeString(sig)
			if err != nil || !hmac.Equal(got, want) {
				return fmt.Errorf("%s: %w", name, errSignature)
			}
			return nil
		}
	}
	if tok := h.Get("X-Gitlab-Token"); tok != "" {
		// Compare digests so that the comparison does not leak the length.
		a, b := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(secret))
		if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			return fmt.Errorf("X-Gitlab-Token: %w", errSignature)
		}
		return nil
	}
	return fmt.Errorf("no signature header: %w", errSignature)
}

// pushPayload is what the push payloads of GitHub, Gitea, Gogs, Forgejo and
// GitLab have in common.
type pushPayload struct {
	Ref         string `json:"ref"`
	Before      string `json:"before"`
	After       string `json:"after"`
	CheckoutSHA string `json:"checkout_sha"`
	Repository  struct {
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
	Project struct {
		DefaultBranch string `json:"default_branch"`
	} `json:"project"`
}

// eventOf returns the event name of a delivery and whether it is a push.
func eventOf(h http.Header) (string, bool) {
	if e := h.Get("X-GitHub-Event"); e != "" {
		return e, e == "push"
	}
	for _, name := range []string{"X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event"} {
		if e := h.Get(name); e != "" {
			return e, e == "push"
		}
	}
	if e := h.Get("X-Gitlab-Event"); e != "" {
		return e, e == "Push Hook"
	}
	return "", false
}

func ignored(format string, args ...any) (WebhookResponse, int) {
	return WebhookResponse{Status: "ignored", Reason: fmt.Sprintf(format, args...)}, http.StatusAccepted
}

func (s *Service) handlePush(ctx context.Context, t *task.Task, h http.Header, body []byte) (WebhookResponse, int) {
	event, push := eventOf(h)
	if !push {
		if event == "" {
			event = "unknown"
		}
		return ignored("event %q is not a push", event)
	}
	var p pushPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return WebhookResponse{Status: "error", Reason: "the payload is not a JSON push event"}, http.StatusBadRequest
	}
	branch, ok := strings.CutPrefix(p.Ref, "refs/heads/")
	if !ok {
		return ignored("%q is not a branch", p.Ref)
	}
	after := p.After
	if after == "" {
		after = p.CheckoutSHA
	}
	if after == "" || strings.Trim(after, "0") == "" {
		return ignored("branch %s was deleted", branch)
	}
	switch {
	case t.Status != task.StatusEnabled:
		return ignored("the task is disabled")
	case !t.CommitTrigger:
		return ignored("the task's commit trigger is disabled")
	case t.Context == "" || !git.IsGit(t.Context):
		return ignored("the task's context is not a git repository")
	}
	gc, err := git.Parse(t.Context)
	if err != nil {
		return ignored("the task's context is invalid")
	}
	want := gc.Branch()
	if want == "" && gc.Ref != "" {
		return ignored("the task's context is pinned to commit %s", gc.Ref)
	}
	if want == "" {
		want = p.Repository.DefaultBranch
		if want == "" {
			want = p.Project.DefaultBranch
		}
	}
	if want == "" {
		// The task follows the default branch and the payload does not say
		// which it is: accept the push if it is the default branch's head.
		token, err := s.tasks.GitToken(ctx, t)
		if err != nil {
			return WebhookResponse{Status: "error", Reason: "internal error"}, http.StatusInternalServerError
		}
		hctx, cancel := context.WithTimeout(ctx, headTimeout)
		head, err := git.Head(hctx, gc, token)
		cancel()
		if err != nil || head != after {
			return ignored("push to %s, which is not the head of the default branch the task watches", branch)
		}
		want = branch
	}
	if branch != want {
		return ignored("push to branch %s; the task watches %s", branch, want)
	}
	r, reason, err := s.observeCommit(ctx, t, gc, after, branch, SourceWebhook, false)
	if err != nil {
		s.log.ErrorContext(ctx, "webhook: queueing a run", "registry", t.Registry, "task", t.Name, "err", err)
		return WebhookResponse{Status: "error", Reason: "internal error"}, http.StatusInternalServerError
	}
	if r == nil {
		resp, code := ignored("%s", reason)
		resp.Commit = after
		return resp, code
	}
	return WebhookResponse{Status: "queued", Run: r.ID, Registry: r.Registry, Commit: after}, http.StatusAccepted
}
