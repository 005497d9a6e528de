package docker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-connections/tlsconfig"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
)

// MinAPIVersion is the oldest Engine API version gantry speaks: Docker
// Engine 19.03 and Podman 2 serve it. The newest is the client library's
// ([MaxAPIVersion]); between the two the version is negotiated with the
// engine on first contact.
const MinAPIVersion = client.MinAPIVersion

// MaxAPIVersion is the newest Engine API version gantry speaks.
const MaxAPIVersion = client.MaxAPIVersion

// DefaultHost is the engine address when DOCKER_HOST is unset, as for the
// docker CLI.
const DefaultHost = "unix:///var/run/docker.sock"

// Log attribute keys used by the client.
const (
	logKeyObject  = "object"
	logKeyWarning = "warning"
	logKeyErr     = "err"
)

// Endpoint says where an engine is and how to reach it.
type Endpoint struct {
	// Host is the engine's address in DOCKER_HOST form: unix:///path/to/sock,
	// tcp://host:port (https when TLS is set).
	Host string
	// TLS configures TLS for a tcp:// host; nil is plain HTTP.
	TLS *TLS
}

// TLS holds the TLS settings of an endpoint, as the docker CLI takes them
// from DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
type TLS struct {
	CAFile   string // CA bundle to verify the engine with ("" : the system roots)
	CertFile string // client certificate ("" : none)
	KeyFile  string // its key
	// Verify checks the engine's certificate; without it the connection is
	// encrypted but not authenticated (DOCKER_TLS without DOCKER_TLS_VERIFY).
	Verify bool
}

// EndpointFromEnv returns the endpoint the docker CLI would use given its
// environment: DOCKER_HOST (default [DefaultHost]); TLS when
// DOCKER_TLS_VERIFY or DOCKER_TLS is non-empty, verifying the engine only
// with DOCKER_TLS_VERIFY, with ca.pem, cert.pem and key.pem from
// DOCKER_CERT_PATH (default ~/.docker) where they exist. getenv is
// os.Getenv in production.
func EndpointFromEnv(getenv func(string) string) Endpoint {
	ep := Endpoint{Host: getenv("DOCKER_HOST")}
	if ep.Host == "" {
		ep.Host = DefaultHost
	}
	verify := getenv("DOCKER_TLS_VERIFY") != ""
	if !verify && getenv("DOCKER_TLS") == "" {
		return ep
	}
	dir := getenv("DOCKER_CERT_PATH")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".docker")
		}
	}
	existing := func(name string) string {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return ""
		}
		return p
	}
	ep.TLS = &TLS{Verify: verify, CertFile: existing("cert.pem"), KeyFile: existing("key.pem")}
	if verify {
		ep.TLS.CAFile = existing("ca.pem")
	}
	return ep
}

// String is the endpoint's host, which names it in messages.
func (ep Endpoint) String() string { return ep.Host }

// Client talks to one container engine through the Docker Engine API
// (github.com/moby/moby/client). It is safe for concurrent use; connections
// are pooled and reused. Close releases idle connections.
//
// The first call that needs the engine connects: it negotiates the API
// version and reads the engine's version. A failure there (the engine is
// unreachable: [ErrUnavailable]; it is too old: [ErrUnsupported]) is
// returned and retried by the next call, so a client made while the engine
// is down starts working once it is up.
type Client struct {
	host    string
	api     *client.Client
	log     *slog.Logger
	timeout time.Duration // bounds connecting (ping + version)

	mu      sync.Mutex // serialises connecting
	version *Version   // set once connected

	// Whether the engine offers BuildKit, once known (see
	// buildKitUnavailable); bkWhy is "" when it does.
	bkMu      sync.Mutex
	bkChecked bool
	bkWhy     string
}

// Option configures a Client.
type Option func(*options)

type options struct {
	log         *slog.Logger
	checkWithin time.Duration
}

// WithLogger sets the logger for warnings and debug traces. The default
// discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithCheckTimeout bounds connecting to the engine: the ping that negotiates
// the API version and the version request (default 10s).
func WithCheckTimeout(d time.Duration) Option {
	return func(o *options) { o.checkWithin = d }
}

func makeOptions(opts []Option) (options, error) {
	o := options{
		log:         slog.New(slog.DiscardHandler),
		checkWithin: 10 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		return o, errors.New("docker: nil logger")
	}
	if o.checkWithin <= 0 {
		return o, errors.New("docker: the check timeout must be positive")
	}
	return o, nil
}

// Version describes the engine, as it reported itself on first contact.
type Version struct {
	// Name is the engine's product name: "Docker Engine", "Podman Engine".
	Name          string
	Version       string // engine release, e.g. 20.10.24+dfsg1
	APIVersion    string // highest API version the engine serves
	MinAPIVersion string // lowest API version the engine serves
	// NegotiatedAPIVersion is the version every request uses: the lower of
	// the engine's and MaxAPIVersion.
	NegotiatedAPIVersion string
	Os                   string
	Arch                 string
	KernelVersion        string
}

// New returns a client for the engine at ep. It checks the address but does
// not contact the engine (see [Client.Connect]).
func New(ep Endpoint, opts ...Option) (*Client, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkHost(ep.Host); err != nil {
		return nil, err
	}
	var copts []client.Opt
	if ep.TLS != nil {
		if !strings.HasPrefix(ep.Host, "tcp://") {
			return nil, fmt.Errorf("docker host %q: TLS needs a tcp:// host", ep.Host)
		}
		cfg, err := tlsconfig.Client(tlsconfig.Options{
			CAFile:             ep.TLS.CAFile,
			CertFile:           ep.TLS.CertFile,
			KeyFile:            ep.TLS.KeyFile,
			InsecureSkipVerify: !ep.TLS.Verify,
			ExclusiveRootPools: ep.TLS.CAFile != "",
			MinVersion:         tls.VersionTLS12,
		})
		if err != nil {
			return nil, fmt.Errorf("docker host %s: TLS: %w", ep.Host, err)
		}
		copts = append(copts, client.WithHTTPClient(&http.Client{
			Transport:     &http.Transport{TLSClientConfig: cfg},
			CheckRedirect: client.CheckRedirect,
		}))
	}
	copts = append(copts, client.WithHost(ep.Host), client.WithUserAgent("gantry"))
	if o.log.Enabled(context.Background(), slog.LevelDebug) {
		log := o.log
		copts = append(copts, client.WithHTTPResponseHook(func(resp *http.Response) {
			log.DebugContext(resp.Request.Context(), "engine request", "method", resp.Request.Method,
				"path", resp.Request.URL.Path, "status", resp.StatusCode)
		}))
	}
	api, err := client.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("docker host %s: %w", ep.Host, err)
	}
	return &Client{host: ep.Host, api: api, log: o.log, timeout: o.checkWithin}, nil
}

// checkHost accepts the DOCKER_HOST forms gantry supports.
func checkHost(host string) error {
	scheme, addr, ok := strings.Cut(host, "://")
	switch {
	case !ok || addr == "":
	case scheme == "unix":
		return nil
	case scheme == "tcp":
		if h, rest, _ := strings.Cut(addr, "/"); h != "" && strings.Contains(h, ":") && rest == "" {
			return nil
		}
		return fmt.Errorf("docker host %q: want tcp://host:port", host)
	}
	return fmt.Errorf("docker host %q: want unix:///path/to/socket or tcp://host:port", host)
}

// Host returns the address the client was created with (DOCKER_HOST form).
func (c *Client) Host() string { return c.host }

// Close releases idle connections. Requests in flight are not affected.
func (c *Client) Close() {
	_ = c.api.Close()
}

// Connect contacts the engine if the client has not yet done so: it pings
// the engine, negotiates the API version (the highest both speak) and reads
// the engine's version, bounded by WithCheckTimeout. An unreachable engine
// fails with an error wrapping ErrUnavailable that names the address; an
// engine whose API range does not meet gantry's ([MinAPIVersion] to
// [MaxAPIVersion]) with ErrUnsupported. Every other method connects first,
// so calling Connect is only needed to learn the version or to check the
// engine early.
func (c *Client) Connect(ctx context.Context) (Version, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != nil {
		return *c.version, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ping, err := c.api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true, ForceNegotiate: true})
	if err != nil {
		if ping.APIVersion != "" && versions.LessThan(ping.APIVersion, MinAPIVersion) {
			return Version{}, fmt.Errorf("container engine at %s serves Engine API %s; gantry needs %s or newer (Docker Engine 19.03+, Podman 2+): %w",
				c.host, ping.APIVersion, MinAPIVersion, ErrUnsupported)
		}
		return Version{}, c.connectErr(ctx, err)
	}
	sv, err := c.api.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return Version{}, c.connectErr(ctx, err)
	}
	v := Version{
		Name:                 productName(sv),
		Version:              sv.Version,
		APIVersion:           sv.APIVersion,
		MinAPIVersion:        sv.MinAPIVersion,
		NegotiatedAPIVersion: c.api.ClientVersion(),
		Os:                   sv.Os,
		Arch:                 sv.Arch,
	}
	for _, comp := range sv.Components {
		if k, ok := comp.Details["KernelVersion"]; ok && v.KernelVersion == "" {
			v.KernelVersion = k
		}
	}
	if v.MinAPIVersion != "" && versions.LessThan(MaxAPIVersion, v.MinAPIVersion) {
		return Version{}, fmt.Errorf("container engine at %s (%s %s) needs Engine API %s or newer; gantry speaks up to %s: %w",
			c.host, v.Name, v.Version, v.MinAPIVersion, MaxAPIVersion, ErrUnsupported)
	}
	c.version = &v
	return v, nil
}

// connectErr words a failure to connect: the engine's address, and
// ErrUnavailable unless the engine answered with an error of its own.
func (c *Client) connectErr(ctx context.Context, err error) error {
	if client.IsErrConnectionFailed(err) || ctx.Err() != nil || !classified(err) {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s: %w", c.timeout, err)
		}
		return fmt.Errorf("container engine at %s is unreachable: %w", c.host, &engineError{err: err, kinds: []error{ErrUnavailable}})
	}
	return fmt.Errorf("container engine at %s: %w", c.host, wrap(err))
}

// productName names the engine from its version report: Podman reports a
// "Podman Engine" component; dockerd an "Engine" component and, in builds
// from Docker, a platform name.
func productName(sv client.ServerVersionResult) string {
	for _, comp := range sv.Components {
		if strings.Contains(strings.ToLower(comp.Name), "podman") {
			return "Podman Engine"
		}
	}
	if sv.Platform.Name != "" && !strings.Contains(strings.ToLower(sv.Platform.Name), "podman") {
		return sv.Platform.Name
	}
	return "Docker Engine"
}

// ready connects if needed; every call to the engine goes through it, so
// that no request is sent before the API version is negotiated.
func (c *Client) ready(ctx context.Context) error {
	c.mu.Lock()
	ok := c.version != nil
	c.mu.Unlock()
	if ok {
		return nil
	}
	_, err := c.Connect(ctx)
	return err
}

// EngineVersion returns what the engine reported when the client connected,
// and false before that.
func (c *Client) EngineVersion() (Version, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version == nil {
		return Version{}, false
	}
	return *c.version, true
}

// Ping checks that the engine answers.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.ready(ctx); err != nil {
		return err
	}
	if _, err := c.api.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("pinging container engine at %s: %w", c.host, wrap(err))
	}
	return nil
}

// ctxErr returns ctx's error when it is done, else err. Streaming calls use it
// so that a cancelled call reports the cancellation, not a broken read.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// labelFilters builds the engine's filters for labels ("key" or
// "key=value") and one further term, key=value, unless value is "".
func labelFilters(labels []string, key, value string) client.Filters {
	f := client.Filters{}
	if len(labels) > 0 {
		f.Add("label", labels...)
	}
	if value != "" {
		f.Add(key, value)
	}
	return f
}
