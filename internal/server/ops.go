package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/buildinfo"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
	"github.com/gantryhq/gantry/internal/telemetry"
)

// ops is the server's observability (docs/observability.md): the metrics
// (whose methods are the hooks auth, importer and trigger report to), the
// middleware every listener is wrapped in, the ops endpoints of the control
// listener and, when asked for, OTLP traces.
type ops struct {
	log     *slog.Logger // the server log
	access  *slog.Logger // the access log
	metrics *telemetry.Metrics
	runs    runCounts
	tp      *sdktrace.TracerProvider // nil without tracing
	// scrapeToken, when set, is a bearer token that may read /metrics
	// (network.metricsTokenFile).
	scrapeToken []byte
}

// readScrapeToken reads the bearer token of network.metricsTokenFile.
func readScrapeToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("network.metricsTokenFile (--metrics-token-file): %w", err)
	}
	tok := bytes.TrimSpace(b)
	if len(tok) < 16 || bytes.ContainsAny(tok, " \t\r\n") {
		return nil, fmt.Errorf("network.metricsTokenFile (--metrics-token-file): %s: want one token of 16 characters or more, without blanks", path)
	}
	return tok, nil
}

// newOps builds the metrics over the store (blob usage) and, with tracing,
// the OTLP tracer provider (configured by the standard OTEL_* variables).
// Call shutdown when the server has stopped.
func newOps(ctx context.Context, log *slog.Logger, st *store.Store, tracing bool) (*ops, error) {
	o := &ops{log: log, access: log.With("component", "http")}
	o.metrics = telemetry.NewMetrics(telemetry.WithStoreUsage(st), telemetry.WithRunCounter(&o.runs))
	if tracing {
		tp, err := telemetry.NewTracerProvider(ctx, telemetry.WithServiceVersion(buildinfo.Version()))
		if err != nil {
			return nil, err
		}
		o.tp = tp
	}
	return o, nil
}

// countRuns reports the task service's runs in the metrics (it is built
// after the metrics, which auth needs first).
func (o *ops) countRuns(t *task.Service) { o.runs.t.Store(t) }

// wrap measures and logs the requests of a listener: a registry's (by name)
// or, with registry "", the control API's.
func (o *ops) wrap(registryName string, h http.Handler) http.Handler {
	opts := []telemetry.WrapOption{
		telemetry.WithLogger(o.access), telemetry.WithMetrics(o.metrics), telemetry.WithRegistry(registryName),
		telemetry.WithPrincipal(func(ctx context.Context) (context.Context, func() string) {
			ctx, c := auth.WithCaller(ctx)
			return ctx, c.Name
		}),
	}
	if o.tp != nil {
		opts = append(opts, telemetry.WithTracerProvider(o.tp))
	}
	if registryName != "" {
		opts = append(opts, telemetry.WithRouter(registryRoute))
	}
	return telemetry.Wrap(h, opts...)
}

// registryRoute names Distribution API routes by the registry's own
// routing (repository names hold slashes, so no mux pattern can), and the
// token endpoint (registryMux routes without patterns).
func registryRoute(r *http.Request) (string, string, bool) {
	path := r.URL.EscapedPath()
	if path == auth.TokenPath {
		return auth.TokenPath, "", true
	}
	if path != "/v2" && !strings.HasPrefix(path, "/v2/") {
		return "", "", false
	}
	if pattern, repo, ok := registry.Route(path); ok {
		return pattern, repo, true
	}
	return "unmatched", "", true
}

// control returns the control listener's handler: /healthz and /readyz
// without authentication, /metrics and the Go profiles (/debug/pprof/) for
// the admin, everything else to the control API; all of it wrapped.
func (o *ops) control(api http.Handler, au *auth.Service, d *db.DB, st *store.Store, dc *docker.Client, dataDir string, certs *certSource) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", telemetry.Live())
	mux.Handle("GET /readyz", telemetry.Ready(o.checks(d, st, dc, dataDir, certs)...))
	mux.Handle("GET /metrics", o.metrics.AuthorizedHandler(metricsAuthorizer(au, o.scrapeToken)))
	mux.Handle("GET /debug/pprof/", telemetry.Authorized(metricsAuthorizer(au, o.scrapeToken), telemetry.Profiles()))
	mux.Handle("/", api)
	return o.wrap("", mux)
}

// metricsAuthorizer admits the callers of the control API who may read
// "/metrics": the admin (HTTP Basic), a control-API credential whose
// principal holds the owner role at "/", or the scrape token (bearer) when
// one is configured. Failed logins count for the brute-force limiter as on
// the API.
func metricsAuthorizer(au *auth.Service, scrapeToken []byte) func(*http.Request) error {
	return func(r *http.Request) error {
		if len(scrapeToken) > 0 {
			if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok &&
				subtle.ConstantTimeCompare([]byte(tok), scrapeToken) == 1 {
				return nil
			}
		}
		id, err := au.Authenticate(r, "")
		if err != nil {
			return err
		}
		return au.Check(r.Context(), id, auth.OpRead, "/metrics")
	}
}

// checks are the readiness checks: the database and the blob directories
// must take writes (503 otherwise); the engine only degrades the server
// (200, named in the body): registries are served without it.
func (o *ops) checks(d *db.DB, st *store.Store, dc *docker.Client, dataDir string, certs *certSource) []telemetry.Check {
	disk := diskCheck(dataDir)
	cert := certCheck(certs)
	return []telemetry.Check{
		{Name: "database", Run: d.CheckWritable},
		{Name: "blobs", Run: st.CheckWritable},
		{Name: "disk", Optional: true, Run: disk.run, Detail: disk.detail},
		{Name: "certificates", Optional: true, Run: cert.run, Detail: cert.detail},
		{Name: "engine", Optional: true, Run: func(ctx context.Context) error {
			if err := dc.Ping(ctx); err != nil {
				o.log.DebugContext(ctx, "readiness: container engine", "engine", dc.Host(), "err", err)
				return errEngineDown
			}
			return nil
		}},
	}
}

var errEngineDown = errors.New("not reachable: task runs and container instances wait for it")

// metricsServer serves the metrics without authentication on ln (the
// --metrics-listen address, for a monitoring network).
func (o *ops) metricsServer(ln net.Listener) Component {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", o.metrics.Handler())
	return newControlAPI(&http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(o.log.Handler(), slog.LevelDebug),
	}, ln)
}

// shutdown flushes the spans still buffered (bounded).
func (o *ops) shutdown() {
	if o.tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.tp.Shutdown(ctx); err != nil {
		o.log.Warn("flushing traces", "err", err)
	}
}

// runCounts adapts the task service to the metrics' RunCounter.
type runCounts struct{ t atomic.Pointer[task.Service] }

func (c *runCounts) RunCounts(ctx context.Context) ([]telemetry.RunCount, error) {
	t := c.t.Load()
	if t == nil {
		return nil, nil
	}
	counts, err := t.RunCounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]telemetry.RunCount, len(counts))
	for i, rc := range counts {
		out[i] = telemetry.RunCount{Status: rc.Status, Trigger: rc.Trigger, N: rc.N}
	}
	return out, nil
}

var (
	_ auth.LoginObserver   = (*telemetry.Metrics)(nil)
	_ telemetry.StoreUsage = (*store.Store)(nil)
)
