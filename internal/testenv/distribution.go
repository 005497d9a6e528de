package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/peer"
	"github.com/gantryhq/gantry/internal/wait"
)

// Distribution is a docker-registry (CNCF Distribution 2.x, Debian's
// docker-registry) process serving plain HTTP on 127.0.0.1, which the
// engine accepts as an insecure registry (127.0.0.0/8 is insecure by
// default).
type Distribution struct {
	Host     string // 127.0.0.1:port
	Username string // empty without authentication
	Password string

	p *peer.Distribution
}

// URL returns the registry's base URL (http://host).
func (d *Distribution) URL() string { return "http://" + d.Host }

// Stop stops the registry before the test ends (idempotent; it is
// stopped in t.Cleanup anyway).
func (d *Distribution) Stop() { d.p.Stop() }

// StartDistribution starts docker-registry on a free port of 127.0.0.1
// with a temporary storage root (deletes enabled), with htpasswd
// authentication (a random password for user "gantry") when auth is set.
// It requires docker-registry (and htpasswd for auth), see Require.
func StartDistribution(t testing.TB, auth bool) *Distribution {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		Require(t, "docker-registry not found (install Debian's docker-registry)")
	}
	dir := t.TempDir()
	r := &Distribution{}
	o := peer.Options{Bin: bin, Dir: dir, LogLevel: "warn"}
	if auth {
		htpasswd, err := exec.LookPath("htpasswd")
		if err != nil {
			Require(t, "htpasswd not found (install apache2-utils)")
		}
		r.Username, r.Password = "gantry", RandomHex(12)
		out, err := exec.Command(htpasswd, "-Bbn", r.Username, r.Password).Output()
		if err != nil {
			t.Fatalf("htpasswd: %v", err)
		}
		o.Htpasswd = filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(o.Htpasswd, out, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The free port can be taken by another process before the registry
	// binds it, so a registry that does not start is retried.
	var lastLog string
	for attempt := 0; attempt < 3; attempt++ {
		var logBuf Buffer
		o.Output = &logBuf
		p, err := peer.Start(context.Background(), o)
		if err == nil {
			r.p = p
			t.Cleanup(func() {
				r.Stop()
				if t.Failed() {
					t.Logf("docker-registry log:\n%s", logBuf.String())
				}
			})
			r.Host = p.Addr
			return r
		}
		lastLog = fmt.Sprintf("%v\n%s", err, logBuf.String())
	}
	t.Fatalf("docker-registry did not start: %s", lastLog)
	return nil
}

// WaitHTTP waits until GET url answers 200 or 401, for at most timeout,
// and reports whether it did; it gives up early when exited (the server's
// process, may be nil) is closed.
func WaitHTTP(url string, exited <-chan struct{}, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return wait.HTTP(ctx, url, exited) == nil
}
