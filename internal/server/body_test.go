package server_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
)

// rawExchange is one request written by hand on its own connection.
type rawExchange struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// rawRequest dials host and writes the request line and headers of
// head (without the blank line) plus Host and Content-Length.
func rawRequest(t *testing.T, host, head string, contentLength int) *rawExchange {
	t.Helper()
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if contentLength >= 0 {
		head += fmt.Sprintf("Content-Length: %d\r\n", contentLength)
	}
	if _, err := io.WriteString(c, head+"Host: "+host+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return &rawExchange{t: t, conn: c, br: bufio.NewReader(c)}
}

func (x *rawExchange) send(b []byte) {
	x.t.Helper()
	if _, err := x.conn.Write(b); err != nil {
		x.t.Fatalf("sending the body: %v", err)
	}
}

// response reads the response, failing unless it comes within limit.
func (x *rawExchange) response(limit time.Duration) (status int, code string) {
	x.t.Helper()
	_ = x.conn.SetReadDeadline(time.Now().Add(limit))
	resp, err := http.ReadResponse(x.br, nil)
	if err != nil {
		x.t.Fatalf("no response within %v: %v", limit, err)
	}
	defer resp.Body.Close()
	var b struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	body, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(body, &b) == nil && len(b.Errors) > 0 {
		code = b.Errors[0].Code
	}
	return resp.StatusCode, code
}

func basic(user, pass string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + "\r\n"
}

// TestBodyTimeout: a request body that stops arriving is cut after the
// body timeout (not held open), a slow but steady one is not, and a
// request refused before its body is answered at once.
func TestBodyTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	srv := startServer(t, serverOptions{network: config.Network{BodyTimeout: timeout}})
	host := srv.createRegistry("bodies", false)
	oci := newOCIClient(t, host, "admin", srv.adminPassword)
	admin := basic("admin", srv.adminPassword)
	content := bytes.Repeat([]byte("0123456789"), 110)
	d := digest.FromBytes(content)
	t.Cleanup(func() {
		// Once the subtests are done: the clients' faults are no errors.
		if l := srv.log.String(); strings.Contains(l, "level=ERROR") {
			t.Errorf("errors logged:\n%s", l)
		}
	})

	t.Run("stalled monolithic upload", func(t *testing.T) {
		t.Parallel()
		x := rawRequest(t, host, "POST /v2/stalled/blobs/uploads/?digest="+d.String()+" HTTP/1.1\r\n"+admin, len(content))
		x.send(content[:100])
		start := time.Now()
		status, code := x.response(5 * time.Second)
		if status != http.StatusRequestTimeout || code != "BLOB_UPLOAD_INVALID" {
			t.Fatalf("stalled upload: %d %s, want 408 BLOB_UPLOAD_INVALID", status, code)
		}
		if el := time.Since(start); el < timeout*7/8-50*time.Millisecond || el > timeout+2*time.Second {
			t.Errorf("cut after %v, want about %v", el, timeout)
		}
		if oci.exists("/v2/stalled/blobs/" + d.String()) {
			t.Error("the stalled blob is stored")
		}
	})
	t.Run("stalled PATCH", func(t *testing.T) {
		t.Parallel()
		loc := oci.startUpload("stalled-patch")
		x := rawRequest(t, host, "PATCH "+loc+" HTTP/1.1\r\n"+admin, len(content))
		x.send(content[:100])
		if status, code := x.response(5 * time.Second); status != http.StatusRequestTimeout || code != "BLOB_UPLOAD_INVALID" {
			t.Fatalf("stalled PATCH: %d %s, want 408 BLOB_UPLOAD_INVALID", status, code)
		}
		// The session holds what arrived and resumes from there.
		if rg := oci.do("GET", loc, nil, nil).header.Get("Range"); rg != "0-99" {
			t.Fatalf("Range after the stalled PATCH: %q, want 0-99", rg)
		}
		if r := oci.do("PUT", loc+"?digest="+d.String(), content[100:], map[string]string{"Content-Range": fmt.Sprintf("100-%d", len(content)-1)}); r.status != http.StatusCreated {
			t.Fatalf("resuming: %s", r)
		}
	})
	t.Run("stalled manifest", func(t *testing.T) {
		t.Parallel()
		x := rawRequest(t, host, "PUT /v2/stalled-manifest/manifests/v1 HTTP/1.1\r\nContent-Type: "+mtManifest+"\r\n"+admin, 500)
		x.send([]byte(`{"schemaVersion":2,`))
		if status, code := x.response(5 * time.Second); status != http.StatusRequestTimeout || code != "MANIFEST_INVALID" {
			t.Fatalf("stalled manifest: %d %s, want 408 MANIFEST_INVALID", status, code)
		}
	})
	t.Run("slow but steady upload", func(t *testing.T) {
		t.Parallel()
		// 11 pieces of 100 bytes, one every 100ms: 1.1s in all, longer
		// than the timeout, but never a pause as long.
		x := rawRequest(t, host, "POST /v2/steady/blobs/uploads/?digest="+d.String()+" HTTP/1.1\r\n"+admin, len(content))
		for i := 0; i < len(content); i += 100 {
			x.send(content[i : i+100])
			time.Sleep(100 * time.Millisecond)
		}
		if status, code := x.response(5 * time.Second); status != http.StatusCreated {
			t.Fatalf("steady upload: %d %s, want 201", status, code)
		}
		if !oci.exists("/v2/steady/blobs/" + d.String()) {
			t.Error("the steady blob is not stored")
		}
	})
	for _, c := range []struct {
		name, head string
		length     int
	}{
		{"unauthenticated manifest PUT", "PUT /v2/app/manifests/v1 HTTP/1.1\r\n", 100_000},
		{"unauthenticated upload", "POST /v2/app/blobs/uploads/?digest=" + d.String() + " HTTP/1.1\r\n", 1 << 30},
		{"wrong password", "PUT /v2/app/manifests/v1 HTTP/1.1\r\n" + basic("admin", "wrong"), 1000},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			x := rawRequest(t, host, c.head, c.length)
			if status, _ := x.response(time.Second); status != http.StatusUnauthorized {
				t.Fatalf("%d, want 401", status)
			}
			// And lets go of the connection soon after, though the client
			// neither sends the body nor closes.
			_ = x.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.Copy(io.Discard, x.br); err != nil {
				t.Fatalf("connection still open after the answer: %v", err)
			}
		})
	}
	// The token endpoint and the control API read bodies of their own
	// (a form, JSON): a stalled one is cut too, as the client's fault.
	for _, c := range []struct {
		name, addr, head string
		body             string
	}{
		{"token endpoint stalled", host, "POST " + auth.TokenPath + " HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n", "grant_type=password&username=admin"},
		{"control API stalled", srv.addr, "POST /v1/registries HTTP/1.1\r\nContent-Type: application/json\r\n" + admin, `{"name":`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			x := rawRequest(t, c.addr, c.head, 1000)
			x.send([]byte(c.body))
			if status, _ := x.response(5 * time.Second); status < 400 || status >= 500 {
				t.Fatalf("%d, want a 4xx", status)
			}
		})
	}
	t.Run("oversized headers", func(t *testing.T) {
		t.Parallel()
		x := rawRequest(t, host, "GET /v2/ HTTP/1.1\r\nX-Padding: "+strings.Repeat("a", 512<<10)+"\r\n", -1)
		if status, _ := x.response(5 * time.Second); status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("512 KiB of headers: %d, want 431", status)
		}
	})
}
