package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"

	"github.com/gantryhq/gantry/internal/config"
)

// certSource is where every listener's certificate comes from: files, the
// local CA or ACME (internal/certs); none serves plain HTTP.
type certSource struct {
	conf *tls.Config
	// ca is the local CA's certificate (PEM) clients are told to trust;
	// nil unless self-signed.
	ca     []byte
	reload func(context.Context) error
	close  func()
}

// TLS is the listeners' TLS configuration, nil for plain HTTP.
func (c *certSource) TLS() *tls.Config { return c.conf }

// Close stops the source's background work.
func (c *certSource) Close() {
	if c.close != nil {
		c.close()
	}
}

func newCertSource(ctx context.Context, cfg config.Network, keys string, log *slog.Logger) (*certSource, error) {
	if !cfg.TLS.Enabled() {
		return &certSource{}, nil
	}
	return nil, errors.New("TLS: not wired yet")
}

// LocalCA is the certificate (PEM) of the local CA of the data directory.
func LocalCA(dataDir string) ([]byte, error) {
	return nil, errors.New("TLS: not wired yet")
}
