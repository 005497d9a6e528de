package task

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/task/worker"
)

// Run statuses (ACR's).
const (
	RunQueued    = "Queued"
	RunRunning   = "Running"
	RunSucceeded = "Succeeded"
	RunFailed    = "Failed"
	RunCanceled  = "Canceled"
	RunError     = "Error"
	RunTimeout   = "Timeout"
)

// Triggers: why a run started.
const (
	TriggerManual      = "Manual"
	TriggerCommit      = "Commit"
	TriggerImageUpdate = "Image Update"
	TriggerTimer       = "Timer"
)

// Run types (ACR's runType).
const (
	RunTypeQuickRun   = "QuickRun"
	RunTypeQuickBuild = "QuickBuild"
	RunTypeAutoRun    = "AutoRun"
	RunTypeAutoBuild  = "AutoBuild"
)

// Finished reports whether status is terminal.
func Finished(status string) bool {
	switch status {
	case RunQueued, RunRunning:
		return false
	}
	return true
}

// Run is one execution of a task or a quick run.
type Run struct {
	Registry string
	ID       string
	Seq      int64
	TaskID   string
	TaskName string
	RunType  string
	Status   string
	Trigger  string
	Cause    Cause
	Request  Request
	Platform string
	Commit   string
	Branch   string

	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	Error      string

	OutputImages []engine.Image
	BaseImages   []BaseImage
	Steps        []engine.StepResult
}

// Duration is how long the run ran (so far, if still running).
func (r *Run) Duration(now time.Time) time.Duration {
	switch {
	case r.StartedAt.IsZero():
		return 0
	case r.FinishedAt.IsZero():
		return now.Sub(r.StartedAt)
	default:
		return r.FinishedAt.Sub(r.StartedAt)
	}
}

// BaseImage is a base image a build step of the run used.
type BaseImage struct {
	engine.Image
	// Runtime is true for the final stage's base.
	Runtime bool `json:"runtime"`
	// Step is the build step that used it.
	Step string `json:"step"`
}

// Cause records what started a run, so its chain can be followed back.
type Cause struct {
	Commit      *CommitCause `json:"commit,omitempty"`
	ImageUpdate *ImageCause  `json:"imageUpdate,omitempty"`
	Timer       *TimerCause  `json:"timer,omitempty"`
	// Note is free text, e.g. "caught up after restart".
	Note string `json:"note,omitempty"`
}

// CommitCause is a new commit on a watched branch.
type CommitCause struct {
	Repository string `json:"repository"`
	Branch     string `json:"branch"`
	Commit     string `json:"commit"`
	// Previous is the head the trigger knew before ("" the first time).
	Previous string `json:"previous,omitempty"`
	// Source is "webhook" or "poll".
	Source string `json:"source,omitempty"`
}

// ImageCause is a tracked base image moving to a new digest.
type ImageCause struct {
	// Image is the base image reference, host:port/repository:tag.
	Image     string `json:"image"`
	OldDigest string `json:"oldDigest,omitempty"`
	NewDigest string `json:"newDigest"`
	// Registry is the gantry registry holding it ("" for an external one).
	Registry string `json:"registry,omitempty"`
	// RunID is the run that pushed the new digest, when a task run did.
	RunID string `json:"runId,omitempty"`
	// PushedBy is the principal that pushed it.
	PushedBy string `json:"pushedBy,omitempty"`
}

// TimerCause is a timer firing.
type TimerCause struct {
	Name     string    `json:"name"`
	Schedule string    `json:"schedule"`
	Time     time.Time `json:"scheduledTime"`
}

// Request holds a run's own inputs: overrides of a task run, or everything
// of a quick run.
type Request struct {
	// Values override the task's values (--set on task run).
	Values map[string]string `json:"values,omitempty"`
	// File and FileContent are the task file of a quick run.
	File        string `json:"file,omitempty"`
	FileContent []byte `json:"fileContent,omitempty"`
	// Archive is set when a quick run uploaded a context (stored on disk).
	Archive bool `json:"archive,omitempty"`
	// Docker build inputs of a quick build.
	Images []string          `json:"images,omitempty"`
	Args   map[string]string `json:"args,omitempty"`
	Target string            `json:"target,omitempty"`
	NoPush bool              `json:"noPush,omitempty"`
	// TimeoutSeconds bounds a quick run (0: the default).
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
}

const runColumns = `registry, id, seq, task_id, task_name, run_type, status, trigger, cause, request, platform, commit_sha, branch,
	created_at, started_at, finished_at, error, output_images, base_images, steps`

func scanRun(sc interface{ Scan(...any) error }) (*Run, error) {
	var r Run
	var cause, req, created, started, finished, images, bases, steps string
	if err := sc.Scan(&r.Registry, &r.ID, &r.Seq, &r.TaskID, &r.TaskName, &r.RunType, &r.Status, &r.Trigger, &cause, &req,
		&r.Platform, &r.Commit, &r.Branch, &created, &started, &finished, &r.Error, &images, &bases, &steps); err != nil {
		return nil, err
	}
	r.CreatedAt, r.StartedAt, r.FinishedAt = parseTime(created), parseTime(started), parseTime(finished)
	for _, f := range []struct {
		src string
		dst any
	}{{cause, &r.Cause}, {req, &r.Request}, {images, &r.OutputImages}, {bases, &r.BaseImages}, {steps, &r.Steps}} {
		if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
			return nil, fmt.Errorf("run %s/%s: decoding: %w", r.Registry, r.ID, err)
		}
	}
	return &r, nil
}

// QueueRequest queues a run of a task.
type QueueRequest struct {
	Registry string
	Task     string
	Trigger  string
	Cause    Cause
	// Values override the task's values for this run.
	Values map[string]string
}

// QueueRun queues a run of a task. Runs from triggers are refused for a
// disabled task (ErrDisabled); manual runs are allowed.
func (s *Service) QueueRun(ctx context.Context, req QueueRequest) (*Run, error) {
	t, err := s.GetTask(ctx, req.Registry, req.Task)
	if err != nil {
		return nil, err
	}
	return s.queueTaskRun(ctx, t, req)
}

// QueueTaskRun is QueueRun for a task already loaded (triggers).
func (s *Service) QueueTaskRun(ctx context.Context, t *Task, trigger string, cause Cause) (*Run, error) {
	return s.queueTaskRun(ctx, t, QueueRequest{Registry: t.Registry, Task: t.Name, Trigger: trigger, Cause: cause})
}

func (s *Service) queueTaskRun(ctx context.Context, t *Task, req QueueRequest) (*Run, error) {
	if req.Trigger == "" {
		req.Trigger = TriggerManual
	}
	if t.Status == StatusDisabled && req.Trigger != TriggerManual {
		return nil, fmt.Errorf("task %s/%s: %w", t.Registry, t.Name, ErrDisabled)
	}
	runType := RunTypeAutoRun
	if t.Kind == KindDocker {
		runType = RunTypeAutoBuild
	}
	r := &Run{
		Registry: t.Registry,
		TaskID:   t.ID,
		TaskName: t.Name,
		RunType:  runType,
		Trigger:  req.Trigger,
		Cause:    req.Cause,
		Request:  Request{Values: req.Values},
		Platform: platformOS(t.Platform),
	}
	return s.insertRun(ctx, r, nil)
}

// QuickRunRequest is a one-off run (gantry run) or build (gantry build).
type QuickRunRequest struct {
	Registry string
	// Build makes a QuickBuild of a Dockerfile; otherwise File is a task file.
	Build   bool
	Request Request
	// Archive is the context as a gzipped tar, or nil for none.
	Archive io.Reader
}

// QueueQuickRun queues a one-off run.
func (s *Service) QueueQuickRun(ctx context.Context, req QuickRunRequest) (*Run, error) {
	if _, err := s.regs.GetRegistry(ctx, req.Registry); err != nil {
		return nil, err
	}
	r := &Run{Registry: req.Registry, RunType: RunTypeQuickRun, Trigger: TriggerManual, Request: req.Request, Platform: "linux"}
	if req.Build {
		r.RunType = RunTypeQuickBuild
		if req.Request.File == "" {
			r.Request.File = "Dockerfile"
		}
		if req.Archive == nil {
			return nil, invalid("context", "a build needs a context")
		}
	} else if len(req.Request.FileContent) == 0 {
		return nil, invalid("file", "a run needs a task file (-f)")
	}
	return s.insertRun(ctx, r, req.Archive)
}

// insertRun assigns the run its ID and stores it as Queued, with its
// uploaded context when there is one.
func (s *Service) insertRun(ctx context.Context, r *Run, archive io.Reader) (*Run, error) {
	var tmp string
	if archive != nil {
		dir := filepath.Join(s.dataDir, "contexts", r.Registry)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		f, err := os.CreateTemp(dir, ".upload-*")
		if err != nil {
			return nil, err
		}
		tmp = f.Name()
		_, err = io.Copy(f, io.LimitReader(archive, maxContextBytes+1))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("storing the uploaded context: %w", err)
		}
		if fi, err := os.Stat(tmp); err == nil && fi.Size() > maxContextBytes {
			os.Remove(tmp)
			return nil, invalid("context", "larger than %d MiB", maxContextBytes>>20)
		}
		r.Request.Archive = true
		defer os.Remove(tmp) // no-op once renamed
	}
	r.Status = RunQueued
	r.CreatedAt = s.now().UTC()
	cause, _ := json.Marshal(r.Cause)
	req, _ := json.Marshal(r.Request)
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var next int64
		err := tx.QueryRowContext(ctx, `INSERT INTO run_counters(registry, next) VALUES (?, 2)
			ON CONFLICT(registry) DO UPDATE SET next = next + 1 RETURNING next - 1`, r.Registry).Scan(&next)
		if err != nil {
			return fmt.Errorf("allocating a run ID: %w", err)
		}
		r.Seq = next
		r.ID = formatRunID(r.Registry, next)
		if tmp != "" {
			if err := os.Rename(tmp, s.archivePath(r.Registry, r.ID)); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO runs(registry, id, seq, task_id, task_name, run_type, status, trigger, cause,
			request, platform, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Registry, r.ID, r.Seq, r.TaskID, r.TaskName, r.RunType, r.Status, r.Trigger, string(cause), string(req),
			r.Platform, formatTime(r.CreatedAt))
		return err
	})
	if err != nil {
		if tmp != "" {
			os.Remove(s.archivePath(r.Registry, r.ID))
		}
		return nil, err
	}
	s.log.InfoContext(ctx, "run queued", "registry", r.Registry, "run", r.ID, "task", r.TaskName, "trigger", r.Trigger)
	s.notifyRun(*r)
	s.pool.Wake()
	return r, nil
}

// maxContextBytes bounds an uploaded quick-run context.
const maxContextBytes = 512 << 20

func (s *Service) archivePath(registry, id string) string {
	return filepath.Join(s.dataDir, "contexts", registry, id+".tar.gz")
}

func platformOS(p string) string {
	os, _, _ := strings.Cut(p, "/")
	if os == "" {
		return "linux"
	}
	return os
}

// GetRun returns one run.
func (s *Service) GetRun(ctx context.Context, registry, id string) (*Run, error) {
	r, err := scanRun(s.db.R.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE registry = ? AND id = ?`, registry, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("run %q in registry %q: %w", id, registry, ErrRunNotFound)
	}
	return r, err
}

// RunFilter selects runs for ListRuns.
type RunFilter struct {
	Registry string
	// Task filters by task name ("" for all, quick runs included).
	Task string
	// Status filters by run status ("" for all).
	Status string
	// Top limits the result (0: 15, as az does; <0: all).
	Top int
}

// ListRuns returns runs newest first.
func (s *Service) ListRuns(ctx context.Context, f RunFilter) ([]*Run, error) {
	q := `SELECT ` + runColumns + ` FROM runs WHERE registry = ?`
	args := []any{f.Registry}
	if f.Task != "" {
		q += ` AND task_name = ?`
		args = append(args, f.Task)
	}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, f.Status)
	}
	top := f.Top
	if top == 0 {
		top = 15
	}
	q += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, top)
	return s.queryRuns(ctx, q, args...)
}

// LastRun returns the newest run of a task, or ErrRunNotFound.
func (s *Service) LastRun(ctx context.Context, registry, task string) (*Run, error) {
	rs, err := s.ListRuns(ctx, RunFilter{Registry: registry, Task: task, Top: 1})
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("task %q in registry %q has no runs: %w", task, registry, ErrRunNotFound)
	}
	return rs[0], nil
}

// CancelRun cancels a queued or running run. A running run's containers
// are stopped and removed by the engine.
func (s *Service) CancelRun(ctx context.Context, registry, id string) (*Run, error) {
	res, err := s.db.W.ExecContext(ctx, `UPDATE runs SET status = ?, finished_at = ?, error = ?
		WHERE registry = ? AND id = ? AND status = ?`,
		RunCanceled, formatTime(s.now()), "canceled before it started", registry, id, RunQueued)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		r, err := s.GetRun(ctx, registry, id)
		if err == nil {
			s.logs.finish(registry, id)
			s.notifyRun(*r)
		}
		return r, err
	}
	if s.pool.Cancel(worker.Key{Registry: registry, ID: id}) {
		return s.waitFinished(ctx, registry, id)
	}
	r, err := s.GetRun(ctx, registry, id)
	if err != nil {
		return nil, err
	}
	if Finished(r.Status) {
		return r, fmt.Errorf("run %s is %s: %w", id, r.Status, ErrFinished)
	}
	return r, nil
}

// waitFinished waits until a run reaches a terminal status.
func (s *Service) waitFinished(ctx context.Context, registry, id string) (*Run, error) {
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		r, err := s.GetRun(ctx, registry, id)
		if err != nil || Finished(r.Status) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-t.C:
		}
	}
}

// WaitRun waits until a run finishes.
func (s *Service) WaitRun(ctx context.Context, registry, id string) (*Run, error) {
	return s.waitFinished(ctx, registry, id)
}
