package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/taskfile"
)

// fakeOps is a function-field fake of the engine operations. attempt gets
// the 1-based attempt number of the step.
type fakeOps struct {
	prepareFn func(ctx context.Context, s *plan.Step) error
	attemptFn func(ctx context.Context, s *plan.Step, n int) (attemptResult, error)

	mu       sync.Mutex
	attempts map[string]int
	events   []string
}

func (f *fakeOps) record(ev string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
}

func (f *fakeOps) prepare(ctx context.Context, s *plan.Step) error {
	if f.prepareFn != nil {
		return f.prepareFn(ctx, s)
	}
	return nil
}

func (f *fakeOps) attempt(ctx context.Context, s *plan.Step) (attemptResult, error) {
	f.mu.Lock()
	if f.attempts == nil {
		f.attempts = map[string]int{}
	}
	f.attempts[s.ID]++
	n := f.attempts[s.ID]
	f.mu.Unlock()
	f.record("start " + s.ID)
	defer f.record("end " + s.ID)
	if f.attemptFn != nil {
		return f.attemptFn(ctx, s, n)
	}
	return attemptResult{exitCode: 0}, nil
}

func (f *fakeOps) index(ev string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Index(f.events, ev)
}

// testPlan renders and plans a task file.
func testPlan(t *testing.T, src string) *plan.Plan {
	t.Helper()
	r, err := taskfile.Render(context.Background(), []byte(src), taskfile.Options{Run: taskfile.Run{ID: "ca1", Registry: "127.0.0.1:5000"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.New(r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waits records the delays the scheduler asked for and returns at once.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) wait(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func runPlan(t *testing.T, ctx context.Context, p *plan.Plan, ops *fakeOps, limit int) ([]StepResult, string, *waits, error) {
	t.Helper()
	var buf bytes.Buffer
	w := &waits{}
	sc := &scheduler{ops: ops, log: newRunLog(&buf, time.Now), now: time.Now, wait: w.wait, limit: limit}
	done := make(chan struct{})
	var res []StepResult
	var err error
	go func() {
		defer close(done)
		res, err = sc.run(ctx, p.Steps)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the scheduler did not return")
	}
	return res, buf.String(), w, err
}

func statusOf(res []StepResult) string {
	var parts []string
	for _, r := range res {
		parts = append(parts, r.ID+"="+r.Status)
	}
	return strings.Join(parts, " ")
}

func fail(code int) (attemptResult, error) {
	return attemptResult{exitCode: code}, &exitError{code: code}
}

func TestScheduleSequentialByDefault(t *testing.T) {
	t.Parallel()
	p := testPlan(t, "steps:\n  - {id: a, cmd: x}\n  - {id: b, cmd: x}\n  - {id: c, cmd: x}\n")
	ops := &fakeOps{}
	res, _, _, err := runPlan(t, context.Background(), p, ops, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"start a", "end a", "start b", "end b", "start c", "end c"}
	if !slices.Equal(ops.events, want) {
		t.Errorf("events %v, want %v", ops.events, want)
	}
	if got := statusOf(res); got != "a=successful b=successful c=successful" {
		t.Errorf("statuses %s", got)
	}
}

// barrier blocks each of n callers until all n arrived (or ctx ends).
type barrier struct {
	mu      sync.Mutex
	n       int
	arrived chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, arrived: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) error {
	b.mu.Lock()
	b.n--
	if b.n == 0 {
		close(b.arrived)
	}
	b.mu.Unlock()
	select {
	case <-b.arrived:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestScheduleParallelAndAllParents(t *testing.T) {
	t.Parallel()
	p := testPlan(t, `steps:
  - {id: a, cmd: x, when: ['-']}
  - {id: b, cmd: x, when: ['-']}
  - {id: c, cmd: x, when: ['-']}
  - {id: d, cmd: x, when: [a, b]}
  - {id: e, cmd: x}
`)
	// a, b and c only finish once all three run at the same time.
	bar := newBarrier(3)
	ops := &fakeOps{attemptFn: func(ctx context.Context, s *plan.Step, _ int) (attemptResult, error) {
		if s.ID == "a" || s.ID == "b" || s.ID == "c" {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := bar.wait(wctx); err != nil {
				return attemptResult{exitCode: -1}, fmt.Errorf("%s never ran in parallel with the others: %w", s.ID, err)
			}
		}
		return attemptResult{}, nil
	}}
	res, _, _, err := runPlan(t, context.Background(), p, ops, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, parent := range []string{"end a", "end b"} {
		if ops.index(parent) > ops.index("start d") {
			t.Errorf("d started before %s: %v", parent, ops.events)
		}
	}
	if ops.index("start e") < ops.index("end d") {
		t.Errorf("e (no when) did not wait for d, the step before it: %v", ops.events)
	}
	if got := statusOf(res); got != "a=successful b=successful c=successful d=successful e=successful" {
		t.Errorf("statuses %s", got)
	}
}

func TestScheduleFailFast(t *testing.T) {
	t.Parallel()
	p := testPlan(t, `steps:
  - {id: slow, cmd: x, when: ['-']}
  - {id: after-slow, cmd: x}
  - {id: boom, cmd: x, when: ['-']}
  - {id: after-boom, cmd: x}
`)
	stopped := make(chan error, 1)
	ops := &fakeOps{attemptFn: func(ctx context.Context, s *plan.Step, _ int) (attemptResult, error) {
		switch s.ID {
		case "slow":
			select {
			case <-ctx.Done():
				stopped <- ctx.Err()
				return attemptResult{exitCode: -1}, ctx.Err()
			case <-time.After(5 * time.Second):
				return attemptResult{}, nil
			}
		case "boom":
			return fail(2)
		}
		return attemptResult{}, nil
	}}
	res, log, _, err := runPlan(t, context.Background(), p, ops, 0)
	var se *stepError
	if !errors.As(err, &se) || !errors.Is(err, ErrStepFailed) || err.Error() != "failed to run step ID: boom: exit status 2" {
		t.Fatalf("err = %v", err)
	}
	if errors.Is(err, ErrEngine) {
		t.Error("an exit status is not an engine error")
	}
	select {
	case e := <-stopped:
		if !errors.Is(e, context.Canceled) {
			t.Errorf("slow was stopped with %v", e)
		}
	default:
		t.Error("the running step was not stopped")
	}
	if got := statusOf(res); got != "slow=failed after-slow=skipped boom=failed after-boom=skipped" {
		t.Errorf("statuses %s", got)
	}
	if res[0].Error != "stopped: failed to run step ID: boom: exit status 2" || res[2].Error != "exit status 2" || res[2].ExitCode != 2 {
		t.Errorf("results %+v", res)
	}
	for _, line := range []string{"Container failed during run: boom. No retries remaining.", "failed to run step ID: boom: exit status 2"} {
		if !strings.Contains(log, line) {
			t.Errorf("log lacks %q:\n%s", line, log)
		}
	}
	if strings.Contains(log, "failed to run step ID: slow") {
		t.Errorf("the stopped step is reported as the failure:\n%s", log)
	}
}

func TestScheduleIgnoreErrors(t *testing.T) {
	t.Parallel()
	p := testPlan(t, "steps:\n  - {id: a, cmd: x, ignoreErrors: true}\n  - {id: b, cmd: x}\n")
	ops := &fakeOps{attemptFn: func(_ context.Context, s *plan.Step, _ int) (attemptResult, error) {
		if s.ID == "a" {
			return fail(1)
		}
		return attemptResult{}, nil
	}}
	res, log, _, err := runPlan(t, context.Background(), p, ops, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := statusOf(res); got != "a=successful b=successful" {
		t.Errorf("statuses %s", got)
	}
	if !strings.Contains(log, "Step ID: a encountered an error: exit status 1, but is set to ignore errors. Continuing...") {
		t.Errorf("log:\n%s", log)
	}
}

func TestScheduleRetriesAndRepeat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		step      string
		failUntil int    // attempts up to this number fail
		output    string // the failing attempts' output
		attempts  int
		wantErr   string
		waits     []time.Duration
		logLines  []string
	}{
		{
			name: "retried until success", step: "{id: a, cmd: x, retries: 2, retryDelay: 3}", failUntil: 2,
			attempts: 3, waits: []time.Duration{3 * time.Second, 3 * time.Second},
			logLines: []string{"Container failed during run: a, waiting 3 seconds before retrying..."},
		},
		{
			name: "retries exhausted", step: "{id: a, cmd: x, retries: 1}", failUntil: 9,
			attempts: 2, wantErr: "failed to run step ID: a: exit status 1", waits: []time.Duration{5 * time.Second},
			logLines: []string{"Container failed during run: a, waiting 5 seconds before retrying...", "Container failed during run: a. No retries remaining."},
		},
		{
			name: "retryOnErrors matches", step: "{id: a, cmd: x, retries: 3, retryDelay: 1, retryOnErrors: [flaky]}", failUntil: 1, output: "a flaky network",
			attempts: 2, waits: []time.Duration{time.Second},
		},
		{
			name: "retryOnErrors does not match", step: "{id: a, cmd: x, retries: 3, retryOnErrors: [flaky]}", failUntil: 1, output: "a real bug",
			attempts: 1, wantErr: "failed to run step ID: a: exit status 1",
		},
		{name: "repeat", step: "{id: a, cmd: x, repeat: 2}", attempts: 3},
		{
			name: "repeat aggregates errors", step: "{id: a, cmd: x, repeat: 1}", failUntil: 9,
			attempts: 2, wantErr: "failed to run step ID: a: exit status 1; exit status 1",
		},
		{name: "start delay", step: "{id: a, cmd: x, startDelay: 7}", attempts: 1, waits: []time.Duration{7 * time.Second},
			logLines: []string{"Waiting 7 seconds before executing step ID: a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := testPlan(t, "steps:\n  - "+tc.step+"\n")
			ops := &fakeOps{attemptFn: func(_ context.Context, _ *plan.Step, n int) (attemptResult, error) {
				if n <= tc.failUntil {
					return attemptResult{exitCode: 1, output: tc.output}, &exitError{code: 1}
				}
				return attemptResult{}, nil
			}}
			_, log, w, err := runPlan(t, context.Background(), p, ops, 0)
			if got := fmt.Sprint(err); (tc.wantErr == "" && err != nil) || (tc.wantErr != "" && got != tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			if ops.attempts["a"] != tc.attempts {
				t.Errorf("%d attempts, want %d", ops.attempts["a"], tc.attempts)
			}
			if !slices.Equal(w.d, tc.waits) {
				t.Errorf("waits %v, want %v", w.d, tc.waits)
			}
			for _, l := range tc.logLines {
				if !strings.Contains(log, l) {
					t.Errorf("log lacks %q:\n%s", l, log)
				}
			}
		})
	}
}

func TestScheduleStepTimeout(t *testing.T) {
	t.Parallel()
	p := testPlan(t, "steps:\n  - {id: a, cmd: x, timeout: 1, retries: 3}\n  - {id: b, cmd: x}\n")
	ops := &fakeOps{attemptFn: func(ctx context.Context, _ *plan.Step, _ int) (attemptResult, error) {
		<-ctx.Done()
		return attemptResult{exitCode: -1}, ctx.Err()
	}}
	start := time.Now()
	res, _, _, err := runPlan(t, context.Background(), p, ops, 0)
	if err == nil || err.Error() != "failed to run step ID: a: context deadline exceeded" {
		t.Fatalf("err = %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("a step timeout must not look like a run timeout")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the 1s timeout took %s (retries must share it)", d)
	}
	if ops.attempts["a"] != 1 {
		t.Errorf("%d attempts after the timeout", ops.attempts["a"])
	}
	if got := statusOf(res); got != "a=failed b=skipped" {
		t.Errorf("statuses %s", got)
	}
}

func TestScheduleRunCanceled(t *testing.T) {
	t.Parallel()
	p := testPlan(t, "steps:\n  - {id: a, cmd: x}\n  - {id: b, cmd: x}\n")
	ctx, cancel := context.WithCancel(context.Background())
	ops := &fakeOps{attemptFn: func(actx context.Context, _ *plan.Step, _ int) (attemptResult, error) {
		cancel()
		<-actx.Done()
		return attemptResult{exitCode: -1}, actx.Err()
	}}
	res, log, _, err := runPlan(t, ctx, p, ops, 0)
	if err != nil {
		t.Fatalf("a cancelled run reports no step failure, got %v", err)
	}
	if got := statusOf(res); got != "a=failed b=skipped" || res[0].Error != "stopped: context canceled" {
		t.Errorf("statuses %s, %+v", got, res)
	}
	if strings.Contains(log, "failed to run step") {
		t.Errorf("log:\n%s", log)
	}
}

func TestScheduleConcurrencyLimit(t *testing.T) {
	t.Parallel()
	p := testPlan(t, "steps:\n  - {id: a, cmd: x, when: ['-']}\n  - {id: b, cmd: x, when: ['-']}\n  - {id: c, cmd: x, when: ['-']}\n")
	var mu sync.Mutex
	running, peak := 0, 0
	ops := &fakeOps{attemptFn: func(ctx context.Context, _ *plan.Step, _ int) (attemptResult, error) {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		t := time.NewTimer(20 * time.Millisecond)
		defer t.Stop()
		<-t.C
		mu.Lock()
		running--
		mu.Unlock()
		return attemptResult{}, nil
	}}
	if _, _, _, err := runPlan(t, context.Background(), p, ops, 1); err != nil {
		t.Fatal(err)
	}
	if peak != 1 {
		t.Errorf("%d steps ran at once with a limit of 1", peak)
	}
}

func TestSchedulePrepareFailure(t *testing.T) {
	t.Parallel()
	p := testPlan(t, "steps:\n  - {id: a, cmd: x}\n")
	ops := &fakeOps{prepareFn: func(context.Context, *plan.Step) error {
		return fmt.Errorf("pulling image x: %w", ErrEngine)
	}}
	res, _, _, err := runPlan(t, context.Background(), p, ops, 0)
	if !errors.Is(err, ErrStepFailed) || !errors.Is(err, ErrEngine) {
		t.Errorf("err = %v, want a step failure caused by the engine", err)
	}
	if ops.attempts["a"] != 0 || res[0].Status != StepFailed {
		t.Errorf("attempts %d, result %+v", ops.attempts["a"], res[0])
	}
}
