package instance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy timings.
const (
	// proxyDialTimeout bounds one connection attempt to a backend.
	proxyDialTimeout = 2 * time.Second
	// proxyDialPatience is how long a new front connection waits for the
	// backend to accept (a container being restarted by the engine).
	proxyDialPatience = 3 * time.Second
	// proxyRetryEvery spaces the attempts.
	proxyRetryEvery = 50 * time.Millisecond
)

// backend is the address a front forwards to, with the connections it
// carries, so that a replacement can drain them.
type backend struct {
	addr   string
	active atomic.Int64 // connections, including those being dialled

	mu    sync.Mutex
	conns map[net.Conn]struct{} // client sides of established connections
}

func (b *backend) add(c net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conns == nil {
		b.conns = map[net.Conn]struct{}{}
	}
	b.conns[c] = struct{}{}
}

func (b *backend) del(c net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, c)
}

// cut closes every connection b still carries.
func (b *backend) cut() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		_ = c.Close()
	}
	return len(b.conns)
}

// front is the stable address of one declared port: a TCP listener that
// forwards every connection to the current backend.
type front struct {
	log    *slog.Logger
	ln     net.Listener
	target atomic.Pointer[backend]
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// listenFront binds addr (host:port, port 0 for any) and serves it until
// close. The front refuses connections until it has a target.
func listenFront(ctx context.Context, log *slog.Logger, addr string) (*front, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &front{log: log, ln: ln, cancel: cancel, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve(sctx)
	return f, nil
}

// port returns the port the front listens on.
func (f *front) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

// setTarget makes new connections go to addr and returns the previous
// backend (nil if none).
func (f *front) setTarget(addr string) *backend {
	return f.target.Swap(&backend{addr: addr})
}

// targetAddr returns the current backend address ("" if none).
func (f *front) targetAddr() string {
	if b := f.target.Load(); b != nil {
		return b.addr
	}
	return ""
}

func (f *front) serve(ctx context.Context) {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			f.log.WarnContext(ctx, "front proxy: accept failed", logKeyAddr, f.ln.Addr().String(), logKeyErr, err)
			t := time.NewTimer(proxyRetryEvery)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go f.handle(ctx, c)
	}
}

// track registers c so that close can interrupt it; false when closed.
func (f *front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *front) untrack(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

func (f *front) handle(ctx context.Context, client net.Conn) {
	defer f.wg.Done()
	defer f.untrack(client)
	defer client.Close()
	b, server, err := f.dial(ctx)
	if err != nil {
		if ctx.Err() == nil {
			f.log.WarnContext(ctx, "front proxy: no backend answers", logKeyAddr, f.ln.Addr().String(), logKeyErr, err)
		}
		return
	}
	defer b.active.Add(-1)
	if !f.track(server) {
		server.Close()
		return
	}
	defer f.untrack(server)
	defer server.Close()
	b.add(client)
	defer b.del(client)
	pipe(client, server)
}

// dial connects to the current backend, retrying for a while when it
// refuses (a container being restarted) and following a target switch. The
// returned backend's active count includes the connection.
func (f *front) dial(ctx context.Context) (*backend, net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, proxyDialPatience)
	defer cancel()
	d := net.Dialer{Timeout: proxyDialTimeout}
	var last error = errors.New("no backend yet")
	for {
		if b := f.target.Load(); b != nil {
			b.active.Add(1)
			c, err := d.DialContext(ctx, "tcp", b.addr)
			if err == nil {
				return b, c, nil
			}
			b.active.Add(-1)
			last = err
		}
		t := time.NewTimer(proxyRetryEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, last
		case <-t.C:
		}
	}
}

// halfCloser is a connection whose write side can be closed alone.
type halfCloser interface{ CloseWrite() error }

// pipe copies both ways until both directions are done, passing a
// half-close on.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if hc, ok := dst.(halfCloser); ok {
			_ = hc.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// drain waits until b carries no connection or ctx ends, then closes the
// connections left (typically idle HTTP keep-alive connections, which
// clients re-open to the new backend). It returns how many it closed.
func drain(ctx context.Context, b *backend) int {
	if b == nil {
		return 0
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for b.active.Load() > 0 {
		select {
		case <-ctx.Done():
			return b.cut()
		case <-t.C:
		}
	}
	return 0
}

// close stops listening, cuts every open connection and waits for the
// front's goroutines.
func (f *front) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.cancel()
	_ = f.ln.Close()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// hostPort returns host:port.
func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
