package trigger

import (
	"context"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/task"
)

func withHooks(h hooks) Option { return func(s *Service) { s.hooks = h } }

var t0 = time.Date(2025, 3, 1, 10, 0, 30, 0, time.UTC)

type poll struct {
	task string
	err  error
}

// commitEnv is a registry with tasks on a local git repository and triggers
// on a fake clock; polls reports each poll once its next wait is armed.
type commitEnv struct {
	*env
	clock *fakeClock
	polls chan poll
	names map[string]string // task ID -> name
}

// newCommitEnv returns a commitEnv whose clock starts at t0.
func newCommitEnv(t *testing.T) *commitEnv {
	t.Helper()
	clock := newFakeClock(t0)
	e := newEnv(t, t.TempDir(), envConfig{now: clock.Now})
	e.registry(t, "contoso", appHost)
	return &commitEnv{env: e, clock: clock, polls: make(chan poll, 100), names: map[string]string{}}
}

func (c *commitEnv) start(t *testing.T) (*Service, func()) {
	return c.startTrigger(t, WithClock(c.clock), WithCommitPollInterval(2*time.Second, time.Minute),
		withHooks(hooks{polled: func(id string, err error) { c.polls <- poll{id, err} }}))
}

func (c *commitEnv) gitTask(t *testing.T, name, context string, mod func(*task.CreateRequest)) *task.Task {
	t.Helper()
	tk := c.createTask(t, "contoso", name, func(r *task.CreateRequest) {
		r.Context, r.FileContent = context, nil
		if mod != nil {
			mod(r)
		}
	})
	c.names[tk.ID] = name
	return tk
}

// waitPolls waits for one poll of each named task (and no other).
func (c *commitEnv) waitPolls(t *testing.T, names ...string) {
	t.Helper()
	want := map[string]int{}
	for _, n := range names {
		want[n]++
	}
	for range names {
		p := recv(t, c.polls, "a commit poll")
		name := c.names[p.task]
		if want[name] == 0 {
			t.Fatalf("unexpected poll of %s", name)
		}
		if p.err != nil {
			t.Fatalf("poll of %s: %v", name, p.err)
		}
		want[name]--
	}
}

func TestCommitPoll(t *testing.T) {
	t.Parallel()
	c := newCommitEnv(t)
	ctx := context.Background()
	repo, h1 := gitRepo(t)
	off, disabled := false, task.StatusDisabled
	c.gitTask(t, "base-image-node", repo+"#main", nil)
	c.gitTask(t, "default-branch", repo, nil)
	c.gitTask(t, "trigger-off", repo+"#main", func(r *task.CreateRequest) { r.CommitTrigger = &off })
	c.gitTask(t, "disabled-task", repo+"#main", func(r *task.CreateRequest) { r.Status = disabled })
	s, _ := c.start(t)

	// The first poll records the head: no run.
	c.waitPolls(t, "base-image-node", "default-branch")
	c.clock.Advance(3 * time.Second)
	c.waitPolls(t, "base-image-node", "default-branch")
	if runs := c.runs(t, "contoso", "", task.TriggerCommit); len(runs) != 0 {
		t.Fatalf("%d runs without a new commit", len(runs))
	}

	h2 := commit(t, repo, "second")
	c.clock.Advance(3 * time.Second)
	c.waitPolls(t, "base-image-node", "default-branch")
	runs := c.runs(t, "contoso", "base-image-node", task.TriggerCommit)
	if len(runs) != 1 {
		t.Fatalf("%d runs after a commit, want 1", len(runs))
	}
	want := task.CommitCause{Repository: repo, Branch: "main", Commit: h2, Previous: h1, Source: SourcePoll}
	if got := runs[0].Cause.Commit; got == nil || *got != want {
		t.Fatalf("cause = %+v, want %+v", got, want)
	}
	if runs := c.runs(t, "contoso", "default-branch", task.TriggerCommit); len(runs) != 1 || runs[0].Cause.Commit.Commit != h2 {
		t.Fatalf("default-branch runs = %d", len(runs))
	}
	// No new commit, no new run.
	c.clock.Advance(3 * time.Second)
	c.waitPolls(t, "base-image-node", "default-branch")
	if runs := c.runs(t, "contoso", "", task.TriggerCommit); len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	for _, name := range []string{"trigger-off", "disabled-task"} {
		if runs := c.runs(t, "contoso", name, ""); len(runs) != 0 {
			t.Fatalf("%s ran %d times", name, len(runs))
		}
	}

	// Turning the trigger off stops the polls; a commit made meanwhile does
	// not fire when it is turned back on.
	if _, err := c.tasks.UpdateTask(ctx, "contoso", "base-image-node", task.UpdateRequest{CommitTrigger: &off}); err != nil {
		t.Fatal(err)
	}
	waitWatchers(t, s, 1)
	h3 := commit(t, repo, "third")
	c.clock.Advance(3 * time.Second)
	c.waitPolls(t, "default-branch")
	on := true
	if _, err := c.tasks.UpdateTask(ctx, "contoso", "base-image-node", task.UpdateRequest{CommitTrigger: &on}); err != nil {
		t.Fatal(err)
	}
	c.waitPolls(t, "base-image-node")
	c.clock.Advance(3 * time.Second)
	c.waitPolls(t, "base-image-node", "default-branch")
	if runs := c.runs(t, "contoso", "base-image-node", task.TriggerCommit); len(runs) != 1 {
		t.Fatalf("base-image-node ran %d times, want 1 (the commit %s came while the trigger was off)", len(runs), h3[:7])
	}
	info, err := s.Describe(ctx, "contoso", "base-image-node")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Commit.Enabled || info.Commit.Head != h3 || info.Commit.Branch != "main" || info.Commit.PollInterval != 2*time.Second ||
		info.Commit.WebhookPath != "/v1/webhooks/contoso/base-image-node" {
		t.Fatalf("commit info = %+v", info.Commit)
	}
}

// waitWatchers waits until n tasks are polled.
func waitWatchers(t *testing.T, s *Service, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.commits.mu.Lock()
		got := len(s.commits.watchers)
		s.commits.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d watchers, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCommitCatchUpAfterRestart(t *testing.T) {
	t.Parallel()
	c := newCommitEnv(t)
	repo, h1 := gitRepo(t)
	c.gitTask(t, "base-image-node", repo+"#main", nil)
	_, stop := c.start(t)
	c.waitPolls(t, "base-image-node")
	stop()

	// A commit while the server is down is queued once at the next start.
	h2 := commit(t, repo, "while down")
	commit(t, repo, "also while down")
	h4 := commit(t, repo, "and this")
	c.clock.Advance(time.Hour)
	_, stop = c.start(t)
	c.waitPolls(t, "base-image-node")
	runs := c.runs(t, "contoso", "base-image-node", task.TriggerCommit)
	if len(runs) != 1 || runs[0].Cause.Commit.Commit != h4 || runs[0].Cause.Commit.Previous != h1 {
		t.Fatalf("runs after restart = %+v (h2 %s)", runs, h2)
	}
	stop()
	_, _ = c.start(t)
	c.waitPolls(t, "base-image-node")
	if runs := c.runs(t, "contoso", "base-image-node", task.TriggerCommit); len(runs) != 1 {
		t.Fatalf("%d runs after a second restart, want 1", len(runs))
	}
}

// A run queued just before a crash, whose head was not yet recorded, is not
// queued again at the next start.
func TestCommitExactlyOnceAcrossACrash(t *testing.T) {
	t.Parallel()
	c := newCommitEnv(t)
	repo, h1 := gitRepo(t)
	tk := c.gitTask(t, "base-image-node", repo+"#main", nil)
	_, stop := c.start(t)
	c.waitPolls(t, "base-image-node")
	stop()
	h2 := commit(t, repo, "second")
	if _, err := c.tasks.QueueTaskRun(context.Background(), tk, task.TriggerCommit, task.Cause{Commit: &task.CommitCause{
		Repository: repo, Branch: "main", Commit: h2, Previous: h1, Source: SourcePoll}}); err != nil {
		t.Fatal(err)
	}
	s, _ := c.start(t)
	c.waitPolls(t, "base-image-node")
	if runs := c.runs(t, "contoso", "base-image-node", task.TriggerCommit); len(runs) != 1 {
		t.Fatalf("%d runs, want 1", len(runs))
	}
	info, err := s.Describe(context.Background(), "contoso", "base-image-node")
	if err != nil || info.Commit.Head != h2 {
		t.Fatalf("recorded head = %q, want %s (%v)", info.Commit.Head, h2, err)
	}
}
