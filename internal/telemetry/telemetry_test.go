package telemetry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/telemetry"
	"github.com/gantryhq/gantry/internal/testenv"
)

// scrape reads the metrics h serves and parses them with Prometheus' own
// text parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing metrics: %v", err)
	}
	return fams
}

// find returns the metric of family name whose labels include want.
func find(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

type logLine map[string]any

func accessLines(t *testing.T, buf *testenv.Buffer) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m logLine
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == telemetry.AccessMessage {
			out = append(out, m)
		}
	}
	return out
}

// TestWrap checks what the middleware records of requests through a mux:
// the route pattern (not the path), status, bytes both ways, the request
// ID (the client's when sane, else a fresh one, echoed), the principal, and
// one access-log line per request without the query string.
func TestWrap(t *testing.T) {
	t.Parallel()
	m := telemetry.NewMetrics()
	buf := &testenv.Buffer{}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /things/{name}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "got %d", len(b))
	})
	mux.HandleFunc("GET /things/{name}", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusNotFound)
	})
	var who atomic.Value
	h := telemetry.Wrap(mux, telemetry.WithMetrics(m), telemetry.WithRegistry("reg1"),
		telemetry.WithLogger(slog.New(slog.NewJSONHandler(buf, nil))),
		telemetry.WithPrincipal(func(ctx context.Context) (context.Context, func() string) {
			return ctx, func() string { s, _ := who.Load().(string); return s }
		}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	who.Store("alice")
	req, _ := http.NewRequest("PUT", srv.URL+"/things/x?password=hunter2", strings.NewReader(strings.Repeat("a", 1000)))
	req.Header.Set(telemetry.RequestIDHeader, "client-id-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || string(body) != "got 1000" {
		t.Fatalf("PUT: %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get(telemetry.RequestIDHeader); got != "client-id-1" {
		t.Errorf("request ID echoed %q, want the client's", got)
	}
	for _, bad := range []string{"", "has space", strings.Repeat("x", 200), "new\nline"} {
		req, _ := http.NewRequest("GET", srv.URL+"/things/y", nil)
		if bad != "" && !strings.Contains(bad, "\n") {
			req.Header.Set(telemetry.RequestIDHeader, bad)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if id := resp.Header.Get(telemetry.RequestIDHeader); len(id) != 32 || id == bad {
			t.Errorf("request ID %q for client ID %q, want a generated one", id, bad)
		}
	}

	fams := scrape(t, m.Handler())
	put := find(fams, "gantry_http_request_duration_seconds", map[string]string{"registry": "reg1", "route": "PUT /things/{name}", "method": "PUT", "code": "201"})
	if put == nil || put.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("PUT histogram: %v", put)
	}
	get := find(fams, "gantry_http_request_duration_seconds", map[string]string{"route": "GET /things/{name}", "code": "404"})
	if get == nil || get.GetHistogram().GetSampleCount() != 4 {
		t.Errorf("GET histogram: %v", get)
	}
	if in := find(fams, "gantry_http_request_size_bytes_total", map[string]string{"registry": "reg1"}); in.GetCounter().GetValue() != 1000 {
		t.Errorf("bytes in %v, want 1000", in)
	}
	if out := find(fams, "gantry_http_response_size_bytes_total", map[string]string{"registry": "reg1"}); out.GetCounter().GetValue() < float64(len("got 1000")) {
		t.Errorf("bytes out %v", out)
	}

	lines := accessLines(t, buf)
	if len(lines) != 5 {
		t.Fatalf("%d access-log lines for 5 requests:\n%s", len(lines), buf)
	}
	first := lines[0]
	for k, v := range map[string]any{"requestId": "client-id-1", "registry": "reg1", "method": "PUT", "route": "PUT /things/{name}",
		"status": 201.0, "bytesIn": 1000.0, "bytesOut": 8.0, "principal": "alice"} {
		if first[k] != v {
			t.Errorf("access log %s = %v, want %v", k, first[k], v)
		}
	}
	if strings.Contains(buf.String(), "hunter2") || strings.Contains(buf.String(), "/things/x") {
		t.Errorf("the access log holds the raw path or query:\n%s", buf)
	}
}

// TestWrapKeepsWriterCapabilities checks that handlers behind the
// middleware still find http.Flusher, io.ReaderFrom (sendfile) and, through
// Unwrap, http.ResponseController's features.
func TestWrapKeepsWriterCapabilities(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(f, []byte(strings.Repeat("b", 1<<16)), 0o600); err != nil {
		t.Fatal(err)
	}
	m := telemetry.NewMetrics()
	h := telemetry.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(http.Flusher); !ok {
			t.Error("no http.Flusher")
		}
		if _, ok := w.(io.ReaderFrom); !ok {
			t.Error("no io.ReaderFrom")
		}
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("ResponseController.SetWriteDeadline: %v", err)
		}
		file, err := os.Open(f)
		if err != nil {
			t.Error(err)
			return
		}
		defer file.Close()
		w.Header().Set("Content-Length", "65536")
		if n, err := io.Copy(w, file); n != 1<<16 || err != nil {
			t.Errorf("io.Copy: %d, %v", n, err)
		}
		w.(http.Flusher).Flush()
	}), telemetry.WithMetrics(m))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/blob")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != 1<<16 {
		t.Fatalf("read %d bytes", n)
	}
	out := find(scrape(t, m.Handler()), "gantry_http_response_size_bytes_total", map[string]string{"registry": ""})
	if out.GetCounter().GetValue() != 1<<16 {
		t.Errorf("bytes out counted through ReadFrom: %v", out)
	}
	unmatched := find(scrape(t, m.Handler()), "gantry_http_request_duration_seconds", map[string]string{"route": "unmatched", "code": "200"})
	if unmatched == nil {
		t.Error("a request no mux routed is not labelled route=unmatched")
	}
}

// TestWrapRouter checks that a Router's route and repository win over the
// mux pattern.
func TestWrapRouter(t *testing.T) {
	t.Parallel()
	buf := &testenv.Buffer{}
	mux := http.NewServeMux()
	mux.Handle("/v2/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	h := telemetry.Wrap(mux, telemetry.WithLogger(slog.New(slog.NewJSONHandler(buf, nil))),
		telemetry.WithRouter(func(r *http.Request) (string, string, bool) {
			return "/v2/{name}/manifests/{reference}", "a/b", true
		}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v2/a/b/manifests/latest", nil))
	lines := accessLines(t, buf)
	if len(lines) != 1 || lines[0]["route"] != "/v2/{name}/manifests/{reference}" || lines[0]["repository"] != "a/b" {
		t.Fatalf("access log: %s", buf)
	}
}

// TestAuthorizedHandler checks the answers of the admin-only metrics
// handler to each kind of authorization error.
func TestAuthorizedHandler(t *testing.T) {
	t.Parallel()
	m := telemetry.NewMetrics()
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, http.StatusOK},
		{fmt.Errorf("no credentials: %w", errdefs.ErrUnauthenticated), http.StatusUnauthorized},
		{fmt.Errorf("token: %w", errdefs.ErrDenied), http.StatusForbidden},
		{errdefs.New("throttled", errdefs.ErrTooManyRequests, errdefs.ErrUnauthenticated), http.StatusTooManyRequests},
		{errors.New("database down"), http.StatusInternalServerError},
	} {
		rec := httptest.NewRecorder()
		m.AuthorizedHandler(func(*http.Request) error { return tc.err }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != tc.want {
			t.Errorf("authorize error %v: %d, want %d", tc.err, rec.Code, tc.want)
		}
		if tc.want == http.StatusOK && !strings.Contains(rec.Body.String(), "go_goroutines") {
			t.Errorf("metrics body lacks the Go collector:\n%.300s", rec.Body)
		}
		if tc.want == http.StatusUnauthorized && strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic") {
			t.Error("a Basic challenge makes browsers prompt for and keep the admin password")
		}
	}
}

type usage struct{}

func (usage) Totals(context.Context) (int64, int, error) { return 12345, 2, nil }

type runs struct{}

func (runs) RunCounts(context.Context) ([]telemetry.RunCount, error) {
	return []telemetry.RunCount{{"Queued", "Commit", 3}, {"Queued", "Manual", 1}, {"Succeeded", "Timer", 7}}, nil
}

// TestHooksAndScrapeTimeGauges checks the metrics the hooks move and the
// gauges read at scrape time.
func TestHooksAndScrapeTimeGauges(t *testing.T) {
	t.Parallel()
	m := telemetry.NewMetrics(telemetry.WithStoreUsage(usage{}), telemetry.WithRunCounter(runs{}))
	m.LoginFailed("invalid_credentials")
	m.LoginFailed("invalid_credentials")
	m.LockedOut()
	m.GCRun(4096, 2*time.Second)
	m.RunQueued("Image Update", 20*time.Millisecond)
	m.BlobImported("import", 1000)
	fams := scrape(t, m.Handler())
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gantry_auth_failures_total", map[string]string{"reason": "invalid_credentials"}, 2},
		{"gantry_auth_lockouts_total", nil, 1},
		{"gantry_gc_runs_total", nil, 1},
		{"gantry_gc_freed_bytes_total", nil, 4096},
		{"gantry_import_bytes_total", map[string]string{"source": "import"}, 1000},
		{"gantry_blob_store_bytes", nil, 12345},
		{"gantry_upload_sessions", nil, 2},
		{"gantry_run_queue_depth", nil, 4},
		{"gantry_runs", map[string]string{"status": "Succeeded", "trigger": "Timer"}, 7},
	} {
		mt := find(fams, c.name, c.labels)
		var got float64
		switch {
		case mt == nil:
			t.Errorf("%s%v missing", c.name, c.labels)
			continue
		case mt.Counter != nil:
			got = mt.GetCounter().GetValue()
		case mt.Gauge != nil:
			got = mt.GetGauge().GetValue()
		}
		if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if h := find(fams, "gantry_trigger_latency_seconds", map[string]string{"trigger": "Image Update"}); h.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("trigger latency: %v", h)
	}
	if fams["process_open_fds"] == nil {
		t.Error("no process collector")
	}
}

// TestReady checks the readiness status codes: a required check failing
// is 503, an optional one 200 with the part named as degraded.
func TestReady(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	bad := func(context.Context) error { return errors.New("read-only file system") }
	for _, tc := range []struct {
		name   string
		checks []telemetry.Check
		code   int
		body   []string
	}{
		{"ready", []telemetry.Check{{Name: "database", Run: ok}, {Name: "engine", Run: ok, Optional: true}}, 200, []string{"ready", "database: ok", "engine: ok"}},
		{"degraded", []telemetry.Check{{Name: "database", Run: ok}, {Name: "engine", Run: bad, Optional: true}}, 200, []string{"degraded", "engine: degraded (read-only file system)"}},
		{"not ready", []telemetry.Check{{Name: "blobs", Run: bad}, {Name: "engine", Run: bad, Optional: true}}, 503, []string{"not ready", "blobs: failed (read-only file system)"}},
	} {
		rec := httptest.NewRecorder()
		telemetry.Ready(tc.checks...).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, rec.Code, tc.code)
		}
		for _, s := range tc.body {
			if !strings.Contains(rec.Body.String(), s) {
				t.Errorf("%s: body %q lacks %q", tc.name, rec.Body, s)
			}
		}
	}
	rec := httptest.NewRecorder()
	telemetry.Live().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "ok" {
		t.Errorf("/healthz: %d %q", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	telemetry.Ready(telemetry.Check{Name: "blobs", Run: bad}).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz?format=json", nil))
	var r telemetry.Readiness
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || r.Status != "not ready" || r.Checks[0].Status != "failed" {
		t.Errorf("JSON readiness: %v %s", err, rec.Body)
	}
}

// TestTraces sends spans to a real OTLP/HTTP receiver on 127.0.0.1 and
// checks that the provider's shutdown flushes them there.
func TestTraces(t *testing.T) {
	t.Parallel()
	var posts, bytes atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.Error(w, "not here", http.StatusNotFound)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		posts.Add(1)
		bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(recv.Close)
	ctx := context.Background()
	tp, err := telemetry.NewTracerProvider(ctx, telemetry.WithEndpointURL(recv.URL+"/v1/traces"), telemetry.WithServiceVersion("test"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/things/{name}", func(w http.ResponseWriter, r *http.Request) {})
	h := telemetry.Wrap(mux, telemetry.WithTracerProvider(tp))
	for range 3 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/things/x", nil))
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 || bytes.Load() == 0 {
		t.Fatalf("the receiver got %d posts, %d bytes", posts.Load(), bytes.Load())
	}
}
