package task

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/engine"
)

// This file holds the queries the triggers (internal/trigger) run against
// tasks, tracked base images, timers and runs. They read the task domain's
// tables; the triggers keep their own state in their own tables.

// TaskByID returns a task by ID, with its timers and credentials.
func (s *Service) TaskByID(ctx context.Context, id string) (*Task, error) {
	return s.getTaskByID(ctx, id)
}

// CommitTriggerTasks returns every enabled task with its commit trigger on
// and a context (timers and credentials are not loaded). Whether the
// context is a git repository is for the caller to decide.
func (s *Service) CommitTriggerTasks(ctx context.Context) ([]*Task, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+taskColumns+` FROM tasks
		WHERE status = ? AND commit_trigger = 1 AND context <> '' ORDER BY registry, name`, StatusEnabled)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Dependent is a task that tracks a base image, with the tracked row.
type Dependent struct {
	// Task is the task, without timers and credentials.
	Task *Task
	Base TrackedBase
}

// Dependents returns the tasks tracking repository:tag on any of hosts
// (host[:port] spellings of one registry), whatever their status and
// trigger settings: the caller filters. It reads the task_base_images_ref
// index.
func (s *Service) Dependents(ctx context.Context, hosts []string, repository, tag string) ([]Dependent, error) {
	if len(hosts) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(hosts)+2)
	for _, h := range hosts {
		args = append(args, h)
	}
	args = append(args, repository, tag)
	st, err := s.dependentsStmt(ctx, len(hosts))
	if err != nil {
		return nil, fmt.Errorf("finding tasks tracking %s:%s: %w", repository, tag, err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("finding tasks tracking %s:%s: %w", repository, tag, err)
	}
	defer rows.Close()
	var out []Dependent
	for rows.Next() {
		var d Dependent
		var b TrackedBase
		var updated string
		t, err := scanTask(scanFunc(func(dst ...any) error {
			return rows.Scan(append(dst, &b.Image, &b.Registry, &b.Repository, &b.Tag, &b.Digest, &b.Runtime, &b.RunID, &updated)...)
		}))
		if err != nil {
			return nil, err
		}
		b.UpdatedAt = parseTime(updated)
		d.Task, d.Base = t, b
		out = append(out, d)
	}
	return out, rows.Err()
}

// dependentsStmt returns the Dependents query for n login-server
// spellings, prepared once on the read pool.
func (s *Service) dependentsStmt(ctx context.Context, n int) (*sql.Stmt, error) {
	if st, ok := s.dependents.Load(n); ok {
		return st.(*sql.Stmt), nil
	}
	q := `SELECT ` + prefixColumns("t.", taskColumns) + `,
		b.image, b.registry, b.repository, b.tag, b.digest, b.runtime, b.run_id, b.updated_at
		FROM task_base_images b JOIN tasks t ON t.id = b.task_id
		WHERE b.registry IN (?` + strings.Repeat(", ?", n-1) + `) AND b.repository = ? AND b.tag = ?
		ORDER BY t.registry, t.name, b.image`
	st, err := s.db.R.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.dependents.LoadOrStore(n, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// scanFunc adapts a function to scanTask's scanner.
type scanFunc func(dst ...any) error

func (f scanFunc) Scan(dst ...any) error { return f(dst...) }

// prefixColumns qualifies a comma-separated column list with a table alias.
func prefixColumns(prefix, cols string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		// "git_token IS NOT NULL AND length(git_token) > 0" names a column
		// twice.
		p = strings.ReplaceAll(p, "git_token", prefix+"git_token")
		if !strings.Contains(p, prefix) {
			p = prefix + p
		}
		parts[i] = p
	}
	return strings.Join(parts, ", ")
}

// TaskBase is one tracked base image of one task.
type TaskBase struct {
	TaskID string
	TrackedBase
}

// WatchedBaseImages returns the tracked base images a base-image trigger
// can fire on: those of enabled tasks with the trigger on, build-time bases
// only for tasks whose trigger type is All.
func (s *Service) WatchedBaseImages(ctx context.Context) ([]TaskBase, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT b.task_id, b.image, b.registry, b.repository, b.tag, b.digest, b.runtime,
		b.run_id, b.updated_at
		FROM task_base_images b JOIN tasks t ON t.id = b.task_id
		WHERE t.status = ? AND t.base_image_trigger = 1 AND (b.runtime = 1 OR t.base_image_type = ?)
		ORDER BY b.registry, b.repository, b.tag, b.task_id`, StatusEnabled, BaseImageAll)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TaskBase
	for rows.Next() {
		var b TaskBase
		var updated string
		if err := rows.Scan(&b.TaskID, &b.Image, &b.Registry, &b.Repository, &b.Tag, &b.Digest, &b.Runtime, &b.RunID, &updated); err != nil {
			return nil, err
		}
		b.UpdatedAt = parseTime(updated)
		out = append(out, b)
	}
	return out, rows.Err()
}

// ActiveRuns returns the Queued and Running runs started by trigger, oldest
// first.
func (s *Service) ActiveRuns(ctx context.Context, trigger string) ([]*Run, error) {
	return s.queryRuns(ctx, `SELECT `+runColumns+` FROM runs WHERE status IN (?, ?) AND trigger = ? ORDER BY created_at, seq`,
		RunQueued, RunRunning, trigger)
}

// RecentRuns returns a task's newest runs started by trigger ("" for any),
// newest first, at most limit.
func (s *Service) RecentRuns(ctx context.Context, taskID, trigger string, limit int) ([]*Run, error) {
	if trigger == "" {
		return s.queryRuns(ctx, `SELECT `+runColumns+` FROM runs WHERE task_id = ? ORDER BY seq DESC LIMIT ?`, taskID, limit)
	}
	// The index on (task_id, seq) finds the task's runs; the trigger filter
	// reads a bounded window of them.
	return s.queryRuns(ctx, `SELECT `+runColumns+` FROM (SELECT * FROM runs WHERE task_id = ? ORDER BY seq DESC LIMIT ?)
		WHERE trigger = ? ORDER BY seq DESC`, taskID, limit*4, trigger)
}

// FindRuns returns the runs with a run ID in any registry (IDs are unique
// per registry; two registries rarely share one).
func (s *Service) FindRuns(ctx context.Context, id string) ([]*Run, error) {
	return s.queryRuns(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ? ORDER BY registry`, id)
}

func (s *Service) queryRuns(ctx context.Context, q string, args ...any) ([]*Run, error) {
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// TimerState is a timer with its task's identity and status and the last
// occurrence the timer trigger recorded.
type TimerState struct {
	TaskID      string
	Registry    string
	Task        string
	TaskEnabled bool
	Timer
	// LastFire is the last occurrence queued, or the time the trigger
	// started watching the timer; zero if it never did.
	LastFire time.Time
}

// TimerStates returns the timers of one task, or of every task when taskID
// is "".
func (s *Service) TimerStates(ctx context.Context, taskID string) ([]TimerState, error) {
	q := `SELECT t.id, t.registry, t.name, t.status, tm.name, tm.schedule, tm.enabled, tm.last_fire
		FROM task_timers tm JOIN tasks t ON t.id = tm.task_id`
	var args []any
	if taskID != "" {
		q += ` WHERE t.id = ?`
		args = append(args, taskID)
	}
	q += ` ORDER BY t.registry, t.name, tm.name`
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TimerState
	for rows.Next() {
		var ts TimerState
		var status, last string
		if err := rows.Scan(&ts.TaskID, &ts.Registry, &ts.Task, &status, &ts.Name, &ts.Schedule, &ts.Enabled, &last); err != nil {
			return nil, err
		}
		ts.TaskEnabled = status == StatusEnabled
		ts.LastFire = parseTime(last)
		out = append(out, ts)
	}
	return out, rows.Err()
}

// SetTimerLastFire records the last occurrence of a timer the trigger
// handled. It changes nothing (and reports false) when the timer is gone or
// its schedule changed meanwhile.
func (s *Service) SetTimerLastFire(ctx context.Context, taskID, name, schedule string, at time.Time) (bool, error) {
	res, err := s.db.W.ExecContext(ctx, `UPDATE task_timers SET last_fire = ? WHERE task_id = ? AND name = ? AND schedule = ?`,
		formatTime(at), taskID, name, schedule)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// BuiltOn is a task whose last successful build used a base image (by
// digest), with the run that built it.
type BuiltOn struct {
	Registry, Task string
	// Base is the base image reference as the task's Dockerfile names it.
	Base  string
	RunID string
	// Images are the images that run pushed.
	Images []engine.Image
}

// BuiltOnDigest returns the tasks whose tracked base image (runtime or
// build time) has manifest digest d: the applications built on it.
func (s *Service) BuiltOnDigest(ctx context.Context, d string) ([]BuiltOn, error) {
	rows, err := s.db.L.QueryContext(ctx, `SELECT t.registry, t.name, b.image, b.run_id FROM task_base_images b
		JOIN tasks t ON t.id = b.task_id WHERE b.digest = ? ORDER BY t.registry, t.name`, d)
	if err != nil {
		return nil, fmt.Errorf("finding tasks built on %s: %w", d, err)
	}
	var out []BuiltOn
	for rows.Next() {
		var b BuiltOn
		if err := rows.Scan(&b.Registry, &b.Task, &b.Base, &b.RunID); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, b)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	for i := range out {
		if r, err := s.GetRun(ctx, out[i].Registry, out[i].RunID); err == nil {
			out[i].Images = r.OutputImages
		}
	}
	return out, nil
}
