package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/certs"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
)

// inProcess is a gantry registry handler served from this process on a
// loopback port, over a fresh data directory, with access control off. It
// stands in for `gantry server` until that exists.
type inProcess struct {
	srv *http.Server
	db  *db.DB
	dir string
	url string
	// roots trusts the server's certificate (over TLS).
	roots *x509.CertPool
	// tlsConfig is the listener's (over TLS): the limit server over TLS
	// serves the same certificate.
	tlsConfig *tls.Config
}

func serveInProcess(ctx context.Context, addr string) (*inProcess, error) {
	return serveInProcessTLS(ctx, addr, false)
}

// serveInProcessTLS serves the in-process registry, over TLS with a
// certificate from a local CA of its data directory when overTLS (the
// server's --tls self-signed); the client then trusts p.roots.
func serveInProcessTLS(ctx context.Context, addr string, overTLS bool) (*inProcess, error) {
	dir, err := os.MkdirTemp("", "gantry-bench-gantry-")
	if err != nil {
		return nil, err
	}
	p := &inProcess{dir: dir}
	if p.db, err = db.Open(ctx, filepath.Join(dir, "gantry.db")); err != nil {
		p.close()
		return nil, err
	}
	st, err := store.Open(ctx, p.db, dir)
	if err != nil {
		p.close()
		return nil, err
	}
	if _, err := st.CreateRegistry(ctx, store.Registry{Name: "bench", Listen: addr}); err != nil {
		p.close()
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		p.close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", registry.New("bench", st, registry.WithAuthorizer(auth.AllowAll{})))
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	p.url = "http://" + l.Addr().String()
	if overTLS {
		ca, err := certs.NewSelfSigned(filepath.Join(dir, "keys"), []string{"127.0.0.1"})
		if err != nil {
			l.Close()
			p.close()
			return nil, err
		}
		p.roots = x509.NewCertPool()
		p.roots.AppendCertsFromPEM(ca.CAPEM())
		p.tlsConfig = certs.TLSConfig(ca)
		l = tls.NewListener(l, p.tlsConfig)
		p.url = "https://" + l.Addr().String()
	}
	go func() {
		if err := p.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "gantry-bench: in-process server:", err)
		}
	}()
	return p, nil
}

func (p *inProcess) close() {
	if p.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = p.srv.Shutdown(ctx)
		cancel()
	}
	if p.db != nil {
		p.db.Close()
	}
	os.RemoveAll(p.dir)
}
