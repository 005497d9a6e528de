package engine

import (
	"context"
	"errors"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/taskfile"
)

// operations is the engine side of a run as the scheduler sees it. The
// scheduler owns the order of the steps, start delays, timeouts, retries,
// repeats, ignoreErrors and fail-fast; operations do the work.
//
// prepare is called once per step, before its first attempt (explicit
// pulls, making sure the image is there, scanning a build's Dockerfile).
// attempt runs the step once: one container, one build, or the push of
// every image. Both must return promptly once ctx ends and leave no
// container running for an attempt that returned, except a detached one.
// A container that exits non-zero is reported as an *exitError.
type operations interface {
	prepare(ctx context.Context, s *plan.Step) error
	attempt(ctx context.Context, s *plan.Step) (attemptResult, error)
}

// attemptResult is what one attempt left behind.
type attemptResult struct {
	// exitCode is the container's exit code, or -1 when no container ran
	// to its end.
	exitCode int
	// output is the end of the attempt's output, for retryOnErrors.
	output string
}

// scheduler runs a plan's steps as a DAG with acb's semantics: a step starts
// once all its parents succeeded (or failed with ignoreErrors); the first
// failure cancels every running step and no further step starts; steps that
// never started are skipped.
type scheduler struct {
	ops operations
	log *runLog
	now func() time.Time
	// wait sleeps for d or until ctx ends (start delays, retry delays).
	wait func(ctx context.Context, d time.Duration) error
	// limit bounds the steps running at once (0: no bound).
	limit int
}

// outcome is a finished step, sent by its goroutine to the scheduling loop.
type outcome struct {
	index  int
	result StepResult
	err    error // *stepError when the step failed the run
}

// run executes the steps (in file order, which is topological) and returns
// their results in the same order. The error is the first step failure
// (a *stepError), or nil; when ctx ends, steps are stopped and the caller
// inspects ctx. run returns only after every step goroutine has returned.
func (sc *scheduler) run(ctx context.Context, steps []plan.Step) ([]StepResult, error) {
	results := make([]StepResult, len(steps))
	index := make(map[string]int, len(steps))
	pending := make([]int, len(steps))
	for i, s := range steps {
		results[i] = StepResult{ID: s.ID, Status: StepSkipped}
		index[s.ID] = i
		pending[i] = len(s.Parents)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var sem *semaphore.Weighted
	if sc.limit > 0 {
		sem = semaphore.NewWeighted(int64(sc.limit))
	}
	// Buffered for every step: a step goroutine never blocks on its send,
	// whatever the loop is doing.
	done := make(chan outcome, len(steps))
	var g errgroup.Group
	running := 0
	launch := func(i int) {
		running++
		results[i].Status = StepInProgress
		g.Go(func() error {
			res, err := sc.step(ctx, &steps[i], sem)
			done <- outcome{index: i, result: res, err: err}
			return nil
		})
	}
	for i, s := range steps {
		if len(s.Parents) == 0 {
			launch(i)
		}
	}
	var failure error
	for running > 0 {
		o := <-done
		running--
		results[o.index] = o.result
		if o.err != nil {
			if failure == nil && ctx.Err() == nil {
				failure = o.err
				cancel(o.err)
			}
			continue
		}
		if ctx.Err() != nil {
			continue
		}
		for _, child := range steps[o.index].Children {
			j, ok := index[child]
			if !ok {
				continue
			}
			if pending[j]--; pending[j] == 0 {
				launch(j)
			}
		}
	}
	_ = g.Wait()
	return results, failure
}

// step runs one step: delay, timeout, prepare, attempts with retries and
// repeats. err is a *stepError when the step fails the run; a step stopped
// because the run ended reports a failed status and a nil error.
func (sc *scheduler) step(ctx context.Context, s *plan.Step, sem *semaphore.Weighted) (res StepResult, err error) {
	res = StepResult{ID: s.ID, Status: StepFailed, ExitCode: -1}
	if sem != nil {
		if err := sem.Acquire(ctx, 1); err != nil {
			res.Error = stopped(ctx)
			return res, nil
		}
		defer sem.Release(1)
	}
	res.StartedAt = sc.now().UTC()
	defer func() { res.FinishedAt = sc.now().UTC() }()
	sc.log.Printf("Executing step ID: %s. Timeout(sec): %d, Working directory: '%s', Network: '%s'",
		s.ID, int(s.Timeout/time.Second), s.WorkingDir, hostNetwork)
	if s.StartDelay > 0 {
		sc.log.Printf("Waiting %d seconds before executing step ID: %s", int(s.StartDelay/time.Second), s.ID)
		if err := sc.wait(ctx, s.StartDelay); err != nil {
			res.Error = stopped(ctx)
			return res, nil
		}
	}

	sctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	exit, serr := sc.execute(sctx, s)
	res.ExitCode = exit
	switch {
	case serr == nil:
		res.Status, res.ExitCode = StepSuccessful, max(exit, 0)
		return res, nil
	case ctx.Err() != nil:
		// The run was cancelled, timed out, or another step failed.
		res.Error = stopped(ctx)
		return res, nil
	case s.IgnoreErrors:
		sc.log.Printf("Step ID: %s encountered an error: %v, but is set to ignore errors. Continuing...", s.ID, serr)
		res.Status, res.Error = StepSuccessful, serr.Error()
		return res, nil
	}
	se := &stepError{id: s.ID, cause: serr, engine: errors.Is(serr, ErrEngine)}
	res.Error = serr.Error()
	sc.log.Printf("%s", se.Error())
	return res, se
}

// stopped says why a step was stopped by its run.
func stopped(ctx context.Context) string {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, ctx.Err()) {
		return "stopped: " + cause.Error()
	}
	return "stopped: " + ctx.Err().Error()
}

// execute prepares the step and runs its attempts: repeat+1 runs, each with
// up to retries extra attempts. Errors of the runs are joined, as acb
// aggregates them.
func (sc *scheduler) execute(ctx context.Context, s *plan.Step) (int, error) {
	if err := sc.ops.prepare(ctx, s); err != nil {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, err
	}
	retried := s.Kind != taskfile.KindPush
	exit := -1
	var errs joined
	for range s.Repeat + 1 {
		for try := 0; ; try++ {
			a, err := sc.ops.attempt(ctx, s)
			exit = a.exitCode
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return exit, ctx.Err()
			}
			if !retried {
				errs = append(errs, err)
				break
			}
			if try >= s.Retries || !retryable(s, a.output) {
				sc.log.Printf("Container failed during run: %s. No retries remaining.", s.ID)
				errs = append(errs, err)
				break
			}
			sc.log.Printf("Container failed during run: %s, waiting %d seconds before retrying...", s.ID, int(s.RetryDelay/time.Second))
			if err := sc.wait(ctx, s.RetryDelay); err != nil {
				return exit, err
			}
		}
	}
	switch len(errs) {
	case 0:
		return exit, nil
	case 1:
		return exit, errs[0]
	}
	return exit, errs
}

// joined are the errors of several repeats of a step, in one line.
type joined []error

func (j joined) Error() string {
	msgs := make([]string, len(j))
	for i, e := range j {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

func (j joined) Unwrap() []error { return j }

// retryable applies retryOnErrors: without it every failure is retried,
// with it only failures whose output contains one of the strings.
func retryable(s *plan.Step, output string) bool {
	if len(s.RetryOnErrors) == 0 {
		return true
	}
	for _, e := range s.RetryOnErrors {
		if strings.Contains(output, e) {
			return true
		}
	}
	return false
}
