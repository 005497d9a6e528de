// Package httpapi serves gantry's control API: JSON over HTTP under /v1, on
// the stdlib mux with method patterns. Handlers return errors; one wrapper
// logs them and translates them to api.Error responses (errors.go), so no
// handler writes an error body itself. Every route except /v1/version
// authenticates the caller and checks the operation against its scope
// before touching anything.
//
// The API is not for browsers, and refuses what a browser could be led to
// send from another site (CSRF): a request that changes state and has a
// body must declare Content-Type application/json (parameters such as
// charset allowed), multipart/form-data for a quick run (POST
// /v1/registries/{reg}/runs), or application/zip for a vulnerability
// database import (POST /v1/vulndb/import); anything else is answered 415 with code
// INVALID and field Content-Type, before authentication. A browser cannot
// send application/json or application/zip to another origin without a
// CORS preflight, which the API never grants. multipart/form-data it can
// send from a plain form, so what stops a forged quick run is the
// credential: a 401 carries the challenge `Gantry realm="gantry"`, never
// Basic, so a browser neither prompts for a password nor keeps one to send
// along with forged requests, and a bearer token is only ever set by a
// script (which cross-origin again needs the preflight). Requests without a
// body (DELETE, POST .../cancel) need no Content-Type. Git-host webhooks,
// authenticated by their signature, take any type.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/buildinfo"
	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/scan"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
	"github.com/gantryhq/gantry/internal/trigger"
	"github.com/gantryhq/gantry/internal/vault"
)

// Registries starts and stops registry listeners; the server composition
// implements it.
type Registries interface {
	// Start serves r on its listen address, returning it with the address
	// filled in when it was chosen automatically.
	Start(ctx context.Context, r store.Registry) (store.Registry, error)
	// Stop stops serving the named registry (no error if it is not running).
	Stop(ctx context.Context, name string) error
	// Running reports whether the named registry is being served.
	Running(name string) bool
}

// Server is the control API.
type Server struct {
	log      *slog.Logger
	store    *store.Store
	auth     *auth.Service
	vault    *vault.Service
	regs     Registries
	mux      *routeMux
	tasks    *task.Service
	triggers Triggers
	gc       Collector
	scans    *scan.Service
	// containers, when served (WithContainers).
	containers Containers
	// ca is the local CA's certificate (PEM), nil without one.
	ca []byte
}

// WithCA serves the local CA's certificate (PEM) at GET /v1/ca.pem.
func WithCA(pem []byte) Option { return func(s *Server) { s.ca = pem } }

// WithTasks serves the task and run endpoints.
func WithTasks(t *task.Service) Option { return func(s *Server) { s.tasks = t } }

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// New returns the control API over its services.
func New(st *store.Store, au *auth.Service, v *vault.Service, regs Registries, opts ...Option) *Server {
	s := &Server{
		log:   slog.New(slog.DiscardHandler),
		store: st,
		auth:  au,
		vault: v,
		regs:  regs,
		mux:   &routeMux{ServeMux: http.NewServeMux()},
	}
	for _, o := range opts {
		o(s)
	}
	s.routes()
	return s
}

// Routes returns the mux patterns the API serves ("GET /v1/registries",
// ...), in registration order. The server's authorization tests check that
// every one of them has an entry in their matrix.
func (s *Server) Routes() []string { return slices.Clone(s.mux.patterns) }

// routeMux is the API's ServeMux; it remembers the patterns registered on it.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.checkBodyType(r); err != nil {
		s.fail(w, r, err)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// quickRunPattern is the one route whose body is multipart/form-data.
const quickRunPattern = "POST /v1/registries/{reg}/runs"

// errMediaType marks a request body of a type its route does not take
// (415 Unsupported Media Type).
var errMediaType = errors.New("unsupported media type")

// checkBodyType refuses a state-changing request whose body is not of the
// type its route takes: application/json, or multipart/form-data for a
// quick run. Bodiless requests, reads, webhooks (authenticated by their
// signature) and requests no route serves pass.
func (s *Server) checkBodyType(r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if r.ContentLength == 0 {
		return nil
	}
	_, pattern := s.mux.ServeMux.Handler(r)
	if pattern == "" || pattern == "/v1/" || pattern == trigger.WebhookPattern {
		return nil
	}
	want := "application/json"
	switch pattern {
	case quickRunPattern:
		want = "multipart/form-data"
	case vulndbImportPattern:
		want = "application/zip"
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == want {
		return nil
	}
	msg := fmt.Sprintf("the request body is %q; %s takes %s", ct, pattern, want)
	if ct == "" {
		msg = fmt.Sprintf("the request body has no Content-Type; %s takes %s", pattern, want)
	}
	return fmt.Errorf("%w%.0w", &fieldError{field: "Content-Type", msg: msg}, errMediaType)
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /v1/version", s.public(s.version))
	s.mux.HandleFunc("GET /v1/ca.pem", s.public(s.caCert))
	s.mux.HandleFunc("GET /v1/whoami", s.authed(s.whoami))
	s.registryRoutes()
	s.fsckRoutes()
	s.loginRoutes()
	s.accessRoutes()
	s.vaultRoutes()
	s.gcRoutes()
	if s.scans != nil {
		s.scanRoutes()
	}
	if s.tasks != nil {
		s.taskRoutes()
	}
	if s.triggers != nil {
		s.triggerRoutes()
	}
	s.mux.HandleFunc("/v1/", s.public(func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("%s %s: no such endpoint: %w", r.Method, r.URL.Path, errNoRoute)
	}))
}

var errNoRoute = errdefs.New("not found", errdefs.ErrNotFound)

// handlerFunc is a handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// public wraps a handler that needs no authentication.
func (s *Server) public(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	}
}

type identityKey struct{}

// authed wraps a handler that needs an authenticated caller; the identity is
// in the request context (see identity).
func (s *Server) authed(h handlerFunc) http.HandlerFunc {
	return s.public(func(w http.ResponseWriter, r *http.Request) error {
		id, err := s.auth.Authenticate(r, r.PathValue("reg"))
		if err != nil {
			return err
		}
		ctx := context.WithValue(r.Context(), identityKey{}, id)
		return h(w, r.WithContext(ctx))
	})
}

// identity returns the caller of an authed request.
func identity(ctx context.Context) auth.Identity {
	id, _ := ctx.Value(identityKey{}).(auth.Identity)
	return id
}

// check authorizes op on scope for the request's caller.
func (s *Server) check(r *http.Request, op auth.Operation, scope string) error {
	return s.auth.Check(r.Context(), identity(r.Context()), op, scope)
}

// fail logs err and writes its API error response.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := toAPIError(err)
	level := slog.LevelInfo
	if e.Code == api.CodeInternal {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "code", e.Code, "err", err)
	var te *auth.ThrottledError
	if errors.As(err, &te) {
		w.Header().Set("Retry-After", fmt.Sprint(int(te.RetryAfter.Seconds()+0.999)))
	}
	if e.Code == api.CodeUnauthenticated {
		// Not Basic: browsers would prompt for a password and then send it
		// along with requests other sites make them send.
		w.Header().Set("WWW-Authenticate", `Gantry realm="gantry"`)
	}
	if errors.Is(err, errMediaType) {
		writeError(w, http.StatusUnsupportedMediaType, e)
		return
	}
	api.WriteError(w, e)
}

// writeError writes e with a status other than its code's (api.WriteError
// writes the code's own).
func writeError(w http.ResponseWriter, status int, e *api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: e})
}

// maxBody bounds JSON request bodies.
const maxBody = 1 << 20

// decode reads a JSON request body into v, rejecting unknown fields.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return invalidField(te.Field, "want a %s, got a %s", te.Type, te.Value)
		case errors.As(err, &se):
			return invalid("request body is not valid JSON (offset %d): %v", se.Offset, err)
		case errors.Is(err, io.EOF):
			return invalid("request body is empty; want a JSON object")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return invalidField(f, "unknown field")
		default:
			return invalid("reading request body: %v", err)
		}
	}
	return nil
}

// reply writes v as a JSON response with status.
func reply(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v == nil {
		return nil
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request) error {
	return reply(w, http.StatusOK, api.Version{Version: buildinfo.Version()})
}

// caCert serves the local CA's certificate, unauthenticated: clients fetch
// it to trust the server (checking its fingerprint out of band).
func (s *Server) caCert(w http.ResponseWriter, _ *http.Request) error {
	if s.ca == nil {
		return fmt.Errorf("this server has no local CA (it serves plain HTTP, or certificates from files or ACME): %w", errNoRoute)
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err := w.Write(s.ca)
	return err
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	id := identity(r.Context())
	return reply(w, http.StatusOK, api.Whoami{Principal: id.Principal, Name: id.Name, RunID: id.RunID})
}
