package trigger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/git"
	"github.com/gantryhq/gantry/internal/task"
)

// Commit trigger sources, recorded in CommitCause.Source.
const (
	SourcePoll    = "poll"
	SourceWebhook = "webhook"
)

// maxConcurrentPolls bounds the git processes polling at once.
const maxConcurrentPolls = 8

// headTimeout bounds one ls-remote.
const headTimeout = time.Minute

// commitTrigger runs one poller per watched task.
type commitTrigger struct {
	s     *Service
	kicks *kicker
	sem   chan struct{}

	mu       sync.Mutex
	watchers map[string]*watcher
	errs     map[string]string // last poll error per task, for Describe
	polled   map[string]time.Time
}

type watcher struct {
	context string
	cancel  context.CancelFunc
	done    chan struct{}
}

func newCommitTrigger(s *Service) *commitTrigger {
	return &commitTrigger{s: s, kicks: newKicker(), sem: make(chan struct{}, maxConcurrentPolls),
		watchers: map[string]*watcher{}, errs: map[string]string{}, polled: map[string]time.Time{}}
}

func (c *commitTrigger) kick(taskID string) { c.kicks.kick(taskID) }

// watchable reports whether a task's commit trigger can fire.
func watchable(t *task.Task) bool {
	return t.Status == task.StatusEnabled && t.CommitTrigger && t.Context != "" && git.IsGit(t.Context)
}

// isLocal reports whether a git context is on this machine.
func isLocal(gc git.Context) bool {
	u := gc.URL
	return strings.HasPrefix(u, "file://") || (!strings.Contains(u, "://") && !strings.HasPrefix(u, "git@"))
}

func (c *commitTrigger) interval(gc git.Context) time.Duration {
	if isLocal(gc) {
		return c.s.localPoll
	}
	return c.s.remotePoll
}

func (c *commitTrigger) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		c.mu.Lock()
		for _, w := range c.watchers {
			w.cancel()
		}
		c.mu.Unlock()
		wg.Wait()
	}()
	// A watcher started at Start catches up with commits made while the
	// server was down; one started by a task change (created, enabled,
	// context changed) records the head it finds without a run.
	start := func(t *task.Task, baseline bool) {
		wctx, cancel := context.WithCancel(ctx)
		w := &watcher{context: t.Context, cancel: cancel, done: make(chan struct{})}
		c.mu.Lock()
		c.watchers[t.ID] = w
		c.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(w.done)
			c.watch(wctx, t, baseline)
		}()
	}
	stop := func(id string) {
		c.mu.Lock()
		w := c.watchers[id]
		delete(c.watchers, id)
		c.mu.Unlock()
		if w != nil {
			w.cancel()
			<-w.done
		}
	}

	tasks, err := c.s.tasks.CommitTriggerTasks(ctx)
	if err != nil && ctx.Err() == nil {
		c.s.log.ErrorContext(ctx, "commit trigger: listing tasks", "err", err)
	}
	for _, t := range tasks {
		if watchable(t) {
			start(t, false)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kicks.wake:
		}
		ids, _ := c.kicks.take()
		for _, id := range ids {
			t, err := c.s.tasks.TaskByID(ctx, id)
			if err != nil && !errors.Is(err, task.ErrNotFound) {
				c.s.log.ErrorContext(ctx, "commit trigger: reading task", "task", id, "err", err)
				continue
			}
			c.mu.Lock()
			w := c.watchers[id]
			c.mu.Unlock()
			switch {
			case t == nil || !watchable(t):
				stop(id)
			case w == nil:
				start(t, true)
			case w.context != t.Context:
				stop(id)
				start(t, true)
			}
		}
	}
}

// watch polls a task's branch head until ctx ends: at once, then every
// interval.
func (c *commitTrigger) watch(ctx context.Context, t *task.Task, baseline bool) {
	gc, err := git.Parse(t.Context)
	if err != nil {
		c.s.log.WarnContext(ctx, "commit trigger: bad context", "registry", t.Registry, "task", t.Name, "err", err)
		return
	}
	every := c.interval(gc)
	for {
		err := c.poll(ctx, t, gc, baseline)
		baseline = false
		if ctx.Err() != nil {
			return
		}
		timer := c.s.clock.NewTimer(jitter(every, c.s.jitter))
		if h := c.s.hooks.polled; h != nil {
			h(t.ID, err)
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C():
		}
	}
}

func (c *commitTrigger) poll(ctx context.Context, t *task.Task, gc git.Context, baseline bool) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sem }()
	err := c.pollOnce(ctx, t, gc, baseline)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.mu.Lock()
	prev := c.errs[t.ID]
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	c.errs[t.ID] = msg
	c.polled[t.ID] = c.s.clock.Now()
	c.mu.Unlock()
	if err != nil && msg != prev {
		// Logged when the error changes, not on every poll.
		c.s.log.WarnContext(ctx, "commit trigger: polling the branch", "registry", t.Registry, "task", t.Name, "err", err)
	}
	return err
}

func (c *commitTrigger) pollOnce(ctx context.Context, t *task.Task, gc git.Context, baseline bool) error {
	token, err := c.s.tasks.GitToken(ctx, t)
	if err != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, headTimeout)
	defer cancel()
	head, err := git.Head(hctx, gc, token)
	if err != nil {
		return err
	}
	_, _, err = c.s.observeCommit(ctx, t, gc, head, gc.Branch(), SourcePoll, baseline)
	return err
}

// commitState is a task's row of trigger_commits.
type commitState struct {
	repository, branch, head, source string
	updatedAt                        time.Time
}

func (s *Service) loadCommitState(ctx context.Context, taskID string) (*commitState, error) {
	var st commitState
	var updated string
	err := s.db.R.QueryRowContext(ctx, `SELECT repository, branch, head, source, updated_at FROM trigger_commits WHERE task_id = ?`,
		taskID).Scan(&st.repository, &st.branch, &st.head, &st.source, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading commit trigger state: %w", err)
	}
	st.updatedAt = parseTime(updated)
	return &st, nil
}

func (s *Service) saveCommitState(ctx context.Context, taskID string, st commitState) error {
	_, err := s.db.W.ExecContext(ctx, `INSERT INTO trigger_commits(task_id, repository, branch, head, source, updated_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(task_id) DO UPDATE SET repository = excluded.repository,
		branch = excluded.branch, head = excluded.head, source = excluded.source, updated_at = excluded.updated_at`,
		taskID, st.repository, st.branch, st.head, st.source, formatTime(s.clock.Now()))
	if err != nil {
		return fmt.Errorf("recording commit trigger state: %w", err)
	}
	return nil
}

// observeCommit handles a head seen on a task's watched branch (by a poll
// or a webhook): a head different from the last one seen queues one Commit
// run. The first head a poll sees is only recorded. It returns the run, or
// why there is none. recordOnly records the head without a run.
func (s *Service) observeCommit(ctx context.Context, t *task.Task, gc git.Context, head, branch, source string, recordOnly bool) (*task.Run, string, error) {
	seen := s.clock.Now()
	unlock := s.locks.lock("commit/" + t.ID)
	defer unlock()
	st, err := s.loadCommitState(ctx, t.ID)
	if err != nil {
		return nil, "", err
	}
	same := st != nil && st.repository == gc.URL && st.branch == gc.Branch()
	next := commitState{repository: gc.URL, branch: gc.Branch(), head: head, source: source}
	if same && st.head == head {
		return nil, "commit already seen", nil
	}
	if recordOnly || (!same && source == SourcePoll) {
		// First sight of this branch: nothing to compare with.
		return nil, "recorded the branch head", s.saveCommitState(ctx, t.ID, next)
	}
	fresh, err := s.tasks.TaskByID(ctx, t.ID)
	if err != nil {
		return nil, "", err
	}
	switch {
	case fresh.Status != task.StatusEnabled:
		return nil, "the task is disabled", nil
	case !fresh.CommitTrigger:
		return nil, "the task's commit trigger is disabled", nil
	case fresh.Context != t.Context:
		return nil, "the task's context changed", nil
	}
	prev := ""
	if same {
		prev = st.head
	}
	recent, err := s.tasks.RecentRuns(ctx, t.ID, task.TriggerCommit, 10)
	if err != nil {
		return nil, "", err
	}
	for _, r := range recent {
		if r.Cause.Commit != nil && r.Cause.Commit.Commit == head {
			return nil, "a run for this commit exists (" + r.ID + ")", s.saveCommitState(ctx, t.ID, next)
		}
	}
	cause := task.Cause{Commit: &task.CommitCause{Repository: redactURL(gc.URL), Branch: branch, Commit: head, Previous: prev, Source: source}}
	r, err := s.tasks.QueueTaskRun(ctx, fresh, task.TriggerCommit, cause)
	if err != nil {
		if errors.Is(err, task.ErrDisabled) {
			return nil, "the task is disabled", nil
		}
		return nil, "", err
	}
	s.metrics.RunQueued(task.TriggerCommit, s.clock.Now().Sub(seen))
	s.log.InfoContext(ctx, "commit trigger: run queued", "registry", fresh.Registry, "task", fresh.Name, "run", r.ID,
		"commit", head, "previous", prev, "source", source)
	return r, "queued", s.saveCommitState(ctx, t.ID, next)
}

// redactURL drops the user information (a token) of a repository URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}
