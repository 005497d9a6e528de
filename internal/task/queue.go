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
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/task/source"
	"github.com/gantryhq/gantry/internal/task/worker"
	"github.com/gantryhq/gantry/internal/taskfile"
	"github.com/gantryhq/gantry/internal/vault"
)

// interruptedReason is recorded on runs a crash or stop interrupted.
const interruptedReason = "interrupted: the server stopped while the run was running"

// queue is the run queue as the workers (worker.Pool) take from it.
type queue struct{ s *Service }

var _ worker.Queue = queue{}

// Interrupted returns the runs a previous process left Running.
func (q queue) Interrupted(ctx context.Context) ([]worker.Key, error) {
	rows, err := q.s.db.R.QueryContext(ctx, `SELECT registry, id FROM runs WHERE status = ?`, RunRunning)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var stale []worker.Key
	for rows.Next() {
		var k worker.Key
		if err := rows.Scan(&k.Registry, &k.ID); err != nil {
			return nil, err
		}
		stale = append(stale, k)
	}
	return stale, nil
}

// Abandon marks an interrupted run Failed with interruptedReason, in its
// record and its log, and revokes its credential.
func (q queue) Abandon(ctx context.Context, k worker.Key) error {
	s := q.s
	_ = s.ids.RevokeRun(ctx, k.Registry, k.ID)
	if _, err := s.db.W.ExecContext(ctx, `UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE registry = ? AND id = ?`,
		RunFailed, interruptedReason, formatTime(s.now()), k.Registry, k.ID); err != nil {
		return err
	}
	if w, err := s.logs.create(k.Registry, k.ID); err == nil {
		fmt.Fprintf(w, "%s Run ID: %s failed: %s\n", logStamp(s.now()), k.ID, interruptedReason)
		w.Close()
	}
	s.log.WarnContext(ctx, "run marked failed after restart", "registry", k.Registry, "run", k.ID)
	return nil
}

// Claim moves the oldest queued run to Running and returns it (nil if none).
func (q queue) Claim(ctx context.Context) (worker.Run, error) {
	s := q.s
	var registry, id string
	// Runs of one task execute one at a time, in order: two runs building
	// and tagging the same image names at once would see each other's
	// images on the shared engine.
	err := s.db.W.QueryRowContext(ctx, `UPDATE runs SET status = ?, started_at = ?
		WHERE rowid = (SELECT rowid FROM runs q WHERE q.status = ?
			AND (q.task_id = '' OR NOT EXISTS (SELECT 1 FROM runs r WHERE r.task_id = q.task_id AND r.status = ?))
			ORDER BY q.created_at, q.seq LIMIT 1)
		RETURNING registry, id`, RunRunning, formatTime(s.now()), RunQueued, RunRunning).Scan(&registry, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r, err := s.GetRun(ctx, registry, id)
	if err != nil {
		return nil, err
	}
	c := &claimed{s: s, r: r, timeout: DefaultTimeout}
	if r.TaskID != "" {
		if c.t, c.loadErr = s.getTaskByID(ctx, r.TaskID); c.loadErr != nil {
			c.loadErr = fmt.Errorf("loading task %s: %w", r.TaskName, c.loadErr)
		}
	}
	switch {
	case c.t != nil:
		c.timeout = c.t.Timeout
	case r.Request.TimeoutSeconds > 0:
		c.timeout = time.Duration(r.Request.TimeoutSeconds) * time.Second
	}
	return c, nil
}

// claimed is a run a worker claimed: its task (nil for a quick run) and,
// once prepared, its log.
type claimed struct {
	s       *Service
	r       *Run
	t       *Task
	loadErr error // loading the task failed
	timeout time.Duration

	lw  *logWriter     // nil until Prepare opened it
	log *maskingWriter // lw, secrets masked
}

var _ worker.Run = (*claimed)(nil)

func (c *claimed) Key() worker.Key        { return worker.Key{Registry: c.r.Registry, ID: c.r.ID} }
func (c *claimed) Timeout() time.Duration { return c.timeout }

// Close closes the run's log.
func (c *claimed) Close() {
	if c.lw != nil {
		c.lw.Close()
	}
}

// Finish records the outcome of the run: its status, from err, and the
// last line of its log.
func (c *claimed) Finish(ctx context.Context, res engine.Result, err error) {
	s, r := c.s, c.r
	if c.lw == nil {
		s.finishRun(ctx, r, RunError, err, res, nil)
		return
	}
	status := RunSucceeded
	switch {
	case err == nil:
	case errors.Is(err, worker.ErrCanceled):
		status = RunCanceled
	case errors.Is(err, context.DeadlineExceeded):
		status = RunTimeout
	case errors.Is(err, engine.ErrEngine):
		status = RunError
	default:
		status = RunFailed
	}
	elapsed := s.now().Sub(r.StartedAt).Round(time.Second)
	if err == nil {
		fmt.Fprintf(c.log, "%s Run ID: %s was successful after %s\n", logStamp(s.now()), r.ID, elapsed)
	} else {
		fmt.Fprintf(c.log, "%s Run ID: %s failed after %s. Error: %v\n", logStamp(s.now()), r.ID, elapsed, err)
	}
	s.finishRun(ctx, r, status, err, res, nil)
}

func logStamp(t time.Time) string { return t.UTC().Format("2006/01/02 15:04:05") }

// finishRun stores a run's outcome, updates the task's tracked base images
// after a success, and revokes the run's credential.
func (s *Service) finishRun(ctx context.Context, r *Run, status string, runErr error, res engine.Result, _ error) {
	r.Status = status
	r.FinishedAt = s.now().UTC()
	if runErr != nil {
		r.Error = runErr.Error()
	}
	r.Steps = res.Steps
	r.OutputImages = res.Images
	r.BaseImages = flattenDeps(res.Dependencies)
	images, _ := json.Marshal(nonNil(r.OutputImages))
	bases, _ := json.Marshal(nonNil(r.BaseImages))
	steps, _ := json.Marshal(nonNil(r.Steps))
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE runs SET status = ?, finished_at = ?, error = ?, output_images = ?, base_images = ?,
			steps = ?, commit_sha = ?, branch = ? WHERE registry = ? AND id = ?`,
			r.Status, formatTime(r.FinishedAt), r.Error, string(images), string(bases), string(steps), r.Commit, r.Branch,
			r.Registry, r.ID)
		if err != nil {
			return err
		}
		if status == RunSucceeded && r.TaskID != "" && len(res.Dependencies) > 0 {
			return replaceBaseImages(ctx, tx, r, s.now)
		}
		return nil
	})
	if err != nil {
		s.log.ErrorContext(ctx, "recording a run", "registry", r.Registry, "run", r.ID, "err", err)
	}
	if err := s.ids.RevokeRun(context.WithoutCancel(ctx), r.Registry, r.ID); err != nil {
		s.log.WarnContext(ctx, "revoking a run credential", "registry", r.Registry, "run", r.ID, "err", err)
	}
	os.Remove(s.archivePath(r.Registry, r.ID))
	s.logs.finish(r.Registry, r.ID)
	s.log.InfoContext(ctx, "run finished", "registry", r.Registry, "run", r.ID, "task", r.TaskName, "status", r.Status,
		"duration", r.Duration(r.FinishedAt))
	s.notifyRun(*r)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func flattenDeps(deps []engine.Dependency) []BaseImage {
	var out []BaseImage
	for _, d := range deps {
		if d.Runtime.Repository != "" {
			out = append(out, BaseImage{Image: d.Runtime, Runtime: true, Step: d.Step})
		}
		for _, b := range d.Buildtime {
			out = append(out, BaseImage{Image: b, Step: d.Step})
		}
	}
	return out
}

// replaceBaseImages records what the task now depends on: the bases of this
// run, replacing those of earlier runs.
func replaceBaseImages(ctx context.Context, tx *sql.Tx, r *Run, now func() time.Time) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM task_base_images WHERE task_id = ?`, r.TaskID); err != nil {
		return err
	}
	for _, b := range r.BaseImages {
		if b.Tag == "" {
			continue // a base pinned by digest never moves
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO task_base_images(task_id, image, registry, repository, tag, digest, runtime, run_id, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(task_id, image) DO UPDATE SET runtime = max(runtime, excluded.runtime), digest = excluded.digest`,
			r.TaskID, b.Reference(), b.Registry, b.Repository, b.Tag, b.Digest, b.Runtime, r.ID, formatTime(now()))
		if err != nil {
			return err
		}
	}
	return nil
}

// Prepare announces the run, opens its log, fills its workspace and
// returns its job: the task file, the context, the run's credentials and
// the task's logins.
func (c *claimed) Prepare(ctx context.Context) (_ engine.Job, _ func(), err error) {
	s, r, t := c.s, c.r, c.t
	s.notifyRun(*r)
	lw, err := s.logs.create(r.Registry, r.ID)
	if err != nil {
		return engine.Job{}, nil, fmt.Errorf("opening the run log: %w", err)
	}
	c.lw, c.log = lw, &maskingWriter{w: lw}
	if c.loadErr != nil {
		return engine.Job{}, nil, c.loadErr
	}
	reg, err := s.regs.GetRegistry(ctx, r.Registry)
	if err != nil {
		return engine.Job{}, nil, err
	}
	timeout := c.timeout

	ws := filepath.Join(s.dataDir, "work", r.Registry, r.ID)
	removeWorkspace := func() { os.RemoveAll(ws) }
	defer func() {
		if err != nil {
			removeWorkspace()
		}
	}()
	if err := os.MkdirAll(ws, 0o700); err != nil {
		return engine.Job{}, nil, err
	}
	log, mask := c.log, c.log
	contextDir, err := s.prepareContext(ctx, r, t, ws, log)
	if err != nil {
		return engine.Job{}, nil, err
	}

	fileName, file, docker, err := s.taskFile(r, t, contextDir)
	if err != nil {
		return engine.Job{}, nil, err
	}

	identity := auth.Identity{}
	principal := ""
	name := "run:" + r.Registry + "/" + r.ID
	if t != nil {
		name = "task:" + t.Registry + "/" + t.Name
		if t.Identity != "" {
			principal = t.Identity
			identity = auth.Identity{Kind: auth.KindIdentity, Principal: t.Identity, Name: name}
		}
	}
	runCred, err := s.ids.IssueRunCredential(ctx, auth.RunGrant{
		Registry: r.Registry, RunID: r.ID, Principal: principal, Name: name, TTL: timeout + 5*time.Minute,
	})
	if err != nil {
		return engine.Job{}, nil, fmt.Errorf("issuing the run credential: %w", err)
	}
	mask.add(runCred)
	// Every step finds the registry logins in its Docker config; only the
	// gantry and az alias steps get runCred, the control-API credential.
	regCred, err := s.ids.IssueRunCredential(ctx, auth.RunGrant{
		Registry: r.Registry, RunID: r.ID, Principal: principal, Name: name, TTL: timeout + 5*time.Minute, RegistryOnly: true,
	})
	if err != nil {
		return engine.Job{}, nil, fmt.Errorf("issuing the run's registry credential: %w", err)
	}
	mask.add(regCred)

	login := s.regs.LoginServer(reg)
	creds := []engine.Credential{{Registry: login, Username: auth.RunUsername, Password: regCred}}
	if t != nil {
		more, err := s.resolveCredentials(ctx, t, identity, regCred, mask)
		if err != nil {
			return engine.Job{}, nil, err
		}
		creds = append(creds, more...)
		if err := s.keepTokensFromSteps(ctx, creds[1:], timeout+5*time.Minute); err != nil {
			return engine.Job{}, nil, err
		}
	}

	values := map[string]string{}
	if t != nil {
		for k, v := range t.Spec.Values {
			values[k] = v
		}
	}
	for k, v := range r.Request.Values {
		values[k] = v
	}
	job := engine.Job{
		RunID:           r.ID,
		Registry:        login,
		RegistryName:    r.Registry,
		Commit:          r.Commit,
		Branch:          r.Branch,
		Date:            r.StartedAt,
		FileName:        fileName,
		File:            file,
		Docker:          docker,
		Values:          values,
		Workspace:       contextDir,
		Credentials:     creds,
		GantryEnv:       s.gantryEnv(runCred),
		AllowPrivileged: slices.Contains(s.privileged, r.Registry),
		BuildNetwork:    s.buildNetwork,
		Log:             log,
		Timeout:         timeout,
		ResolveSecret: func(ctx context.Context, id, uri string) (string, error) {
			if identity.Principal == "" {
				return "", fmt.Errorf("secret %q (%s): the task has no identity to read the vault with; create it with --assign-identity and grant it get: %w",
					id, uri, auth.ErrDenied)
			}
			v, err := s.secrets.Resolve(ctx, identity, uri)
			if err == nil {
				mask.add(v)
			}
			return v, err
		},
	}
	if t != nil {
		job.TaskName = t.Name
	}
	return job, removeWorkspace, nil
}

// prepareContext fills the workspace with the run's context and returns the
// directory the build context is in.
func (s *Service) prepareContext(ctx context.Context, r *Run, t *Task, ws string, log io.Writer) (string, error) {
	switch {
	case r.Request.Archive:
		if err := source.Extract(s.archivePath(r.Registry, r.ID), ws); err != nil {
			return "", fmt.Errorf("unpacking the uploaded context: %w", err)
		}
		return ws, nil
	case t == nil || t.Context == "":
		return ws, nil
	}
	if err := s.checkRunContext(t); err != nil {
		return "", err
	}
	want := ""
	if r.Cause.Commit != nil {
		want = r.Cause.Commit.Commit
	}
	got, err := source.Fetch(ctx, source.Request{
		Context: t.Context,
		Token:   func(ctx context.Context) (string, error) { return s.gitToken(ctx, t) },
		Want:    want,
		Cloning: func(repo string) { fmt.Fprintf(log, "%s Cloning %s\n", logStamp(s.now()), repo) },
	}, ws)
	if err != nil || got.Commit == "" {
		return got.Dir, err
	}
	r.Commit, r.Branch = got.Commit, got.Branch
	if _, err := s.db.W.ExecContext(ctx, `UPDATE runs SET commit_sha = ?, branch = ? WHERE registry = ? AND id = ?`,
		r.Commit, r.Branch, r.Registry, r.ID); err != nil {
		return "", err
	}
	return got.Dir, nil
}

// taskFile returns the run's task file, or the Dockerfile build of a
// Dockerfile task or quick build.
func (s *Service) taskFile(r *Run, t *Task, contextDir string) (string, []byte, *taskfile.DockerBuild, error) {
	var file string
	var content []byte
	var kind string
	var spec Spec
	switch {
	case t != nil:
		file, content, kind, spec = t.File, t.FileContent, t.Kind, t.Spec
	case r.RunType == RunTypeQuickBuild:
		file, kind = r.Request.File, KindDocker
		spec = Spec{Images: r.Request.Images, Args: r.Request.Args, Target: r.Request.Target, NoPush: r.Request.NoPush}
	default:
		file, content, kind = firstNonEmpty(r.Request.File, "acr-task.yaml"), r.Request.FileContent, KindFile
	}
	if kind == KindDocker {
		if _, err := os.Stat(filepath.Join(contextDir, filepath.FromSlash(file))); err != nil {
			return "", nil, nil, fmt.Errorf("the Dockerfile %q is not in the context", file)
		}
		keys := make([]string, 0, len(spec.Args))
		for k := range spec.Args {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var args []string
		for _, k := range keys {
			args = append(args, k+"="+spec.Args[k])
		}
		return file, nil, &taskfile.DockerBuild{Dockerfile: file, Tags: spec.Images, BuildArgs: args, Target: spec.Target, NoPush: spec.NoPush}, nil
	}
	if len(content) > 0 {
		return firstNonEmpty(file, "acr-task.yaml"), content, nil, nil
	}
	p := filepath.Join(contextDir, filepath.FromSlash(file))
	if rel, err := filepath.Rel(contextDir, p); err != nil || strings.HasPrefix(rel, "..") {
		return "", nil, nil, fmt.Errorf("task file %q is outside the context", file)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", nil, nil, fmt.Errorf("task file %q not found in the context", file)
	}
	return file, b, nil, nil
}

// resolveCredentials turns a task's credentials into logins, reading vault
// URIs with the task's identity.
func (s *Service) resolveCredentials(ctx context.Context, t *Task, id auth.Identity, regCred string, mask *maskingWriter) ([]engine.Credential, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT login_server, username, password, password_is_uri, use_identity
		FROM task_credentials WHERE task_id = ? ORDER BY login_server`, t.ID)
	if err != nil {
		return nil, err
	}
	type row struct {
		server, user string
		pw           []byte
		isURI        bool
		useID        string
	}
	var rs []row
	for rows.Next() {
		var x row
		if err := rows.Scan(&x.server, &x.user, &x.pw, &x.isURI, &x.useID); err != nil {
			rows.Close()
			return nil, err
		}
		rs = append(rs, x)
	}
	rows.Close()
	var out []engine.Credential
	for _, x := range rs {
		if x.useID != "" && x.user == "" {
			if id.Principal == "" {
				return nil, fmt.Errorf("credential for %s uses the task identity, but the task has none (--assign-identity)", x.server)
			}
			out = append(out, engine.Credential{Registry: x.server, Username: auth.RunUsername, Password: regCred})
			continue
		}
		user := x.user
		if vault.IsURI(user) {
			v, err := s.secrets.Resolve(ctx, id, user)
			if err != nil {
				return nil, fmt.Errorf("credential for %s: username: %w", x.server, err)
			}
			user = v
		}
		var pw string
		if x.isURI {
			v, err := s.secrets.Resolve(ctx, id, string(x.pw))
			if err != nil {
				return nil, fmt.Errorf("credential for %s: password: %w", x.server, err)
			}
			pw = v
		} else if len(x.pw) > 0 {
			b, err := s.sealer.Open(x.pw, sealContext(t.ID, "credential/"+x.server))
			if err != nil {
				return nil, fmt.Errorf("credential for %s: %w", x.server, err)
			}
			pw = string(b)
		}
		mask.add(pw)
		out = append(out, engine.Credential{Registry: x.server, Username: user, Password: pw})
	}
	return out, nil
}

// gantryEnv is the environment of the gantry and az alias steps: the
// control API, its CA when it has a local one, and the run's credential.
func (s *Service) gantryEnv(runCred string) map[string]string {
	env := map[string]string{"GANTRY_SERVER": s.controlURL, "GANTRY_TOKEN": runCred}
	if s.controlCA != "" {
		env["GANTRY_CA_CERT"] = s.controlCA
	}
	return env
}
