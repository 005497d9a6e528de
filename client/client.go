// Package client is the Go client of gantry's control API. The gantry CLI is
// a thin layer over it; programs may use it directly.
//
// Errors from the server come back as *api.Error, so callers match them with
// errors.Is(err, api.ErrNotFound) and friends.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gantryhq/gantry/api"
)

// DefaultServer is the control API address used when none is configured.
const DefaultServer = "http://127.0.0.1:7000"

// Client talks to one gantry server.
type Client struct {
	base     *url.URL
	username string
	password string
	bearer   string
	http     *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithBasicAuth authenticates every request with HTTP Basic.
func WithBasicAuth(username, password string) Option {
	return func(c *Client) { c.username, c.password = username, password }
}

// WithBearer authenticates every request with a bearer credential (a run
// credential, inside task steps).
func WithBearer(token string) Option {
	return func(c *Client) { c.bearer = token }
}

// WithHTTPClient replaces the HTTP client (timeouts, transport).
func WithHTTPClient(h *http.Client) Option {
	return func(c *Client) { c.http = h }
}

// New returns a client of the server at base (e.g. http://127.0.0.1:7000).
func New(base string, opts ...Option) (*Client, error) {
	if base == "" {
		base = DefaultServer
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("server address %q: scheme must be http or https", base)
	}
	c := &Client{base: u, http: &http.Client{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Server returns the base address of the server.
func (c *Client) Server() string { return c.base.String() }

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := *c.base
	u.Path = c.base.Path + path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	switch {
	case c.bearer != "":
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	case c.username != "" || c.password != "":
		req.SetBasicAuth(c.username, c.password)
	}
	return req, nil
}

// do sends a JSON request and decodes a JSON response into out (if non-nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return err
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding response of %s %s: %w", method, path, err)
	}
	return nil
}

// stream sends a request and returns the response body for the caller to
// read and close.
func (c *Client) stream(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string) (io.ReadCloser, error) {
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if err := checkResponse(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp.Body, nil
}

// checkResponse turns a non-2xx response into an *api.Error.
func checkResponse(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb api.ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		return eb.Error
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = resp.Status
	}
	return &api.Error{Code: api.CodeForStatus(resp.StatusCode), Message: msg}
}

func pathEscape(s string) string { return url.PathEscape(s) }

// Whoami returns the identity the server sees for this client.
func (c *Client) Whoami(ctx context.Context) (*api.Whoami, error) {
	return send[api.Whoami](ctx, c, http.MethodGet, "/v1/whoami", nil, nil)
}

// Version returns the server's version.
func (c *Client) Version(ctx context.Context) (*api.Version, error) {
	return send[api.Version](ctx, c, http.MethodGet, "/v1/version", nil, nil)
}

// Ready reads the server's readiness (GET /readyz), also when it is not
// ready (503).
func (c *Client) Ready(ctx context.Context) (*api.Readiness, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/readyz", url.Values{"format": {"json"}}, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /readyz: %w", err)
	}
	defer resp.Body.Close()
	var out api.Readiness
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, checkResponse(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("decoding GET /readyz: %w", err)
	}
	return &out, nil
}

// WaitReady polls the server until it answers or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := c.Version(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", c.base, ctx.Err())
		case <-t.C:
		}
	}
}

// send sends a JSON request and decodes the answer into a new T. The
// answer is not nil even with an error.
func send[T any](ctx context.Context, c *Client, method, path string, q url.Values, in any) (*T, error) {
	var out T
	return &out, c.do(ctx, method, path, q, in, &out)
}

// list GETs a JSON array of T.
func list[T any](ctx context.Context, c *Client, path string, q url.Values) ([]T, error) {
	var out []T
	err := c.do(ctx, http.MethodGet, path, q, nil, &out)
	return out, err
}
