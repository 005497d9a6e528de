// Package peer runs CNCF Distribution (Debian's docker-registry), the
// reference registry gantry is tested and benchmarked against, as a child
// process serving plain HTTP on a loopback port.
package peer

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/wait"
)

// Options configure a Distribution.
type Options struct {
	// Bin is the docker-registry binary.
	Bin string
	// Dir holds its configuration and storage (the data subdirectory);
	// the caller owns it and removes it.
	Dir string
	// Htpasswd, when set, is an htpasswd file: the registry then requires
	// basic authentication.
	Htpasswd string
	// LogLevel is the registry's log level ("error" when empty).
	LogLevel string
	// Output receives the registry's log (discarded when nil).
	Output io.Writer
	// Ready bounds the wait for the registry to answer (15 s when zero).
	Ready time.Duration
}

// Distribution is a running docker-registry.
type Distribution struct {
	// Addr is its 127.0.0.1:port.
	Addr string

	cmd      *exec.Cmd
	exited   chan struct{}
	stopOnce sync.Once
}

const config = `version: 0.1
log:
  level: %s
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: %s
%s`

// Start starts docker-registry on a free port of 127.0.0.1 and returns
// once its /v2/ answers. A registry that does not answer is stopped, and
// the error says so (its log went to Output).
func Start(ctx context.Context, o Options) (*Distribution, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	auth := ""
	if o.Htpasswd != "" {
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: gantry-peer\n    path: %s\n", o.Htpasswd)
	}
	level := o.LogLevel
	if level == "" {
		level = "error"
	}
	conf := filepath.Join(o.Dir, "config.yml")
	yaml := fmt.Sprintf(config, level, filepath.Join(o.Dir, "data"), addr, rand.Text(), auth)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(o.Bin, "serve", conf)
	cmd.Stdout, cmd.Stderr = o.Output, o.Output
	cmd.Env = env()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", o.Bin, err)
	}
	d := &Distribution{Addr: addr, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.exited) }()
	ready := o.Ready
	if ready <= 0 {
		ready = 15 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, ready)
	defer cancel()
	if err := wait.HTTP(wctx, d.URL()+"/v2/", d.exited); err != nil {
		d.Stop()
		return nil, fmt.Errorf("docker-registry on %s did not start: %w", addr, err)
	}
	return d, nil
}

// URL returns the registry's base URL (http://127.0.0.1:port).
func (d *Distribution) URL() string { return "http://" + d.Addr }

// Stop terminates the registry (SIGTERM, then SIGKILL after 5 s) and
// waits for it to exit. It may be called more than once.
func (d *Distribution) Stop() {
	d.stopOnce.Do(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
}

// FreeAddr finds a free 127.0.0.1:port for a server to listen on, by
// binding it and releasing it: another process can take it in between (a
// registry started on it then exits at once, and Start fails).
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// env is this process's environment without REGISTRY_* variables, which
// would override the registry's configuration file.
func env() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			out = append(out, kv)
		}
	}
	return out
}
