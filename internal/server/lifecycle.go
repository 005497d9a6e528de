package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/gantryhq/gantry/internal/store"
)

// Component is a part of the server with the one lifecycle every part
// has: Start starts it and returns once it runs (or failed to start);
// Ready returns once it serves (or ctx ended); Stop stops it gracefully,
// draining what it serves until ctx ends. Start is called once, and Stop
// only after a Start that succeeded.
type Component interface {
	Start(ctx context.Context) error
	Ready(ctx context.Context) error
	Stop(ctx context.Context) error
}

// failing is a Component that can fail while it runs (the control API's
// server): the error arrives on Failed.
type failing interface {
	Failed() <-chan error
}

// lifecycle starts components in order, each ready before the next
// starts, and stops those it started in reverse order. Errors name the
// component.
type lifecycle struct {
	log *slog.Logger

	mu      sync.Mutex
	started []part
}

type part struct {
	name string
	c    Component
}

// start starts c and waits until it is ready.
func (l *lifecycle) start(ctx context.Context, name string, c Component) error {
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	l.mu.Lock()
	l.started = append(l.started, part{name, c})
	l.mu.Unlock()
	if err := c.Ready(ctx); err != nil {
		return fmt.Errorf("%s: not ready: %w", name, err)
	}
	return nil
}

// wait returns when ctx ends (nil) or a started component fails (its error).
func (l *lifecycle) wait(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx) // ends the watchers below
	defer cancel()
	failed := make(chan error, 1)
	l.mu.Lock()
	for _, p := range l.started {
		if f, ok := p.c.(failing); ok {
			go func() {
				select {
				case err := <-f.Failed():
					select {
					case failed <- fmt.Errorf("%s: %w", p.name, err):
					default:
					}
				case <-ctx.Done():
				}
			}()
		}
	}
	l.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil
	case err := <-failed:
		return err
	}
}

// stop stops the started components in reverse order, each within
// drainTimeout, logging what did not stop cleanly. A second stop does
// nothing.
func (l *lifecycle) stop() {
	l.mu.Lock()
	started := l.started
	l.started = nil
	l.mu.Unlock()
	for i := len(started) - 1; i >= 0; i-- {
		p := started[i]
		ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		if err := p.c.Stop(ctx); err != nil {
			l.log.Error("stopping "+p.name, "err", err)
		}
		cancel()
	}
}

// background is a service that runs until the context given to its start
// ends (the importer, the task workers, the triggers): Stop ends that
// context and waits for the service, which ends promptly.
type background struct {
	start  func(ctx context.Context) error
	wait   func()
	cancel context.CancelFunc
}

func (b *background) Start(ctx context.Context) error {
	// The service outlives ctx (the server's, which ends at shutdown)
	// until Stop.
	ctx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := b.start(ctx); err != nil {
		b.cancel()
		return err
	}
	return nil
}

func (b *background) Ready(context.Context) error { return nil }

func (b *background) Stop(context.Context) error {
	b.cancel()
	b.wait()
	return nil
}

// stoppable is a part with its own Start and Stop, ready once started
// (the container instances).
type stoppable struct {
	start func(ctx context.Context) error
	stop  func(ctx context.Context) error
}

func (s stoppable) Start(ctx context.Context) error { return s.start(ctx) }
func (s stoppable) Ready(context.Context) error     { return nil }
func (s stoppable) Stop(ctx context.Context) error  { return s.stop(ctx) }

// registryListeners serves every registry of the store on its own
// listener (listeners); the control API starts and stops more later.
type registryListeners struct {
	l    *listeners
	list func(ctx context.Context) ([]store.Registry, error)
	log  *slog.Logger
	// count is how many registries there were at start.
	count int
	// shared is the shared registry listener (with a domain), bound
	// beforehand.
	shared net.Listener
}

// Start serves the registries; one registry's port being taken does not
// keep the others down (it is logged).
func (r *registryListeners) Start(ctx context.Context) error {
	all, err := r.list(ctx)
	if err != nil {
		return err
	}
	r.count = len(all)
	if r.shared != nil {
		r.l.serveShared(r.shared)
	}
	for _, reg := range all {
		if _, err := r.l.Start(ctx, reg); err != nil {
			r.log.Error("registry not started", "registry", reg.Name, "err", err)
		}
	}
	return nil
}

// Ready: each listener is bound when Start returns.
func (r *registryListeners) Ready(context.Context) error { return nil }

func (r *registryListeners) Stop(ctx context.Context) error { return r.l.StopAll(ctx) }

// controlAPI serves the control API on its listener, bound beforehand.
type controlAPI struct {
	srv     *http.Server
	ln      net.Listener
	serving chan struct{}
	errc    chan error
}

func newControlAPI(srv *http.Server, ln net.Listener) *controlAPI {
	return &controlAPI{srv: srv, ln: ln, serving: make(chan struct{}), errc: make(chan error, 1)}
}

func (c *controlAPI) Start(context.Context) error {
	go func() {
		close(c.serving)
		if err := c.srv.Serve(c.ln); !errors.Is(err, http.ErrServerClosed) {
			c.errc <- err
		}
	}()
	return nil
}

// Ready returns once the server accepts on its (already bound) listener.
func (c *controlAPI) Ready(ctx context.Context) error {
	select {
	case <-c.serving:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Failed delivers the error of a server that stopped serving on its own.
func (c *controlAPI) Failed() <-chan error { return c.errc }

func (c *controlAPI) Stop(ctx context.Context) error { return shutdown(ctx, c.srv) }

var (
	_ Component = (*background)(nil)
	_ Component = stoppable{}
	_ Component = (*registryListeners)(nil)
	_ Component = (*controlAPI)(nil)
	_ failing   = (*controlAPI)(nil)
)
