package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/telemetry"
	"github.com/gantryhq/gantry/internal/testenv"
)

// scrapeMetrics GETs /metrics from the control listener as the admin and
// parses it with Prometheus' own text parser.
func scrapeMetrics(t *testing.T, srv *testServer) map[string]*dto.MetricFamily {
	t.Helper()
	req := newRequest(t, "GET", srv.url("/metrics"), nil)
	req.SetBasicAuth("admin", srv.adminPassword)
	r := do(t, httpFrom(freshSource()), req)
	if r.status != http.StatusOK {
		t.Fatalf("scraping /metrics: %s", r)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// metricValue is the value of the sample of family name whose labels are
// exactly labels (a histogram's count); 0 when there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		if len(have) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestMetricsMoveWithRequests pushes and pulls a blob through a registry and
// checks that the request histogram of its route and the byte counters
// moved by as much, that /metrics is the admin's on the control listener
// (401 without credentials, 403 for a token), and that the ops endpoints
// answer without authentication.
func TestMetricsMoveWithRequests(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{})
	reg := srv.createRegistry("obs", false)
	tok, err := srv.admin().CreateToken(context.Background(), "obs", api.CreateTokenRequest{Name: "puller", ScopeMap: "_repositories_pull"})
	if err != nil {
		t.Fatal(err)
	}
	tokenPass := tok.Credentials.Passwords[0].Value

	before := scrapeMetrics(t, srv)
	c := newOCIClient(t, reg, "admin", srv.adminPassword)
	blob := bytes.Repeat([]byte("gantry metrics "), 4000) // 60000 bytes
	d := c.pushBlob("app", blob)
	const pulls = 3
	for range pulls {
		if r := c.do("GET", "/v2/app/blobs/"+d.String(), nil, nil); r.status != http.StatusOK || len(r.body) != len(blob) {
			t.Fatalf("pulling the blob: %s", r)
		}
	}
	get := map[string]string{"registry": "obs", "route": "/v2/{name}/blobs/{digest}", "method": "GET", "code": "200"}
	// A request is observed once its handler has returned, which may be
	// just after the client read the last byte: scrape until the last pull
	// shows (or the wait ends, and the checks below say what is missing).
	after := scrapeMetrics(t, srv)
	for i := 0; i < 100 && metricValue(after, "gantry_http_request_duration_seconds", get)-metricValue(before, "gantry_http_request_duration_seconds", get) < pulls; i++ {
		time.Sleep(20 * time.Millisecond)
		after = scrapeMetrics(t, srv)
	}

	delta := func(name string, labels map[string]string) float64 {
		return metricValue(after, name, labels) - metricValue(before, name, labels)
	}
	if n := delta("gantry_http_request_duration_seconds", get); n != pulls {
		t.Errorf("blob GET count moved by %v, want %d", n, pulls)
	}
	push := map[string]string{"registry": "obs", "route": "/v2/{name}/blobs/uploads/", "method": "POST", "code": "201"}
	if n := delta("gantry_http_request_duration_seconds", push); n != 1 {
		t.Errorf("blob push count moved by %v, want 1", n)
	}
	if n := delta("gantry_http_request_size_bytes_total", map[string]string{"registry": "obs"}); n < float64(len(blob)) {
		t.Errorf("bytes in grew by %v, want at least %d", n, len(blob))
	}
	if n := delta("gantry_http_response_size_bytes_total", map[string]string{"registry": "obs"}); n < float64(pulls*len(blob)) {
		t.Errorf("bytes out grew by %v, want at least %d", n, pulls*len(blob))
	}
	if n := metricValue(after, "gantry_blob_store_bytes", nil); n < float64(len(blob)) {
		t.Errorf("gantry_blob_store_bytes = %v, want at least %d", n, len(blob))
	}
	if after["gantry_run_queue_depth"] == nil || after["go_goroutines"] == nil {
		t.Error("the run queue gauge or the Go collector is missing")
	}
	for name := range after {
		if strings.Contains(name, "gantry_http") {
			for _, m := range after[name].GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "route" && strings.Contains(l.GetValue(), "sha256:") {
						t.Errorf("a route label holds a raw path: %q", l.GetValue())
					}
				}
			}
		}
	}

	get401 := do(t, httpFrom(freshSource()), newRequest(t, "GET", srv.url("/metrics"), nil))
	if get401.status != http.StatusUnauthorized {
		t.Errorf("/metrics without credentials: %s, want 401", get401)
	}
	req := newRequest(t, "GET", srv.url("/metrics"), nil)
	req.SetBasicAuth("obs/puller", tokenPass)
	if r := do(t, httpFrom(freshSource()), req); r.status != http.StatusForbidden {
		t.Errorf("/metrics as a token: %s, want 403", r)
	}
	// The Go profiles: the admin's, like the metrics.
	if r := do(t, httpFrom(freshSource()), newRequest(t, "GET", srv.url("/debug/pprof/cmdline"), nil)); r.status != http.StatusUnauthorized {
		t.Errorf("/debug/pprof/cmdline without credentials: %s, want 401", r)
	}
	req = newRequest(t, "GET", srv.url("/debug/pprof/cmdline"), nil)
	req.SetBasicAuth("obs/puller", tokenPass)
	if r := do(t, httpFrom(freshSource()), req); r.status != http.StatusForbidden {
		t.Errorf("/debug/pprof/cmdline as a token: %s, want 403", r)
	}
	req = newRequest(t, "GET", srv.url("/debug/pprof/goroutine?debug=1"), nil)
	req.SetBasicAuth("admin", srv.adminPassword)
	if r := do(t, httpFrom(freshSource()), req); r.status != http.StatusOK || !strings.Contains(string(r.body), "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine as the admin: %s", r)
	}
	req = newRequest(t, "GET", srv.url("/metrics"), nil)
	req.SetBasicAuth("admin", "wrong-"+testenv.RandomHex(4))
	if r := do(t, httpFrom(freshSource()), req); r.status != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong password: %s, want 401", r)
	}
	if n := metricValue(scrapeMetrics(t, srv), "gantry_auth_failures_total", map[string]string{"reason": "invalid_credentials"}); n < 1 {
		t.Errorf("gantry_auth_failures_total{reason=invalid_credentials} = %v after a wrong password", n)
	}

	if r := do(t, httpFrom(freshSource()), newRequest(t, "GET", srv.url("/healthz"), nil)); r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "ok" {
		t.Errorf("/healthz: %s", r)
	}
	// No engine in this server: degraded, still 200, the engine named.
	r := do(t, httpFrom(freshSource()), newRequest(t, "GET", srv.url("/readyz"), nil))
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "engine: degraded") || !strings.Contains(string(r.body), "database: ok") ||
		!strings.Contains(string(r.body), "blobs: ok") {
		t.Errorf("/readyz without an engine: %s", r)
	}
}

// TestAccessLog sends requests with Basic credentials, a bearer token, the
// token endpoint's password and refresh-token grants (form and query), and
// checks that each has exactly one access-log line, with its route, status
// and principal, and that no password or token appears anywhere in the
// server log.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{})
	reg := srv.createRegistry("logged", false)
	tok, err := srv.admin().CreateToken(context.Background(), "logged", api.CreateTokenRequest{Name: "pusher", ScopeMap: "_repositories_push"})
	if err != nil {
		t.Fatal(err)
	}
	tokenPass := tok.Credentials.Passwords[0].Value
	newOCIClient(t, reg, "admin", srv.adminPassword).pushImage("app", "v1")

	var secrets []string
	secrets = append(secrets, srv.adminPassword, tokenPass)
	type sent struct {
		id, route, principal string
		status               int
	}
	var want []sent
	n := 0
	send := func(req *http.Request, route, principal string) response {
		t.Helper()
		n++
		id := fmt.Sprintf("acc-%s-%d", testenv.RandomHex(4), n)
		req.Header.Set(telemetry.RequestIDHeader, id)
		r := do(t, httpFrom(freshSource()), req)
		if got := r.header.Get(telemetry.RequestIDHeader); got != id {
			t.Errorf("%s %s: request ID echoed %q, want %q", req.Method, req.URL.Path, got, id)
		}
		want = append(want, sent{id: id, route: route, principal: principal, status: r.status})
		return r
	}

	// Basic, on the registry and on the control API.
	req := newRequest(t, "GET", "http://"+reg+"/v2/app/manifests/v1", nil)
	req.Header.Set("Accept", mtManifest)
	req.SetBasicAuth("admin", srv.adminPassword)
	send(req, "/v2/{name}/manifests/{reference}", "admin")
	req = newRequest(t, "GET", srv.url("/v1/whoami"), nil)
	req.SetBasicAuth("logged/pusher", tokenPass)
	send(req, "GET /v1/whoami", "pusher")

	// The token endpoint (the principal who logged in is logged): password
	// grant (form), then the refresh token grant, and Basic with a query
	// string.
	form := url.Values{"grant_type": {"password"}, "username": {"pusher"}, "password": {tokenPass}, "service": {reg},
		"scope": {"repository:app:pull,push"}, "access_type": {"offline"}, "client_id": {"test"}}
	req = newRequest(t, "POST", "http://"+reg+"/oauth2/token", []byte(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r := send(req, "/oauth2/token", "pusher")
	var body struct {
		Token        string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &body) != nil || body.Token == "" || body.RefreshToken == "" {
		t.Fatalf("password grant: %s", r)
	}
	secrets = append(secrets, body.Token, body.RefreshToken)
	form = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body.RefreshToken}, "service": {reg}, "scope": {"repository:app:pull"}}
	req = newRequest(t, "POST", "http://"+reg+"/oauth2/token", []byte(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	send(req, "/oauth2/token", "pusher")
	req = newRequest(t, "GET", "http://"+reg+"/oauth2/token?service="+reg+"&scope=repository:app:pull&password="+url.QueryEscape(tokenPass), nil)
	req.SetBasicAuth("pusher", tokenPass)
	send(req, "/oauth2/token", "pusher")

	// Bearer, with a bad token too.
	req = newRequest(t, "GET", "http://"+reg+"/v2/app/tags/list", nil)
	req.Header.Set("Authorization", "Bearer "+body.Token)
	send(req, "/v2/{name}/tags/list", "pusher")
	forged := body.Token + "x"
	secrets = append(secrets, forged)
	req = newRequest(t, "GET", "http://"+reg+"/v2/app/tags/list", nil)
	req.Header.Set("Authorization", "Bearer "+forged)
	send(req, "/v2/{name}/tags/list", "")
	// A wrong password and an unknown route.
	wrong := "wrong-" + testenv.RandomHex(8)
	secrets = append(secrets, wrong)
	req = newRequest(t, "GET", srv.url("/v1/registries"), nil)
	req.SetBasicAuth("admin", wrong)
	send(req, "GET /v1/registries", "")
	send(newRequest(t, "GET", "http://"+reg+"/nothing/here", nil), "unmatched", "")

	log := srv.log.String()
	for _, w := range want {
		re := regexp.MustCompile(`(?m)^.*msg="http request".*requestId=` + regexp.QuoteMeta(w.id) + ` .*$`)
		lines := re.FindAllString(log, -1)
		if len(lines) != 1 {
			t.Errorf("request %s (%s): %d access-log lines, want 1", w.id, w.route, len(lines))
			continue
		}
		l := lines[0]
		for _, attr := range []string{
			"route=" + quoteIfNeeded(w.route), fmt.Sprintf("status=%d", w.status), "principal=" + quoteIfNeeded(w.principal),
		} {
			if !strings.Contains(l, " "+attr+" ") && !strings.HasSuffix(l, " "+attr) {
				t.Errorf("access-log line of %s lacks %s:\n%s", w.route, attr, l)
			}
		}
	}
	for i, s := range secrets {
		if s != "" && strings.Contains(log, s) {
			t.Errorf("secret %d appears in the server log", i)
		}
	}
	if strings.Contains(log, "Authorization") || strings.Contains(log, "password=") {
		t.Error("the server log holds an Authorization header or a password parameter")
	}
}

// quoteIfNeeded renders a value as slog's text handler does.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " =\"") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

// TestReadyzReadOnlyData makes the data directory read-only under the
// running server (a read-only bind mount over it: it binds root too, which
// file modes do not) and checks that /readyz turns 503 naming the database
// and blobs, and back to ready once it is writable again.
func TestReadyzReadOnlyData(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{})
	ready := func() response {
		return do(t, httpFrom(freshSource()), newRequest(t, "GET", srv.url("/readyz"), nil))
	}
	if r := ready(); r.status != http.StatusOK {
		t.Fatalf("/readyz before: %s", r)
	}
	dir := srv.cfg.Data
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		testenv.Require(t, "cannot bind-mount the data directory read-only (needs root and CAP_SYS_ADMIN): %v: %s", err, out)
	}
	mounted := true
	umount := func() {
		if mounted {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", dir, err, out)
			}
			mounted = false
		}
	}
	t.Cleanup(umount)
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
		testenv.Require(t, "cannot remount the data directory read-only: %v: %s", err, out)
	}
	r := ready()
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with a read-only data directory: %s, want 503", r)
	}
	for _, s := range []string{"not ready", "database: failed", "blobs: failed", "read-only file system"} {
		if !strings.Contains(string(r.body), s) {
			t.Errorf("/readyz body lacks %q:\n%s", s, r.body)
		}
	}
	if strings.Contains(string(r.body), dir) {
		t.Errorf("/readyz names the data directory's full path:\n%s", r.body)
	}
	umount()
	if r := ready(); r.status != http.StatusOK {
		t.Errorf("/readyz once writable again: %s", r)
	}
}

// TestMetricsScrapeToken: with network.metricsTokenFile, Prometheus'
// bearer token reads /metrics on the control listener (a wrong one is
// 401), and --metrics-listen serves the same families without
// authentication on its own address; a token file that is missing or too
// short stops the server at start, naming the setting.
func TestMetricsScrapeToken(t *testing.T) {
	t.Parallel()
	token := "scrape-" + testenv.RandomHex(12)
	file := filepath.Join(t.TempDir(), "metrics-token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	metricsAddr := freeAddr(t)
	srv := startServer(t, serverOptions{network: config.Network{MetricsTokenFile: file, MetricsListen: metricsAddr}})
	for _, tc := range []struct {
		bearer string
		want   int
	}{{token, http.StatusOK}, {"wrong-" + token, http.StatusUnauthorized}} {
		req := newRequest(t, "GET", srv.url("/metrics"), nil)
		req.Header.Set("Authorization", "Bearer "+tc.bearer)
		r := do(t, httpFrom(freshSource()), req)
		if r.status != tc.want || (tc.want == http.StatusOK && !strings.Contains(string(r.body), "gantry_run_queue_depth")) {
			t.Errorf("/metrics with bearer %.10s…: %s, want %d", tc.bearer, r, tc.want)
		}
	}
	r := do(t, httpFrom(freshSource()), newRequest(t, "GET", "http://"+metricsAddr+"/metrics", nil))
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "gantry_run_queue_depth") {
		t.Errorf("--metrics-listen without credentials: %s", r)
	}
	if strings.Contains(srv.log.String(), token) {
		t.Error("the server log shows the scrape token")
	}

	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(t.TempDir(), "missing"): "no such file",
		short:                                 "want one token of 16 characters or more",
	} {
		cfg := config.Default()
		cfg.Data, cfg.Listen = t.TempDir(), "127.0.0.1:0"
		cfg.Network.MetricsTokenFile = path
		err := server.Run(t.Context(), cfg, server.Options{})
		if err == nil || !strings.Contains(err.Error(), "network.metricsTokenFile (--metrics-token-file)") || !strings.Contains(err.Error(), want) {
			t.Errorf("token file %s: err = %v", path, err)
		}
	}
}
