package store

import (
	"context"
	"net"
	"strings"

	"github.com/gantryhq/gantry/internal/oci"
)

// LocalRegistry finds the registry of this server whose login server is
// host: its hostname <name>.<domain> (any port) when registries have one
// (WithAddressing), the same host:port, any loopback spelling of a loopback or
// all-interfaces listener on the same port, or one of this machine's own
// addresses on the port of an all-interfaces listener. ok is false when no
// registry of this server serves host.
func (s *Store) LocalRegistry(ctx context.Context, host string) (r Registry, ok bool, err error) {
	if r, ok, err := s.registryOfHost(ctx, host); ok || err != nil {
		return r, ok, err
	}
	regs, err := s.ListRegistries(ctx)
	if err != nil {
		return Registry{}, false, err
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		return Registry{}, false, nil
	}
	for _, r := range regs {
		if r.Listen == "" {
			continue
		}
		if strings.EqualFold(r.Listen, host) {
			return r, true, nil
		}
		lh, lport, err := net.SplitHostPort(r.Listen)
		if err != nil || lport != port {
			continue
		}
		unspecified := lh == "" || lh == "0.0.0.0" || lh == "::"
		if oci.IsLoopback(host) && (unspecified || oci.IsLoopback(r.Listen)) {
			return r, true, nil
		}
		if unspecified && s.addressing.Host != "" && strings.EqualFold(h, s.addressing.Host) {
			return r, true, nil // the advertised name of an all-interfaces listener
		}
		if unspecified && !oci.IsLoopback(host) {
			// Our own non-loopback addresses.
			if ip := net.ParseIP(h); ip != nil && isLocalIP(ip) {
				return r, true, nil
			}
		}
	}
	return Registry{}, false, nil
}

// isLocalIP reports an address of one of this machine's interfaces.
func isLocalIP(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
