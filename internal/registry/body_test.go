package registry_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/registry"
)

// logBuffer collects log output from concurrent requests.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sendTruncated writes head (a request line and headers, without the blank
// line) and then body, half-closes the connection and returns the response.
func sendTruncated(t *testing.T, e *env, head string, body []byte) response {
	t.Helper()
	c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append([]byte(head+"Host: x\r\n\r\n"), body...)); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(head, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s: reading the response: %v", strings.SplitN(head, "\r\n", 2)[0], err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	resp.Request, _ = http.NewRequest(method, "http://x/", nil)
	return response{resp, b}
}

// TestTruncatedBody: a client that declares more than it sends (or cuts a
// chunked body short) is answered 400 with the OCI code of the operation,
// logged at debug level only, and nothing is stored; an upload session
// stays resumable from what it received.
func TestTruncatedBody(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	e := newEnv(t, registry.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	content := bytes.Repeat([]byte("0123456789"), 100)
	d := digest.FromBytes(content)
	cl := fmt.Sprintf("Content-Length: %d\r\n", len(content))

	t.Run("monolithic POST", func(t *testing.T) {
		r := sendTruncated(t, e, "POST /v2/mono/blobs/uploads/?digest="+d.String()+" HTTP/1.1\r\n"+cl, content[:400])
		e.expect(t, r, http.StatusBadRequest, "BLOB_UPLOAD_INVALID")
		e.expect(t, e.do(t, "HEAD", "/v2/mono/blobs/"+d.String(), nil), http.StatusNotFound, "")
	})
	t.Run("monolithic PUT", func(t *testing.T) {
		loc := e.do(t, "POST", "/v2/put/blobs/uploads/", nil).Header.Get("Location")
		r := sendTruncated(t, e, "PUT "+loc+"?digest="+d.String()+" HTTP/1.1\r\n"+cl, content[:400])
		e.expect(t, r, http.StatusBadRequest, "BLOB_UPLOAD_INVALID")
		e.expect(t, e.do(t, "HEAD", "/v2/put/blobs/"+d.String(), nil), http.StatusNotFound, "")
		// The session kept what arrived: the client resumes from there.
		if rg := e.do(t, "GET", loc, nil).Header.Get("Range"); rg != "0-399" {
			t.Fatalf("upload Range after the truncated PUT: %q, want 0-399", rg)
		}
		e.expect(t, e.do(t, "PUT", loc+"?digest="+d.String(), content[400:], "Content-Range", "400-999"), http.StatusCreated, "")
	})
	t.Run("PATCH", func(t *testing.T) {
		loc := e.do(t, "POST", "/v2/patch/blobs/uploads/", nil).Header.Get("Location")
		r := sendTruncated(t, e, "PATCH "+loc+" HTTP/1.1\r\n"+cl+"Content-Range: 0-999\r\n", content[:300])
		e.expect(t, r, http.StatusBadRequest, "BLOB_UPLOAD_INVALID")
		e.expect(t, e.do(t, "HEAD", "/v2/patch/blobs/"+d.String(), nil), http.StatusNotFound, "")
		if rg := e.do(t, "GET", loc, nil).Header.Get("Range"); rg != "0-299" {
			t.Fatalf("upload Range after the truncated PATCH: %q, want 0-299", rg)
		}
		e.expect(t, e.do(t, "PATCH", loc, content[300:], "Content-Range", "300-999"), http.StatusAccepted, "")
		e.expect(t, e.do(t, "PUT", loc+"?digest="+d.String(), nil), http.StatusCreated, "")
	})
	t.Run("chunked PATCH", func(t *testing.T) {
		loc := e.do(t, "POST", "/v2/chunked/blobs/uploads/", nil).Header.Get("Location")
		part := fmt.Appendf(nil, "%x\r\n%s\r\n%x\r\n%s", 200, content[:200], 800, content[200:500])
		r := sendTruncated(t, e, "PATCH "+loc+" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", part)
		e.expect(t, r, http.StatusBadRequest, "BLOB_UPLOAD_INVALID")
		e.expect(t, e.do(t, "HEAD", "/v2/chunked/blobs/"+d.String(), nil), http.StatusNotFound, "")
		e.expect(t, e.do(t, "GET", loc, nil), http.StatusNoContent, "")
	})
	t.Run("manifest PUT", func(t *testing.T) {
		m := e.image(t, "man", mtManifest, "truncated")
		r := sendTruncated(t, e, fmt.Sprintf("PUT /v2/man/manifests/v1 HTTP/1.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n", mtManifest, len(m)), m[:len(m)/2])
		e.expect(t, r, http.StatusBadRequest, "MANIFEST_INVALID")
		e.expect(t, e.do(t, "GET", "/v2/man/manifests/v1", nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
		e.expect(t, e.do(t, "GET", "/v2/man/manifests/"+digest.FromBytes(m).String(), nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
	})
	if l := logs.String(); strings.Contains(l, "level=ERROR") {
		t.Errorf("truncated bodies logged as errors:\n%s", l)
	} else if !strings.Contains(l, "level=DEBUG") {
		t.Errorf("no debug line for the refused requests:\n%s", l)
	}
}

// TestRefusedBeforeBody: a write refused before its body is read (here:
// unauthenticated) is answered at once, without waiting for a body that
// never comes, and its connection does not stay open for the body.
func TestRefusedBeforeBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registry.WithAuthorizer(denyAll{}))
	d := digest.FromString("x")
	for _, c := range []struct{ name, head string }{
		{"manifest PUT", "PUT /v2/app/manifests/v1 HTTP/1.1\r\nContent-Length: 100000\r\n"},
		{"monolithic POST", "POST /v2/app/blobs/uploads/?digest=" + d.String() + " HTTP/1.1\r\nContent-Length: 200000\r\n"},
		{"large PATCH", "PATCH /v2/app/blobs/uploads/3f1b7c2e-0000-4000-8000-000000000000 HTTP/1.1\r\nContent-Length: 1000000000\r\n"},
		{"chunked PATCH", "PATCH /v2/app/blobs/uploads/3f1b7c2e-0000-4000-8000-000000000000 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"},
		{"no route", "PUT /v2/app/nothing/here HTTP/1.1\r\nContent-Length: 1000\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			_ = conn.SetDeadline(start.Add(time.Second))
			if _, err := conn.Write([]byte(c.head + "Host: x\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer within 1s: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			// The server lets go of the connection soon after, though the
			// client neither sends the body nor closes.
			_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.Copy(io.Discard, br); err != nil {
				t.Fatalf("connection still open %v after the answer: %v", time.Since(start).Round(time.Millisecond), err)
			}
		})
	}
}

// denyAll refuses every request as unauthenticated.
type denyAll struct{}

func (denyAll) Authorize(*http.Request, string, []auth.Access) (auth.Identity, error) {
	return auth.Identity{}, auth.ErrUnauthenticated
}
func (denyAll) Challenge(*http.Request, string, []auth.Access) string { return `Basic realm="test"` }
