// Package certs provides the certificates of the server's TLS listeners.
// A Source answers a listener's TLS handshakes (tls.Config.GetCertificate);
// TLSConfig makes the listener's tls.Config from one. There are three:
//
//   - Files (--tls-cert FILE --tls-key FILE): a PEM certificate (with its
//     chain) and key the operator provides. They are validated when loaded
//     (readable, PEM, key matches, leaf currently valid), and reloaded when
//     they change on disk (polled) or on demand (Reload, on SIGHUP). A
//     reload that fails validation keeps the certificate in use.
//   - SelfSigned (--tls self-signed): a local CA of the server's own, made
//     on first start and kept in the keys directory (KEYS/tls-ca.key 0600,
//     KEYS/tls-ca.pem), issues short-lived leaf certificates, in memory, for
//     the names it is allowed (hostnames, IP addresses, *.DOMAIN patterns)
//     and renews them when two thirds of their lifetime have passed. Clients
//     trust the CA (CAPEM, ReadCA).
//   - ACME (--acme-email, --acme-directory): certificates from an ACME CA
//     (Let's Encrypt by default) through certmagic, stored under a
//     directory of their own and renewed in the background.
//
// Each source serves the certificate current at the time of a handshake:
// a reload or renewal never affects connections already open.
//
// A TLS listener served by net/http (http.Server.ServeTLS, or Serve on a
// tls.Listener) already answers a plain HTTP request with "400 Bad Request:
// Client sent an HTTP request to an HTTPS server.", at once; nothing else is
// needed for plain HTTP clients (TestPlainHTTPToTLS holds it true).
//
// The package imports no other package of the module but internal/errdefs.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// Sentinels (match with errors.Is).
var (
	// ErrInvalid: a certificate or key file is unusable (unreadable, not
	// PEM, mismatched, expired, not yet valid), or a name is malformed.
	ErrInvalid = errdefs.New("invalid certificate", errdefs.ErrInvalid)
	// ErrNoCA: the keys directory holds no local CA yet.
	ErrNoCA = errdefs.New("no local CA", errdefs.ErrNotFound)
	// ErrNotAllowed: a handshake asked for a name the source does not
	// serve.
	ErrNotAllowed = errdefs.New("name not served", errdefs.ErrDenied)
)

// Source gives a TLS listener its certificate for each handshake. It is
// safe for concurrent use.
type Source interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// TLSConfig returns a server tls.Config on src: TLS 1.2 at least, HTTP/2
// and HTTP/1.1 offered through ALPN (and ACME's TLS-ALPN challenge protocol
// for an ACME source), the certificate chosen by src for each handshake.
func TLSConfig(src Source) *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if a, ok := src.(interface{ alpn() []string }); ok {
		protos = append(protos, a.alpn()...)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     protos,
		GetCertificate: src.GetCertificate,
	}
}

// Info describes a certificate a source serves (for health reports).
type Info struct {
	// Names are the certificate's DNS names and IP addresses.
	Names     []string
	NotBefore time.Time
	NotAfter  time.Time
	// Issuer is the issuer's common name.
	Issuer string
	// Serial is the serial number, in hex.
	Serial string
}

// infoOf describes a leaf certificate.
func infoOf(c *x509.Certificate) Info {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return Info{
		Names: names, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Issuer: c.Issuer.CommonName, Serial: c.SerialNumber.Text(16),
	}
}

// earliest returns the earliest NotAfter of infos, or the zero time.
func earliest(infos []Info) time.Time {
	var t time.Time
	for _, i := range infos {
		if t.IsZero() || i.NotAfter.Before(t) {
			t = i.NotAfter
		}
	}
	return t
}

// Option configures a source. Each names the sources it applies to; the
// others ignore it.
type Option func(*options)

type options struct {
	log          *slog.Logger
	now          func() time.Time
	poll         time.Duration
	leafLifetime time.Duration
	allow        func(string) bool
	directory    string
	roots        *x509.CertPool
	listenHost   string
	httpPort     int
	tlsALPNPort  int
}

func makeOptions(opts []Option) options {
	o := options{
		log:          slog.New(slog.DiscardHandler),
		now:          time.Now,
		poll:         5 * time.Second,
		leafLifetime: 90 * 24 * time.Hour,
		directory:    LetsEncryptDirectory,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithLogger sets the logger (all sources; default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithClock sets the clock that validity and renewal are checked against
// (Files, SelfSigned; default time.Now).
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithPollInterval sets how often Files checks its files for a change
// (default 5s; 0 or less: never, only Reload).
func WithPollInterval(d time.Duration) Option {
	return func(o *options) { o.poll = d }
}

// WithLeafLifetime sets the validity of SelfSigned's leaf certificates
// (default 90 days). They are renewed when two thirds of it have passed.
func WithLeafLifetime(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.leafLifetime = d
		}
	}
}

// WithAllow adds a policy to SelfSigned: a name it is not given (nor
// matches a *.DOMAIN pattern of) is served when allow(name) is true (e.g.
// the host of a registry created since). Called during handshakes: keep it
// fast.
func WithAllow(allow func(name string) bool) Option {
	return func(o *options) { o.allow = allow }
}

// LetsEncryptDirectory is the ACME directory ACME uses by default: Let's
// Encrypt's production CA.
const LetsEncryptDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// WithDirectory sets the ACME directory URL (ACME; default
// LetsEncryptDirectory).
func WithDirectory(url string) Option {
	return func(o *options) {
		if url != "" {
			o.directory = url
		}
	}
}

// WithRootCAs sets the roots ACME trusts for the ACME directory's own
// HTTPS (ACME; default: the system's).
func WithRootCAs(pool *x509.CertPool) Option {
	return func(o *options) { o.roots = pool }
}

// WithChallengeListener sets where ACME listens to answer the CA's
// challenges when the server does not answer them itself: the host to bind
// and the ports of the HTTP-01 and TLS-ALPN-01 challenges (0: the standard
// 80 and 443; a port taken by the server is assumed to be the server's,
// which answers TLS-ALPN-01 through TLSConfig). Use other ports only when
// the standard ones are forwarded to them.
func WithChallengeListener(host string, httpPort, tlsALPNPort int) Option {
	return func(o *options) {
		o.listenHost, o.httpPort, o.tlsALPNPort = host, httpPort, tlsALPNPort
	}
}

// normalizeName lower-cases a server name and drops a trailing dot.
func normalizeName(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// isIP reports whether name is an IP address literal.
func isIP(name string) bool { return net.ParseIP(name) != nil }
