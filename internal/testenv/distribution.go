package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Distribution is a docker-registry (CNCF Distribution 2.x, Debian's
// docker-registry) process serving plain HTTP on 127.0.0.1, which the
// engine accepts as an insecure registry (127.0.0.0/8 is insecure by
// default).
type Distribution struct {
	Host     string // 127.0.0.1:port
	Username string // empty without authentication
	Password string

	stop     func()
	stopOnce sync.Once
}

// URL returns the registry's base URL (http://host).
func (d *Distribution) URL() string { return "http://" + d.Host }

// Stop stops the registry before the test ends (idempotent; it is
// stopped in t.Cleanup anyway).
func (d *Distribution) Stop() { d.stopOnce.Do(d.stop) }

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
	authYAML := ""
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
		file := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(file, out, 0o600); err != nil {
			t.Fatal(err)
		}
		authYAML = fmt.Sprintf("auth:\n  htpasswd:\n    realm: gantry-test\n    path: %s\n", file)
	}

	// The free port is found by binding and releasing it; another process
	// can take it in between, so a registry that exits at once is retried.
	var lastLog string
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cfg := filepath.Join(dir, "config.yml")
		yaml := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: %s
%s`, filepath.Join(dir, "data"), addr, RandomHex(8), authYAML)
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		var logBuf Buffer
		cmd := exec.Command(bin, "serve", cfg)
		cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
		cmd.Env = distributionEnv()
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting docker-registry: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		r.stop = func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		if WaitHTTP("http://"+addr+"/v2/", exited, 15*time.Second) {
			t.Cleanup(func() {
				r.Stop()
				if t.Failed() {
					t.Logf("docker-registry log:\n%s", logBuf.String())
				}
			})
			r.Host = addr
			return r
		}
		r.stop()
		lastLog = logBuf.String()
	}
	t.Fatalf("docker-registry did not start:\n%s", lastLog)
	return nil
}

// distributionEnv is the environment of the registry without REGISTRY_*
// variables, which would override its configuration file.
func distributionEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

// WaitHTTP waits until GET url answers 200 or 401, for at most timeout,
// and reports whether it did; it gives up early when exited (the server's
// process, may be nil) is closed.
func WaitHTTP(url string, exited <-chan struct{}, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return true
			}
		}
		select {
		case <-exited:
			return false
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}
