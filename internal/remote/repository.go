package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/gantryhq/gantry/internal/egress"
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

// Repository is a client of one repository of one registry, with one
// credential. Its first request does the handshake (go-containerregistry's
// transport: ping, then Basic or a Docker token for the repository's
// scope); later ones reuse it. It is safe for concurrent use.
type Repository struct {
	c                 *Client
	scheme, host, api string // host: the login server; api: where its API is served
	repo              string
	cred              Credential
	reach             egress.Reach
	scope             string
	log               *slog.Logger

	flight   singleflight.Group
	mu       sync.Mutex
	rt       http.RoundTripper
	lastUsed time.Time
}

// Host is the registry's login server.
func (r *Repository) Host() string { return r.host }

func (r *Repository) idleSince(cutoff time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastUsed.Before(cutoff)
}

// Transport returns the repository's authenticated transport, doing the
// handshake on first use; requests through it carry credentials for this
// repository's scope to the registry's API host only.
func (r *Repository) Transport(ctx context.Context, p Policy) (http.RoundTripper, error) {
	r.mu.Lock()
	rt := r.rt
	r.lastUsed = r.c.now()
	r.mu.Unlock()
	if rt != nil {
		return rt, nil
	}
	v, err, _ := r.flight.Do("", func() (any, error) {
		// Shared by concurrent requests: not bound to the first one's life.
		ctx, cancel := context.WithTimeout(withPolicy(context.WithoutCancel(ctx), p), time.Minute)
		defer cancel()
		var opts []name.Option
		if r.scheme == "http" {
			opts = append(opts, name.Insecure)
		}
		reg, err := name.NewRegistry(r.api, opts...)
		if err != nil {
			return nil, fmt.Errorf("registry %q: %w: %v", r.host, ErrInvalid, err)
		}
		var auth authn.Authenticator = authn.Anonymous
		if r.cred != (Credential{}) {
			auth = authn.FromConfig(authn.AuthConfig{Username: r.cred.Username, Password: r.cred.Password, IdentityToken: r.cred.IdentityToken})
		}
		var scopes []string
		if r.scope != "" {
			scopes = []string{r.scope}
		}
		inner := &pinScheme{scheme: r.scheme, host: r.api, next: r.c.base(r.reach, r.host)}
		rt, err := transport.NewWithContext(ctx, reg, auth, inner, scopes)
		if err != nil {
			return nil, handshakeError(err, r.host)
		}
		r.mu.Lock()
		r.rt = rt
		r.mu.Unlock()
		return rt, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(http.RoundTripper), nil
}

// pinScheme keeps requests to the registry's API host on the scheme the
// reference or configuration chose (go-containerregistry's ping would
// otherwise race https and http for loopback and insecure hosts).
type pinScheme struct {
	scheme, host string
	next         http.RoundTripper
}

func (t *pinScheme) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == t.host && req.URL.Scheme != t.scheme {
		req = req.Clone(req.Context())
		req.URL.Scheme = t.scheme
	}
	return t.next.RoundTrip(req)
}

// do sends an authenticated request for path (relative to /v2/<repo>).
// The caller checks the status of the response.
func (r *Repository) do(ctx context.Context, p Policy, method, path string, hdr http.Header) (*http.Response, error) {
	return r.send(ctx, p, method, r.scheme+"://"+r.api+"/v2/"+r.repo+path, hdr)
}

// send sends an authenticated request for URL u.
func (r *Repository) send(ctx context.Context, p Policy, method, u string, hdr http.Header) (*http.Response, error) {
	ctx = withPolicy(ctx, p)
	rt, err := r.Transport(ctx, p)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, ErrInvalid)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	hc := http.Client{Transport: rt, CheckRedirect: egress.CheckRedirect}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, handshakeError(err, r.host)
	}
	return resp, nil
}

// Manifest is a manifest read from a registry and verified.
type Manifest struct {
	Digest    digest.Digest
	MediaType string
	Body      []byte
	Parsed    *manifest.Manifest
}

// Manifest fetches a manifest by tag or digest and verifies it: its digest
// matches the reference (and the Docker-Content-Digest header), it is not
// larger than the client's limit, and it parses as a manifest the store
// accepts.
func (r *Repository) Manifest(ctx context.Context, p Policy, ref string) (Manifest, error) {
	resp, err := r.do(ctx, p, http.MethodGet, "/manifests/"+ref, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return Manifest{}, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return Manifest{}, upstreamError(resp, r.host)
	}
	limit := r.c.maxManifest
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return Manifest{}, fmt.Errorf("reading manifest %s of %s/%s: %w: %v", ref, r.host, r.repo, ErrUnavailable, err)
	}
	if int64(len(body)) > limit {
		return Manifest{}, fmt.Errorf("manifest %s of %s/%s is larger than %d bytes: %w", ref, r.host, r.repo, limit, ErrUpstream)
	}
	return VerifyManifest(r.host+"/"+r.repo, ref, resp.Header.Get("Content-Type"), resp.Header.Get("Docker-Content-Digest"), body)
}

// VerifyManifest checks a manifest body against the reference it was asked
// for (a tag or a digest) and the digest the source announced.
func VerifyManifest(where, ref, contentType, announced string, body []byte) (Manifest, error) {
	alg := digest.SHA256
	var want digest.Digest
	if strings.Contains(ref, ":") {
		d, err := digest.Parse(ref)
		if err != nil {
			return Manifest{}, fmt.Errorf("manifest %q of %s: %w: %v", ref, where, ErrInvalid, err)
		}
		want, alg = d, d.Algorithm()
	}
	d := alg.FromBytes(body)
	if want != "" && d != want {
		return Manifest{}, fmt.Errorf("manifest %s of %s: content digest is %s: %w", ref, where, d, ErrUpstream)
	}
	if announced != "" {
		if ad, err := digest.Parse(announced); err == nil && ad.Algorithm() == alg && ad != d {
			return Manifest{}, fmt.Errorf("manifest %s of %s: Docker-Content-Digest %s but content digest %s: %w", ref, where, ad, d, ErrUpstream)
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
			return Manifest{}, fmt.Errorf("manifest %s of %s: %w: %w", ref, where, ErrUpstream, err)
		}
	}
	return Manifest{Digest: d, MediaType: m.MediaType, Body: body, Parsed: m}, nil
}

// Head returns the digest a tag points to without fetching the manifest
// ("" if the registry does not say). Docker Hub does not count HEAD
// requests against the pull quota.
func (r *Repository) Head(ctx context.Context, p Policy, ref string) (digest.Digest, error) {
	resp, err := r.do(ctx, p, http.MethodHead, "/manifests/"+ref, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return "", err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return "", upstreamError(resp, r.host)
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", nil
	}
	return d, nil
}

// Digest returns the digest a tag points to: from a HEAD request, or, when
// the registry does not send Docker-Content-Digest, by reading the
// manifest.
func (r *Repository) Digest(ctx context.Context, p Policy, ref string) (digest.Digest, error) {
	d, err := r.Head(ctx, p, ref)
	if err != nil || d != "" {
		return d, err
	}
	m, err := r.Manifest(ctx, p, ref)
	if err != nil {
		return "", err
	}
	return m.Digest, nil
}

// Blob opens blob d for reading, streaming it. size is its length (-1 if
// the registry does not say). The reader resumes with a Range request when
// the connection breaks; it does not verify the digest (the store does).
func (r *Repository) Blob(ctx context.Context, p Policy, d digest.Digest) (io.ReadCloser, int64, error) {
	resp, err := r.do(ctx, p, http.MethodGet, "/blobs/"+d.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		defer drain(resp)
		return nil, 0, upstreamError(resp, r.host)
	}
	return &blobReader{ctx: ctx, r: r, p: p, d: d, size: resp.ContentLength, body: resp.Body}, resp.ContentLength, nil
}

// blobReader reads a blob, resuming after broken connections. It keeps the
// context of the request that opened it, as http.Response.Body does.
type blobReader struct {
	ctx     context.Context
	r       *Repository
	p       Policy
	d       digest.Digest
	size    int64
	off     int64
	body    io.ReadCloser
	resumes int
}

func (b *blobReader) Read(p []byte) (int, error) {
	for {
		n, err := b.body.Read(p)
		b.off += int64(n)
		if err == io.EOF && b.size >= 0 && b.off < b.size {
			err = io.ErrUnexpectedEOF
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if b.ctx.Err() != nil || b.size <= 0 || b.resumes >= maxResumes {
			return n, fmt.Errorf("reading blob %s from %s: %w: %w", b.d, b.r.host, ErrUnavailable, err)
		}
		b.resumes++
		b.r.log.InfoContext(b.ctx, "resuming blob download", "digest", b.d, "offset", b.off, "err", err)
		if rerr := b.resume(); rerr != nil {
			return n, fmt.Errorf("reading blob %s from %s: %w (resuming: %w)", b.d, b.r.host, err, rerr)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// resume reopens the blob at the current offset.
func (b *blobReader) resume() error {
	b.body.Close()
	b.body = io.NopCloser(strings.NewReader(""))
	resp, err := b.r.do(b.ctx, b.p, http.MethodGet, "/blobs/"+b.d.String(),
		http.Header{"Range": {"bytes=" + strconv.FormatInt(b.off, 10) + "-"}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(b.off, 10)+"-") {
		defer drain(resp)
		if resp.StatusCode == http.StatusOK {
			return fmt.Errorf("the source ignores Range requests (RFC 7233): %w", ErrUpstream)
		}
		return upstreamError(resp, b.r.host)
	}
	b.body = resp.Body
	return nil
}

func (b *blobReader) Close() error { return b.body.Close() }

// Referrers lists the manifests whose subject is d: from the referrers
// API, or, when the registry has none, from the referrers tag schema
// (sha256-<hex>).
func (r *Repository) Referrers(ctx context.Context, p Policy, d digest.Digest) ([]ocispec.Descriptor, error) {
	resp, err := r.do(ctx, p, http.MethodGet, "/referrers/"+d.String(), http.Header{"Accept": {ocispec.MediaTypeImageIndex}})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		defer drain(resp)
		var idx ocispec.Index
		b, err := io.ReadAll(io.LimitReader(resp.Body, r.c.maxManifest+1))
		ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err == nil && ct == ocispec.MediaTypeImageIndex && json.Unmarshal(b, &idx) == nil {
			return idx.Manifests, nil
		}
	} else {
		err := upstreamError(resp, r.host)
		drain(resp)
		if errors.Is(err, ErrUpstreamAuth) || errors.Is(err, ErrRateLimited) {
			return nil, err
		}
	}
	// No referrers API: the tag schema.
	tag := string(d.Algorithm()) + "-" + d.Encoded()
	m, err := r.Manifest(ctx, p, tag)
	if errors.Is(err, ErrSourceUnknown) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if m.Parsed == nil || !manifest.IsIndex(m.MediaType) {
		return nil, nil
	}
	return m.Parsed.Manifests, nil
}
