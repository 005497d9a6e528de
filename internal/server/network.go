package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
)

// network is how clients reach the server, from the configuration alone:
// the scheme, the TLS configuration of every listener, the registries'
// names and the public control URL. Nothing here comes from a request.
type network struct {
	// scheme is the public scheme: the external URL's, else https with
	// TLS, else http.
	scheme string
	// tls is the configuration of every listener; nil serves plain HTTP.
	tls *tls.Config
	// domain serves registries as <name>.<domain> on the shared listener.
	domain string
	// addressing names the registries (store.WithAddressing).
	addressing store.Addressing
	// external is the --external-url, "" without one.
	external *url.URL
	// proxies are the trusted proxies (--trusted-proxy).
	proxies proxies
	// bodyTimeout cuts a request body that sends nothing for this long
	// (--body-timeout); 0 never does.
	bodyTimeout time.Duration
}

// newNetwork derives the network from the configuration; regAddr is the
// shared registry listener's bound address ("" without a domain).
func newNetwork(cfg config.Network, tlsConf *tls.Config, regAddr string) (*network, error) {
	n := &network{scheme: "http", tls: tlsConf, domain: strings.ToLower(cfg.Domain), proxies: newProxies(cfg.TrustedProxies),
		bodyTimeout: cfg.BodyTimeout}
	if tlsConf != nil {
		n.scheme = "https"
	}
	port := ""
	if regAddr != "" {
		_, port, _ = net.SplitHostPort(regAddr)
	}
	if cfg.ExternalURL != "" {
		u, err := url.Parse(cfg.ExternalURL)
		if err != nil {
			return nil, fmt.Errorf("network.externalURL (--external-url): %w", err)
		}
		n.external, n.scheme = u, u.Scheme
		n.addressing.Host = u.Hostname()
		port = u.Port()
	}
	if port == defaultPort(n.scheme) {
		port = ""
	}
	n.addressing.Domain = n.domain
	if n.domain != "" {
		n.addressing.Port = port
	}
	return n, nil
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// controlURL is the public URL of the control API bound at addr: the
// external URL, else the scheme and addr with an unspecified host replaced
// by the advertised one (127.0.0.1 by default).
func (n *network) controlURL(addr string) string {
	if n.external != nil {
		return n.external.Scheme + "://" + n.external.Host
	}
	return n.scheme + "://" + n.addressing.ListenName(store.Registry{Listen: addr})
}

// listen binds addr, serving TLS on it when the network has TLS.
func (n *network) listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return n.wrap(ln), nil
}

// wrap serves TLS on ln when the network has TLS (nil stays nil).
func (n *network) wrap(ln net.Listener) net.Listener {
	if ln == nil || n.tls == nil {
		return ln
	}
	return tls.NewListener(ln, n.tls)
}

// addrOf is ln's address, "" for none.
func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// hostOf is the host of a host:port address.
func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// endpoint is how clients reach r through a listener: by its hostname on
// the shared listener (byHost), else by its own port. The scheme of a
// registry's own port is the server's: a proxy in front (--external-url)
// fronts the hostnames, not the ports.
func (n *network) endpoint(st *store.Store, r store.Registry, byHost bool) auth.Endpoint {
	ep := auth.Endpoint{Services: st.LoginServers(r)}
	if byHost {
		ep.Service = n.addressing.HostName(r)
		ep.URL = n.scheme + "://" + ep.Service
		return ep
	}
	ep.Service = n.addressing.ListenName(r)
	scheme := "http"
	if n.tls != nil {
		scheme = "https"
	}
	ep.URL = scheme + "://" + ep.Service
	return ep
}

// maxHeaderBytes bounds a request's line and headers. Registry clients
// send a bearer token of a few KiB at most; Go's default is 1 MiB.
const maxHeaderBytes = 128 << 10

// newHTTPServer is the http.Server of every listener. A request's headers
// must arrive within 30 s; its body is not bounded in time as a whole (an
// upload may be large and slow), only in progress (bodyTimeout).
func (n *network) newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           bodyProgress(h, n.bodyTimeout),
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// bodyProgress cuts request bodies that send nothing for timeout while
// the handler waits for them: before each read the connection's read
// deadline moves timeout ahead, so a slow but steady body goes on, and a
// stalled one fails the read with an error matching os.ErrDeadlineExceeded
// (which the handler answers). The deadline is also set when the request
// comes in, so that the server's own reads of a body its handler left
// unread (Go's server reads up to 256 KiB of it to keep the connection)
// give up too. It is lifted at the end of the body: the server's
// background read of the connection, which tells a client gone away, must
// not time out. A timeout of 0 returns h.
func bodyProgress(h http.Handler, timeout time.Duration) http.Handler {
	if timeout <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		now := time.Now()
		if err := rc.SetReadDeadline(now.Add(timeout)); err != nil {
			// A ResponseWriter without deadlines: nothing to extend.
			h.ServeHTTP(w, r)
			return
		}
		// On a shallow copy: the server goes on seeing its own body.
		r2 := r.WithContext(r.Context())
		r2.Body = &progressBody{ReadCloser: r.Body, rc: rc, timeout: timeout, set: now}
		h.ServeHTTP(w, r2)
	})
}

// progressBody is a request body whose reads move the read deadline.
type progressBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	// set is when the deadline was last moved: at most every timeout/8, so
	// that a fast upload does not reset a timer per read. A stall is then
	// cut after 7/8 of timeout at the least.
	set  time.Time
	done bool
}

func (b *progressBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	if now := time.Now(); now.Sub(b.set) >= b.timeout/8 {
		b.set = now
		_ = b.rc.SetReadDeadline(now.Add(b.timeout))
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// hostRouter serves every registry on the shared listener, routed by the
// request's host name (its port ignored): <name>.<domain>.
type hostRouter struct {
	domain string

	mu       sync.RWMutex
	handlers map[string]http.Handler
}

func newHostRouter(domain string) *hostRouter {
	return &hostRouter{domain: domain, handlers: map[string]http.Handler{}}
}

func (h *hostRouter) add(name string, handler http.Handler) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.handlers[name] = handler
}

func (h *hostRouter) remove(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.handlers[name]
	delete(h.handlers, name)
	return ok
}

func (h *hostRouter) serves(name string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	_, ok := h.handlers[name]
	return ok
}

func (h *hostRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := hostOnly(r.Host)
	// A client that asked the TLS layer for one name and HTTP for another
	// is refused: the certificate it checked was not this registry's.
	if r.TLS != nil && r.TLS.ServerName != "" && !strings.EqualFold(r.TLS.ServerName, host) {
		http.Error(w, fmt.Sprintf("misdirected request: TLS server name %q, host %q", r.TLS.ServerName, host), http.StatusMisdirectedRequest)
		return
	}
	name, ok := strings.CutSuffix(host, "."+h.domain)
	h.mu.RLock()
	handler := h.handlers[name]
	h.mu.RUnlock()
	if !ok || handler == nil {
		http.Error(w, fmt.Sprintf("no registry is served as %q here (registries are <name>.%s)", host, h.domain), http.StatusNotFound)
		return
	}
	handler.ServeHTTP(w, r)
}

// hostOnly is the lower-case host name of a Host header, without its port.
func hostOnly(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// registryMux serves the OCI API under /v2/ and the token endpoint, on a
// registry's listener. Unlike http.ServeMux it never redirects a path with
// "." or ".." segments to its clean form: the registry refuses such a path
// after authenticating the caller.
func registryMux(v2, token http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == auth.TokenPath:
			token.ServeHTTP(w, r)
		case p == "/v2" || strings.HasPrefix(p, "/v2/"):
			v2.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// proxies are the addresses whose X-Forwarded-For is believed
// (--trusted-proxy).
type proxies []netip.Prefix

func newProxies(list []string) proxies {
	var p proxies
	for _, s := range list {
		if pf, err := netip.ParsePrefix(s); err == nil {
			p = append(p, pf.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			p = append(p, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return p
}

func (p proxies) trusted(a netip.Addr) bool {
	for _, pf := range p {
		if pf.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// wrap serves h with the client's own address in r.RemoteAddr when the
// connection comes from a trusted proxy: the right-most X-Forwarded-For
// entry that is not itself a trusted proxy. From any other peer the header
// is ignored, so a client cannot choose the address its failed logins are
// counted under. Without proxies h is returned as it is.
func (p proxies) wrap(h http.Handler) http.Handler {
	if len(p) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if client, ok := p.client(r); ok {
			r2 := *r
			r2.RemoteAddr = net.JoinHostPort(client.String(), "0")
			r = &r2
		}
		h.ServeHTTP(w, r)
	})
}

func (p proxies) client(r *http.Request) (netip.Addr, bool) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !p.trusted(peer.Addr()) {
		return netip.Addr{}, false
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}, false // a malformed chain: keep the proxy's address
		}
		if !p.trusted(a) {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}
