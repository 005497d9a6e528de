package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/store"
)

// listeners runs one HTTP server per registry, each on the registry's own
// address: a registry is its own login server.
type listeners struct {
	log     *slog.Logger
	handler func(r store.Registry) http.Handler

	mu      sync.Mutex
	servers map[string]*http.Server
	wg      sync.WaitGroup
}

func newListeners(log *slog.Logger, handler func(store.Registry) http.Handler) *listeners {
	return &listeners{log: log, handler: handler, servers: map[string]*http.Server{}}
}

// Start binds r's listen address (a free loopback port when empty) and
// serves the registry on it. The address is bound before Start returns, so
// a taken port is reported to the caller.
func (l *listeners) Start(ctx context.Context, r store.Registry) (store.Registry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.servers[r.Name]; ok {
		return r, fmt.Errorf("registry %q is already being served", r.Name)
	}
	addr := r.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return r, fmt.Errorf("registry %q: listening on %s: %w", r.Name, addr, errors.Join(errListen, err))
	}
	r.Listen = ln.Addr().String()
	srv := &http.Server{
		Handler:           l.handler(r),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
	}
	l.servers[r.Name] = srv
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("registry listener stopped", "registry", r.Name, "err", err)
		}
	}()
	l.log.Info("registry serving", "registry", r.Name, "listen", r.Listen)
	return r, nil
}

// errListen marks a listen failure; the control API reports it as a
// conflict (the address is taken) rather than an internal error.
var errListen = fmt.Errorf("address unavailable: %w", db.ErrConflict)

// Stop gracefully stops one registry's listener.
func (l *listeners) Stop(ctx context.Context, name string) error {
	l.mu.Lock()
	srv, ok := l.servers[name]
	delete(l.servers, name)
	l.mu.Unlock()
	if !ok {
		return nil
	}
	return shutdown(ctx, srv)
}

// Running reports whether the named registry is being served.
func (l *listeners) Running(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.servers[name]
	return ok
}

// StopAll stops every listener and waits for their goroutines.
func (l *listeners) StopAll(ctx context.Context) error {
	l.mu.Lock()
	servers := l.servers
	l.servers = map[string]*http.Server{}
	l.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		errs = append(errs, shutdown(ctx, srv))
	}
	l.wg.Wait()
	return errors.Join(errs...)
}

// shutdown drains srv, closing it hard when ctx ends first.
func shutdown(ctx context.Context, srv *http.Server) error {
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
		return err
	}
	return nil
}
