// Package egress is the server's policy for upstream fetches: the HTTP
// requests that import, cache rules and base-image polling make to other
// registries. A fetch is refused when it would reach
//
//   - the gantry control API's own address (whoever asks);
//   - a link-local or cloud metadata address (169.254.0.0/16, fe80::/10,
//     fd00:ec2::254, 100.100.100.200 and names such as
//     metadata.google.internal), whoever asks;
//   - a host of the admin's deny list (gantry server --upstream-deny), or
//     one missing from the allow list when there is one (--upstream-allow);
//   - this machine (loopback, the unspecified address, the machine's own
//     interface addresses, localhost) unless the fetch has [Local] reach:
//     it was asked for by the admin or a registry owner, never by a
//     repository-scoped token alone.
//
// The check runs on the address actually dialed (a net.Dialer control
// hook), so a name that resolves to a forbidden address, also after DNS
// rebinding, is caught; names and literal addresses are also checked
// before every request and redirect, for a clear error. The clients of
// [Policy.Client] drop Authorization (and cookies) on a redirect that
// changes the scheme, host or port: net/http drops them on a host change
// only, keeping them for another port of the same host.
//
// Requests sent through a proxy from the environment (HTTPS_PROXY and the
// like) are checked by name only: the proxy resolves the name.
package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrRefused is matched (errors.Is) by every refusal of the policy.
var ErrRefused = errors.New("upstream refused by the egress policy")

// Reach says how far a fetch may go.
type Reach int

const (
	// External fetches reach what the lists allow, except this machine.
	External Reach = iota
	// Local fetches may also reach this machine (loopback): the admin or a
	// registry owner asked for them.
	Local
)

func (r Reach) String() string {
	if r == Local {
		return "local"
	}
	return "external"
}

// Reasons of refusals, as RefusedError.Reason says them.
const (
	ReasonControlAPI = "is the gantry control API"
	ReasonMetadata   = "is link-local/metadata"
	ReasonDenied     = "is in --upstream-deny"
	ReasonNotAllowed = "is not in --upstream-allow"
	ReasonLoopback   = "is on this machine (loopback): only the admin or a registry owner may fetch from it"
	ReasonScheme     = "is not an http or https URL"
)

// RefusedError is a fetch the policy refuses. It matches ErrRefused.
type RefusedError struct {
	// Host is the upstream as the fetch named it (host:port).
	Host string
	// Addr is the address dialed (ip:port) when the refusal is about a
	// resolved address; "" otherwise.
	Addr string
	// Reason is one of the Reason constants.
	Reason string
}

func (e *RefusedError) Error() string {
	if e.Addr == "" || e.Addr == e.Host {
		return fmt.Sprintf("upstream %s %s (refused)", e.Host, e.Reason)
	}
	return fmt.Sprintf("upstream %s (address %s) %s (refused)", e.Host, e.Addr, e.Reason)
}

// Unwrap returns ErrRefused.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// Policy decides which upstream addresses fetches may reach, and makes the
// HTTP clients that enforce it. It is safe for concurrent use.
type Policy struct {
	allow, deny []rule
	ipAllow     bool // allow holds IP or CIDR entries
	control     []netip.AddrPort

	// resolver resolves names for dials (nil: net.DefaultResolver).
	resolver *net.Resolver
	// localAddrs lists this machine's interface addresses.
	localAddrs func() []netip.Addr
	// proxies are the host:port of the environment's proxies the
	// transports have used: dials to them are not checked.
	proxies sync.Map

	clients [2]*http.Client // by Reach
}

type options struct {
	allow, deny []string
	control     []string
}

// Option configures a Policy.
type Option func(*options)

// WithAllow sets the allow list: when it is not empty, only hosts matching
// one of its entries may be fetched from. Entries are host names,
// host:port, IP addresses (optionally with a port), CIDR prefixes and
// "*.example.com" (any subdomain of example.com).
func WithAllow(entries ...string) Option {
	return func(o *options) { o.allow = append(o.allow, entries...) }
}

// WithDeny sets the deny list: hosts never fetched from, in the forms of
// WithAllow. A name entry matches the name a fetch uses; an IP or CIDR
// entry matches the address dialed.
func WithDeny(entries ...string) Option {
	return func(o *options) { o.deny = append(o.deny, entries...) }
}

// WithControlAddr names the control API's listen address (host:port, as
// net.Listener.Addr says it); fetches never reach it. An unspecified host
// (0.0.0.0, ::) means the port on every address of this machine.
func WithControlAddr(addrs ...string) Option {
	return func(o *options) { o.control = append(o.control, addrs...) }
}

// New returns the policy. It fails naming every malformed entry.
func New(opts ...Option) (*Policy, error) {
	p := &Policy{localAddrs: interfaceAddrs}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var errs []error
	for _, l := range []struct {
		flag    string
		entries []string
		into    *[]rule
	}{{"--upstream-allow", o.allow, &p.allow}, {"--upstream-deny", o.deny, &p.deny}} {
		for _, e := range l.entries {
			r, err := parseRule(e)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s entry %q: %w", l.flag, e, err))
				continue
			}
			*l.into = append(*l.into, r)
		}
	}
	for _, r := range p.allow {
		if r.prefix.IsValid() {
			p.ipAllow = true
		}
	}
	for _, a := range o.control {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("control API address %q: %w", a, err))
			continue
		}
		p.control = append(p.control, netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, reach := range []Reach{External, Local} {
		p.clients[reach] = &http.Client{Transport: p.Transport(reach, nil), CheckRedirect: CheckRedirect}
	}
	return p, nil
}

// Client returns an HTTP client whose requests, redirects and dials obey
// the policy for reach. Clients of one reach share their connections; the
// caller may set the returned client's Timeout.
func (p *Policy) Client(reach Reach) *http.Client {
	c := *p.clients[reach]
	return &c
}

// CheckURL reports whether a fetch of u with reach is refused, judging by
// the URL alone (a name is resolved only when it is dialed): a literal
// address gets every check, a name the list and metadata-name checks.
// The error is a *RefusedError.
func (p *Policy) CheckURL(u *url.URL, reach Reach) error {
	port := u.Port()
	switch u.Scheme {
	case "https":
		if port == "" {
			port = "443"
		}
	case "http":
		if port == "" {
			port = "80"
		}
	default:
		return &RefusedError{Host: u.Redacted(), Reason: ReasonScheme}
	}
	_, err := p.checkName(u.Hostname(), port, reach)
	return err
}

// metadataNames are the host names of cloud metadata services.
var metadataNames = map[string]bool{
	"metadata":                   true,
	"metadata.google.internal":   true,
	"metadata.goog":              true,
	"instance-data":              true,
	"instance-data.ec2.internal": true,
}

// metadataAddrs are metadata service addresses outside link-local space:
// AWS's IPv6 endpoint and Alibaba Cloud's.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("100.100.100.200"),
}

// localhostAddrs are what localhost resolves to.
var localhostAddrs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}

// nat64 is the well-known NAT64 prefix, which embeds IPv4 addresses.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// checkName checks a host (a name or a literal address) and port before
// anything is dialed. It returns whether the name itself is allowed
// (true when there is no allow list); when it is not, the address dialed
// must match an IP or CIDR entry of the allow list.
func (p *Policy) checkName(host, port string, reach Reach) (bool, error) {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	label := net.JoinHostPort(host, port)
	if ip, err := netip.ParseAddr(host); err == nil {
		return false, p.checkAddr(label, ip, port, reach, false)
	}
	if metadataNames[host] {
		return false, &RefusedError{Host: label, Reason: ReasonMetadata}
	}
	for _, r := range p.deny {
		if r.matchName(host, port) {
			return false, &RefusedError{Host: label, Reason: ReasonDenied}
		}
	}
	allowed := len(p.allow) == 0
	for _, r := range p.allow {
		if r.matchName(host, port) {
			allowed = true
			break
		}
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		// Loopback whatever DNS says (RFC 6761). The allow list is left to
		// the dial, which knows the address.
		for _, ip := range localhostAddrs {
			if err := p.checkAddr(label, ip, port, reach, true); err != nil {
				return false, err
			}
		}
	}
	if !allowed && !p.ipAllow {
		return false, &RefusedError{Host: label, Reason: ReasonNotAllowed}
	}
	return allowed, nil
}

// checkAddr checks an address a fetch of label would connect to.
// nameAllowed says whether the name the fetch used is in the allow list.
func (p *Policy) checkAddr(label string, ip netip.Addr, port string, reach Reach, nameAllowed bool) error {
	ip = ip.Unmap().WithZone("")
	refuse := func(reason string) error {
		return &RefusedError{Host: label, Addr: net.JoinHostPort(ip.String(), port), Reason: reason}
	}
	embedded := ip
	if nat64.Contains(ip) {
		b := ip.As16()
		embedded = netip.AddrFrom4([4]byte(b[12:]))
	}
	if p.isControl(ip, port) || p.isControl(embedded, port) {
		return refuse(ReasonControlAPI)
	}
	for _, a := range []netip.Addr{ip, embedded} {
		if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || isMetadataAddr(a) {
			return refuse(ReasonMetadata)
		}
	}
	for _, r := range p.deny {
		if r.matchAddr(ip, port) {
			return refuse(ReasonDenied)
		}
	}
	if reach != Local && (p.isLocal(ip) || p.isLocal(embedded)) {
		return refuse(ReasonLoopback)
	}
	if nameAllowed || len(p.allow) == 0 {
		return nil
	}
	for _, r := range p.allow {
		if r.matchAddr(ip, port) {
			return nil
		}
	}
	return refuse(ReasonNotAllowed)
}

func isMetadataAddr(ip netip.Addr) bool {
	for _, m := range metadataAddrs {
		if ip == m {
			return true
		}
	}
	return false
}

// isLocal reports whether ip is this machine: loopback, unspecified (which
// connects to the local host) or one of its interface addresses.
func (p *Policy) isLocal(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	for _, a := range p.localAddrs() {
		if a == ip {
			return true
		}
	}
	return false
}

// isControl reports whether ip:port is the control API's listener.
func (p *Policy) isControl(ip netip.Addr, port string) bool {
	for _, c := range p.control {
		if port != fmt.Sprint(c.Port()) {
			continue
		}
		if c.Addr().IsUnspecified() || ip.IsUnspecified() {
			if p.isLocal(ip) {
				return true
			}
			continue
		}
		if c.Addr() == ip {
			return true
		}
	}
	return false
}

// interfaceAddrs lists the addresses of this machine's interfaces.
func interfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// Transport returns a new transport of one reach: the policy checks every
// request's URL and every dialed address. tc (nil: Go's defaults) says
// which servers' certificates it trusts. It is tuned for large downloads
// from a few hosts. Clients that use it follow redirects with
// CheckRedirect.
func (p *Policy) Transport(reach Reach, tc *tls.Config) http.RoundTripper {
	t := &http.Transport{
		TLSClientConfig:       tc,
		Proxy:                 p.proxy,
		DialContext:           p.dialer(reach),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		ExpectContinueTimeout: time.Second,
		ReadBufferSize:        256 << 10,
		WriteBufferSize:       64 << 10,
	}
	return &guard{p: p, reach: reach, next: t}
}

// proxy is http.ProxyFromEnvironment, remembering the proxies it names so
// that dials to them are not mistaken for upstream dials.
func (p *Policy) proxy(req *http.Request) (*url.URL, error) {
	u, err := http.ProxyFromEnvironment(req)
	if u != nil && err == nil {
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]
		}
		p.proxies.Store(net.JoinHostPort(u.Hostname(), port), true)
	}
	return u, err
}

// dialer returns the DialContext of one reach: the host is checked by name,
// then every address the dialer tries by its control hook.
func (p *Policy) dialer(reach Reach) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Resolver: p.resolver}
		if _, ok := p.proxies.Load(addr); ok {
			return d.DialContext(ctx, network, addr)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("dialing %q: %w", addr, err)
		}
		nameAllowed, err := p.checkName(host, port, reach)
		if err != nil {
			return nil, err
		}
		label := net.JoinHostPort(strings.ToLower(strings.Trim(host, "[]")), port)
		d.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("dialing %s: address %q: %w", label, address, ErrRefused)
			}
			return p.checkAddr(label, ap.Addr(), port, reach, nameAllowed)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// guard checks every request's URL (redirects included) before it is sent.
type guard struct {
	p     *Policy
	reach Reach
	next  http.RoundTripper
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := g.p.CheckURL(req.URL, g.reach); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return g.next.RoundTrip(req)
}

// CheckRedirect follows up to 10 redirects; credentials go only to the
// origin (scheme, host and port) of the first request.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if origin(req.URL) != origin(via[0].URL) {
		for _, h := range []string{"Authorization", "Proxy-Authorization", "Cookie", "Cookie2"} {
			req.Header.Del(h)
		}
	}
	return nil
}

// origin is a URL's scheme://host:port, with the scheme's default port.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.TrimSuffix(strings.ToLower(u.Hostname()), "."), port)
}
