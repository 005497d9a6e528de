// Package worker schedules task runs: a pool of workers claims queued runs
// from the run queue, has each prepared, hands its job to the engine
// (a Runner) and has the outcome recorded; it cancels a running run on
// request and, at start, has the engine clean up after runs a previous
// process left running.
//
// The queue and the engine are interfaces declared here, small and by
// role: the task service is the Queue, *engine.Engine the Runner and
// Cleaner, and tests use fakes.
package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/engine"
)

// Runner executes a job on the container engine. Execute returns what the
// run did, also when it fails; errors wrap engine.ErrEngine when the
// engine could not be used, or ctx's error.
type Runner interface {
	Execute(ctx context.Context, job engine.Job) (engine.Result, error)
}

// Cleaner removes what an interrupted run left on the engine.
type Cleaner interface {
	Cleanup(ctx context.Context, registry, runID string) error
}

// Engine is what the workers need of the container engine.
type Engine interface {
	Runner
	Cleaner
}

// Key names a run: its registry and its run ID.
type Key struct {
	Registry string
	ID       string
}

// Queue is the run queue the workers serve.
type Queue interface {
	// Interrupted returns the runs a previous process left Running.
	Interrupted(ctx context.Context) ([]Key, error)
	// Abandon records that an interrupted run failed, once the engine
	// cleaned up after it.
	Abandon(ctx context.Context, k Key) error
	// Claim moves the next queued run that may start to Running and
	// returns it; nil when none may.
	Claim(ctx context.Context) (Run, error)
}

// Run is a claimed run, from its preparation to its record.
type Run interface {
	Key() Key
	// Timeout bounds the run, its preparation included.
	Timeout() time.Duration
	// Prepare fills the run's workspace and returns its job; release
	// frees the workspace once the engine is done. On error nothing is
	// left to release.
	Prepare(ctx context.Context) (job engine.Job, release func(), err error)
	// Finish records the outcome: err is nil, ErrCanceled, or the error of
	// Prepare or of the Runner.
	Finish(ctx context.Context, res engine.Result, err error)
	// Close releases what the run holds (its log) after Finish, or when
	// the workers stop with the run unfinished.
	Close()
}

// ErrCanceled is the outcome of a run Cancel stopped.
var ErrCanceled = errors.New("run canceled")

// Pool is a fixed number of workers.
type Pool struct {
	q   Queue
	eng Engine
	log *slog.Logger
	n   int

	wake chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	running map[Key]context.CancelCauseFunc
}

// Option configures a Pool.
type Option func(*Pool)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(p *Pool) { p.log = l } }

// WithConcurrency sets how many runs execute at once (default 4).
func WithConcurrency(n int) Option {
	return func(p *Pool) {
		if n > 0 {
			p.n = n
		}
	}
}

// New returns a pool of workers taking runs from q and running them on eng.
func New(q Queue, eng Engine, opts ...Option) *Pool {
	p := &Pool{
		q:       q,
		eng:     eng,
		log:     slog.New(slog.DiscardHandler),
		n:       4,
		wake:    make(chan struct{}, 1),
		running: map[Key]context.CancelCauseFunc{},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Start recovers runs interrupted by a previous process and starts the
// workers. They stop when ctx ends; Wait waits for them.
func (p *Pool) Start(ctx context.Context) error {
	if err := p.recoverInterrupted(ctx); err != nil {
		return err
	}
	for range p.n {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.work(ctx)
		}()
	}
	return nil
}

// Wait waits for the workers to stop after Start's context ended.
func (p *Pool) Wait() { p.wg.Wait() }

// Wake has an idle worker look for a queued run now. A nil Pool ignores it.
func (p *Pool) Wake() {
	if p == nil {
		return
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Cancel stops a running run (its outcome is ErrCanceled) and reports
// whether the run was running here.
func (p *Pool) Cancel(k Key) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	cancel, ok := p.running[k]
	p.mu.Unlock()
	if ok {
		cancel(ErrCanceled)
	}
	return ok
}

// recoverInterrupted has the engine remove what runs left Running left
// behind, and the queue mark them failed, so nothing stays Running forever.
func (p *Pool) recoverInterrupted(ctx context.Context) error {
	stale, err := p.q.Interrupted(ctx)
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := p.eng.Cleanup(ctx, k.Registry, k.ID); err != nil {
			p.log.WarnContext(ctx, "cleaning up an interrupted run", "registry", k.Registry, "run", k.ID, "err", err)
		}
		if err := p.q.Abandon(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// work claims and executes queued runs until ctx ends.
func (p *Pool) work(ctx context.Context) {
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	for {
		r, err := p.q.Claim(ctx)
		if err != nil && ctx.Err() == nil {
			p.log.ErrorContext(ctx, "claiming a run", "err", err)
		}
		if r != nil {
			// Another worker may be waiting too: let it look for more.
			p.Wake()
			p.execute(ctx, r)
			// A run of the same task may have waited for this one.
			p.Wake()
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-poll.C:
		}
	}
}

// execute runs one claimed run to its end and has the outcome recorded.
// Only a stop of the workers (ctx) leaves it unfinished, for the next
// start to recover.
func (p *Pool) execute(ctx context.Context, r Run) {
	k := r.Key()
	runCtx, cancel := context.WithCancelCause(ctx)
	p.mu.Lock()
	p.running[k] = cancel
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.running, k)
		p.mu.Unlock()
		cancel(nil)
	}()
	defer r.Close()

	res, err := p.run(runCtx, r)
	switch {
	case err == nil:
	case errors.Is(context.Cause(runCtx), ErrCanceled):
		err = ErrCanceled
	case ctx.Err() != nil:
		return
	}
	r.Finish(ctx, res, err)
}

// run prepares the run and hands its job to the engine, within the run's
// timeout.
func (p *Pool) run(ctx context.Context, r Run) (engine.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout())
	defer cancel()
	job, release, err := r.Prepare(ctx)
	if err != nil {
		return engine.Result{}, err
	}
	defer release()
	return p.eng.Execute(ctx, job)
}
