package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// StoreUsage reports the blob store's size at scrape time (store.Store).
type StoreUsage interface {
	// Usage returns the bytes of every stored blob and the number of upload
	// sessions in progress.
	Totals(ctx context.Context) (blobBytes int64, uploads int, err error)
}

// RunCount is the number of runs of one status and trigger.
type RunCount struct {
	Status  string
	Trigger string
	N       int
}

// RunCounter reports the run records at scrape time (the server adapts the
// task service's one GROUP BY query).
type RunCounter interface {
	RunCounts(ctx context.Context) ([]RunCount, error)
}

// scrapeTimeout bounds the queries a scrape makes.
const scrapeTimeout = 5 * time.Second

// MetricsOption configures NewMetrics.
type MetricsOption func(*Metrics)

// WithStoreUsage reports the blob store's size and open uploads
// (gantry_blob_store_bytes, gantry_upload_sessions), read at each scrape.
func WithStoreUsage(u StoreUsage) MetricsOption { return func(m *Metrics) { m.usage = u } }

// WithRunCounter reports runs by status and trigger (gantry_runs) and the
// run queue depth (gantry_run_queue_depth), read at each scrape.
func WithRunCounter(c RunCounter) MetricsOption { return func(m *Metrics) { m.runs = c } }

// Metrics holds gantry's Prometheus metrics on a registry of its own (not
// the global one), with the Go runtime and process collectors. Its methods
// are the hooks domain packages call; all are safe for concurrent use.
type Metrics struct {
	reg   *prometheus.Registry
	usage StoreUsage
	runs  RunCounter

	requests      *prometheus.HistogramVec
	requestBytes  *prometheus.CounterVec
	responseBytes *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	lockouts      prometheus.Counter
	scanAffected  *prometheus.CounterVec
	gcRuns        prometheus.Counter
	gcFreed       prometheus.Counter
	gcSeconds     prometheus.Histogram
	triggerDelay  *prometheus.HistogramVec
	importBytes   *prometheus.CounterVec
	scrapeErrors  *prometheus.CounterVec
}

// durationBuckets cover API calls (milliseconds) up to long blob transfers
// (minutes).
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// NewMetrics returns the metrics, registered on a registry of their own.
func NewMetrics(opts ...MetricsOption) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	for _, o := range opts {
		o(m)
	}
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gantry_http_request_duration_seconds",
		Help:    "HTTP requests by listener (registry name, \"\" for the control API), route pattern, method and status code.",
		Buckets: durationBuckets,
	}, []string{"registry", "route", "method", "code"})
	m.requestBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gantry_http_request_size_bytes_total",
		Help: "Request body bytes read, by listener.",
	}, []string{"registry"})
	m.responseBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gantry_http_response_size_bytes_total",
		Help: "Response body bytes written, by listener.",
	}, []string{"registry"})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gantry_auth_failures_total",
		Help: "Failed logins counted by the brute-force limiter: invalid_credentials (wrong secret, unknown user), locked_out (refused during a lockout) or busy (refused because too many password checks were running or queued).",
	}, []string{"reason"})
	m.scanAffected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gantry_scan_newly_affected_images_total",
		Help: "Images a rescan after a vulnerability database import found affected by advisories they were not before, by registry.",
	}, []string{"registry"})
	m.lockouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gantry_auth_lockouts_total",
		Help: "Lockouts the brute-force limiter started.",
	})
	m.gcRuns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gantry_gc_runs_total",
		Help: "Garbage collections of the blob store.",
	})
	m.gcFreed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gantry_gc_freed_bytes_total",
		Help: "Blob bytes garbage collection removed.",
	})
	m.gcSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gantry_gc_duration_seconds",
		Help:    "Duration of garbage collections.",
		Buckets: durationBuckets,
	})
	m.triggerDelay = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gantry_trigger_latency_seconds",
		Help:    "Time from a trigger firing (a tag move, a new commit seen, a timer waking) to its run being queued, by trigger.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"trigger"})
	m.importBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gantry_import_bytes_total",
		Help: "Blob bytes copied from upstream registries, by source: import or cache (pull-through cache rules).",
	}, []string{"source"})
	m.scrapeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gantry_scrape_errors_total",
		Help: "Scrape-time queries that failed, by what they read (store, runs).",
	}, []string{"query"})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.requestBytes, m.responseBytes, m.authFailures, m.lockouts, m.scanAffected,
		m.gcRuns, m.gcFreed, m.gcSeconds, m.triggerDelay, m.importBytes, m.scrapeErrors,
		&scrapeCollector{m: m},
	)
	return m
}

// Registry returns the Prometheus registry the metrics are on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats without
// authentication: for a listener of its own (--metrics-listen), reachable
// only by the monitoring network.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// AuthorizedHandler serves the metrics to requests authorize accepts (on
// the control listener: the admin); see Authorized.
func (m *Metrics) AuthorizedHandler(authorize func(r *http.Request) error) http.Handler {
	return Authorized(authorize, m.Handler())
}

// Authorized serves h to requests authorize accepts: the operator's
// endpoints on the control listener (metrics, profiles). An error wrapping
// errdefs.ErrTooManyRequests answers 429, errdefs.ErrUnauthenticated 401,
// errdefs.ErrDenied 403, anything else 500. The 401 challenge is not Basic,
// like the control API's, so a browser never prompts for (and keeps) the
// admin password.
func Authorized(authorize func(r *http.Request) error, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := authorize(r); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			switch {
			case errors.Is(err, errdefs.ErrTooManyRequests):
				http.Error(w, "too many failed logins, try again later", http.StatusTooManyRequests)
			case errors.Is(err, errdefs.ErrUnauthenticated):
				w.Header().Set("WWW-Authenticate", `Gantry realm="gantry"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
			case errors.Is(err, errdefs.ErrDenied):
				http.Error(w, "only the admin may read this", http.StatusForbidden)
			default:
				http.Error(w, "authorization failed", http.StatusInternalServerError)
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Profiles serves the Go runtime's profiles (net/http/pprof) under
// /debug/pprof/: CPU, heap, goroutines, blocking, for an operator
// diagnosing a slow or growing server. Wrap it in Authorized.
func Profiles() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// observeRequest records one HTTP request.
func (m *Metrics) observeRequest(registry, route, method string, code int, in, out int64, d time.Duration) {
	m.requests.WithLabelValues(registry, route, method, strconv.Itoa(code)).Observe(d.Seconds())
	if in > 0 {
		m.requestBytes.WithLabelValues(registry).Add(float64(in))
	}
	if out > 0 {
		m.responseBytes.WithLabelValues(registry).Add(float64(out))
	}
}

// LoginFailed counts a failed login (auth's observer); reason is auth's
// ("invalid_credentials", "locked_out").
func (m *Metrics) LoginFailed(reason string) { m.authFailures.WithLabelValues(reason).Inc() }

// LockedOut counts a lockout the brute-force limiter started (auth's
// observer).
func (m *Metrics) LockedOut() { m.lockouts.Inc() }

// ScanAffected counts an image a rescan found newly affected.
func (m *Metrics) ScanAffected(registry string) { m.scanAffected.WithLabelValues(registry).Inc() }

// GCRun counts a garbage collection that freed freedBytes in d. The GC
// calls it once per collection.
func (m *Metrics) GCRun(freedBytes int64, d time.Duration) {
	m.gcRuns.Inc()
	if freedBytes > 0 {
		m.gcFreed.Add(float64(freedBytes))
	}
	m.gcSeconds.Observe(d.Seconds())
}

// RunQueued records the time from a trigger firing to its run being queued
// (trigger's metrics hook); trigger is the run's trigger ("Commit", "Image
// Update", "Timer").
func (m *Metrics) RunQueued(trigger string, latency time.Duration) {
	m.triggerDelay.WithLabelValues(trigger).Observe(max(latency, 0).Seconds())
}

// BlobImported counts blob bytes copied from an upstream registry
// (importer's metrics hook); source is "import" or "cache".
func (m *Metrics) BlobImported(source string, bytes int64) {
	if bytes > 0 {
		m.importBytes.WithLabelValues(source).Add(float64(bytes))
	}
}

// scrapeCollector reads the gauges that are queries: the blob store's size
// and the run counts.
type scrapeCollector struct{ m *Metrics }

var (
	descBlobBytes = prometheus.NewDesc("gantry_blob_store_bytes", "Bytes of the blobs stored (each blob once, however many repositories link it).", nil, nil)
	descUploads   = prometheus.NewDesc("gantry_upload_sessions", "Blob upload sessions in progress.", nil, nil)
	descRuns      = prometheus.NewDesc("gantry_runs", "Run records by status and trigger.", []string{"status", "trigger"}, nil)
	descQueue     = prometheus.NewDesc("gantry_run_queue_depth", "Runs waiting for a worker (status Queued).", nil, nil)
)

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBlobBytes
	ch <- descUploads
	ch <- descRuns
	ch <- descQueue
}

// Collect runs the queries under a timeout of its own: the Prometheus
// collector interface carries no context.
func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if u := c.m.usage; u != nil {
		if b, n, err := u.Totals(ctx); err != nil {
			c.m.scrapeErrors.WithLabelValues("store").Inc()
		} else {
			ch <- prometheus.MustNewConstMetric(descBlobBytes, prometheus.GaugeValue, float64(b))
			ch <- prometheus.MustNewConstMetric(descUploads, prometheus.GaugeValue, float64(n))
		}
	}
	if r := c.m.runs; r != nil {
		counts, err := r.RunCounts(ctx)
		if err != nil {
			c.m.scrapeErrors.WithLabelValues("runs").Inc()
			return
		}
		queued := 0
		for _, rc := range counts {
			ch <- prometheus.MustNewConstMetric(descRuns, prometheus.GaugeValue, float64(rc.N), rc.Status, rc.Trigger)
			if rc.Status == "Queued" {
				queued += rc.N
			}
		}
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(queued))
	}
}
