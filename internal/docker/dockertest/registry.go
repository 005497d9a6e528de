package dockertest

import (
	"bytes"
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

	"github.com/gantryhq/gantry/internal/docker"
)

// Registry is a docker-registry (distribution 2.x) process serving plain
// HTTP on 127.0.0.1, which the engine accepts as an insecure registry
// (127.0.0.0/8 is insecure by default).
type Registry struct {
	Host     string // 127.0.0.1:port
	Username string // empty without authentication
	Password string
}

// Auth returns the registry's credentials for a pull, push or build (nil
// without authentication).
func (r *Registry) Auth() *docker.AuthConfig {
	if r.Username == "" {
		return nil
	}
	return &docker.AuthConfig{Username: r.Username, Password: r.Password, ServerAddress: r.Host}
}

// StartRegistry starts Debian's docker-registry on a free port of
// 127.0.0.1 with a temporary storage root, with htpasswd authentication
// (a random password for user "gantry") when auth is set. The process is
// stopped when t ends, also when t fails. It requires docker-registry (and
// htpasswd for auth) like Engine requires DOCKER_HOST.
func StartRegistry(t testing.TB, auth bool) *Registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		Require(t, "docker-registry not found (install Debian's docker-registry)")
	}
	dir := t.TempDir()
	r := &Registry{}
	authYAML := ""
	if auth {
		htpasswd, err := exec.LookPath("htpasswd")
		if err != nil {
			Require(t, "htpasswd not found (install apache2-utils)")
		}
		r.Username, r.Password = "gantry", randomHex(12)
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
%s`, filepath.Join(dir, "data"), addr, randomHex(8), authYAML)
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		var logBuf syncBuffer
		cmd := exec.Command(bin, "serve", cfg)
		cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
		cmd.Env = registryEnv()
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting docker-registry: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		if waitHTTP(addr, exited) {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("docker-registry log:\n%s", logBuf.String())
				}
			})
			r.Host = addr
			return r
		}
		stop()
		lastLog = logBuf.String()
	}
	t.Fatalf("docker-registry did not start:\n%s", lastLog)
	return nil
}

// registryEnv is the environment of the registry without REGISTRY_*
// variables, which would override its configuration file.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitHTTP waits until GET /v2/ answers (200 or 401) or the process exits.
func waitHTTP(addr string, exited <-chan struct{}) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
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

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a process's
// stdout and stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
