package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeEngine is an httptest server that answers /_ping and /version like
// dockerd 20.10 and hands everything else to h.
func fakeEngine(t *testing.T, apiVersion string, h http.HandlerFunc) *Client {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", apiVersion)
		io.WriteString(w, "OK")
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"Version":"fake","ApiVersion":"`+apiVersion+`","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}`)
	})
	if h != nil {
		mux.HandleFunc("/v1.41/", h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := New("tcp://" + strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestNewChecksVersion(t *testing.T) {
	t.Parallel()
	c := fakeEngine(t, "1.43", nil)
	if v := c.EngineVersion(); v.APIVersion != "1.43" || v.Version != "fake" {
		t.Errorf("EngineVersion = %+v", v)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"Version":"19.03.15","ApiVersion":"1.40","MinAPIVersion":"1.12"}`)
	})
	old := httptest.NewServer(mux)
	defer old.Close()
	_, err := New("tcp://" + strings.TrimPrefix(old.URL, "http://"))
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("New against API 1.40: err = %v, want ErrUnsupported", err)
	}
	if !strings.Contains(err.Error(), "19.03.15") || !strings.Contains(err.Error(), "1.40") {
		t.Errorf("error does not name the engine: %v", err)
	}
}

func TestNewRejectsBadHosts(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"", "unix://", "/tmp/docker.sock", "http://127.0.0.1:2375", "tcp://", "tcp://127.0.0.1:1/x", "ssh://host"} {
		if _, err := New(host); err == nil {
			t.Errorf("New(%q) succeeded", host)
		}
	}
	if _, err := New("unix:///nonexistent/docker.sock", WithCheckTimeout(time.Second)); err == nil {
		t.Error("New on a missing socket succeeded")
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
			c := fakeEngine(t, "1.41", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				if tt.msg != "" {
					io.WriteString(w, `{"message":`+quote(tt.msg)+`}`)
				}
			})
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
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"ApiVersion":"1.41"}`) })
	mux.HandleFunc("GET /v1.41/images/{name}/json", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"Id":"sha256:1"}`) })
	mux.HandleFunc("POST /v1.41/images/create", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":"Digest: sha256:1"}`)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	var logs bytes.Buffer
	c, err := New("tcp://"+strings.TrimPrefix(srv.URL, "http://"), WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
	if !strings.Contains(logs.String(), "path=/images/x/json") {
		t.Errorf("no request log: %q", logs.String())
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("credentials in the log")
	}
	a := AuthConfig{Username: "u", Password: "s3cret-pw", IdentityToken: "s3cret-tok"}
	for _, s := range []string{a.String(), fmtV(a), fmtV(BuildOptions{AuthConfigs: map[string]AuthConfig{"h": a}})} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("credentials printed: %s", s)
		}
	}
}

func fmtV(v any) string { return fmt.Sprintf("%v %+v", v, v) }
