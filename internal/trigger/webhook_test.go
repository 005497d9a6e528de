package trigger

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/task"
)

type delivery struct {
	headers map[string]string
	body    []byte
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func githubPush(secret, ref, before, after string) delivery {
	body, _ := json.Marshal(map[string]any{"ref": ref, "before": before, "after": after,
		"repository": map[string]any{"full_name": "contoso/base-image-node", "default_branch": "main"}})
	return delivery{headers: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(secret, body),
		"Content-Type": "application/json"}, body: body}
}

func giteaPush(secret, ref, after string) delivery {
	body, _ := json.Marshal(map[string]any{"ref": ref, "after": after, "repository": map[string]any{"default_branch": "main"}})
	return delivery{headers: map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign(secret, body)}, body: body}
}

func gitlabPush(token, ref, after string) delivery {
	body, _ := json.Marshal(map[string]any{"object_kind": "push", "ref": ref, "after": after, "checkout_sha": after,
		"project": map[string]any{"default_branch": "main"}})
	return delivery{headers: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token}, body: body}
}

func send(t *testing.T, srv *httptest.Server, path string, d delivery) (int, WebhookResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range d.headers {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out WebhookResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decoding the answer (%s): %v", resp.Status, err)
	}
	return resp.StatusCode, out
}

func TestWebhook(t *testing.T) {
	t.Parallel()
	c := newCommitEnv(t)
	ctx := context.Background()
	repo, h1 := gitRepo(t)
	c.gitTask(t, "base-image-node", repo+"#main", nil)
	c.createTask(t, "contoso", "no-context", nil)
	s, _ := c.start(t)
	c.waitPolls(t, "base-image-node")

	if _, err := s.WebhookSecret(ctx, "contoso", "no-context"); err == nil {
		t.Fatal("a task without a git context got a webhook secret")
	}
	secret, err := s.WebhookSecret(ctx, "contoso", "base-image-node")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := s.WebhookSecret(ctx, "contoso", "base-image-node"); again != secret || len(secret) != 64 {
		t.Fatalf("secret changed between calls or is short: %d chars", len(secret))
	}
	var sealed []byte
	if err := c.DB.R.QueryRow(`SELECT secret FROM trigger_webhooks`).Scan(&sealed); err != nil || bytes.Contains(sealed, []byte(secret)) {
		t.Fatalf("the secret is not stored sealed (%v)", err)
	}

	mux := http.NewServeMux()
	mux.Handle(WebhookPattern, s.WebhookHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	path := WebhookPath("contoso", "base-image-node")

	h2 := commit(t, repo, "second")
	good := githubPush(secret, "refs/heads/main", h1, h2)
	tests := []struct {
		name   string
		path   string
		d      delivery
		code   int
		status string
		reason string
	}{
		{"bad signature", path, func() delivery {
			d := githubPush(secret, "refs/heads/main", h1, h2)
			d.headers["X-Hub-Signature-256"] = "sha256=" + strings.Repeat("0", 64)
			return d
		}(), http.StatusUnauthorized, "error", "signature"},
		{"signed with another secret", path, githubPush("other", "refs/heads/main", h1, h2), http.StatusUnauthorized, "error", ""},
		{"no signature", path, delivery{headers: map[string]string{"X-GitHub-Event": "push"}, body: good.body}, http.StatusUnauthorized, "error", ""},
		{"tampered body", path, delivery{headers: good.headers, body: bytes.Replace(good.body, []byte(h2), []byte(h1), 1)},
			http.StatusUnauthorized, "error", ""},
		{"unknown task", WebhookPath("contoso", "no-such-task"), good, http.StatusUnauthorized, "error", ""},
		{"task without a secret", WebhookPath("contoso", "no-context"), good, http.StatusUnauthorized, "error", ""},
		{"ping", path, func() delivery {
			body := []byte(`{"zen":"hi"}`)
			return delivery{headers: map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + sign(secret, body)}, body: body}
		}(), http.StatusAccepted, "ignored", "ping"},
		{"other branch (gitea)", path, giteaPush(secret, "refs/heads/feature", h2), http.StatusAccepted, "ignored", "branch feature"},
		{"tag push", path, githubPush(secret, "refs/tags/v1", h1, h2), http.StatusAccepted, "ignored", "not a branch"},
		{"branch deleted", path, githubPush(secret, "refs/heads/main", h2, strings.Repeat("0", 40)), http.StatusAccepted, "ignored", "deleted"},
		{"wrong gitlab token", path, gitlabPush("nope", "refs/heads/main", h2), http.StatusUnauthorized, "error", ""},
		{"push", path, good, http.StatusAccepted, "queued", ""},
		{"the same push again", path, good, http.StatusAccepted, "ignored", "already seen"},
	}
	for _, tt := range tests {
		code, resp := send(t, srv, tt.path, tt.d)
		if code != tt.code || resp.Status != tt.status || !strings.Contains(resp.Reason, tt.reason) {
			t.Errorf("%s: %d %+v, want %d %s (%q)", tt.name, code, resp, tt.code, tt.status, tt.reason)
		}
	}
	runs := c.runs(t, "contoso", "base-image-node", task.TriggerCommit)
	if len(runs) != 1 {
		t.Fatalf("%d runs, want 1", len(runs))
	}
	want := task.CommitCause{Repository: repo, Branch: "main", Commit: h2, Previous: h1, Source: SourceWebhook}
	if *runs[0].Cause.Commit != want {
		t.Fatalf("cause = %+v, want %+v", runs[0].Cause.Commit, want)
	}
	// The poller sees the head the webhook recorded: no second run.
	c.clock.Advance(3 * time.Second)
	c.waitPolls(t, "base-image-node")
	if runs := c.runs(t, "contoso", "base-image-node", task.TriggerCommit); len(runs) != 1 {
		t.Fatalf("%d runs after the poll, want 1", len(runs))
	}

	// GitLab and Gitea deliveries queue runs too.
	h3 := commit(t, repo, "third")
	if code, resp := send(t, srv, path, gitlabPush(secret, "refs/heads/main", h3)); code != http.StatusAccepted || resp.Status != "queued" {
		t.Fatalf("gitlab push: %d %+v", code, resp)
	}
	h4 := commit(t, repo, "fourth")
	if code, resp := send(t, srv, path, giteaPush(secret, "refs/heads/main", h4)); code != http.StatusAccepted || resp.Status != "queued" {
		t.Fatalf("gitea push: %d %+v", code, resp)
	}
	if runs := c.runs(t, "contoso", "base-image-node", task.TriggerCommit); len(runs) != 3 || runs[2].Cause.Commit.Previous != h3 {
		t.Fatalf("%d runs, want 3", len(runs))
	}

	// A rotated secret refuses the old one.
	newSecret, err := s.RotateWebhookSecret(ctx, "contoso", "base-image-node")
	if err != nil || newSecret == secret {
		t.Fatalf("rotate: %v", err)
	}
	h5 := commit(t, repo, "fifth")
	if code, _ := send(t, srv, path, githubPush(secret, "refs/heads/main", h4, h5)); code != http.StatusUnauthorized {
		t.Fatalf("old secret after rotation: %d", code)
	}
	// A disabled commit trigger ignores signed pushes.
	off := false
	if _, err := c.tasks.UpdateTask(ctx, "contoso", "base-image-node", task.UpdateRequest{CommitTrigger: &off}); err != nil {
		t.Fatal(err)
	}
	if code, resp := send(t, srv, path, githubPush(newSecret, "refs/heads/main", h4, h5)); code != http.StatusAccepted ||
		resp.Status != "ignored" || !strings.Contains(resp.Reason, "disabled") {
		t.Fatalf("push with the trigger off: %d %+v", code, resp)
	}
	if runs := c.runs(t, "contoso", "base-image-node", task.TriggerCommit); len(runs) != 3 {
		t.Fatalf("%d runs, want 3", len(runs))
	}
	info, err := s.Describe(ctx, "contoso", "base-image-node")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Commit.WebhookSecretSet || info.Commit.LastDelivery.IsZero() || !strings.Contains(info.Commit.LastDeliveryResult, "ignored") ||
		info.Commit.Enabled {
		t.Fatalf("commit info = %+v", info.Commit)
	}
}

func TestVerifySignature(t *testing.T) {
	t.Parallel()
	body := []byte(`{"ref":"refs/heads/main"}`)
	sig := sign("s3cret", body)
	tests := []struct {
		name    string
		headers map[string]string
		secret  string
		ok      bool
	}{
		{"github", map[string]string{"X-Hub-Signature-256": "sha256=" + sig}, "s3cret", true},
		{"github without prefix", map[string]string{"X-Hub-Signature-256": sig}, "s3cret", false},
		{"github not hex", map[string]string{"X-Hub-Signature-256": "sha256=zz"}, "s3cret", false},
		{"gitea", map[string]string{"X-Gitea-Signature": sig}, "s3cret", true},
		{"forgejo", map[string]string{"X-Forgejo-Signature": sig}, "s3cret", true},
		{"gogs wrong", map[string]string{"X-Gogs-Signature": sign("x", body)}, "s3cret", false},
		{"gitlab", map[string]string{"X-Gitlab-Token": "s3cret"}, "s3cret", true},
		{"gitlab prefix", map[string]string{"X-Gitlab-Token": "s3cre"}, "s3cret", false},
		{"no secret", map[string]string{"X-Gitlab-Token": ""}, "", false},
		{"none", map[string]string{}, "s3cret", false},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.headers {
			h.Set(k, v)
		}
		if err := verifySignature(h, body, tt.secret); (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
