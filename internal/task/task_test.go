package task

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/vault"
)

// fakeExec is a function-field fake of the engine.
type fakeExec struct {
	mu      sync.Mutex
	jobs    []engine.Job
	execute func(ctx context.Context, job engine.Job) (engine.Result, error)
	cleaned []string
}

func (f *fakeExec) Execute(ctx context.Context, job engine.Job) (engine.Result, error) {
	f.mu.Lock()
	f.jobs = append(f.jobs, job)
	fn := f.execute
	f.mu.Unlock()
	if fn == nil {
		return engine.Result{}, nil
	}
	return fn(ctx, job)
}

// blockUntilCanceled makes every run block until its context ends (and
// fail with the context's error); a value on the returned channel says a run
// has started.
func (f *fakeExec) blockUntilCanceled() <-chan struct{} {
	started := make(chan struct{}, 1)
	f.execute = func(ctx context.Context, job engine.Job) (engine.Result, error) {
		started <- struct{}{}
		<-ctx.Done()
		return engine.Result{}, ctx.Err()
	}
	return started
}

func (f *fakeExec) Cleanup(_ context.Context, registry, runID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleaned = append(f.cleaned, registry+"/"+runID)
	return nil
}

type env struct {
	dir   string
	db    *db.DB
	store *store.Store
	auth  *auth.Service
	vault *vault.Service
	exec  *fakeExec
	svc   *Service
}

func newEnv(t *testing.T, dir string) *env {
	t.Helper()
	ctx := t.Context()
	d, err := db.Open(ctx, filepath.Join(dir, "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	st, err := store.Open(ctx, d, dir)
	if err != nil {
		t.Fatal(err)
	}
	au, err := auth.New(d, filepath.Join(dir, "keys"), auth.WithRegistryLookup(st))
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(d, filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetRegistry(ctx, "contoso"); err != nil {
		if _, err := st.CreateRegistry(ctx, store.Registry{Name: "contoso", Listen: "127.0.0.1:5999"}); err != nil {
			t.Fatal(err)
		}
	}
	fe := &fakeExec{}
	svc := New(d, dir, st, au, v, v, fe, WithConcurrency(2), WithControlURL("http://127.0.0.1:7000"),
		WithContextRoots([]string{os.TempDir()}))
	return &env{dir: dir, db: d, store: st, auth: au, vault: v, exec: fe, svc: svc}
}

func (e *env) start(t *testing.T) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); e.svc.Wait() })
	return cancel
}

// simpleTask creates a task of contoso named name running simpleTask from a
// local context, and returns the context's folder.
func (e *env) simpleTask(t *testing.T, name string) string {
	t.Helper()
	ctxDir := testenv.WriteTree(t, map[string]string{"acr-task.yaml": simpleTask})
	if _, err := e.svc.CreateTask(t.Context(), CreateRequest{Registry: "contoso", Name: name, Context: ctxDir}); err != nil {
		t.Fatal(err)
	}
	return ctxDir
}

// runToEnd queues a run of contoso's task and waits for its end.
func (e *env) runToEnd(t *testing.T, task string) *Run {
	t.Helper()
	r, err := e.svc.QueueRun(t.Context(), QueueRequest{Registry: "contoso", Task: task})
	if err != nil {
		t.Fatal(err)
	}
	if r, err = e.svc.WaitRun(t.Context(), "contoso", r.ID); err != nil {
		t.Fatal(err)
	}
	return r
}

const simpleTask = "version: v1.1.0\nsteps:\n  - cmd: busybox echo {{.Values.GREETING}}\n"

func TestRunIDs(t *testing.T) {
	t.Parallel()
	want := map[int64]string{1: "1", 9: "9", 10: "a", 34: "y", 35: "10", 36: "11", 35 * 35: "100"}
	for n, suffix := range want {
		id := formatRunID("contoso", n)
		if !strings.HasSuffix(id, suffix) || len(id) != 2+len(suffix) || id[:2] != runIDPrefix("contoso") {
			t.Errorf("formatRunID(%d) = %q, want prefix %q + %q", n, id, runIDPrefix("contoso"), suffix)
		}
	}
	if runIDPrefix("contoso") == runIDPrefix("publicregistry") && runIDPrefix("contoso") == runIDPrefix("baseartifacts") {
		t.Error("three registries share one run ID prefix")
	}
}

func TestTaskRunLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	ctx := t.Context()
	ctxDir := testenv.WriteTree(t, map[string]string{"acr-task.yaml": simpleTask})
	tk, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "contoso", Name: "hello-world", Context: ctxDir,
		File: "acr-task.yaml", Spec: Spec{Values: map[string]string{"GREETING": "hi", "KEEP": "1"}}, AssignIdentity: true})
	if err != nil {
		t.Fatal(err)
	}
	if tk.Identity == "" || tk.Kind != KindFile || tk.Timeout != DefaultTimeout || !tk.CommitTrigger {
		t.Fatalf("unexpected task: %+v", tk)
	}
	if _, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "contoso", Name: "hello-world", Context: ctxDir}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}

	e.exec.execute = func(ctx context.Context, job engine.Job) (engine.Result, error) {
		job.Log.Write([]byte("step output with the credential " + job.GantryEnv["GANTRY_TOKEN"] + "\n"))
		return engine.Result{
			Steps:  []engine.StepResult{{ID: "acb_step_0", Status: engine.StepSuccessful}},
			Images: []engine.Image{{Registry: job.Registry, Repository: "hello-world", Tag: job.RunID, Digest: "sha256:aa"}},
			Dependencies: []engine.Dependency{{Step: "build", Runtime: engine.Image{Registry: "127.0.0.1:5998", Repository: "node", Tag: "15-alpine", Digest: "sha256:bb"},
				Buildtime: []engine.Image{{Registry: "127.0.0.1:5998", Repository: "builder", Tag: "1", Digest: "sha256:cc"}}}},
		}, nil
	}
	e.start(t)
	r, err := e.svc.QueueRun(ctx, QueueRequest{Registry: "contoso", Task: "hello-world", Values: map[string]string{"GREETING": "hello"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != RunQueued || r.Trigger != TriggerManual || r.ID != formatRunID("contoso", 1) {
		t.Fatalf("queued run: %+v", r)
	}
	var logs bytes.Buffer
	if err := e.svc.Logs(ctx, "contoso", r.ID, true, &logs); err != nil {
		t.Fatal(err)
	}
	done, err := e.svc.GetRun(ctx, "contoso", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != RunSucceeded || done.StartedAt.IsZero() || done.FinishedAt.IsZero() || len(done.OutputImages) != 1 || len(done.BaseImages) != 2 {
		t.Fatalf("finished run: %+v", done)
	}
	if !strings.Contains(logs.String(), "was successful after") || !strings.Contains(logs.String(), "credential ***") {
		t.Fatalf("log:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "gantryrun.") {
		t.Fatalf("the run credential leaked into the log:\n%s", logs.String())
	}
	job := e.exec.jobs[0]
	if job.Values["GREETING"] != "hello" || job.Values["KEEP"] != "1" {
		t.Fatalf("values: --set must win over the task's: %v", job.Values)
	}
	if job.Registry != "127.0.0.1:5999" || job.RegistryName != "contoso" || job.TaskName != "hello-world" || !strings.Contains(string(job.File), "busybox echo") {
		t.Fatalf("job: %+v", job)
	}
	if len(job.Credentials) != 1 || job.Credentials[0].Registry != "127.0.0.1:5999" || !auth.IsRunCredential(job.Credentials[0].Password) {
		t.Fatalf("credentials: %+v", job.Credentials)
	}
	bases, err := e.svc.BaseImages(ctx, tk.ID)
	if err != nil || len(bases) != 2 {
		t.Fatalf("tracked bases = %+v, %v", bases, err)
	}

	// A failing run.
	e.exec.execute = func(context.Context, engine.Job) (engine.Result, error) {
		return engine.Result{}, errors.Join(engine.ErrStepFailed, errors.New("failed to run step ID: validate-base-image: exit status 1"))
	}
	r2 := e.runToEnd(t, "hello-world")
	if r2.Status != RunFailed || !strings.Contains(r2.Error, "validate-base-image") {
		t.Fatalf("failed run: %+v", r2)
	}
	runs, err := e.svc.ListRuns(ctx, RunFilter{Registry: "contoso"})
	if err != nil || len(runs) != 2 || runs[0].ID != r2.ID {
		t.Fatalf("ListRuns = %v, %v", runs, err)
	}
}

func TestCancelAndTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	ctx := t.Context()
	ctxDir := testenv.WriteTree(t, map[string]string{"acr-task.yaml": simpleTask})
	if _, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "contoso", Name: "slowtask", Context: ctxDir, Timeout: 300 * time.Second}); err != nil {
		t.Fatal(err)
	}
	started := e.exec.blockUntilCanceled()
	e.start(t)
	r, err := e.svc.QueueRun(ctx, QueueRequest{Registry: "contoso", Task: "slowtask"})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	c, err := e.svc.CancelRun(ctx, "contoso", r.ID)
	if err != nil || c.Status != RunCanceled {
		t.Fatalf("CancelRun = %+v, %v", c, err)
	}
	if _, err := e.svc.CancelRun(ctx, "contoso", r.ID); !errors.Is(err, ErrFinished) {
		t.Fatalf("second cancel = %v, want ErrFinished", err)
	}
}

func TestRestartRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := newEnv(t, dir)
	ctx := t.Context()
	ctxDir := testenv.WriteTree(t, map[string]string{"acr-task.yaml": simpleTask})
	if _, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "contoso", Name: "crashtask", Context: ctxDir}); err != nil {
		t.Fatal(err)
	}
	started := e.exec.blockUntilCanceled()
	stop := e.start(t)
	running, err := e.svc.QueueRun(ctx, QueueRequest{Registry: "contoso", Task: "crashtask"})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	stop() // the server goes away with a run in flight
	e.svc.Wait()
	queued, err := e.svc.QueueRun(ctx, QueueRequest{Registry: "contoso", Task: "crashtask"})
	if err != nil {
		t.Fatal(err)
	}

	e2 := newEnv(t, dir)
	e2.start(t)
	r, err := e2.svc.GetRun(ctx, "contoso", running.ID)
	if err != nil || r.Status != RunFailed || !strings.Contains(r.Error, "interrupted") {
		t.Fatalf("interrupted run after restart: %+v, %v", r, err)
	}
	if len(e2.exec.cleaned) != 1 || e2.exec.cleaned[0] != "contoso/"+running.ID {
		t.Fatalf("engine cleanup calls: %v", e2.exec.cleaned)
	}
	q, err := e2.svc.WaitRun(ctx, "contoso", queued.ID)
	if err != nil || q.Status != RunSucceeded {
		t.Fatalf("queued run after restart: %+v, %v", q, err)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	ctx := t.Context()
	tests := []struct {
		name string
		req  CreateRequest
		want string
	}{
		{"short name", CreateRequest{Registry: "contoso", Name: "ab", Context: "https://git.example.invalid/app.git"}, "name"},
		{"bad timeout", CreateRequest{Registry: "contoso", Name: "abcde", Context: "https://git.example.invalid/app.git", Timeout: time.Second}, "timeout"},
		{"bad schedule", CreateRequest{Registry: "contoso", Name: "abcde", Context: "https://git.example.invalid/app.git", Schedules: []string{"* * *"}}, "schedule"},
		{"docker without image", CreateRequest{Registry: "contoso", Name: "abcde", Context: "https://git.example.invalid/app.git", File: "Dockerfile"}, "image"},
		{"unknown registry", CreateRequest{Registry: "nope", Name: "abcde", Context: "https://git.example.invalid/app.git"}, "registry"},
	}
	for _, tt := range tests {
		_, err := e.svc.CreateTask(ctx, tt.req)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want mention of %q", tt.name, err, tt.want)
		}
	}
	tk, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "contoso", Name: "timers", Context: "https://git.example.invalid/app.git",
		Schedules: []string{"0 21 * * *", "nightly:30 9 * Jan Mon"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(tk.Timers) != 2 || tk.Timers[0].Name != "nightly" || tk.Timers[1].Name != "t1" {
		t.Fatalf("timers: %+v", tk.Timers)
	}
}

func TestRunsOfOneTaskDoNotOverlap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	ctx := t.Context()
	e.simpleTask(t, "serial")
	var mu sync.Mutex
	running, most := 0, 0
	e.exec.execute = func(ctx context.Context, job engine.Job) (engine.Result, error) {
		mu.Lock()
		running++
		if running > most {
			most = running
		}
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return engine.Result{}, nil
	}
	e.start(t)
	var ids []string
	for range 3 {
		r, err := e.svc.QueueRun(ctx, QueueRequest{Registry: "contoso", Task: "serial"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	var finished []*Run
	for _, id := range ids {
		r, err := e.svc.WaitRun(ctx, "contoso", id)
		if err != nil || r.Status != RunSucceeded {
			t.Fatalf("run %s: %+v, %v", id, r, err)
		}
		finished = append(finished, r)
	}
	if most != 1 {
		t.Fatalf("%d runs of one task ran at once; want 1", most)
	}
	for i := 1; i < len(finished); i++ {
		if finished[i].StartedAt.Before(finished[i-1].FinishedAt) {
			t.Fatalf("run %s started before %s finished", finished[i].ID, finished[i-1].ID)
		}
	}
}

// TestPreparationFailure: a run whose context is gone fails before the
// engine is called, says why, and leaves no workspace behind.
func TestPreparationFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	ctxDir := e.simpleTask(t, "gone-context")
	if err := os.RemoveAll(ctxDir); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	r := e.runToEnd(t, "gone-context")
	if r.Status != RunFailed || !strings.Contains(r.Error, "neither a git repository nor a directory") {
		t.Fatalf("run: %+v", r)
	}
	if len(e.exec.jobs) != 0 {
		t.Errorf("the engine got %d jobs", len(e.exec.jobs))
	}
	if _, err := os.Stat(filepath.Join(e.dir, "work", "contoso", r.ID)); !os.IsNotExist(err) {
		t.Errorf("the workspace is left: %v", err)
	}
}
