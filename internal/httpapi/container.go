package httpapi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/instance"
	"github.com/gantryhq/gantry/internal/oci"
)

// Containers is what the control API needs of the container instances;
// *instance.Manager implements it.
type Containers interface {
	Apply(ctx context.Context, spec instance.Spec) (instance.Instance, instance.Outcome, error)
	Get(ctx context.Context, name string) (instance.Instance, error)
	List(ctx context.Context) ([]instance.Instance, error)
	Logs(ctx context.Context, name string, opts instance.LogOptions, stdout, stderr io.Writer) error
	Delete(ctx context.Context, name string) error
}

var _ Containers = (*instance.Manager)(nil)

// WithContainers serves the container-instance endpoints (see api.Container)
// over c. It registers the routes itself, so give it at most once.
func WithContainers(c Containers) Option {
	return func(s *Server) {
		s.containers = c
		(&containerAPI{s: s, c: c}).routes()
	}
}

// containerAPI is the container-instance endpoints.
type containerAPI struct {
	s *Server
	c Containers
}

func (a *containerAPI) routes() {
	a.s.mux.HandleFunc("GET /v1/containers", a.s.authed(a.list))
	a.s.mux.HandleFunc("PUT /v1/containers/{name}", a.s.authed(a.create))
	a.s.mux.HandleFunc("GET /v1/containers/{name}", a.s.authed(a.show))
	a.s.mux.HandleFunc("DELETE /v1/containers/{name}", a.s.authed(a.delete))
	a.s.mux.HandleFunc("GET /v1/containers/{name}/logs", a.s.authed(a.logs))
}

// containerName reads and checks the {name} path value.
func containerName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if !instance.ValidName(name) {
		return "", invalidField("name", "%q: use 1-63 lower-case letters, digits and hyphens, starting and ending with a letter or digit", name)
	}
	return name, nil
}

func (a *containerAPI) list(w http.ResponseWriter, r *http.Request) error {
	if err := a.s.check(r, auth.OpRead, auth.ContainersScope); err != nil {
		return err
	}
	ins, err := a.c.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.Container, 0, len(ins))
	for _, in := range ins {
		out = append(out, toAPIContainer(in, ""))
	}
	return reply(w, http.StatusOK, out)
}

func (a *containerAPI) create(w http.ResponseWriter, r *http.Request) error {
	name, err := containerName(r)
	if err != nil {
		return err
	}
	if err := a.s.check(r, auth.OpWrite, auth.ContainerScope(name)); err != nil {
		return err
	}
	var req api.CreateContainerRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Image == "" {
		return invalidField("image", "must be set")
	}
	if req.StartupTimeoutSeconds < 0 {
		return invalidField("startupTimeoutSeconds", "must not be negative")
	}
	spec := instance.Spec{
		Name:           name,
		Image:          req.Image,
		Command:        req.Command,
		Env:            req.Environment,
		SecureEnv:      req.SecureEnvironment,
		CPU:            req.CPU,
		MemoryGB:       req.MemoryInGB,
		RestartPolicy:  req.RestartPolicy,
		StartupTimeout: time.Duration(req.StartupTimeoutSeconds) * time.Second,
		By:             identity(r.Context()).Name,
		Principal:      identity(r.Context()).Principal,
	}
	for _, p := range req.Ports {
		spec.Ports = append(spec.Ports, instance.Port{Port: p.Port, Protocol: p.Protocol, FrontPort: p.FrontPort})
	}
	if req.RegistryUsername != "" || req.RegistryPassword != "" {
		spec.Registry = &instance.Credentials{Server: req.RegistryLoginServer, Username: req.RegistryUsername, Password: req.RegistryPassword}
	} else if req.RegistryLoginServer != "" {
		return invalidField("registryLoginServer", "give registryUsername and registryPassword with it")
	} else if spec.CallerCredentials, err = a.callerCredentials(r, req.Image); err != nil {
		return err
	}
	in, outcome, err := a.c.Apply(r.Context(), spec)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if outcome == instance.Created {
		status = http.StatusCreated
	}
	return reply(w, status, toAPIContainer(in, string(outcome)))
}

// callerCredentials returns the credentials the caller authenticated with,
// as registry credentials for pulling image, when image is in a registry of
// this server and the caller itself may pull its repository (admin, a run
// in its own registry, a role assignment, a token's scope map); else nil.
// Every registry accepts what the control API accepts (the admin, tokens
// as "<registry>/<token>", run credentials with any user name), so the
// engine pulls with the caller's own access, and nothing the instance
// stored for another principal is needed (see package instance).
func (a *containerAPI) callerCredentials(r *http.Request, image string) (*instance.Credentials, error) {
	ctx := r.Context()
	ref, err := oci.ParseReference(image)
	if err != nil || ref.Domain == "" {
		return nil, nil // Apply reports a bad reference; Docker Hub is not ours
	}
	reg, ok, err := a.s.store.LocalRegistry(ctx, ref.Domain)
	if err != nil || !ok {
		return nil, err
	}
	registry := reg.Name
	err = a.s.auth.Check(ctx, identity(ctx), auth.OpContentRead, auth.RepositoryScope(registry, ref.Path))
	switch {
	case errors.Is(err, auth.ErrDenied), errors.Is(err, auth.ErrUnauthenticated), errors.Is(err, auth.ErrInvalid):
		return nil, nil
	case err != nil:
		return nil, err
	}
	c := &instance.Credentials{Server: ref.Domain}
	if user, pass, ok := r.BasicAuth(); ok {
		c.Username, c.Password = user, pass
	} else if scheme, value, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "bearer") && auth.IsRunCredential(strings.TrimSpace(value)) {
		c.Username, c.Password = auth.RunUsername, strings.TrimSpace(value)
	} else {
		return nil, nil
	}
	return c, nil
}

func (a *containerAPI) show(w http.ResponseWriter, r *http.Request) error {
	name, err := containerName(r)
	if err != nil {
		return err
	}
	if err := a.s.check(r, auth.OpRead, auth.ContainerScope(name)); err != nil {
		return err
	}
	in, err := a.c.Get(r.Context(), name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPIContainer(in, ""))
}

func (a *containerAPI) delete(w http.ResponseWriter, r *http.Request) error {
	name, err := containerName(r)
	if err != nil {
		return err
	}
	if err := a.s.check(r, auth.OpWrite, auth.ContainerScope(name)); err != nil {
		return err
	}
	if err := a.c.Delete(r.Context(), name); err != nil {
		return err
	}
	a.s.log.InfoContext(r.Context(), "container deleted", "container", name, "by", identity(r.Context()).Name)
	return reply(w, http.StatusNoContent, nil)
}

func (a *containerAPI) logs(w http.ResponseWriter, r *http.Request) error {
	name, err := containerName(r)
	if err != nil {
		return err
	}
	if err := a.s.check(r, auth.OpRead, auth.ContainerScope(name)); err != nil {
		return err
	}
	q := r.URL.Query()
	var opts instance.LogOptions
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return invalidField("tail", "%q: want a number of lines", v)
		}
		opts.Tail = n
	}
	for field, dst := range map[string]*bool{"follow": &opts.Follow, "timestamps": &opts.Timestamps} {
		if v := q.Get(field); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return invalidField(field, "%q: want true or false", v)
			}
			*dst = b
		}
	}
	lw := &logWriter{w: w, rc: http.NewResponseController(w), flush: opts.Follow}
	err = a.c.Logs(r.Context(), name, opts, lw, lw)
	if !lw.started() {
		if err != nil {
			return err
		}
		lw.start()
		return nil
	}
	if err != nil && r.Context().Err() == nil {
		// The response has begun: the error can only be logged.
		a.s.log.WarnContext(r.Context(), "streaming container logs", "container", name, "err", err)
	}
	return nil
}

// logWriter writes a text/plain response, sending the header with the
// first output (so that an error before any output is still a JSON error)
// and flushing every write when following.
type logWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	flush bool

	mu    sync.Mutex
	begun bool
}

func (l *logWriter) started() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.begun
}

func (l *logWriter) start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.begin()
}

func (l *logWriter) begin() {
	if l.begun {
		return
	}
	l.begun = true
	l.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	l.w.WriteHeader(http.StatusOK)
	if l.flush {
		_ = l.rc.Flush()
	}
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.begin()
	n, err := l.w.Write(p)
	if err == nil && l.flush {
		err = l.rc.Flush()
	}
	return n, err
}

// toAPIContainer is the wire form of an instance; op is set in create
// responses.
func toAPIContainer(in instance.Instance, op string) api.Container {
	out := api.Container{
		Name:          in.Name,
		ID:            in.ID,
		Image:         in.Image,
		ImageID:       in.ImageID,
		Command:       in.Command,
		State:         in.State,
		Detail:        in.Detail,
		RestartCount:  in.RestartCount,
		RestartPolicy: in.RestartPolicy,
		IPAddress: api.IPAddress{
			Type:  "Loopback",
			IP:    in.Host,
			Ports: []api.ContainerPort{},
			URL:   in.URL(),
		},
		Environment:              []api.EnvironmentVariable{},
		ImageRegistryCredentials: []api.RegistryCredential{},
		Resources:                api.ContainerResources{CPU: in.CPU, MemoryInGB: in.MemoryGB},
		ContainerID:              in.ContainerID,
		CreatedAt:                in.CreatedAt,
		UpdatedAt:                in.UpdatedAt,
		UpdatedBy:                in.UpdatedBy,
		Operation:                op,
	}
	if in.State != instance.StateRunning && !in.FinishedAt.IsZero() {
		code := in.ExitCode
		out.ExitCode = &code
	}
	if !in.StartedAt.IsZero() {
		t := in.StartedAt
		out.StartedAt = &t
	}
	for _, p := range in.Ports {
		out.IPAddress.Ports = append(out.IPAddress.Ports, api.ContainerPort{
			Port: p.Port, Protocol: p.Protocol, FrontPort: p.FrontPort, ListenPort: p.ListenPort,
			Address: net.JoinHostPort(in.Host, strconv.Itoa(p.FrontPort)),
		})
	}
	names := make([]string, 0, len(in.Env)+len(in.SecureEnvNames))
	for k := range in.Env {
		names = append(names, k)
	}
	names = append(names, in.SecureEnvNames...)
	slices.Sort(names)
	for _, k := range names {
		if v, ok := in.Env[k]; ok {
			out.Environment = append(out.Environment, api.EnvironmentVariable{Name: k, Value: &v})
		} else {
			out.Environment = append(out.Environment, api.EnvironmentVariable{Name: k, Secure: true})
		}
	}
	if in.RegistryUsername != "" {
		out.ImageRegistryCredentials = append(out.ImageRegistryCredentials, api.RegistryCredential{Server: in.RegistryServer, Username: in.RegistryUsername})
	}
	return out
}
