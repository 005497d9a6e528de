package worker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/engine"
)

// fakeRunner is a function-field fake of the engine.
type fakeRunner struct {
	execute func(ctx context.Context, job engine.Job) (engine.Result, error)

	mu      sync.Mutex
	cleaned []Key
}

func (f *fakeRunner) Execute(ctx context.Context, job engine.Job) (engine.Result, error) {
	if f.execute == nil {
		return engine.Result{}, nil
	}
	return f.execute(ctx, job)
}

func (f *fakeRunner) Cleanup(_ context.Context, registry, runID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleaned = append(f.cleaned, Key{registry, runID})
	return nil
}

// fakeQueue hands out its runs once each.
type fakeQueue struct {
	mu          sync.Mutex
	runs        []*fakeRun
	interrupted []Key
	abandoned   []Key
}

func (q *fakeQueue) Interrupted(context.Context) ([]Key, error) { return q.interrupted, nil }

func (q *fakeQueue) Abandon(_ context.Context, k Key) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.abandoned = append(q.abandoned, k)
	return nil
}

func (q *fakeQueue) Claim(context.Context) (Run, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.runs) == 0 {
		return nil, nil
	}
	r := q.runs[0]
	q.runs = q.runs[1:]
	return r, nil
}

// fakeRun records what the pool did with it, in order.
type fakeRun struct {
	key     Key
	timeout time.Duration

	mu       sync.Mutex
	events   []string
	err      error
	closed   chan struct{}
	deadline bool
}

func newRun(id string) *fakeRun {
	return &fakeRun{key: Key{"contoso", id}, timeout: time.Minute, closed: make(chan struct{})}
}

func (r *fakeRun) event(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *fakeRun) Key() Key               { return r.key }
func (r *fakeRun) Timeout() time.Duration { return r.timeout }

func (r *fakeRun) Prepare(ctx context.Context) (engine.Job, func(), error) {
	_, r.deadline = ctx.Deadline()
	r.event("prepare")
	return engine.Job{RunID: r.key.ID}, func() { r.event("release") }, nil
}

func (r *fakeRun) Finish(_ context.Context, _ engine.Result, err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
	r.event("finish")
}

func (r *fakeRun) Close() { r.event("close"); close(r.closed) }

func (r *fakeRun) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("run %s was not closed", r.key.ID)
	}
}

func start(t *testing.T, q Queue, eng Engine) (*Pool, context.CancelFunc) {
	t.Helper()
	p := New(q, eng, WithConcurrency(2))
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); p.Wait() })
	return p, cancel
}

// startBlocked starts a pool with one run, id, whose job blocks until its
// context ends, and returns once the job runs.
func startBlocked(t *testing.T, id string) (*Pool, *fakeRun, context.CancelFunc) {
	t.Helper()
	r := newRun(id)
	started := make(chan struct{})
	eng := &fakeRunner{execute: func(ctx context.Context, _ engine.Job) (engine.Result, error) {
		close(started)
		<-ctx.Done()
		return engine.Result{}, ctx.Err()
	}}
	p, stop := start(t, &fakeQueue{runs: []*fakeRun{r}}, eng)
	<-started
	return p, r, stop
}

// TestPoolRunsAJob: a claimed run is prepared within its timeout, its job
// handed to the runner, its workspace released, its outcome recorded and
// then its log closed.
func TestPoolRunsAJob(t *testing.T) {
	t.Parallel()
	r := newRun("ca1")
	var got engine.Job
	fail := errors.New("failed to run step ID: x")
	eng := &fakeRunner{execute: func(_ context.Context, job engine.Job) (engine.Result, error) {
		got = job
		return engine.Result{}, fail
	}}
	start(t, &fakeQueue{runs: []*fakeRun{r}}, eng)
	r.wait(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	if got.RunID != "ca1" || !r.deadline {
		t.Errorf("job %q, deadline %v: want the run's job, prepared within its timeout", got.RunID, r.deadline)
	}
	if want := []string{"prepare", "release", "finish", "close"}; !slices.Equal(r.events, want) {
		t.Errorf("events %v, want %v", r.events, want)
	}
	if !errors.Is(r.err, fail) {
		t.Errorf("outcome %v, want the runner's error", r.err)
	}
}

// TestPoolCancel: Cancel stops a running run, whose outcome is ErrCanceled.
func TestPoolCancel(t *testing.T) {
	t.Parallel()
	p, r, _ := startBlocked(t, "ca2")
	if !p.Cancel(r.key) {
		t.Fatal("Cancel: the run is not running")
	}
	r.wait(t)
	if !errors.Is(r.err, ErrCanceled) {
		t.Errorf("outcome %v, want ErrCanceled", r.err)
	}
	if p.Cancel(r.key) {
		t.Error("Cancel of a finished run reports it running")
	}
}

// TestPoolStopLeavesRunsUnfinished: a run the stop of the workers
// interrupts is not recorded (the next start recovers it), but closed.
func TestPoolStopLeavesRunsUnfinished(t *testing.T) {
	t.Parallel()
	_, r, stop := startBlocked(t, "ca3")
	stop()
	r.wait(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	if want := []string{"prepare", "release", "close"}; !slices.Equal(r.events, want) {
		t.Errorf("events %v, want %v", r.events, want)
	}
}

// TestPoolRecoversInterruptedRuns: at start the engine cleans up after
// every run left Running and the queue abandons it.
func TestPoolRecoversInterruptedRuns(t *testing.T) {
	t.Parallel()
	stale := []Key{{"contoso", "ca4"}, {"fabrikam", "fb1"}}
	q := &fakeQueue{interrupted: stale}
	eng := &fakeRunner{}
	start(t, q, eng)
	if !slices.Equal(eng.cleaned, stale) || !slices.Equal(q.abandoned, stale) {
		t.Errorf("cleaned %v, abandoned %v, want %v both", eng.cleaned, q.abandoned, stale)
	}
}
