package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/store"
)

// listeners serves the registries: each on its own address when it has one
// (or when there is no domain: a registry is then its own login server),
// and, with a domain, every registry by hostname on the shared listener.
type listeners struct {
	log     *slog.Logger
	net     *network
	st      *store.Store
	handler func(r store.Registry, ep auth.Endpoint) http.Handler
	// manage has certificates issued for a registry's names.
	manage func(ctx context.Context, names ...string)
	// router serves the hostnames on the shared listener; nil without a
	// domain.
	router *hostRouter

	mu      sync.Mutex
	servers map[string]*http.Server
	shared  *http.Server
	wg      sync.WaitGroup
}

func newListeners(log *slog.Logger, nw *network, st *store.Store, manage func(context.Context, ...string),
	handler func(store.Registry, auth.Endpoint) http.Handler) *listeners {
	l := &listeners{log: log, net: nw, st: st, manage: manage, handler: handler, servers: map[string]*http.Server{}}
	if nw.domain != "" {
		l.router = newHostRouter(nw.domain)
	}
	return l
}

// serveShared serves the hostnames on ln, the shared registry listener.
func (l *listeners) serveShared(ln net.Listener) {
	srv := l.net.newHTTPServer(l.router, l.log)
	l.mu.Lock()
	l.shared = srv
	l.mu.Unlock()
	l.serve(srv, ln, "shared")
	l.log.Info("registries serving by hostname", "listen", ln.Addr().String(), "names", "<name>."+l.net.domain)
}

func (l *listeners) serve(srv *http.Server, ln net.Listener, name string) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("registry listener stopped", "registry", name, "err", err)
		}
	}()
}

// Start serves r: by hostname with a domain, and on its listen address when
// it has one or there is no domain (a free loopback port when empty). The
// address is bound before Start returns, so a taken port is reported to
// the caller.
func (l *listeners) Start(ctx context.Context, r store.Registry) (store.Registry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.servers[r.Name]; ok || l.router != nil && l.router.serves(r.Name) {
		return r, fmt.Errorf("registry %q is already being served", r.Name)
	}
	if r.Listen != "" || l.router == nil {
		addr := r.Listen
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		ln, err := l.net.listen(ctx, addr)
		if err != nil {
			return r, fmt.Errorf("registry %q: listening on %s: %w", r.Name, addr, errors.Join(errListen, err))
		}
		r.Listen = ln.Addr().String()
		srv := l.net.newHTTPServer(l.handler(r, l.net.endpoint(l.st, r, false)), l.log)
		l.servers[r.Name] = srv
		l.serve(srv, ln, r.Name)
		l.log.Info("registry serving", "registry", r.Name, "listen", r.Listen, "loginServer", l.net.addressing.ListenName(r))
	}
	l.manage(ctx, l.st.LoginServers(r)...)
	if l.router != nil {
		l.router.add(r.Name, l.handler(r, l.net.endpoint(l.st, r, true)))
		l.log.Info("registry serving", "registry", r.Name, "loginServer", l.net.addressing.HostName(r))
	}
	return r, nil
}

// errListen marks a listen failure; the control API reports it as a
// conflict (the address is taken) rather than an internal error.
var errListen = fmt.Errorf("address unavailable: %w", db.ErrConflict)

// Stop stops serving one registry: its hostname at once, its own listener
// gracefully.
func (l *listeners) Stop(ctx context.Context, name string) error {
	l.mu.Lock()
	srv, ok := l.servers[name]
	delete(l.servers, name)
	if l.router != nil {
		l.router.remove(name)
	}
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
	return ok || l.router != nil && l.router.serves(name)
}

// StopAll stops every listener and waits for their goroutines.
func (l *listeners) StopAll(ctx context.Context) error {
	l.mu.Lock()
	servers := l.servers
	l.servers = map[string]*http.Server{}
	if l.shared != nil {
		servers["\x00shared"] = l.shared
		l.shared = nil
	}
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
