package docker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

// fakeEngine is an httptest server that answers /_ping and /version like
// an engine serving API versions min to max and hands the versioned routes
// to h. Requests for a version outside [min, max] get the engine's 400
// (as Docker 29 answers clients below 1.44). Every path is recorded.
type fakeEngine struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newFakeEngine(t *testing.T, min, max string, h http.HandlerFunc) *fakeEngine {
	t.Helper()
	f := &fakeEngine{}
	versioned := regexp.MustCompile(`^/v(1\.\d+)(/.*)$`)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.seen = append(f.seen, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		w.Header().Set("API-Version", max)
		path := r.URL.Path
		if m := versioned.FindStringSubmatch(path); m != nil {
			if versionLess(m[1], min) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, `{"message":"client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version"}`, m[1], min)
				return
			}
			if versionLess(max, m[1]) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, `{"message":"client version %s is too new. Maximum supported API version is %s"}`, m[1], max)
				return
			}
			path = m[2]
		}
		switch path {
		case "/_ping":
			io.WriteString(w, "OK")
		case "/version":
			fmt.Fprintf(w, `{"Platform":{"Name":"Docker Engine - Community"},"Version":"fake","ApiVersion":%q,"MinAPIVersion":%q,"Os":"linux","Arch":"amd64","Components":[{"Name":"Engine","Version":"fake","Details":{"KernelVersion":"6.1"}}]}`, max, min)
		default:
			if h == nil {
				http.NotFound(w, r)
				return
			}
			r.URL.Path = path
			h(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEngine) host() string { return "tcp://" + strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeEngine) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

func (f *fakeEngine) client(t *testing.T, opts ...Option) *Client {
	t.Helper()
	c, err := New(Endpoint{Host: f.host()}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// versionLess compares API versions "1.41" < "1.9" is false.
func versionLess(a, b string) bool {
	var a1, a2, b1, b2 int
	fmt.Sscanf(a, "%d.%d", &a1, &a2)
	fmt.Sscanf(b, "%d.%d", &b1, &b2)
	return a1 < b1 || (a1 == b1 && a2 < b2)
}

// TestNegotiatesWithCurrentEngines: against an engine that serves 1.44 to
// 1.52, as Docker Engine 29 does, no request goes out below 1.44; every
// versioned request uses 1.52. Against dockerd 20.10 (1.12 to 1.41) the
// client speaks 1.41.
func TestNegotiatesWithCurrentEngines(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ min, max, want string }{
		{"1.44", "1.52", "1.52"},
		{"1.12", "1.41", "1.41"},
		{"1.24", "1.57", "1.57"},
	} {
		t.Run(tt.max, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine(t, tt.min, tt.max, func(w http.ResponseWriter, r *http.Request) {
				switch {
				case strings.HasPrefix(r.URL.Path, "/containers/json"):
					io.WriteString(w, `[]`)
				case strings.HasPrefix(r.URL.Path, "/images/"):
					io.WriteString(w, `{"Id":"sha256:1","RepoTags":["x:1"]}`)
				case r.URL.Path == "/volumes":
					io.WriteString(w, `{"Volumes":[]}`)
				default:
					http.NotFound(w, r)
				}
			})
			c := f.client(t)
			ctx := context.Background()
			if _, ok := c.EngineVersion(); ok {
				t.Fatal("version known before the first call")
			}
			if _, err := c.ListContainers(ctx, ListContainersOptions{All: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.InspectImage(ctx, "x:1"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ListVolumes(ctx); err != nil {
				t.Fatal(err)
			}
			v, ok := c.EngineVersion()
			if !ok || v.NegotiatedAPIVersion != tt.want || v.APIVersion != tt.max || v.MinAPIVersion != tt.min ||
				v.Name != "Docker Engine - Community" || v.KernelVersion != "6.1" {
				t.Errorf("version = %+v", v)
			}
			var versioned int
			for _, r := range f.requests() {
				_, path, _ := strings.Cut(r, " ")
				if !strings.HasPrefix(path, "/v1.") {
					continue
				}
				versioned++
				if !strings.HasPrefix(path, "/v"+tt.want+"/") {
					t.Errorf("request %s: want API %s", r, tt.want)
				}
			}
			if versioned < 4 {
				t.Errorf("only %d versioned requests: %q", versioned, f.requests())
			}
		})
	}
}

// TestConnectRefusesOldEngines: an engine below API 1.40, or one that needs
// an API newer than the client speaks, fails with ErrUnsupported naming it.
func TestConnectRefusesOldEngines(t *testing.T) {
	t.Parallel()
	old := newFakeEngine(t, "1.12", "1.39", nil)
	_, err := old.client(t).Connect(context.Background())
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "1.39") || !strings.Contains(err.Error(), old.host()) {
		t.Errorf("API 1.39: err = %v", err)
	}
	future := newFakeEngine(t, "1.60", "1.70", nil)
	_, err = future.client(t).ListContainers(context.Background(), ListContainersOptions{})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "1.60") {
		t.Errorf("API 1.60+: err = %v", err)
	}
	for _, r := range future.requests() {
		if strings.Contains(r, "/containers/") {
			t.Errorf("request sent to an unsupported engine: %s", r)
		}
	}
}

// TestUnreachableEngine: a missing socket or a closed port fails with
// ErrUnavailable naming the address, and the same client works once the
// engine answers.
func TestUnreachableEngine(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	c, err := New(Endpoint{Host: "unix://" + sock}, WithCheckTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.ListContainers(context.Background(), ListContainersOptions{})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("missing socket: err = %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tc, err := New(Endpoint{Host: "tcp://" + addr}, WithCheckTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := tc.Connect(context.Background()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("closed port: err = %v", err)
	}

	// The engine comes up on the socket: the next call connects.
	f := newFakeEngine(t, "1.12", "1.41", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `[]`) })
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f.srv.Config.Handler}
	go srv.Serve(uln)
	defer srv.Close()
	if _, err := c.ListContainers(context.Background(), ListContainersOptions{}); err != nil {
		t.Fatalf("after the engine came up: %v", err)
	}
}

func TestNewRejectsBadHosts(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"", "unix://", "/tmp/docker.sock", "http://127.0.0.1:2375", "tcp://", "tcp://127.0.0.1:1/x", "ssh://host", "tcp://host"} {
		if _, err := New(Endpoint{Host: host}); err == nil {
			t.Errorf("New(%q) succeeded", host)
		}
	}
	if _, err := New(Endpoint{Host: "unix:///x.sock", TLS: &TLS{}}); err == nil {
		t.Error("TLS on a unix socket accepted")
	}
}

func TestEndpointFromEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		env  map[string]string
		want Endpoint
	}{
		{nil, Endpoint{Host: DefaultHost}},
		{map[string]string{"DOCKER_HOST": "unix:///run/x.sock"}, Endpoint{Host: "unix:///run/x.sock"}},
		// DOCKER_CERT_PATH alone does not turn TLS on, as for the docker CLI.
		{map[string]string{"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_CERT_PATH": dir}, Endpoint{Host: "tcp://127.0.0.1:2376"}},
		{map[string]string{"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_CERT_PATH": dir, "DOCKER_TLS_VERIFY": "1"},
			Endpoint{Host: "tcp://127.0.0.1:2376", TLS: &TLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"), Verify: true}}},
		{map[string]string{"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_CERT_PATH": dir, "DOCKER_TLS": "1"},
			Endpoint{Host: "tcp://127.0.0.1:2376", TLS: &TLS{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}}},
		{map[string]string{"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_CERT_PATH": t.TempDir(), "DOCKER_TLS_VERIFY": "1"},
			Endpoint{Host: "tcp://127.0.0.1:2376", TLS: &TLS{Verify: true}}},
	}
	for i, tt := range tests {
		got := EndpointFromEnv(func(k string) string { return tt.env[k] })
		if fmt.Sprintf("%+v %+v", got.Host, got.TLS) != fmt.Sprintf("%+v %+v", tt.want.Host, tt.want.TLS) {
			t.Errorf("%d: %+v %+v, want %+v %+v", i, got.Host, got.TLS, tt.want.Host, tt.want.TLS)
		}
	}
}

// TestTLSEngine: DOCKER_TLS_VERIFY and DOCKER_CERT_PATH give a client that
// verifies the engine against ca.pem and presents cert.pem; a client
// without the certificate is refused by the engine.
func TestTLSEngine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testenv.NewCA(t)
	testenv.WritePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Cert.Raw)
	serverCert := ca.Issue(t, "engine", x509.ExtKeyUsageServerAuth, filepath.Join(dir, "server"))
	ca.Issue(t, "client", x509.ExtKeyUsageClientAuth, dir) // cert.pem, key.pem

	f := newFakeEngine(t, "1.12", "1.41", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `[]`) })
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	srv := httptest.NewUnstartedServer(f.srv.Config.Handler)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	defer srv.Close()
	host := "tcp://" + strings.TrimPrefix(srv.URL, "https://")

	env := map[string]string{"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": dir}
	c, err := New(EndpointFromEnv(func(k string) string { return env[k] }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ListContainers(context.Background(), ListContainersOptions{}); err != nil {
		t.Fatalf("TLS engine: %v", err)
	}
	// Without the client certificate, or without TLS: refused, naming the engine.
	bare, err := New(Endpoint{Host: host, TLS: &TLS{CAFile: filepath.Join(dir, "ca.pem"), Verify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if _, err := bare.Connect(context.Background()); err == nil || !strings.Contains(err.Error(), host) {
		t.Errorf("without a client certificate: err = %v", err)
	}
	plain, err := New(Endpoint{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Connect(context.Background()); err == nil || !strings.Contains(err.Error(), host) {
		t.Errorf("plain HTTP to a TLS engine: err = %v", err)
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		msg    string
		want   []error
		not    []error
	}{
		{404, "No such image: nope:1", []error{ErrNotFound}, []error{ErrConflict}},
		{409, "Conflict. The container name \"/x\" is already in use", []error{ErrConflict}, []error{ErrNotRunning}},
		{409, "Cannot kill container: x: Container abc is not running", []error{ErrNotRunning, ErrConflict}, nil},
		{400, "invalid reference format", []error{ErrInvalid}, []error{ErrUnsupported}},
		{400, "client version 1.41 is too new. Maximum supported API version is 1.40", []error{ErrUnsupported}, nil},
		{401, "", []error{ErrUnauthorized}, nil},
		{403, "error while removing network: network n id 0da7 has active endpoints", []error{ErrConflict}, []error{ErrUnauthorized}},
		{500, "Get \"http://127.0.0.1:1/v2/\": unauthorized: authentication required", []error{ErrUnauthorized}, []error{ErrNotFound}},
		{500, "manifest for x:1 not found: manifest unknown", []error{ErrNotFound}, nil},
		{500, "something broke", nil, []error{ErrNotFound, ErrConflict, ErrInvalid, ErrUnauthorized}},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			t.Parallel()
			c := newFakeEngine(t, "1.12", "1.41", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				if tt.msg != "" {
					io.WriteString(w, `{"message":`+quote(tt.msg)+`}`)
				}
			}).client(t)
			_, err := c.InspectImage(context.Background(), "nope:1")
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tt.want {
				if !errors.Is(err, s) {
					t.Errorf("%v: not %v", err, s)
				}
			}
			for _, s := range tt.not {
				if errors.Is(err, s) {
					t.Errorf("%v: unexpectedly %v", err, s)
				}
			}
			if !strings.HasPrefix(err.Error(), `inspecting image "nope:1": `) || (tt.msg != "" && !strings.Contains(err.Error(), tt.msg)) {
				t.Errorf("message = %q", err)
			}
		})
	}
}

func quote(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

func TestSplitRef(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string][2]string{
		"busybox":                        {"busybox", "latest"},
		"busybox:1":                      {"busybox", "1"},
		"127.0.0.1:5000/a/b":             {"127.0.0.1:5000/a/b", "latest"},
		"127.0.0.1:5000/a/b:v2":          {"127.0.0.1:5000/a/b", "v2"},
		"reg.io/a@sha256:0123":           {"reg.io/a", "sha256:0123"},
		"localhost:5000/app:1@sha256:ab": {"localhost:5000/app:1", "sha256:ab"},
	} {
		if n, tag := splitRef(ref); n != want[0] || tag != want[1] {
			t.Errorf("splitRef(%q) = %q, %q; want %q", ref, n, tag, want)
		}
	}
}

// TestConnectionReuse: sequential calls share one connection, and the
// request log never contains credentials.
func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	f := newFakeEngine(t, "1.12", "1.41", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/images/create" {
			io.WriteString(w, `{"status":"Digest: sha256:1"}`)
			return
		}
		io.WriteString(w, `{"Id":"sha256:1"}`)
	})
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	var logs bytes.Buffer
	c := f.client(t, WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := c.InspectImage(ctx, "x"); err != nil {
			t.Fatal(err)
		}
		if err := c.PullImage(ctx, "x:1", &AuthConfig{Username: "u", Password: "s3cret-pw", IdentityToken: "s3cret-tok"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 42 sequential requests, want 1", n)
	}
	if !strings.Contains(logs.String(), "path=/v1.41/images/x/json") {
		t.Errorf("no request log: %q", logs.String())
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("credentials in the log")
	}
	a := AuthConfig{Username: "u", Password: "s3cret-pw", IdentityToken: "s3cret-tok"}
	opts := BuildOptions{AuthConfigs: map[string]AuthConfig{"h": a}, Secrets: Secrets{"npmrc": []byte("s3cret-npm")}}
	for _, s := range []string{a.String(), fmtV(a), fmtV(opts), fmt.Sprintf("%#v", opts)} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("credentials printed: %s", s)
		}
	}
}

func fmtV(v any) string { return fmt.Sprintf("%v %+v", v, v) }
