package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// acmeTLS1 is the ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
const acmeTLS1 = "acme-tls/1"

// ACME serves certificates from an ACME CA (Let's Encrypt by default),
// obtained, stored and renewed by certmagic. Certificates, the ACME
// account and its key are kept in the storage directory (certmagic's file
// layout), so that a restart reuses them.
//
// ACME serves the names given to Manage (the control host and each
// registry's host): certificates for other names are never obtained during
// a handshake. A handshake without a server name gets the certificate of
// the first name managed.
//
// certmagic is kept off the network but for the ACME directory: no OCSP
// stapling (OCSP responders are not asked), no ACME Renewal Information;
// its logs go to the source's logger. The CA validates a name with the
// HTTP-01 challenge (port 80) or the TLS-ALPN-01 challenge (port 443),
// which a listener configured by TLSConfig answers itself; see
// WithChallengeListener. Renewal runs in the background (checked every ten
// minutes, when a third of a certificate's lifetime is left) until Close.
type ACME struct {
	log       *slog.Logger
	directory string
	cache     *certmagic.Cache
	cfg       *certmagic.Config
	issuer    *certmagic.ACMEIssuer

	mu      sync.Mutex
	names   []string        // managed, in the order given: names[0] is the default
	allowed map[string]bool // managed or being managed (answering challenges)

	closeOnce sync.Once
}

var _ Source = (*ACME)(nil)

// NewACME makes an ACME source keeping its state under storageDir, with
// the ACME account of email (its terms of service are taken as agreed).
// It obtains nothing yet: Manage does. Close stops its background
// maintenance.
func NewACME(storageDir, email string, opts ...Option) (*ACME, error) {
	if storageDir == "" {
		return nil, fmt.Errorf("ACME: no storage directory%.0w", ErrInvalid)
	}
	if email == "" {
		return nil, fmt.Errorf("ACME: an account email is needed%.0w", ErrInvalid)
	}
	o := makeOptions(opts)
	zl := zapLogger(o.log)
	a := &ACME{log: o.log, directory: o.directory, allowed: map[string]bool{}}
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return a.cfg, nil },
		Logger:           zl,
	})
	a.cfg = certmagic.New(a.cache, certmagic.Config{
		Storage:    &certmagic.FileStorage{Path: storageDir},
		OCSP:       certmagic.OCSPConfig{DisableStapling: true},
		DisableARI: true,
		Logger:     zl,
	})
	a.issuer = certmagic.NewACMEIssuer(a.cfg, certmagic.ACMEIssuer{
		CA:             o.directory,
		Email:          email,
		Agreed:         true,
		TrustedRoots:   o.roots,
		ListenHost:     o.listenHost,
		AltHTTPPort:    o.httpPort,
		AltTLSALPNPort: o.tlsALPNPort,
		Logger:         zl,
	})
	a.cfg.Issuers = []certmagic.Issuer{a.issuer}
	return a, nil
}

// Manage obtains (or loads from storage) certificates for names and serves
// them from then on, renewing them in the background. It returns when
// every name has its certificate, or with the first failure (matching
// errdefs.ErrUnavailable); names already managed are skipped.
func (a *ACME) Manage(ctx context.Context, names ...string) error {
	var add []string
	a.mu.Lock()
	for _, n := range names {
		n = normalizeName(n)
		if err := checkName(n); err != nil {
			a.mu.Unlock()
			return err
		}
		if !a.allowed[n] {
			a.allowed[n] = true
			add = append(add, n)
		}
	}
	a.mu.Unlock()
	if len(add) == 0 {
		return nil
	}
	if err := a.cfg.ManageSync(ctx, add); err != nil {
		a.mu.Lock()
		for _, n := range add {
			if !slices.Contains(a.names, n) {
				delete(a.allowed, n)
			}
		}
		a.mu.Unlock()
		return fmt.Errorf("obtaining certificates for %v from %s: %w%.0w", add, a.directory, err, errdefs.ErrUnavailable)
	}
	a.mu.Lock()
	for _, n := range add {
		if !slices.Contains(a.names, n) {
			a.names = append(a.names, n)
		}
	}
	a.mu.Unlock()
	a.log.Info("ACME certificates managed", "names", add, "directory", a.directory)
	return nil
}

// GetCertificate returns the certificate of the handshake's server name
// (of the first managed name without one), or answers the CA's TLS-ALPN-01
// challenge.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeName(hello.ServerName)
	a.mu.Lock()
	ok := a.allowed[name]
	if name == "" && len(a.names) > 0 {
		name, ok = a.names[0], true
	}
	a.mu.Unlock()
	if !ok {
		if name == "" {
			return nil, fmt.Errorf("no certificate yet%.0w", ErrNotAllowed)
		}
		return nil, fmt.Errorf("server name %q: %w", name, ErrNotAllowed)
	}
	if hello.ServerName != name {
		h := *hello
		h.ServerName = name
		hello = &h
	}
	c, err := a.cfg.GetCertificate(hello)
	if err != nil {
		return nil, fmt.Errorf("server name %q: %w%.0w", hello.ServerName, err, ErrNotAllowed)
	}
	return c, nil
}

// HTTPChallengeHandler answers the CA's HTTP-01 challenges
// (/.well-known/acme-challenge/...) and hands every other request to next:
// for a plain HTTP listener of the server on port 80, if it has one (else
// the challenge is answered on a listener of ACME's own while it lasts,
// see WithChallengeListener).
func (a *ACME) HTTPChallengeHandler(next http.Handler) http.Handler {
	return a.issuer.HTTPChallengeHandler(next)
}

// alpn adds the TLS-ALPN-01 challenge's protocol to TLSConfig.
func (a *ACME) alpn() []string { return []string{acmeTLS1} }

// Renew renews the certificates of names now, whether due or not, and
// serves the new ones from the next handshake on.
func (a *ACME) Renew(ctx context.Context, names ...string) error {
	for _, n := range names {
		n = normalizeName(n)
		old := a.cache.AllMatchingCertificates(n)
		if err := a.cfg.RenewCertSync(ctx, n, true); err != nil {
			return fmt.Errorf("renewing the certificate of %s from %s: %w%.0w", n, a.directory, err, errdefs.ErrUnavailable)
		}
		fresh, err := a.cfg.CacheManagedCertificate(ctx, n)
		if err != nil {
			return fmt.Errorf("loading the renewed certificate of %s: %w", n, err)
		}
		var stale []string
		for _, c := range old {
			if c.Hash() != fresh.Hash() {
				stale = append(stale, c.Hash())
			}
		}
		a.cache.Remove(stale)
	}
	return nil
}

// Certificates describes the certificates of the managed names.
func (a *ACME) Certificates() []Info {
	a.mu.Lock()
	names := slices.Clone(a.names)
	a.mu.Unlock()
	var infos []Info
	seen := map[string]bool{}
	for _, n := range names {
		for _, c := range a.cache.AllMatchingCertificates(n) {
			if c.Leaf == nil || seen[c.Hash()] {
				continue
			}
			seen[c.Hash()] = true
			infos = append(infos, infoOf(c.Leaf))
		}
	}
	return infos
}

// Expiry returns when the first of the managed certificates expires (the
// zero time when there is none).
func (a *ACME) Expiry() time.Time { return earliest(a.Certificates()) }

// Close stops the background maintenance (renewals). It waits for it to
// stop.
func (a *ACME) Close() error {
	a.closeOnce.Do(a.cache.Stop)
	return nil
}
