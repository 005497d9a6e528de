package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// APIVersion is the Engine API version the client pins. Every request goes to
// /v1.41/...; newer engines serve it unchanged.
const APIVersion = "1.41"

// Log attribute keys used by the client.
const (
	logKeyMethod  = "method"
	logKeyPath    = "path"
	logKeyStatus  = "status"
	logKeyElapsed = "elapsed"
	logKeyObject  = "object"
	logKeyWarning = "warning"
	logKeyErr     = "err"
)

// Client talks to one Docker Engine. It is safe for concurrent use; connections
// are pooled and reused. Close releases idle connections.
type Client struct {
	host    string
	base    url.URL // scheme and host of the requests; the path is added per call
	http    *http.Client
	tr      *http.Transport
	log     *slog.Logger
	version Version
}

// Option configures a Client.
type Option func(*options)

type options struct {
	log         *slog.Logger
	dialTimeout time.Duration
	checkWithin time.Duration
	maxIdle     int
}

// WithLogger sets the logger for request tracing (debug level). The default
// discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithDialTimeout bounds connecting to the engine (default 5s).
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = d }
}

// WithCheckTimeout bounds the version check New performs (default 10s).
func WithCheckTimeout(d time.Duration) Option {
	return func(o *options) { o.checkWithin = d }
}

// WithMaxIdleConns sets how many idle connections are kept for reuse
// (default 16).
func WithMaxIdleConns(n int) Option {
	return func(o *options) { o.maxIdle = n }
}

func makeOptions(opts []Option) (options, error) {
	o := options{
		log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		dialTimeout: 5 * time.Second,
		checkWithin: 10 * time.Second,
		maxIdle:     16,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		return o, errors.New("docker: nil logger")
	}
	if o.dialTimeout <= 0 || o.checkWithin <= 0 || o.maxIdle < 1 {
		return o, errors.New("docker: timeouts and idle connections must be positive")
	}
	return o, nil
}

// Version describes the engine (GET /version).
type Version struct {
	Version       string // engine release, e.g. 20.10.24+dfsg1
	APIVersion    string `json:"ApiVersion"`    // highest API version served
	MinAPIVersion string `json:"MinAPIVersion"` // lowest API version served
	Os            string
	Arch          string
	KernelVersion string
}

// New returns a client for the engine at host, given in DOCKER_HOST form:
// unix:///path/to/docker.sock or tcp://host:port (plain HTTP; TLS is not
// supported).
//
// New contacts the engine once (GET /_ping and /version, bounded by
// WithCheckTimeout) and fails with an error wrapping ErrUnsupported when the
// engine cannot serve API version 1.41.
func New(host string, opts ...Option) (*Client, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: o.dialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		MaxIdleConns:        o.maxIdle,
		MaxIdleConnsPerHost: o.maxIdle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	c := &Client{host: host, tr: tr, log: o.log}
	switch {
	case strings.HasPrefix(host, "unix://"):
		path := strings.TrimPrefix(host, "unix://")
		if path == "" {
			return nil, fmt.Errorf("docker host %q: empty socket path", host)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", path)
		}
		c.base = url.URL{Scheme: "http", Host: "docker"}
	case strings.HasPrefix(host, "tcp://"):
		u, err := url.Parse(host)
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("docker host %q: want tcp://host:port", host)
		}
		tr.DialContext = dialer.DialContext
		c.base = url.URL{Scheme: "http", Host: u.Host}
	default:
		return nil, fmt.Errorf("docker host %q: want unix:///path or tcp://host:port", host)
	}
	c.http = &http.Client{Transport: tr}

	ctx, cancel := context.WithTimeout(context.Background(), o.checkWithin)
	defer cancel()
	v, err := c.check(ctx)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.version = v
	return c, nil
}

// check pings the engine and verifies that it serves APIVersion.
func (c *Client) check(ctx context.Context) (Version, error) {
	if err := c.Ping(ctx); err != nil {
		return Version{}, err
	}
	v, err := c.Version(ctx)
	if err != nil {
		return Version{}, err
	}
	if compareVersions(v.APIVersion, APIVersion) < 0 {
		return v, fmt.Errorf("docker engine %s at %s serves API %s, need %s: %w",
			v.Version, c.host, v.APIVersion, APIVersion, ErrUnsupported)
	}
	if v.MinAPIVersion != "" && compareVersions(v.MinAPIVersion, APIVersion) > 0 {
		return v, fmt.Errorf("docker engine %s at %s serves API %s and newer, need %s: %w",
			v.Version, c.host, v.MinAPIVersion, APIVersion, ErrUnsupported)
	}
	return v, nil
}

// compareVersions compares dotted numeric versions ("1.41" < "1.9" is false).
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Host returns the host the client was created with (DOCKER_HOST form).
func (c *Client) Host() string { return c.host }

// EngineVersion returns what the engine reported when the client was created.
func (c *Client) EngineVersion() Version { return c.version }

// Close releases idle connections. Requests in flight are not affected.
func (c *Client) Close() {
	c.tr.CloseIdleConnections()
}

// Ping checks that the engine answers (GET /_ping, unversioned).
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.send(ctx, http.MethodGet, "/_ping", false, nil, nil, nil)
	if err != nil {
		return fmt.Errorf("pinging docker engine at %s: %w", c.host, err)
	}
	return drain(resp)
}

// Version asks the engine for its versions (GET /version, unversioned, so that
// it works on engines too old for APIVersion).
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	resp, err := c.send(ctx, http.MethodGet, "/version", false, nil, nil, nil)
	if err != nil {
		return v, fmt.Errorf("asking docker engine at %s for its version: %w", c.host, err)
	}
	defer drain(resp)
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, fmt.Errorf("decoding engine version: %w", err)
	}
	return v, nil
}

// do sends a request to the versioned API and returns the response when its
// status is below 400; otherwise it returns an *apiError with the engine's
// message. The caller closes the body.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, hdr http.Header) (*http.Response, error) {
	return c.send(ctx, method, path, true, q, body, hdr)
}

func (c *Client) send(ctx context.Context, method, path string, versioned bool, q url.Values, body io.Reader, hdr http.Header) (*http.Response, error) {
	u := c.base
	u.Path = path
	if versioned {
		u.Path = "/v" + APIVersion + path
	}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	c.log.DebugContext(ctx, "docker request", logKeyMethod, method, logKeyPath, path,
		logKeyStatus, resp.StatusCode, logKeyElapsed, time.Since(start))
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var m struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &m) == nil && m.Message != "" {
		msg = m.Message
	}
	return nil, &apiError{status: resp.StatusCode, msg: msg}
}

// drain discards the rest of a body and closes it so that the connection can
// be reused.
func drain(resp *http.Response) error {
	_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return err
}

// getJSON decodes the response of a GET into out.
func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, q, nil, nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}

// sendJSON sends in as a JSON body (when non-nil) and decodes the response
// into out (when non-nil).
func (c *Client) sendJSON(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	var hdr http.Header
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
		hdr = http.Header{"Content-Type": {"application/json"}}
	}
	resp, err := c.do(ctx, method, path, q, body, hdr)
	if err != nil {
		return err
	}
	defer drain(resp)
	if out != nil && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("decoding %s: %w", path, err)
		}
	}
	return nil
}

// filters encodes the engine's filters parameter: {"label":["a=b"],...}.
// Empty lists are left out; it returns "" when nothing is set.
func filters(f map[string][]string) string {
	m := make(map[string][]string, len(f))
	for k, v := range f {
		if len(v) > 0 {
			m[k] = v
		}
	}
	if len(m) == 0 {
		return ""
	}
	data, _ := json.Marshal(m)
	return string(data)
}

// ctxErr returns ctx's error when it is done, else err. Streaming calls use it
// so that a cancelled call reports the cancellation, not a broken read.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
