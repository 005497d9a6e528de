package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/certs"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/remote"
)

// certSource is where every listener's certificate comes from: files, the
// local CA or ACME (internal/certs); none serves plain HTTP.
type certSource struct {
	conf *tls.Config
	// ca is the local CA's certificate (PEM) clients are told to trust;
	// nil unless self-signed.
	ca  []byte
	log *slog.Logger

	files  *certs.Files
	local  *certs.SelfSigned
	acme   *certs.ACME
	closer func() error
}

// TLS is the listeners' TLS configuration, nil for plain HTTP.
func (c *certSource) TLS() *tls.Config { return c.conf }

// Close stops the source's background work.
func (c *certSource) Close() {
	if c.closer != nil {
		_ = c.closer()
	}
}

// Reload reads the certificate files again (SIGHUP); a pair that does not
// validate keeps the current one.
func (c *certSource) Reload(ctx context.Context) {
	if c.files == nil {
		return
	}
	if err := c.files.Reload(ctx); err != nil {
		c.log.ErrorContext(ctx, "TLS certificate not reloaded; serving the previous one", "err", err)
		return
	}
	c.log.InfoContext(ctx, "TLS certificate reloaded", "expires", c.files.Expiry())
}

// Manage has certificates issued for more names (a registry's host): the
// local CA issues them on demand, ACME in the background.
func (c *certSource) Manage(ctx context.Context, names ...string) {
	var hosts []string
	for _, n := range names {
		if n == "" {
			continue
		}
		if h, _, err := net.SplitHostPort(n); err == nil {
			n = h
		}
		hosts = append(hosts, strings.ToLower(n))
	}
	switch {
	case len(hosts) == 0:
	case c.local != nil:
		if err := c.local.Manage(ctx, hosts...); err != nil {
			c.log.WarnContext(ctx, "local CA: names not managed", "names", hosts, "err", err)
		}
	case c.acme != nil:
		var ips []string
		var dns []string
		for _, h := range hosts {
			if net.ParseIP(h) != nil {
				ips = append(ips, h)
			} else {
				dns = append(dns, h)
			}
		}
		if len(ips) > 0 {
			c.log.WarnContext(ctx, "ACME issues no certificates for IP addresses: use a hostname (--domain, --external-url)", "addresses", ips)
		}
		if len(dns) == 0 {
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
			defer cancel()
			if err := c.acme.Manage(ctx, dns...); err != nil {
				c.log.ErrorContext(ctx, "ACME: certificates not obtained", "names", dns, "err", err)
				return
			}
			c.log.InfoContext(ctx, "ACME: certificates obtained", "names", dns)
		}()
	}
}

// Certificates describes the certificates served now (check-health).
func (c *certSource) Certificates() []certs.Info {
	switch {
	case c.files != nil:
		return c.files.Certificates()
	case c.local != nil:
		return c.local.Certificates()
	case c.acme != nil:
		return c.acme.Certificates()
	}
	return nil
}

// newCertSource builds the certificate source of the configuration; its
// errors name the flag and the file.
func newCertSource(cfg config.Network, keys, data string, log *slog.Logger) (*certSource, error) {
	t := cfg.TLS
	c := &certSource{log: log}
	opt := certs.WithLogger(log)
	switch {
	case t.Cert != "":
		f, err := certs.NewFiles(t.Cert, t.Key, opt)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		c.files, c.closer = f, f.Close
		c.conf = certs.TLSConfig(f)
		log.Info("TLS from files", "cert", t.Cert, "expires", f.Expiry())
	case t.SelfSigned:
		names := []string{"127.0.0.1", "::1", "localhost"}
		if cfg.Domain != "" {
			names = append(names, cfg.Domain, "*."+strings.ToLower(cfg.Domain))
		}
		if u, err := url.Parse(cfg.ExternalURL); err == nil && u.Hostname() != "" {
			names = append(names, u.Hostname())
		}
		s, err := certs.NewSelfSigned(keys, names, opt)
		if err != nil {
			return nil, fmt.Errorf("--tls self-signed: %w", err)
		}
		c.local, c.closer, c.ca = s, s.Close, s.CAPEM()
		c.conf = certs.TLSConfig(s)
		log.Info("TLS from the local CA", "ca", filepath.Join(keys, certs.CACertFile), "fingerprint", certs.Fingerprint(c.ca))
	case t.ACMEEmail != "":
		opts := []certs.Option{opt}
		if t.ACMEDirectory != "" {
			opts = append(opts, certs.WithDirectory(t.ACMEDirectory))
		}
		if t.ACMECA != "" {
			pool, err := remote.LoadCAs(t.ACMECA)
			if err != nil {
				return nil, fmt.Errorf("--acme-ca: %w", err)
			}
			opts = append(opts, certs.WithRootCAs(pool))
		}
		a, err := certs.NewACME(filepath.Join(data, "acme"), t.ACMEEmail, opts...)
		if err != nil {
			return nil, fmt.Errorf("--acme-email: %w", err)
		}
		c.acme, c.closer = a, a.Close
		c.conf = certs.TLSConfig(a)
		log.Info("TLS by ACME", "directory", t.ACMEDirectory, "email", t.ACMEEmail)
	}
	return c, nil
}

// LocalCA is the certificate (PEM) of the local CA of the data directory
// (gantry server ca).
func LocalCA(dataDir string) ([]byte, error) {
	return certs.ReadCA(filepath.Join(dataDir, "keys"))
}
