package remote

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/wait"

	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/oci"
)

// Host is how the client reaches one registry, beyond the defaults
// (HTTPS, certificates checked against the system's roots and the CA
// bundle; plain HTTP for loopback hosts).
type Host struct {
	// PlainHTTP: speak plain HTTP to it.
	PlainHTTP bool
	// SkipVerify: accept any certificate it presents (insecure; for
	// registries whose CA cannot be configured).
	SkipVerify bool
}

// Credential is a registry login. The zero value is anonymous.
type Credential struct {
	Username, Password string
	// IdentityToken, when set, is an OAuth2 refresh token of the
	// registry's token service, presented instead of the password
	// (docker's identity token).
	IdentityToken string
}

// DefaultMaxManifest bounds a manifest's size unless WithMaxManifest says
// otherwise.
const DefaultMaxManifest = 4 << 20

// Client reaches OCI registries. It pools one authenticated Repository per
// registry, repository, credential and reach (tokens live as long as it
// does) and shares connections between them. It is safe for concurrent
// use.
type Client struct {
	egress      *egress.Policy
	baseRT      http.RoundTripper
	roots       *x509.CertPool
	hosts       map[string]Host
	log         *slog.Logger
	now         func() time.Time
	maxManifest int64

	mu         sync.Mutex
	transports map[transportKey]http.RoundTripper
	rates      map[string]*rateState
	repos      map[string]*Repository
}

type transportKey struct {
	reach      egress.Reach
	skipVerify bool
}

// Option configures a Client.
type Option func(*Client)

// WithEgress makes every request obey the server's upstream policy (the
// default policy refuses only link-local and metadata addresses).
func WithEgress(p *egress.Policy) Option { return func(c *Client) { c.egress = p } }

// WithBaseTransport sets the transport requests finally go through,
// instead of the egress policy's (for gantry-bench, which tunes its own
// and reaches only the registries it was told).
func WithBaseTransport(rt http.RoundTripper) Option { return func(c *Client) { c.baseRT = rt } }

// WithRootCAs sets the certificates HTTPS registries are checked against
// (see LoadCAs); nil means the system's roots.
func WithRootCAs(pool *x509.CertPool) Option { return func(c *Client) { c.roots = pool } }

// WithHosts sets per-registry settings, keyed by login server (host[:port]).
func WithHosts(hosts map[string]Host) Option {
	return func(c *Client) {
		for h, s := range hosts {
			c.hosts[oci.NormalizeHost(h)] = s
		}
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithClock sets the clock of token expiry, rate limits and idle pools.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// WithMaxManifest bounds the size of a manifest read from a registry.
func WithMaxManifest(n int64) Option { return func(c *Client) { c.maxManifest = n } }

// New returns a client.
func New(opts ...Option) *Client {
	c := &Client{
		hosts:       map[string]Host{},
		log:         slog.New(slog.DiscardHandler),
		now:         time.Now,
		maxManifest: DefaultMaxManifest,
		transports:  map[transportKey]http.RoundTripper{},
		rates:       map[string]*rateState{},
		repos:       map[string]*Repository{},
	}
	for _, o := range opts {
		o(c)
	}
	if c.egress == nil {
		c.egress, _ = egress.New() // no lists: cannot fail
	}
	return c
}

// LoadCAs returns the system's roots plus the certificates of the PEM
// files named (a private CA's bundle). A file without a certificate is an
// error naming it.
func LoadCAs(files ...string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it: %w", f, ErrInvalid)
		}
	}
	return pool, nil
}

// PlainHTTP reports whether host may be spoken to in plain HTTP: loopback
// hosts and hosts configured so.
func (c *Client) PlainHTTP(host string) bool {
	return oci.IsLoopback(host) || c.hosts[oci.NormalizeHost(host)].PlainHTTP
}

// Scheme is the scheme host is spoken to in when a reference gives none.
func (c *Client) Scheme(host string) string {
	if c.PlainHTTP(host) {
		return "http"
	}
	return "https"
}

// Repository returns the pooled client of one repository of the registry
// host (a login server: "docker.io" is Docker Hub) with one credential and
// reach. actions are the token scope's actions ("pull" when none).
func (c *Client) Repository(scheme, host, repo string, cred Credential, reach egress.Reach, actions ...string) *Repository {
	if len(actions) == 0 {
		actions = []string{"pull"}
	}
	host = oci.NormalizeHost(host)
	sum := sha256.Sum256([]byte(cred.Username + "\x00" + cred.Password + "\x00" + cred.IdentityToken))
	key := strings.Join([]string{reach.String(), scheme, host, repo, strings.Join(actions, ","), hex.EncodeToString(sum[:8])}, "|")
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.repos[key]; ok {
		return r
	}
	if len(c.repos) >= 256 {
		// Forget clients idle for a while (their tokens have expired anyway).
		cutoff := c.now().Add(-10 * time.Minute)
		for k, r := range c.repos {
			if r.idleSince(cutoff) {
				delete(c.repos, k)
			}
		}
	}
	r := c.newRepository(scheme, host, repo, cred, reach, "repository:"+repo+":"+strings.Join(actions, ","))
	c.repos[key] = r
	return r
}

func (c *Client) newRepository(scheme, host, repo string, cred Credential, reach egress.Reach, scope string) *Repository {
	return &Repository{
		c: c, scheme: scheme, host: host, api: oci.APIHost(host), repo: repo, cred: cred, reach: reach,
		scope: scope, log: c.log.With("upstream", host),
	}
}

// Ping verifies a login the way docker login does: the handshake, then
// GET /v2/ with the credential. A refused login matches ErrUpstreamAuth; a
// registry that cannot be reached ErrUnavailable.
func (c *Client) Ping(ctx context.Context, host string, cred Credential, reach egress.Reach, p Policy) error {
	host = oci.NormalizeHost(host)
	r := c.newRepository(c.Scheme(host), host, "", cred, reach, "")
	resp, err := r.send(ctx, p, http.MethodGet, r.scheme+"://"+r.api+"/v2/", nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return upstreamError(resp, host)
	}
	return nil
}

// RateRemaining is the last RateLimit-Remaining a registry's API host sent
// (-1 if none).
func (c *Client) RateRemaining(host string) int {
	return c.rate(oci.APIHost(oci.NormalizeHost(host))).snapshot()
}

// CheckURL refuses, before anything is sent, a registry the egress policy
// refuses by its URL (a name is checked again, by address, when dialed).
func (c *Client) CheckURL(scheme, host string, reach egress.Reach) error {
	if err := c.egress.CheckURL(&url.URL{Scheme: scheme, Host: oci.APIHost(host)}, reach); err != nil {
		return refused(err)
	}
	return nil
}

func (c *Client) rate(host string) *rateState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.rates[host]
	if !ok {
		s = newRateState()
		c.rates[host] = s
	}
	return s
}

// base returns the retrying, policed transport of a reach and a host's
// TLS settings, shared by every repository of that kind.
func (c *Client) base(reach egress.Reach, host string) http.RoundTripper {
	k := transportKey{reach: reach, skipVerify: c.hosts[host].SkipVerify}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.transports[k]; ok {
		return t
	}
	next := c.baseRT
	if next == nil {
		tc := &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12, InsecureSkipVerify: k.skipVerify} //nolint:gosec // per-registry opt-in
		next = c.egress.Transport(reach, tc)
	}
	t := &retrier{c: c, next: next}
	c.transports[k] = t
	return t
}

// policyKey carries the Policy of a request in its context.
type policyKey struct{}

func withPolicy(ctx context.Context, p Policy) context.Context {
	return context.WithValue(ctx, policyKey{}, p)
}

func policyOf(ctx context.Context) Policy {
	if p, ok := ctx.Value(policyKey{}).(Policy); ok {
		return p
	}
	return Policy{Attempts: 1}
}

// retrier retries idempotent requests under the Policy in their context:
// 429 and 5xx answers (waiting as Retry-After says, within the policy's
// patience) and network errors; it holds requests back while a host's
// rate-limit headers say the quota is spent. A refusal of the egress
// policy or an untrusted certificate is final.
type retrier struct {
	c    *Client
	next http.RoundTripper
}

func (t *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	p := policyOf(ctx)
	rate := t.c.rate(req.URL.Host)
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	for attempt := 0; ; attempt++ {
		last := attempt+1 >= p.Attempts || !replayable
		if w := rate.wait(t.c.now()); w > 0 {
			if w > p.MaxRetryAfter {
				return nil, fmt.Errorf("%s: quota exhausted (RateLimit-Remaining 0) for another %s: %w",
					req.URL.Host, w.Round(time.Second), ErrRateLimited)
			}
			t.c.log.InfoContext(ctx, "waiting for the registry's rate limit to reset", "host", req.URL.Host, "wait", w.Round(time.Millisecond))
			if err := wait.For(ctx, w); err != nil {
				return nil, err
			}
		}
		r := req
		if attempt > 0 {
			r = req.Clone(ctx)
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = body
			}
		}
		resp, err := t.next.RoundTrip(r)
		if err != nil {
			if errors.Is(err, egress.ErrRefused) {
				return nil, refused(err) // the address will not change
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s %s: %w", req.Method, redact(req.URL), ctx.Err())
			}
			if untrusted(err) {
				return nil, fmt.Errorf("%s %s: %w: %v (give its CA with --upstream-ca, or list it in --upstream-skip-verify)", req.Method, redact(req.URL), ErrUntrusted, err)
			}
			if last {
				return nil, fmt.Errorf("%s %s: %w: %v", req.Method, redact(req.URL), ErrUnavailable, err)
			}
			d := p.backoff(attempt)
			t.c.log.DebugContext(ctx, "request to registry failed; retrying", "host", req.URL.Host, "err", err, "wait", d)
			if err := wait.For(ctx, d); err != nil {
				return nil, err
			}
			continue
		}
		if remaining, limit, low := rate.note(resp.Header, t.c.now()); low {
			t.c.log.WarnContext(ctx, "registry rate limit nearly exhausted", "host", req.URL.Host, "remaining", remaining, "limit", limit)
		}
		if !retryable(resp.StatusCode) || last {
			return resp, nil
		}
		delay := parseRetryAfter(resp.Header.Get("Retry-After"), t.c.now())
		if delay > p.MaxRetryAfter {
			return resp, nil
		}
		if delay == 0 {
			delay = p.backoff(attempt)
		} else {
			// A little jitter, so clients told the same delay do not come
			// back in lockstep.
			delay += p.backoff(0) / 4
		}
		t.c.log.InfoContext(ctx, "registry asked to retry", "host", req.URL.Host, "status", resp.StatusCode,
			"path", req.URL.Path, "attempt", attempt+1, "wait", delay.Round(time.Millisecond))
		drain(resp)
		if err := wait.For(ctx, delay); err != nil {
			return nil, err
		}
	}
}

// untrusted reports a certificate the client does not trust.
func untrusted(err error) bool {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	return errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &cv)
}
