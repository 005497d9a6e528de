package trigger

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
	"github.com/gantryhq/gantry/internal/testenv/stack"
)

// fakeClock is a Clock driven by Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clock *fakeClock
	c     chan time.Time
	at    time.Time
	done  bool
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, c: make(chan time.Time, 1), at: c.now.Add(d)}
	if d <= 0 {
		t.done = true
		t.c <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			break
		}
	}
	return true
}

// Advance moves the clock and fires the timers that came due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.done = true
			t.c <- c.now
			continue
		}
		keep = append(keep, t)
	}
	c.timers = keep
}

// AdvanceTo moves the clock to at.
func (c *fakeClock) AdvanceTo(at time.Time) { c.Advance(at.Sub(c.Now())) }

// fakeExec is a function-field fake of the engine; behaviours are chosen by
// task name ("" for quick runs).
type fakeExec struct {
	mu    sync.Mutex
	by    map[string]func(ctx context.Context, job engine.Job) (engine.Result, error)
	calls map[string]int
}

func (f *fakeExec) set(taskName string, fn func(ctx context.Context, job engine.Job) (engine.Result, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.by[taskName] = fn
}

func (f *fakeExec) Execute(ctx context.Context, job engine.Job) (engine.Result, error) {
	f.mu.Lock()
	fn := f.by[job.TaskName]
	f.calls[job.TaskName]++
	f.mu.Unlock()
	if fn == nil {
		return engine.Result{}, nil
	}
	return fn(ctx, job)
}

func (f *fakeExec) Cleanup(context.Context, string, string) error { return nil }

// env is a task service over a real store and SQLite database, with a
// fake engine.
type env struct {
	*stack.Stack
	exec  *fakeExec
	tasks *task.Service
	// hosts maps a registry's login server to its name (read-only once
	// the test runs).
	hosts map[string]string
	// wait bounds waitRuns and waitFinished (default 15 s).
	wait time.Duration
}

func (e *env) timeout() time.Duration {
	if e.wait > 0 {
		return e.wait
	}
	return 15 * time.Second
}

type envConfig struct {
	now func() time.Time
}

func newEnv(t testing.TB, dir string, cfg envConfig) *env {
	t.Helper()
	ctx := context.Background()
	sk := stack.New(t, dir)
	fe := &fakeExec{by: map[string]func(context.Context, engine.Job) (engine.Result, error){}, calls: map[string]int{}}
	// The tests' git repositories are local folders under the temp dir.
	opts := []task.Option{task.WithConcurrency(4), task.WithContextRoots([]string{os.TempDir()})}
	if cfg.now != nil {
		opts = append(opts, task.WithClock(cfg.now))
	}
	e := &env{Stack: sk, exec: fe, hosts: map[string]string{}}
	e.tasks = task.New(sk.DB, sk.Dir, sk.Store, sk.Auth, sk.Vault, sk.Vault, fe, opts...)
	regs, err := sk.Store.ListRegistries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range regs {
		e.hosts[r.Listen] = r.Name
	}
	return e
}

// registry creates a registry (or finds it after a restart).
func (e *env) registry(t testing.TB, name, listen string) {
	t.Helper()
	if _, err := e.Store.GetRegistry(context.Background(), name); err == nil {
		return
	}
	if _, err := e.Store.CreateRegistry(context.Background(), store.Registry{Name: name, Listen: listen}); err != nil {
		t.Fatal(err)
	}
	e.hosts[listen] = name
}

// startTasks starts the task workers until the test ends or stop is
// called; stop leaves queued runs queued.
func (e *env) startTasks(t testing.TB) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.tasks.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); e.tasks.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// startTrigger starts a trigger service; stop stops it and waits.
func (e *env) startTrigger(t testing.TB, opts ...Option) (*Service, func()) {
	t.Helper()
	s := New(e.DB, e.tasks, e.Store, e.Vault, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); s.Wait() }) }
	t.Cleanup(stop)
	return s, stop
}

var saltSeq struct {
	sync.Mutex
	n int
}

// push stores a new image manifest (a unique config) in registry/repo
// under tags and returns its digest.
func push(t testing.TB, st *store.Store, registry, repo string, by store.Actor, tags ...string) digest.Digest {
	t.Helper()
	d, err := pushNew(st, registry, repo, by, tags...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pushNew is push for goroutines other than the test's.
func pushNew(st *store.Store, registry, repo string, by store.Actor, tags ...string) (digest.Digest, error) {
	saltSeq.Lock()
	saltSeq.n++
	n := saltSeq.n
	saltSeq.Unlock()
	return pushManifest(st, registry, repo, by, fmt.Sprintf("%d-%d", time.Now().UnixNano(), n), tags...)
}

// pushBody pushes the manifest made from salt: the same salt gives the
// same digest.
func pushBody(t testing.TB, st *store.Store, registry, repo string, by store.Actor, salt string, tags ...string) digest.Digest {
	t.Helper()
	d, err := pushManifest(st, registry, repo, by, salt, tags...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func pushManifest(st *store.Store, registry, repo string, by store.Actor, salt string, tags ...string) (digest.Digest, error) {
	ctx := context.Background()
	config := []byte(`{"architecture":"amd64","os":"linux","config":{"Labels":{"salt":"` + salt + `"}}}`)
	cd := digest.FromBytes(config)
	if _, err := st.PutBlob(ctx, registry, repo, cd, int64(len(config)), bytes.NewReader(config)); err != nil {
		return "", err
	}
	m, err := st.PutManifest(ctx, registry, repo, store.PutManifestRequest{Reference: tags[0], Body: manifestBody(cd, len(config)),
		MediaType: "application/vnd.oci.image.manifest.v1+json", Tags: tags[1:], By: by})
	if err != nil {
		return "", err
	}
	return m.Digest, nil
}

func manifestBody(config digest.Digest, size int) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`, config, size))
}

// ref is a parsed host/repository:tag.
func splitRef(ref string) engine.Image {
	host, rest, _ := strings.Cut(ref, "/")
	repo, tag, _ := strings.Cut(rest, ":")
	return engine.Image{Registry: host, Repository: repo, Tag: tag}
}

// resolve returns an image with the digest its tag has now in this env's
// store.
func (e *env) resolve(ctx context.Context, ref string) engine.Image {
	img := splitRef(ref)
	for listen, reg := range e.hosts {
		if normalizeHost(listen) != normalizeHost(img.Registry) {
			continue
		}
		if d, err := e.Store.ResolveTag(ctx, reg, img.Repository, img.Tag); err == nil {
			img.Digest = d.String()
		}
	}
	return img
}

// builds returns a fake engine behaviour: a build FROM runtime (and
// build-time bases), resolving their digests when the run executes, then
// optional extra work (pushes).
func (e *env) builds(runtime string, buildtime []string, then func(ctx context.Context, job engine.Job) error) func(context.Context, engine.Job) (engine.Result, error) {
	return func(ctx context.Context, job engine.Job) (engine.Result, error) {
		dep := engine.Dependency{Step: "build", Runtime: e.resolve(ctx, runtime)}
		for _, b := range buildtime {
			dep.Buildtime = append(dep.Buildtime, e.resolve(ctx, b))
		}
		res := engine.Result{Steps: []engine.StepResult{{ID: "build", Status: engine.StepSuccessful}}, Dependencies: []engine.Dependency{dep}}
		if then != nil {
			if err := then(ctx, job); err != nil {
				return res, err
			}
		}
		return res, nil
	}
}

// createTask creates a task without a context (so without a commit
// trigger) unless mod sets one.
func (e *env) createTask(t testing.TB, registry, name string, mod func(*task.CreateRequest)) *task.Task {
	t.Helper()
	req := task.CreateRequest{Registry: registry, Name: name, FileContent: []byte("version: v1.1.0\nsteps:\n  - cmd: busybox true\n"),
		File: "acr-task.yaml"}
	if mod != nil {
		mod(&req)
	}
	tk, err := e.tasks.CreateTask(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// runNow runs a task by hand and waits for it to finish.
func (e *env) runNow(t testing.TB, registry, name string) *task.Run {
	t.Helper()
	ctx := context.Background()
	r, err := e.tasks.QueueRun(ctx, task.QueueRequest{Registry: registry, Task: name})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, e.timeout())
	defer cancel()
	r, err = e.tasks.WaitRun(wctx, registry, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != task.RunSucceeded {
		t.Fatalf("run %s of %s: %s %s", r.ID, name, r.Status, r.Error)
	}
	return r
}

// runs returns a task's runs with a trigger ("" for all), oldest first.
func (e *env) runs(t testing.TB, registry, name, trigger string) []*task.Run {
	t.Helper()
	all, err := e.tasks.ListRuns(context.Background(), task.RunFilter{Registry: registry, Task: name, Top: -1})
	if err != nil {
		t.Fatal(err)
	}
	var out []*task.Run
	for _, r := range all {
		if trigger == "" || r.Trigger == trigger {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// waitRuns waits until a task has at least n runs with a trigger.
func (e *env) waitRuns(t testing.TB, registry, name, trigger string, n int) []*task.Run {
	t.Helper()
	deadline := time.Now().Add(e.timeout())
	for {
		rs := e.runs(t, registry, name, trigger)
		if len(rs) >= n {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s: %d %q runs, want %d", registry, name, len(rs), trigger, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFinished waits for every run of a task to finish.
func (e *env) waitFinished(t testing.TB, registry, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout())
	defer cancel()
	for _, r := range e.runs(t, registry, name, "") {
		if _, err := e.tasks.WaitRun(ctx, registry, r.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// settle waits until the base-image trigger handled everything so far.
func settle(t testing.TB, s *Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.base.settle(ctx); err != nil {
		t.Fatal(err)
	}
}

// gitRepo makes a git repository with one commit on main.
func gitRepo(t testing.TB) (dir, head string) {
	t.Helper()
	dir = t.TempDir()
	gitCmd(t, dir, "init", "-q", "-b", "main")
	return dir, commit(t, dir, "first")
}

// commit writes a file and commits it, returning the new head.
func commit(t testing.TB, dir, msg string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "file.txt"), []byte(msg+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCmd(t, dir, "add", "file.txt")
	gitCmd(t, dir, "commit", "-q", "--allow-empty", "-m", msg)
	return strings.TrimSpace(gitCmd(t, dir, "rev-parse", "HEAD"))
}

func gitCmd(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// recv waits for a value on ch.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}
