package certs

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gantryhq/gantry/internal/testenv"
)

// An HTTP server on TLSConfig speaks HTTP/2 to TLS clients and answers a
// plain HTTP client at once with 400 and why (net/http does it: nothing
// more is needed).
func TestPlainHTTPToTLS(t *testing.T) {
	t.Parallel()
	s, err := NewSelfSigned(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }),
		TLSConfig:         TLSConfig(s),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	plain := &http.Client{Timeout: 5 * time.Second}
	started := time.Now()
	resp, err := plain.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Client sent an HTTP request to an HTTPS server") {
		t.Errorf("plain HTTP: %d %q", resp.StatusCode, body)
	}
	if d := time.Since(started); d > 2*time.Second {
		t.Errorf("plain HTTP answered after %v", d)
	}

	secure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool(t, s.CAPEM())}, ForceAttemptHTTP2: true}}
	resp, err = secure.Get("https://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/2.0" {
		t.Errorf("HTTPS: served as %q, want HTTP/2.0", body)
	}

	// TLS 1.1 and older are refused.
	_, err = tls.Dial("tcp", addr, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true})
	if err == nil {
		t.Error("a TLS 1.1 handshake succeeded")
	}
}

func TestZapToSlog(t *testing.T) {
	t.Parallel()
	var buf testenv.Buffer
	zl := zapLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	zl.Named("maintenance").With(zap.String("a", "1")).Warn("renewing", zap.Strings("identifiers", []string{"x.test"}), zap.Int("n", 2))
	zl.Debug("hidden")
	got := buf.String()
	for _, want := range []string{"level=WARN", "msg=renewing", "certmagic=maintenance", "a=1", "identifiers=[x.test]", "n=2"} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "hidden") {
		t.Errorf("a debug entry passed an info logger: %q", got)
	}
}
