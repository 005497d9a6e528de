package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/store/manifest"
)

// manifestAccept is the Accept header of manifest requests: every format
// the store takes (never Docker schema 1).
var manifestAccept = strings.Join([]string{
	manifest.MediaTypeOCIIndex, manifest.MediaTypeOCIManifest,
	manifest.MediaTypeDockerManifestList, manifest.MediaTypeDockerManifest,
}, ", ")

// maxResumes bounds how often one blob download is resumed with a Range
// request after the connection broke.
const maxResumes = 3

// remote is a client of one source registry with one set of credentials.
// It speaks the Distribution API: Docker token auth (a Bearer challenge's
// realm, service and scope; tokens cached per scope until they expire) or
// Basic, retries with jittered backoff on 429 and 5xx honouring
// Retry-After, and holds back while the registry's rate-limit headers say
// the quota is spent. It is safe for concurrent use.
type remote struct {
	loginServer string
	base        string // scheme://api-host
	hc          *http.Client
	user, pass  string
	log         *slog.Logger
	now         func() time.Time
	maxManifest int64
	rate        *rateState

	mu        sync.Mutex
	challenge challenge
	tokens    map[string]token // scope -> token
	flights   singleflight.Group
	lastUsed  time.Time
}

type challenge struct {
	scheme         string // "bearer", "basic" or "" (not learned yet)
	realm, service string
}

type token struct {
	value   string
	expires time.Time
}

func newRemote(loginServer, scheme string, hc *http.Client, user, pass string, log *slog.Logger, now func() time.Time, maxManifest int64) *remote {
	return &remote{
		loginServer: loginServer,
		base:        scheme + "://" + apiHost(loginServer),
		hc:          hc,
		user:        user,
		pass:        pass,
		log:         log,
		now:         now,
		maxManifest: maxManifest,
		rate:        newRateState(),
		tokens:      map[string]token{},
	}
}

// send makes a request, retrying it under p. build makes a fresh request
// for every attempt. The caller checks the status of the response.
func (c *remote) send(ctx context.Context, p retryPolicy, build func() (*http.Request, error)) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		last := attempt+1 >= p.attempts
		if w := c.rate.wait(c.now()); w > 0 {
			if w > p.maxRetryAfter {
				return nil, fmt.Errorf("%s: quota exhausted (RateLimit-Remaining 0) for another %s: %w",
					c.loginServer, w.Round(time.Second), ErrRateLimited)
			}
			c.log.InfoContext(ctx, "waiting for the source registry's rate limit to reset", "host", c.loginServer, "wait", w.Round(time.Millisecond))
			if err := sleep(ctx, w); err != nil {
				return nil, err
			}
		}
		req, err := build()
		if err != nil {
			return nil, err
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			if errors.Is(err, egress.ErrRefused) {
				// A refusal is final: the address will not change.
				return nil, refused(err)
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s %s: %w", req.Method, redact(req.URL), ctx.Err())
			}
			if last {
				// The cause without *url.Error's own method and URL (named
				// here once, redacted).
				cause := err
				var ue *url.Error
				if errors.As(err, &ue) {
					cause = ue.Err
				}
				return nil, fmt.Errorf("%s %s: %w: %v", req.Method, redact(req.URL), ErrUnavailable, cause)
			}
			d := p.backoff(attempt)
			c.log.DebugContext(ctx, "request to source registry failed; retrying", "host", c.loginServer, "err", err, "wait", d)
			if err := sleep(ctx, d); err != nil {
				return nil, err
			}
			continue
		}
		if remaining, limit, low := c.rate.note(resp.Header, c.now()); low {
			c.log.WarnContext(ctx, "source registry rate limit nearly exhausted", "host", c.loginServer, "remaining", remaining, "limit", limit)
		}
		if !retryable(resp.StatusCode) || last {
			return resp, nil
		}
		wait := parseRetryAfter(resp.Header.Get("Retry-After"), c.now())
		if wait > p.maxRetryAfter {
			return resp, nil
		}
		if wait == 0 {
			wait = p.backoff(attempt)
		} else {
			// A little jitter, so clients told the same delay do not
			// come back in lockstep.
			wait += p.backoff(0) / 4
		}
		c.log.InfoContext(ctx, "source registry asked to retry", "host", c.loginServer, "status", resp.StatusCode,
			"path", req.URL.Path, "attempt", attempt+1, "wait", wait.Round(time.Millisecond))
		drain(resp)
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// do sends an authenticated request for repository repo (path is relative
// to /v2/<repo>), answering auth challenges once.
func (c *remote) do(ctx context.Context, p retryPolicy, method, repo, path string, hdr http.Header) (*http.Response, error) {
	u := c.base + "/v2/" + repo + path
	scope := "repository:" + repo + ":pull"
	for retried := false; ; retried = true {
		authz, err := c.authorization(ctx, p, scope)
		if err != nil {
			return nil, err
		}
		resp, err := c.send(ctx, p, func() (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, method, u, nil)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", method, u, ErrInvalid)
			}
			for k, v := range hdr {
				req.Header[k] = v
			}
			if authz != "" {
				req.Header.Set("Authorization", authz)
			}
			return req, nil
		})
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusUnauthorized || retried {
			return resp, nil
		}
		ch := parseChallenge(resp.Header.Values("WWW-Authenticate"))
		if ch.scheme == "" || (ch.scheme == "basic" && c.user == "") {
			return resp, nil
		}
		drain(resp)
		c.mu.Lock()
		c.challenge = ch
		delete(c.tokens, scope)
		c.mu.Unlock()
	}
}

// authorization returns the Authorization header for scope, fetching a
// token when the registry uses token auth.
func (c *remote) authorization(ctx context.Context, p retryPolicy, scope string) (string, error) {
	c.mu.Lock()
	ch := c.challenge
	c.lastUsed = c.now()
	tok, ok := c.tokens[scope]
	c.mu.Unlock()
	switch ch.scheme {
	case "basic":
		if c.user == "" {
			return "", nil
		}
		req := http.Request{Header: http.Header{}}
		req.SetBasicAuth(c.user, c.pass)
		return req.Header.Get("Authorization"), nil
	case "bearer":
		if ok && c.now().Before(tok.expires) {
			return "Bearer " + tok.value, nil
		}
		v, err, _ := c.flights.Do(scope, func() (any, error) {
			// Shared by concurrent requests: not bound to the first one's life.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			return c.fetchToken(ctx, p, ch, scope)
		})
		if err != nil {
			return "", err
		}
		return "Bearer " + v.(string), nil
	}
	return "", nil
}

// fetchToken gets a bearer token for scope from the challenge's realm.
func (c *remote) fetchToken(ctx context.Context, p retryPolicy, ch challenge, scope string) (string, error) {
	u, err := url.Parse(ch.realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("%s: token realm %q is not an http(s) URL: %w", c.loginServer, ch.realm, ErrUpstream)
	}
	q := u.Query()
	if ch.service != "" {
		q.Set("service", ch.service)
	}
	q.Set("scope", scope)
	u.RawQuery = q.Encode()
	resp, err := c.send(ctx, p, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		if c.user != "" {
			req.SetBasicAuth(c.user, c.pass)
		}
		return req, nil
	})
	if err != nil {
		return "", err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return "", upstreamError(resp, c.loginServer)
	}
	var body struct {
		Token       string    `json:"token"`
		AccessToken string    `json:"access_token"`
		ExpiresIn   int       `json:"expires_in"`
		IssuedAt    time.Time `json:"issued_at"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("%s: decoding token response: %w: %v", c.loginServer, ErrUpstream, err)
	}
	t := body.Token
	if t == "" {
		t = body.AccessToken
	}
	if t == "" {
		return "", fmt.Errorf("%s: token response without a token: %w", c.loginServer, ErrUpstream)
	}
	life := time.Duration(body.ExpiresIn) * time.Second
	if life < time.Minute {
		life = time.Minute // the spec's default and minimum
	}
	// Refresh early; the issued_at clock may differ from ours, so count
	// from now.
	expires := c.now().Add(life - 10*time.Second)
	c.mu.Lock()
	c.tokens[scope] = token{value: t, expires: expires}
	c.mu.Unlock()
	return t, nil
}

// parseChallenge reads the first Bearer or Basic WWW-Authenticate challenge.
func parseChallenge(values []string) challenge {
	for _, v := range values {
		scheme, params, _ := strings.Cut(strings.TrimSpace(v), " ")
		switch strings.ToLower(scheme) {
		case "basic":
			return challenge{scheme: "basic"}
		case "bearer":
			ch := challenge{scheme: "bearer"}
			for k, val := range authParams(params) {
				switch k {
				case "realm":
					ch.realm = val
				case "service":
					ch.service = val
				}
			}
			if ch.realm != "" {
				return ch
			}
		}
	}
	return challenge{}
}

// authParams parses comma-separated key="value" pairs (values may contain
// commas inside quotes).
func authParams(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			break
		}
		key := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimSpace(s[eq+1:])
		var val string
		if strings.HasPrefix(s, `"`) {
			end := 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			val = strings.ReplaceAll(s[1:min(end, len(s))], `\"`, `"`)
			s = s[min(end+1, len(s)):]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
		}
		out[key] = val
		s = strings.TrimLeft(s, ", ")
	}
	return out
}

// upstreamError reads an error response into an *UpstreamError.
func upstreamError(resp *http.Response, host string) error {
	e := &UpstreamError{Host: host, Method: resp.Request.Method, Path: resp.Request.URL.Path, Status: resp.StatusCode}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	if resp.Request.Method != http.MethodHead {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var body struct {
			Errors []struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"errors"`
		}
		if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
			e.Code, e.Message = body.Errors[0].Code, body.Errors[0].Message
		}
	}
	return e
}

// drain discards the rest of a body (so the connection is reused) and
// closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 256<<10))
	resp.Body.Close()
}

// redact drops query strings (presigned URLs carry credentials) from URLs
// shown in errors.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery, c.User = "", nil
	return c.String()
}

// fetched is a manifest read from a source.
type fetched struct {
	Digest    digest.Digest
	MediaType string
	Body      []byte
	parsed    *manifest.Manifest
}

// manifest fetches a manifest by tag or digest and verifies it: its digest
// matches the reference (and the Docker-Content-Digest header), and it
// parses as a manifest the store accepts.
func (c *remote) manifest(ctx context.Context, p retryPolicy, repo, ref string) (fetched, error) {
	resp, err := c.do(ctx, p, http.MethodGet, repo, "/manifests/"+ref, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return fetched{}, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return fetched{}, upstreamError(resp, c.loginServer)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxManifest+1))
	if err != nil {
		return fetched{}, fmt.Errorf("reading manifest %s of %s/%s: %w: %v", ref, c.loginServer, repo, ErrUnavailable, err)
	}
	if int64(len(body)) > c.maxManifest {
		return fetched{}, fmt.Errorf("manifest %s of %s/%s is larger than %d bytes: %w", ref, c.loginServer, repo, c.maxManifest, ErrUpstream)
	}
	return verifyManifest(c.loginServer+"/"+repo, ref, resp.Header.Get("Content-Type"), resp.Header.Get("Docker-Content-Digest"), body)
}

// verifyManifest checks a manifest body against the reference it was asked
// for and the digest the source announced.
func verifyManifest(where, ref, contentType, announced string, body []byte) (fetched, error) {
	alg := digest.SHA256
	var want digest.Digest
	if store.IsDigest(ref) {
		d, err := store.ParseDigest(ref)
		if err != nil {
			return fetched{}, invalid("%v", err)
		}
		want, alg = d, d.Algorithm()
	}
	d := alg.FromBytes(body)
	if want != "" && d != want {
		return fetched{}, fmt.Errorf("manifest %s of %s: content digest is %s: %w", ref, where, d, ErrUpstream)
	}
	if announced != "" {
		if ad, err := digest.Parse(announced); err == nil && ad.Algorithm() == alg && ad != d {
			return fetched{}, fmt.Errorf("manifest %s of %s: Docker-Content-Digest %s but content digest %s: %w", ref, where, ad, d, ErrUpstream)
		}
	}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil {
		contentType = mt
	}
	m, err := manifest.Parse(contentType, body)
	if err != nil {
		// Some registries send a generic or wrong Content-Type: trust the
		// body's own mediaType or structure before giving up.
		if m, err = manifest.Parse("", body); err != nil {
			return fetched{}, fmt.Errorf("manifest %s of %s: %w: %w", ref, where, ErrUpstream, err)
		}
	}
	return fetched{Digest: d, MediaType: m.MediaType, Body: body, parsed: m}, nil
}

// headManifest returns the digest a tag points to without fetching the
// manifest ("" if the registry does not say). Docker Hub does not count
// HEAD requests against the pull quota.
func (c *remote) headManifest(ctx context.Context, p retryPolicy, repo, ref string) (digest.Digest, error) {
	resp, err := c.do(ctx, p, http.MethodHead, repo, "/manifests/"+ref, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return "", err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return "", upstreamError(resp, c.loginServer)
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", nil
	}
	return d, nil
}

// blob opens blob d for reading. size is its length (-1 if the source does
// not say). The reader resumes with a Range request when the connection
// breaks; it does not verify the digest (the store does).
func (c *remote) blob(ctx context.Context, p retryPolicy, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	resp, err := c.do(ctx, p, http.MethodGet, repo, "/blobs/"+d.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		defer drain(resp)
		return nil, 0, upstreamError(resp, c.loginServer)
	}
	return &blobReader{ctx: ctx, c: c, p: p, repo: repo, d: d, size: resp.ContentLength, body: resp.Body}, resp.ContentLength, nil
}

// blobReader reads a blob, resuming after broken connections. It keeps the
// context of the request that opened it, as http.Response.Body does.
type blobReader struct {
	ctx     context.Context
	c       *remote
	p       retryPolicy
	repo    string
	d       digest.Digest
	size    int64
	off     int64
	body    io.ReadCloser
	resumes int
}

func (r *blobReader) Read(p []byte) (int, error) {
	for {
		n, err := r.body.Read(p)
		r.off += int64(n)
		if err == io.EOF && r.size >= 0 && r.off < r.size {
			err = io.ErrUnexpectedEOF
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if r.ctx.Err() != nil || r.size <= 0 || r.resumes >= maxResumes {
			return n, fmt.Errorf("reading blob %s from %s: %w: %w", r.d, r.c.loginServer, ErrUnavailable, err)
		}
		r.resumes++
		r.c.log.InfoContext(r.ctx, "resuming blob download", "host", r.c.loginServer, "digest", r.d, "offset", r.off, "err", err)
		if rerr := r.resume(); rerr != nil {
			return n, fmt.Errorf("reading blob %s from %s: %w (resuming: %w)", r.d, r.c.loginServer, err, rerr)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// resume reopens the blob at the current offset.
func (r *blobReader) resume() error {
	r.body.Close()
	r.body = io.NopCloser(strings.NewReader(""))
	resp, err := r.c.do(r.ctx, r.p, http.MethodGet, r.repo, "/blobs/"+r.d.String(),
		http.Header{"Range": {"bytes=" + strconv.FormatInt(r.off, 10) + "-"}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(r.off, 10)+"-") {
		defer drain(resp)
		if resp.StatusCode == http.StatusOK {
			return fmt.Errorf("the source ignores Range requests (RFC 7233): %w", ErrUpstream)
		}
		return upstreamError(resp, r.c.loginServer)
	}
	r.body = resp.Body
	return nil
}

func (r *blobReader) Close() error { return r.body.Close() }

// referrers lists the manifests whose subject is d: from the referrers API,
// or, when the source has none, from the referrers tag schema
// (sha256-<hex>).
func (c *remote) referrers(ctx context.Context, p retryPolicy, repo string, d digest.Digest) ([]ocispec.Descriptor, error) {
	resp, err := c.do(ctx, p, http.MethodGet, repo, "/referrers/"+d.String(), http.Header{"Accept": {ocispec.MediaTypeImageIndex}})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		defer drain(resp)
		var idx ocispec.Index
		b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxManifest+1))
		ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err == nil && ct == ocispec.MediaTypeImageIndex && json.Unmarshal(b, &idx) == nil {
			return idx.Manifests, nil
		}
	} else {
		err := upstreamError(resp, c.loginServer)
		drain(resp)
		if errors.Is(err, ErrUpstreamAuth) || errors.Is(err, ErrRateLimited) {
			return nil, err
		}
	}
	// No referrers API: the tag schema.
	tag := string(d.Algorithm()) + "-" + d.Encoded()
	f, err := c.manifest(ctx, p, repo, tag)
	if errors.Is(err, ErrSourceUnknown) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if f.parsed == nil || !manifest.IsIndex(f.MediaType) {
		return nil, nil
	}
	return f.parsed.Manifests, nil
}

// credentialKey identifies a remote client in the pool without keeping the
// password in the clear.
func credentialKey(scheme, host, user, pass string) string {
	h := sha256.Sum256([]byte(user + "\x00" + pass))
	return scheme + "://" + host + "#" + hex.EncodeToString(h[:8])
}
