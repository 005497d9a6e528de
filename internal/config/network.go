package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// validate checks the network section; errors name the field and its flag.
func (n *Network) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %w: %s", field, ErrInvalid, fmt.Sprintf(format, args...)))
	}
	t := n.TLS
	modes := 0
	for _, on := range []bool{t.Cert != "" || t.Key != "", t.SelfSigned, t.ACMEEmail != ""} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		bad("network.tls", "give one of --tls-cert/--tls-key, --tls self-signed and --acme-email")
	}
	if (t.Cert == "") != (t.Key == "") {
		bad("network.tls.cert (--tls-cert, --tls-key)", "give both the certificate and the key file")
	}
	for _, f := range []struct{ field, path string }{
		{"network.tls.cert (--tls-cert)", t.Cert}, {"network.tls.key (--tls-key)", t.Key}, {"network.tls.acmeCA (--acme-ca)", t.ACMECA},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			bad(f.field, "%v", err)
		}
	}
	if t.ACMEEmail != "" && !strings.Contains(t.ACMEEmail, "@") {
		bad("network.tls.acmeEmail (--acme-email)", "%q is not an email address", t.ACMEEmail)
	}
	if t.ACMEDirectory != "" {
		if u, err := url.Parse(t.ACMEDirectory); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("network.tls.acmeDirectory (--acme-directory)", "%q is not an https:// URL", t.ACMEDirectory)
		}
	}
	if t.ACMEEmail == "" && (t.ACMEDirectory != "" || t.ACMECA != "") {
		bad("network.tls.acmeEmail (--acme-email)", "--acme-directory and --acme-ca need --acme-email")
	}
	if n.Domain != "" {
		if err := ValidDomain(n.Domain); err != nil {
			bad("network.domain (--domain)", "%v", err)
		}
	}
	if t.ACMEEmail != "" && n.Domain == "" && n.ExternalURL == "" {
		bad("network.tls.acmeEmail (--acme-email)", "ACME needs names to manage: give --domain or --external-url")
	}
	if n.RegistryListen != "" {
		if _, _, err := net.SplitHostPort(n.RegistryListen); err != nil {
			bad("network.registryListen (--registry-listen)", "%q is not host:port", n.RegistryListen)
		}
		if n.Domain == "" {
			bad("network.registryListen (--registry-listen)", "the shared registry listener serves registries by hostname: give --domain")
		}
	}
	if n.ExternalURL != "" {
		u, err := url.Parse(n.ExternalURL)
		switch {
		case err != nil:
			bad("network.externalURL (--external-url)", "%q: %v", n.ExternalURL, err)
		case u.Scheme != "http" && u.Scheme != "https":
			bad("network.externalURL (--external-url)", "%q has no http:// or https:// scheme (want e.g. https://gantry.example.com)", n.ExternalURL)
		case u.Host == "" || u.Hostname() == "":
			bad("network.externalURL (--external-url)", "%q has no host", n.ExternalURL)
		case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.User != nil:
			bad("network.externalURL (--external-url)", "%q: want scheme://host[:port] only, without a path, query or user", n.ExternalURL)
		}
	}
	for i, p := range n.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(p); err != nil {
			bad(fmt.Sprintf("network.trustedProxies[%d] (--trusted-proxy)", i), "%q is not an IP address or CIDR prefix", p)
		}
	}
	if n.BodyTimeout < 0 {
		bad("network.bodyTimeout (--body-timeout)", "%s is negative (0 turns the timeout off)", n.BodyTimeout)
	}
	if n.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(n.MetricsListen); err != nil {
			bad("network.metricsListen (--metrics-listen)", "%q is not host:port", n.MetricsListen)
		}
	}
	return errs
}

// ValidDomain checks that d is a DNS name registries can be served under:
// dot-separated labels of letters, digits and hyphens (not at a label's
// ends), 63 bytes at most each, 253 in all, not an IP address.
func ValidDomain(d string) error {
	if d == "" || len(d) > 253 {
		return fmt.Errorf("%q is not a valid DNS name (1 to 253 characters)", d)
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return fmt.Errorf("%q is an IP address, not a DNS name", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a valid DNS name (empty or over-long label)", d)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a valid DNS name (label %q starts or ends with a hyphen)", d, label)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a valid DNS name (%q in label %q)", d, c, label)
			}
		}
	}
	return nil
}
