package store

import (
	"context"
	"net"
	"strings"
)

// Addressing is how clients name this server's registries.
type Addressing struct {
	// Domain, when set, names every registry <name>.<Domain>[:Port], served
	// on the shared registry listener.
	Domain string
	// Port is the shared listener's public port; "" for the scheme's
	// default (443, or 80 without TLS).
	Port string
	// Host replaces an unspecified host (0.0.0.0, [::] or none) in a
	// registry's own listen address: a server bound to all interfaces
	// never advertises them.
	Host string
}

// WithAddressing sets how registries are named (default: by their listen
// address, an unspecified host advertised as 127.0.0.1).
func WithAddressing(a Addressing) Option { return func(s *Store) { s.addressing = a } }

// Addressing returns how registries are named.
func (s *Store) Addressing() Addressing { return s.addressing }

// HostName is r's hostname, <name>.<domain>[:port], or "" without a
// domain.
func (a Addressing) HostName(r Registry) string {
	if a.Domain == "" {
		return ""
	}
	h := r.Name + "." + a.Domain
	if a.Port != "" {
		h = net.JoinHostPort(h, a.Port)
	}
	return h
}

// ListenName is the login server of r's own listener, "" when it has none:
// its listen address, an unspecified host replaced by a.Host (127.0.0.1 by
// default).
func (a Addressing) ListenName(r Registry) string {
	if r.Listen == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(r.Listen)
	if err != nil {
		return r.Listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = a.Host
		if host == "" {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}

// LoginServer is the name clients use for r: its hostname with a domain,
// else its own listener's address.
func (s *Store) LoginServer(r Registry) string {
	if h := s.addressing.HostName(r); h != "" {
		return h
	}
	return s.addressing.ListenName(r)
}

// LoginServers are every name r is served under: its hostname (with a
// domain) and its own listener's address (when it has one).
func (s *Store) LoginServers(r Registry) []string {
	var out []string
	for _, n := range []string{s.addressing.HostName(r), s.addressing.ListenName(r)} {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

// registryOfHost is the registry a host name <name>.<domain> names (any
// port, or none), if it exists.
func (s *Store) registryOfHost(ctx context.Context, host string) (Registry, bool, error) {
	d := s.addressing.Domain
	if d == "" {
		return Registry{}, false, nil
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	name, ok := strings.CutSuffix(strings.ToLower(host), "."+strings.ToLower(d))
	if !ok || name == "" || strings.Contains(name, ".") {
		return Registry{}, false, nil
	}
	r, err := s.GetRegistry(ctx, name)
	if err != nil {
		return Registry{}, false, nil
	}
	return r, true, nil
}
