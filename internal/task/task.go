// Package task keeps tasks and their runs: the task definitions (context,
// task file, values, credentials, identity, triggers) and their policy, the
// run queue with short per-registry run IDs, the preparation of a claimed
// run (workspace, run credentials, the engine job), run records and logs,
// the base images tasks depend on, and recovery after a restart. Contexts
// are fetched by package source; package worker schedules the runs and
// hands their jobs to the engine.
//
// Lifecycle of a run: QueueRun inserts it as Queued and wakes the
// workers; a worker claims the oldest queued run (Running), has it prepare
// its workspace (git checkout, local folder or uploaded context), issue a
// run credential for the task's identity and build its job, executes the
// job and has the outcome recorded (Succeeded, Failed, Canceled, Timeout or
// Error), its output images and the base images its builds used. A run
// found Running at start was interrupted by a crash: it is marked Failed
// with that reason, and the engine removes what it left behind.
package task

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/task/source"
)

// Sentinel errors, matched with errors.Is. ErrNotFound and ErrExists also
// match db.ErrNotFound and db.ErrConflict.
var (
	ErrNotFound = errdefs.New("not found", db.ErrNotFound)
	ErrExists   = errdefs.New("already exists", db.ErrConflict)
	// ErrRunNotFound: no such run in the registry.
	ErrRunNotFound = errdefs.New("not found", db.ErrNotFound)
	// ErrInvalid: a field of a task or run request is wrong.
	ErrInvalid = errdefs.New("invalid task", errdefs.ErrInvalid)
	// ErrFinished: the run already ended (cancel of a finished run).
	ErrFinished = errdefs.New("already finished", db.ErrConflict)
	// ErrDisabled: the task is disabled and cannot be run by a trigger.
	ErrDisabled = errdefs.New("disabled", db.ErrConflict)
)

// Task statuses.
const (
	StatusEnabled  = "Enabled"
	StatusDisabled = "Disabled"
)

// Task kinds: a task file (acr-task.yaml) or a Dockerfile built and pushed.
const (
	KindFile   = "file"
	KindDocker = "docker"
)

// Base-image trigger types: track the final stage's base only, or every
// stage's.
const (
	BaseImageRuntime = "Runtime"
	BaseImageAll     = "All"
)

// DefaultTimeout is a task's whole-run timeout when none is given (ACR's).
const DefaultTimeout = time.Hour

// Task is one task of a registry.
type Task struct {
	ID       string
	Registry string
	Name     string
	Status   string
	Platform string
	Timeout  time.Duration
	// Context is a git context (url#ref:folder), a local folder on the
	// server, or "" for none.
	Context string
	// ContextAdmin: the admin set the context, which may then be any local
	// folder outside the data directory (checkContext).
	ContextAdmin bool
	// File is the task file or Dockerfile, relative to the context.
	File string
	// FileContent is the task file itself, for tasks without a context.
	FileContent []byte
	Kind        string
	Spec        Spec
	// HasGitToken reports whether a git access token is stored (the token
	// itself is never returned).
	HasGitToken bool
	// Identity is the principal ID of the task's system-assigned identity,
	// "" if it has none.
	Identity             string
	CommitTrigger        bool
	BaseImageTrigger     bool
	BaseImageTriggerType string
	Timers               []Timer
	Credentials          []Credential
	CreatedAt            time.Time
	UpdatedAt            time.Time
}

// Spec holds the kind-specific parts of a task, stored as JSON.
type Spec struct {
	// Images are the -t images a Dockerfile task builds and pushes.
	Images []string `json:"images,omitempty"`
	// Args are --arg build arguments of a Dockerfile task.
	Args map[string]string `json:"args,omitempty"`
	// Target is the Dockerfile stage to build.
	Target string `json:"target,omitempty"`
	// NoPush builds without pushing (Dockerfile tasks).
	NoPush bool `json:"noPush,omitempty"`
	// Values are --set values of a task file (.Values).
	Values map[string]string `json:"values,omitempty"`
}

// Timer is a named cron schedule (5 fields, UTC).
type Timer struct {
	Name     string
	Schedule string
	Enabled  bool
}

// Credential is a registry login a task's runs use. Username and Password
// are plain text or vault URIs; plain-text passwords are stored sealed and
// never returned (Password is then "***").
type Credential struct {
	LoginServer string
	Username    string
	Password    string
	// UseIdentity is "system" to log in with the task's identity.
	UseIdentity string
}

var taskName = regexp.MustCompile(`^[a-zA-Z0-9_-]{5,50}$`)

// taskFileExtensions decide whether a file is a task file or a Dockerfile,
// as ACR decides.
var taskFileExtensions = map[string]bool{
	".yaml": true, ".yml": true, ".toml": true, ".json": true, ".sh": true, ".bash": true, ".zsh": true,
	".ps1": true, ".ps": true, ".cmd": true, ".bat": true, ".ts": true, ".js": true, ".php": true,
	".py": true, ".rb": true, ".lua": true,
}

// KindOf returns the kind of task a file name makes.
func KindOf(file string) string {
	if taskFileExtensions[strings.ToLower(path.Ext(file))] {
		return KindFile
	}
	return KindDocker
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalid)
}

// validate checks a task before it is stored.
func (t *Task) validate() error {
	if !taskName.MatchString(t.Name) {
		return invalid("name", "%q must be 5-50 characters of letters, digits, '-' and '_'", t.Name)
	}
	switch t.Status {
	case StatusEnabled, StatusDisabled:
	default:
		return invalid("status", "%q: want Enabled or Disabled", t.Status)
	}
	if t.Timeout < 300*time.Second || t.Timeout > 28800*time.Second {
		return invalid("timeout", "%s: want 300 to 28800 seconds", t.Timeout)
	}
	if t.File == "" && len(t.FileContent) == 0 {
		return invalid("file", "a task needs a task file or Dockerfile (-f)")
	}
	if t.Context == "" && t.Kind == KindDocker {
		return invalid("context", "a Dockerfile task needs a context to build")
	}
	if t.Kind == KindDocker && len(t.Spec.Images) == 0 && !t.Spec.NoPush {
		return invalid("image", "a Dockerfile task needs at least one -t image, or --no-push")
	}
	switch t.BaseImageTriggerType {
	case BaseImageRuntime, BaseImageAll:
	default:
		return invalid("baseImageTriggerType", "%q: want Runtime or All", t.BaseImageTriggerType)
	}
	if t.Context == "" && t.CommitTrigger {
		// No context, nothing to watch: like ACR's /dev/null context.
		t.CommitTrigger = false
	}
	seen := map[string]bool{}
	for _, tm := range t.Timers {
		if seen[tm.Name] {
			return invalid("timers", "timer %q is defined twice", tm.Name)
		}
		seen[tm.Name] = true
		if err := validTimer(tm); err != nil {
			return err
		}
	}
	return nil
}

// scanTask reads a tasks row (columns in taskColumns order).
const taskColumns = `id, registry, name, status, platform, timeout_seconds, context, file, file_content, kind, spec,
	git_token IS NOT NULL AND length(git_token) > 0, identity, commit_trigger, base_image_trigger, base_image_type, created_at, updated_at,
	context_admin`

func scanTask(sc interface{ Scan(...any) error }) (*Task, error) {
	var t Task
	var timeout int64
	var spec, created, updated string
	if err := sc.Scan(&t.ID, &t.Registry, &t.Name, &t.Status, &t.Platform, &timeout, &t.Context, &t.File, &t.FileContent,
		&t.Kind, &spec, &t.HasGitToken, &t.Identity, &t.CommitTrigger, &t.BaseImageTrigger, &t.BaseImageTriggerType,
		&created, &updated, &t.ContextAdmin); err != nil {
		return nil, err
	}
	t.Timeout = time.Duration(timeout) * time.Second
	if err := json.Unmarshal([]byte(spec), &t.Spec); err != nil {
		return nil, fmt.Errorf("task %s/%s: decoding spec: %w", t.Registry, t.Name, err)
	}
	t.CreatedAt, t.UpdatedAt = parseTime(created), parseTime(updated)
	return &t, nil
}

// Stored times: "" means not yet (a run not started or not finished).
var (
	formatTime = db.FormatTimeOrEmpty
	parseTime  = db.ParseTime
)

// GetTask returns a task with its timers and credentials.
func (s *Service) GetTask(ctx context.Context, registry, name string) (*Task, error) {
	t, err := scanTask(s.db.R.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE registry = ? AND name = ?`, registry, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("task %q in registry %q: %w", name, registry, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if err := s.loadChildren(ctx, t); err != nil {
		return nil, err
	}
	return t, nil
}

// getTaskByID returns a task by ID.
func (s *Service) getTaskByID(ctx context.Context, id string) (*Task, error) {
	t, err := scanTask(s.db.R.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("task id %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if err := s.loadChildren(ctx, t); err != nil {
		return nil, err
	}
	return t, nil
}

func (s *Service) loadChildren(ctx context.Context, t *Task) error {
	rows, err := s.db.R.QueryContext(ctx, `SELECT name, schedule, enabled FROM task_timers WHERE task_id = ? ORDER BY name`, t.ID)
	if err != nil {
		return err
	}
	for rows.Next() {
		var tm Timer
		if err := rows.Scan(&tm.Name, &tm.Schedule, &tm.Enabled); err != nil {
			rows.Close()
			return err
		}
		t.Timers = append(t.Timers, tm)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = s.db.R.QueryContext(ctx, `SELECT login_server, username, password, password_is_uri, use_identity
		FROM task_credentials WHERE task_id = ? ORDER BY login_server`, t.ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var c Credential
		var pw []byte
		var isURI bool
		if err := rows.Scan(&c.LoginServer, &c.Username, &pw, &isURI, &c.UseIdentity); err != nil {
			return err
		}
		switch {
		case isURI:
			c.Password = string(pw)
		case len(pw) > 0:
			c.Password = "***"
		}
		t.Credentials = append(t.Credentials, c)
	}
	return rows.Err()
}

// ListTasks returns the tasks of a registry by name.
func (s *Service) ListTasks(ctx context.Context, registry string) ([]*Task, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE registry = ? ORDER BY name`, registry)
	if err != nil {
		return nil, err
	}
	var out []*Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, t := range out {
		if err := s.loadChildren(ctx, t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CreateRequest creates a task. Zero values take ACR's defaults.
type CreateRequest struct {
	Registry    string
	Name        string
	Context     string
	File        string
	FileContent []byte
	// GitToken is the access token for the git context (stored sealed).
	GitToken             string
	Spec                 Spec
	Status               string
	Platform             string
	Timeout              time.Duration
	AssignIdentity       bool
	CommitTrigger        *bool
	BaseImageTrigger     *bool
	BaseImageTriggerType string
	// Schedules are cron expressions, optionally "name:cron"; unnamed ones
	// get t1, t2, ...
	Schedules []string
	// Admin: the caller is the admin, who may name any local folder as
	// the context (outside the data directory); others only folders under
	// the context roots (WithContextRoots).
	Admin bool
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// CreateTask creates a task, and a system-assigned identity for it when
// asked to.
func (s *Service) CreateTask(ctx context.Context, req CreateRequest) (*Task, error) {
	if _, err := s.regs.GetRegistry(ctx, req.Registry); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	t := &Task{
		ID:                   uuid.NewString(),
		Registry:             req.Registry,
		Name:                 req.Name,
		Status:               firstNonEmpty(req.Status, StatusEnabled),
		Platform:             firstNonEmpty(req.Platform, "linux/amd64"),
		Timeout:              req.Timeout,
		Context:              normalizeContext(req.Context),
		ContextAdmin:         req.Admin,
		File:                 req.File,
		FileContent:          req.FileContent,
		Spec:                 req.Spec,
		CommitTrigger:        boolOr(req.CommitTrigger, true),
		BaseImageTrigger:     boolOr(req.BaseImageTrigger, true),
		BaseImageTriggerType: firstNonEmpty(req.BaseImageTriggerType, BaseImageRuntime),
		CreatedAt:            now,
		UpdatedAt:            now,
	}
	if t.Timeout == 0 {
		t.Timeout = DefaultTimeout
	}
	if t.File == "" && len(t.FileContent) == 0 {
		t.File = "acr-task.yaml"
	}
	t.Kind = KindOf(firstNonEmpty(t.File, "acr-task.yaml"))
	timers, err := parseSchedules(req.Schedules, nil)
	if err != nil {
		return nil, err
	}
	t.Timers = timers
	if err := t.validate(); err != nil {
		return nil, err
	}
	if err := s.checkContext(t.Context, t.ContextAdmin); err != nil {
		return nil, err
	}
	if err := s.checkFileEscalations(ctx, t); err != nil {
		return nil, err
	}
	var token []byte
	if req.GitToken != "" {
		if token, err = s.sealer.Seal([]byte(req.GitToken), sealContext(t.ID, "git-token")); err != nil {
			return nil, err
		}
	}
	if req.AssignIdentity {
		p, err := s.ids.CreateIdentity(ctx, "task:"+t.Registry+"/"+t.Name)
		if err != nil {
			return nil, err
		}
		t.Identity = p.ID
	}
	spec, _ := json.Marshal(t.Spec)
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tasks(id, registry, name, status, platform, timeout_seconds, context, file,
			file_content, kind, spec, git_token, identity, commit_trigger, base_image_trigger, base_image_type, created_at, updated_at,
			context_admin)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.Registry, t.Name, t.Status, t.Platform, int64(t.Timeout/time.Second), t.Context, t.File, t.FileContent,
			t.Kind, string(spec), token, t.Identity, t.CommitTrigger, t.BaseImageTrigger, t.BaseImageTriggerType,
			formatTime(now), formatTime(now), t.ContextAdmin)
		if err != nil {
			if isUnique(err) {
				return fmt.Errorf("task %q in registry %q: %w", t.Name, t.Registry, ErrExists)
			}
			return err
		}
		return insertTimers(ctx, tx, t.ID, t.Timers)
	})
	if err != nil {
		if t.Identity != "" {
			_ = s.ids.DeleteIdentity(ctx, t.Identity)
		}
		return nil, err
	}
	s.notify(Change{Registry: t.Registry, Task: t.Name, TaskID: t.ID})
	return s.GetTask(ctx, t.Registry, t.Name)
}

func insertTimers(ctx context.Context, tx *sql.Tx, taskID string, timers []Timer) error {
	for _, tm := range timers {
		if _, err := tx.ExecContext(ctx, `INSERT INTO task_timers(task_id, name, schedule, enabled) VALUES (?, ?, ?, ?)`,
			taskID, tm.Name, tm.Schedule, tm.Enabled); err != nil {
			return err
		}
	}
	return nil
}

// UpdateRequest changes some fields of a task; nil fields stay as they are.
type UpdateRequest struct {
	Context              *string
	File                 *string
	FileContent          []byte
	GitToken             *string
	Images               *[]string
	Args                 *map[string]string
	Target               *string
	NoPush               *bool
	Values               *map[string]string
	Status               *string
	Platform             *string
	Timeout              *time.Duration
	AssignIdentity       bool
	CommitTrigger        *bool
	BaseImageTrigger     *bool
	BaseImageTriggerType *string
	// Schedules, when non-nil, are added as timers (like az's --schedule on
	// update).
	Schedules []string
	// Admin: as CreateRequest.Admin, for a new context.
	Admin bool
}

// UpdateTask applies req to a task.
func (s *Service) UpdateTask(ctx context.Context, registry, name string, req UpdateRequest) (*Task, error) {
	t, err := s.GetTask(ctx, registry, name)
	if err != nil {
		return nil, err
	}
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	oldContext := t.Context
	if req.Context != nil {
		t.Context = normalizeContext(*req.Context)
		t.ContextAdmin = req.Admin
		if err := s.checkContext(t.Context, req.Admin); err != nil {
			return nil, err
		}
	}
	if t.HasGitToken && req.GitToken == nil {
		// A stored token goes only to the host it was given for: whoever
		// may update the task must not be able to send it elsewhere.
		if o := source.Origin(t.Context); o != "" && o != source.Origin(oldContext) {
			return nil, invalid("gitAccessToken", "the context moves to %s: give its access token (an empty one drops the stored token); a stored token is only sent to the host it was given for", o)
		}
	}
	set(&t.File, req.File)
	if req.FileContent != nil {
		t.FileContent = req.FileContent
	}
	if req.File != nil || req.FileContent != nil {
		t.Kind = KindOf(firstNonEmpty(t.File, "acr-task.yaml"))
	}
	if req.Images != nil {
		t.Spec.Images = *req.Images
	}
	if req.Args != nil {
		t.Spec.Args = *req.Args
	}
	set(&t.Spec.Target, req.Target)
	if req.NoPush != nil {
		t.Spec.NoPush = *req.NoPush
	}
	if req.Values != nil {
		if t.Spec.Values == nil {
			t.Spec.Values = map[string]string{}
		}
		for k, v := range *req.Values {
			t.Spec.Values[k] = v
		}
	}
	set(&t.Status, req.Status)
	set(&t.Platform, req.Platform)
	if req.Timeout != nil {
		t.Timeout = *req.Timeout
	}
	if req.CommitTrigger != nil {
		t.CommitTrigger = *req.CommitTrigger
	}
	if req.BaseImageTrigger != nil {
		t.BaseImageTrigger = *req.BaseImageTrigger
	}
	set(&t.BaseImageTriggerType, req.BaseImageTriggerType)
	added, err := parseSchedules(req.Schedules, t.Timers)
	if err != nil {
		return nil, err
	}
	t.Timers = append(t.Timers, added...)
	if err := t.validate(); err != nil {
		return nil, err
	}
	if err := s.checkFileEscalations(ctx, t); err != nil {
		return nil, err
	}
	newIdentity := ""
	if req.AssignIdentity && t.Identity == "" {
		p, err := s.ids.CreateIdentity(ctx, "task:"+t.Registry+"/"+t.Name)
		if err != nil {
			return nil, err
		}
		newIdentity = p.ID
		t.Identity = newIdentity
	}
	var token []byte
	if req.GitToken != nil && *req.GitToken != "" {
		if token, err = s.sealer.Seal([]byte(*req.GitToken), sealContext(t.ID, "git-token")); err != nil {
			return nil, err
		}
	}
	spec, _ := json.Marshal(t.Spec)
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE tasks SET status = ?, platform = ?, timeout_seconds = ?, context = ?, file = ?,
			file_content = ?, kind = ?, spec = ?, identity = ?, commit_trigger = ?, base_image_trigger = ?, base_image_type = ?,
			updated_at = ?, context_admin = ? WHERE id = ?`,
			t.Status, t.Platform, int64(t.Timeout/time.Second), t.Context, t.File, t.FileContent, t.Kind, string(spec),
			t.Identity, t.CommitTrigger, t.BaseImageTrigger, t.BaseImageTriggerType, formatTime(s.now()), t.ContextAdmin, t.ID)
		if err != nil {
			return err
		}
		if req.GitToken != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE tasks SET git_token = ? WHERE id = ?`, token, t.ID); err != nil {
				return err
			}
		}
		return insertTimers(ctx, tx, t.ID, added)
	})
	if err != nil {
		if newIdentity != "" {
			_ = s.ids.DeleteIdentity(ctx, newIdentity)
		}
		return nil, err
	}
	s.notify(Change{Registry: t.Registry, Task: t.Name, TaskID: t.ID})
	return s.GetTask(ctx, registry, name)
}

// DeleteTask deletes a task, its identity, timers, credentials and tracked
// base images. Its runs and their logs stay, listed under the task's name.
func (s *Service) DeleteTask(ctx context.Context, registry, name string) error {
	t, err := s.GetTask(ctx, registry, name)
	if err != nil {
		return err
	}
	if _, err := s.db.W.ExecContext(ctx, `DELETE FROM tasks WHERE id = ?`, t.ID); err != nil {
		return err
	}
	if t.Identity != "" {
		if err := s.ids.DeleteIdentity(ctx, t.Identity); err != nil && !errors.Is(err, db.ErrNotFound) {
			return err
		}
	}
	s.notify(Change{Registry: t.Registry, Task: t.Name, TaskID: t.ID, Deleted: true})
	return nil
}

// gitToken returns a task's unsealed git access token ("" if none).
func (s *Service) gitToken(ctx context.Context, t *Task) (string, error) {
	var sealed []byte
	if err := s.db.R.QueryRowContext(ctx, `SELECT git_token FROM tasks WHERE id = ?`, t.ID).Scan(&sealed); err != nil {
		return "", err
	}
	if len(sealed) == 0 {
		return "", nil
	}
	b, err := s.sealer.Open(sealed, sealContext(t.ID, "git-token"))
	if err != nil {
		return "", fmt.Errorf("task %s/%s: opening the git token: %w", t.Registry, t.Name, err)
	}
	return string(b), nil
}

// GitToken returns the git access token of a task, for the commit trigger.
func (s *Service) GitToken(ctx context.Context, t *Task) (string, error) { return s.gitToken(ctx, t) }

func sealContext(taskID, what string) string { return "task/" + taskID + "/" + what }

// normalizeContext maps ACR's "no context" spellings to "".
func normalizeContext(c string) string {
	c = strings.TrimSpace(c)
	if c == "/dev/null" {
		return ""
	}
	return c
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// TrackedBase is a base image a task depends on, from its last successful
// run that built something.
type TrackedBase struct {
	Image      string
	Registry   string
	Repository string
	Tag        string
	Digest     string
	Runtime    bool
	RunID      string
	UpdatedAt  time.Time
}

// BaseImages returns the base images a task tracks (none before its first
// successful build).
func (s *Service) BaseImages(ctx context.Context, taskID string) ([]TrackedBase, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT image, registry, repository, tag, digest, runtime, run_id, updated_at
		FROM task_base_images WHERE task_id = ? ORDER BY runtime DESC, image`, taskID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TrackedBase
	for rows.Next() {
		var b TrackedBase
		var updated string
		if err := rows.Scan(&b.Image, &b.Registry, &b.Repository, &b.Tag, &b.Digest, &b.Runtime, &b.RunID, &updated); err != nil {
			return nil, err
		}
		b.UpdatedAt = parseTime(updated)
		out = append(out, b)
	}
	return out, rows.Err()
}
