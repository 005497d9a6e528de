package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// RequestIDHeader carries the request ID: taken from the client when it
// sent a sane one, generated otherwise, and always echoed in the response.
const RequestIDHeader = "X-Request-Id"

// AccessMessage is the message of every access-log line.
const AccessMessage = "http request"

// Access-log attribute keys.
const (
	KeyRequestID  = "requestId"
	KeyRegistry   = "registry"
	KeyRepository = "repository"
	KeyMethod     = "method"
	KeyRoute      = "route"
	KeyStatus     = "status"
	KeyBytesIn    = "bytesIn"
	KeyBytesOut   = "bytesOut"
	KeyDuration   = "duration"
	KeyPrincipal  = "principal"
	KeyRemote     = "remote"
)

// Router names the route of a request and the repository it addresses,
// for handlers that route by themselves (the registry's suffix routing). ok
// false falls back to the ServeMux pattern.
type Router func(r *http.Request) (route, repository string, ok bool)

// Principal prepares a request context in which the authentication code
// can record who the caller is, and returns a function that reads it (""
// for anonymous callers) once the handler has returned.
type Principal func(ctx context.Context) (context.Context, func() string)

// WrapOption configures Wrap.
type WrapOption func(*wrapper)

// WithLogger sets the access log (default: none).
func WithLogger(l *slog.Logger) WrapOption { return func(w *wrapper) { w.log = l } }

// WithMetrics records the requests in m.
func WithMetrics(m *Metrics) WrapOption { return func(w *wrapper) { w.metrics = m } }

// WithRegistry names the listener: the registry it serves ("" for the
// control API, the default).
func WithRegistry(name string) WrapOption { return func(w *wrapper) { w.registry = name } }

// WithRouter sets how routes are named when the ServeMux pattern is not
// fine enough.
func WithRouter(r Router) WrapOption { return func(w *wrapper) { w.router = r } }

// WithPrincipal sets how the caller's principal is learnt.
func WithPrincipal(p Principal) WrapOption { return func(w *wrapper) { w.principal = p } }

// WithTracerProvider records a span per request, named by method and route
// pattern, continuing the client's W3C trace context. nil records none.
func WithTracerProvider(tp trace.TracerProvider) WrapOption {
	return func(w *wrapper) {
		if tp != nil {
			w.tracer = tp.Tracer("github.com/gantryhq/gantry/internal/telemetry")
		}
	}
}

type wrapper struct {
	next      http.Handler
	log       *slog.Logger
	metrics   *Metrics
	registry  string
	router    Router
	principal Principal
	tracer    trace.Tracer
	prop      propagation.TextMapPropagator
}

// Wrap returns h measured: request metrics, one access-log line per
// request, the request ID and, with a tracer provider, a span. The route
// is the ServeMux pattern h matched (read from the request after h
// returns, so h must be, or reach without copying the request, the mux), or
// what the Router names; never the raw path. The response writer keeps
// http.Flusher and io.ReaderFrom (sendfile) and unwraps for
// http.ResponseController.
func Wrap(h http.Handler, opts ...WrapOption) http.Handler {
	w := &wrapper{next: h, prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	for _, o := range opts {
		o(w)
	}
	return w
}

type requestIDKey struct{}

// RequestID returns the request ID of a request's context ("" outside
// Wrap).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func (x *wrapper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get(RequestIDHeader)
	if !saneRequestID(id) {
		id = newRequestID()
	}
	w.Header().Set(RequestIDHeader, id)
	ctx := context.WithValue(r.Context(), requestIDKey{}, id)
	principal := func() string { return "" }
	if x.principal != nil {
		ctx, principal = x.principal(ctx)
	}
	var span trace.Span
	if x.tracer != nil {
		ctx = x.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span = x.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method)))
		defer span.End()
	}
	r = r.WithContext(ctx)
	body := &countingBody{ReadCloser: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
	}
	rec := &recorder{ResponseWriter: w}
	x.next.ServeHTTP(rec, r)

	d := time.Since(start)
	route, repo := r.Pattern, ""
	if x.router != nil {
		if rt, rp, ok := x.router(r); ok {
			route, repo = rt, rp
		}
	}
	if route == "" {
		route = "unmatched"
	}
	status := rec.code()
	method := metricMethod(r.Method)
	if x.metrics != nil {
		x.metrics.observeRequest(x.registry, route, method, status, body.n, rec.n, d)
	}
	if span != nil {
		span.SetName(method + " " + route)
		span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status),
			attribute.String("gantry.registry", x.registry))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
	if x.log != nil {
		x.log.LogAttrs(ctx, slog.LevelInfo, AccessMessage,
			slog.String(KeyRequestID, id),
			slog.String(KeyRegistry, x.registry),
			slog.String(KeyRepository, repo),
			slog.String(KeyMethod, r.Method),
			slog.String(KeyRoute, route),
			slog.Int(KeyStatus, status),
			slog.Int64(KeyBytesIn, body.n),
			slog.Int64(KeyBytesOut, rec.n),
			slog.Duration(KeyDuration, d),
			slog.String(KeyPrincipal, principal()),
			slog.String(KeyRemote, remoteHost(r.RemoteAddr)))
	}
}

// saneRequestID accepts 1 to 128 characters of [A-Za-z0-9._:-]: enough for
// UUIDs and the IDs proxies generate, nothing that can forge a log line.
func saneRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// metricMethod bounds the method label to the standard methods.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// countingBody counts the request body bytes the handler read.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// recorder remembers the status and counts the body bytes of a response.
// It implements http.Flusher and io.ReaderFrom (so io.Copy from a file
// still reaches the connection's sendfile) and Unwrap, through which
// http.ResponseController finds the rest (Hijack, deadlines, full duplex).
type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// ReadFrom hands src to the underlying writer's ReadFrom (sendfile for a
// file on a plain TCP connection).
func (w *recorder) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, src)
	}
	w.n += n
	return n, err
}

// Flush flushes the underlying writer if it can.
func (w *recorder) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap returns the underlying writer (http.ResponseController).
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code is the status sent (200 when the handler wrote nothing).
func (w *recorder) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// writerOnly hides a writer's ReadFrom so io.Copy does not recurse.
type writerOnly struct{ io.Writer }

var (
	_ http.Flusher  = (*recorder)(nil)
	_ io.ReaderFrom = (*recorder)(nil)
)
