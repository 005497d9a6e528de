package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	base := func(f func(*Spec)) Spec {
		s := Spec{Name: "hello", Image: "127.0.0.1:5000/app:v1"}
		if f != nil {
			f(&s)
		}
		return s
	}
	bad := []struct {
		name string
		spec Spec
		want string
	}{
		{"upper-case name", base(func(s *Spec) { s.Name = "Hello" }), "name"},
		{"leading hyphen", base(func(s *Spec) { s.Name = "-a" }), "name"},
		{"long name", base(func(s *Spec) { s.Name = strings.Repeat("a", 64) }), "name"},
		{"no image", base(func(s *Spec) { s.Image = "" }), "image is required"},
		{"bad image", base(func(s *Spec) { s.Image = "UPPER case" }), "image"},
		{"bad env name", base(func(s *Spec) { s.Env = map[string]string{"1A": "x"} }), "environment variable name"},
		{"reserved PORT", base(func(s *Spec) { s.Env = map[string]string{"PORT": "80"} }), "set by gantry"},
		{"reserved PORT_80", base(func(s *Spec) { s.SecureEnv = map[string]string{"PORT_80": "1"} }), "set by gantry"},
		{"plain and secure", base(func(s *Spec) {
			s.Env = map[string]string{"A": "1"}
			s.SecureEnv = map[string]string{"A": "2"}
		}), "both plain and secure"},
		{"port 0", base(func(s *Spec) { s.Ports = []Port{{Port: 0}} }), "want 1-65535"},
		{"port twice", base(func(s *Spec) { s.Ports = []Port{{Port: 80}, {Port: 80}} }), "declared twice"},
		{"udp", base(func(s *Spec) { s.Ports = []Port{{Port: 53, Protocol: "UDP"}} }), "only TCP"},
		{"front port twice", base(func(s *Spec) { s.Ports = []Port{{Port: 80, FrontPort: 9000}, {Port: 81, FrontPort: 9000}} }), "asked for twice"},
		{"restart policy", base(func(s *Spec) { s.RestartPolicy = "sometimes" }), "restart policy"},
		{"negative cpu", base(func(s *Spec) { s.CPU = -1 }), "negative"},
		{"user without password", base(func(s *Spec) { s.Registry = &Credentials{Username: "u"} }), "both a registry user name and a password"},
		{"empty command", base(func(s *Spec) { s.Command = []string{""} }), "empty executable"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.spec.normalize()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("normalize: %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}

	got, err := base(func(s *Spec) {
		s.Registry = &Credentials{Username: "u", Password: "p"}
		s.RestartPolicy = "onfailure"
		s.Ports = []Port{{Port: 8080, Protocol: "tcp"}}
	}).normalize()
	if err != nil {
		t.Fatal(err)
	}
	if got.Registry.Server != "127.0.0.1:5000" || got.RestartPolicy != RestartOnFailure || got.Ports[0].Protocol != ProtocolTCP {
		t.Errorf("normalized: %+v", got)
	}
	got, err = base(nil).normalize()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Ports) != 1 || got.Ports[0].Port != DefaultPort || got.RestartPolicy != RestartAlways {
		t.Errorf("defaults: %+v", got)
	}
	if s := (Credentials{Username: "u", Password: "hunter2"}).String(); strings.Contains(s, "hunter2") {
		t.Errorf("Credentials.String shows the password: %s", s)
	}
}

func TestRegistryHost(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string]string{
		"127.0.0.1:5003/hello-world:cb1": "127.0.0.1:5003",
		"localhost/app":                  "localhost",
		"node:15-alpine":                 "docker.io",
		"library/node":                   "docker.io",
	} {
		if got := registryHost(ref); got != want {
			t.Errorf("registryHost(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestContainerEnv(t *testing.T) {
	t.Parallel()
	r := &record{
		Spec:  recordSpec{Env: map[string]string{"B": "2", "A": "1"}},
		Ports: []Binding{{Port: 80, ListenPort: 4100}, {Port: 443, ListenPort: 4101}},
	}
	got := strings.Join(containerEnv(r, map[string]string{"S": "secret"}), " ")
	want := "A=1 B=2 S=secret PORT=4100 PORT_80=4100 PORT_443=4101"
	if got != want {
		t.Errorf("env = %q, want %q", got, want)
	}
}

func TestStateOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    docker.ContainerState
		want string
	}{
		{docker.ContainerState{Running: true}, StateRunning},
		{docker.ContainerState{Running: true, Restarting: true}, StateRestarting},
		{docker.ContainerState{Status: "created"}, StatePending},
		{docker.ContainerState{Status: "exited"}, StateStopped},
		{docker.ContainerState{Status: "exited", ExitCode: 2}, StateFailed},
		{docker.ContainerState{Status: "exited", OOMKilled: true, ExitCode: 137}, StateFailed},
	} {
		if got, _ := stateOf(tc.s); got != tc.want {
			t.Errorf("stateOf(%+v) = %s, want %s", tc.s, got, tc.want)
		}
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	inner := fmt.Errorf("login with s3cret failed: %w", docker.ErrUnauthorized)
	err := fmt.Errorf("%w: %w", ErrImage, scrub(inner, &Credentials{Password: "s3cret"}))
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("secret in %q", err)
	}
	if !errors.Is(err, docker.ErrUnauthorized) || !errors.Is(err, ErrImage) {
		t.Errorf("scrubbed error lost its chain: %v", err)
	}
}

// serveText serves text on a free loopback port until the test ends.
func serveText(t *testing.T, text string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, text)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func get(t *testing.T, client *http.Client, url string) (string, error) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestFrontSwitch switches a front between two backends while a client
// hammers it: no request may fail, and the old backend is drained.
func TestFrontSwitch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := serveText(t, "a"), serveText(t, "b")
	f, err := listenFront(ctx, discardLogger(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	url := fmt.Sprintf("http://127.0.0.1:%d/", f.port())
	// Each request on a new connection: what the front guarantees is that
	// every new connection reaches a backend.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	// A keep-alive client stays with the old backend until the drain
	// closes its idle connection, then reconnects to the new one.
	keepAlive := &http.Client{Timeout: 5 * time.Second}

	if prev := f.setTarget(a); prev != nil {
		t.Fatalf("first target had a predecessor")
	}
	if got, err := get(t, client, url); err != nil || got != "a" {
		t.Fatalf("GET = %q, %v", got, err)
	}
	if got, err := get(t, keepAlive, url); err != nil || got != "a" {
		t.Fatalf("GET (keep-alive) = %q, %v", got, err)
	}

	var failures, requests atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	warm := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if requests.Add(1) == 5 {
				close(warm)
			}
			if _, err := get(t, client, url); err != nil {
				failures.Add(1)
			}
		}
	}()
	<-warm // switch while the client is busy
	old := f.setTarget(b)
	if got, err := get(t, keepAlive, url); err != nil || got != "a" {
		t.Fatalf("GET (keep-alive) before the drain = %q, %v; want the old backend", got, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if n := drain(dctx, old); n != 1 {
		t.Errorf("drain closed %d connections, want the keep-alive one", n)
	}
	cancel()
	close(stop)
	<-done
	if failures.Load() != 0 {
		t.Errorf("%d of %d requests failed during the switch", failures.Load(), requests.Load())
	}
	if got, err := get(t, client, url); err != nil || got != "b" {
		t.Fatalf("GET after switch = %q, %v", got, err)
	}
	if got, err := get(t, keepAlive, url); err != nil || got != "b" {
		t.Fatalf("GET (keep-alive) after drain = %q, %v", got, err)
	}
	// A front without a listening backend closes the connection after its
	// patience; after close, nothing listens.
	f.close()
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.port()), time.Second); err == nil {
		t.Errorf("closed front still accepts connections")
	}
}

func TestKeyedLock(t *testing.T) {
	t.Parallel()
	var l keyedLock
	ctx := context.Background()
	unlock, err := l.lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.lock(ctx, "b") // another key does not wait
	if err != nil {
		t.Fatal(err)
	}
	other()
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.lock(tctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a: %v, want deadline exceeded", err)
	}
	unlock()
	again, err := l.lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	again()
	if len(l.m) != 0 {
		t.Errorf("lock entries leak: %v", l.m)
	}
}
