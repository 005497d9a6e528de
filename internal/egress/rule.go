package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// rule is one entry of an allow or deny list.
type rule struct {
	name   string       // an exact host name
	suffix string       // ".example.com" for "*.example.com"
	prefix netip.Prefix // an address (a /32 or /128) or a CIDR prefix
	port   string       // "" for any port
}

// parseRule parses host, host:port, IP, [IPv6]:port, CIDR or *.domain.
func parseRule(s string) (rule, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return rule{}, errors.New("empty entry")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return rule{}, fmt.Errorf("not a CIDR prefix: %w", err)
		}
		return rule{prefix: p.Masked()}, nil
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return rule{prefix: netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())}, nil
	}
	var r rule
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 {
			return rule{}, fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
		host, r.port = h, strconv.Itoa(n)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		r.prefix = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		return r, nil
	}
	host = strings.TrimSuffix(host, ".")
	wild := strings.HasPrefix(host, "*.")
	name := strings.TrimPrefix(host, "*.")
	if !validName(name) {
		return rule{}, errors.New("want a host name, host:port, an IP address, a CIDR prefix or *.domain")
	}
	if wild {
		r.suffix = "." + name
	} else {
		r.name = name
	}
	return r, nil
}

// validName reports whether s is a DNS name (letters, digits, '-', '_' and
// dots between non-empty labels).
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// matchName reports whether a name entry matches host (lower case, no
// trailing dot) and port.
func (r rule) matchName(host, port string) bool {
	if r.port != "" && r.port != port {
		return false
	}
	switch {
	case r.name != "":
		return host == r.name
	case r.suffix != "":
		return strings.HasSuffix(host, r.suffix)
	}
	return false
}

// matchAddr reports whether an address entry matches ip and port.
func (r rule) matchAddr(ip netip.Addr, port string) bool {
	if !r.prefix.IsValid() || (r.port != "" && r.port != port) {
		return false
	}
	return r.prefix.Contains(ip)
}
