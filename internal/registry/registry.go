// Package registry serves the OCI Distribution API v1.1 for one gantry
// registry as an http.Handler over the content store: blob pulls with
// ranges, monolithic, chunked and streamed uploads, cross-repository mounts,
// manifests by tag and digest, tag listing, deletes, the referrers API and
// the catalog.
//
// Every request is authorized through an auth.Authorizer before anything is
// read or written. Handlers return errors; errors.go turns them into
// statuses and OCI error bodies in one table. The handler serves paths under
// /v2/ only, so a server can mount other endpoints (a token endpoint) beside
// it.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/store"
)

// Fallback is consulted when content a client pulls is missing from a
// repository, before the handler answers 404: a pull-through cache fetches
// it from upstream into the store, and the handler then reads the store
// again. Implementations return an error wrapping db.ErrNotFound (for
// example store.ErrManifestUnknown) when they cannot provide the content,
// which keeps the 404.
type Fallback interface {
	FetchManifest(ctx context.Context, registry, repo, reference string) error
	FetchBlob(ctx context.Context, registry, repo string, d digest.Digest) error
}

// ManifestSource is an optional capability of a Fallback, for pull-through
// caches that must decide what a tag means (revalidating it against an
// upstream after a TTL) and serve manifests whose content is still being
// stored. The handler calls LookupManifest before it reads the store, on
// every manifest GET and HEAD. With ok false the repository is none of the
// source's business and the handler carries on as without it (the store,
// then FetchManifest on a miss). With ok true the handler serves m (its
// Digest, MediaType and Body) as is, or answers err like a store error: an
// error wrapping db.ErrNotFound is a 404, ErrTooManyRequests a 429,
// ErrUnavailable a 503. LookupManifest must be cheap when ok is false.
type ManifestSource interface {
	LookupManifest(ctx context.Context, registry, repo, reference string) (m store.Manifest, ok bool, err error)
}

// BlobSource is an optional capability of a Fallback that streams a missing
// blob to the client while it is being fetched and stored, instead of
// making the client wait for the whole blob (FetchBlob). The handler calls
// OpenBlob on a store miss of a HEAD, or of a GET without a Range header
// (ranged reads still go through FetchBlob), and closes the reader; a HEAD
// closes it at once, which must not stop the fetch. size is the blob's
// length. The reader must fail rather than end early if the content turns
// out not to match d: the handler then aborts the response, so the client
// sees a truncated body, never a complete wrong one. Errors are answered as
// for FetchBlob.
type BlobSource interface {
	OpenBlob(ctx context.Context, registry, repo string, d digest.Digest) (rc io.ReadCloser, size int64, err error)
}

// PushGuard decides whether a repository accepts writes at all (for example
// repositories reserved for a pull-through cache). It is called after
// authorization and before any write; an error wrapping auth.ErrDenied
// answers 403 DENIED.
type PushGuard interface {
	CheckPush(ctx context.Context, registry, repo string) error
}

// PullGate decides whether a manifest may be pulled (a scan quarantine). It
// is called on every manifest GET (not HEAD) after the manifest is found;
// an error wrapping errdefs.ErrDenied answers 403 DENIED with its message.
type PullGate interface {
	AdmitPull(ctx context.Context, registry, repo string, m store.Manifest) error
}

// Option configures the handler.
type Option func(*handler)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(h *handler) { h.log = l } }

// WithAuthorizer sets the access check every request goes through. Without
// one, every request is refused as unauthenticated.
func WithAuthorizer(a auth.Authorizer) Option { return func(h *handler) { h.auth = a } }

// WithMaxManifestSize sets the largest manifest accepted (default 4 MiB);
// larger ones are answered 413. The store's own limit still applies.
func WithMaxManifestSize(n int64) Option { return func(h *handler) { h.maxManifest = n } }

// WithFallback sets the hook consulted on manifest and blob misses.
func WithFallback(f Fallback) Option { return func(h *handler) { h.fallback = f } }

// WithPushGuard sets the hook that can refuse writes to a repository.
func WithPushGuard(g PushGuard) Option { return func(h *handler) { h.guard = g } }

// WithPullGate sets the hook that can refuse manifest pulls.
func WithPullGate(g PullGate) Option { return func(h *handler) { h.gate = g } }

type handler struct {
	name        string
	st          *store.Store
	log         *slog.Logger
	auth        auth.Authorizer
	maxManifest int64
	fallback    Fallback
	guard       PushGuard
	gate        PullGate
}

// New returns the Distribution API handler of registry name.
func New(name string, st *store.Store, opts ...Option) http.Handler {
	h := &handler{
		name:        name,
		st:          st,
		log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		auth:        denyAll{},
		maxManifest: store.DefaultMaxManifestSize,
	}
	for _, o := range opts {
		o(h)
	}
	return h
}

// denyAll is the authorizer of a handler configured without one.
type denyAll struct{}

func (denyAll) Authorize(*http.Request, string, []auth.Access) (auth.Identity, error) {
	return auth.Identity{}, fmt.Errorf("no authorizer configured: %w", auth.ErrUnauthenticated)
}
func (denyAll) Challenge(*http.Request, string, []auth.Access) string { return "" }

// op is one endpoint+method: what it needs and what serves it.
type op struct {
	need []auth.Access
	// challenge is what a 401 asks the client to get a token for, when more
	// than need: a mount also reads its source.
	challenge []auth.Access
	write     bool
	serve     func(w http.ResponseWriter, r *http.Request, rt route, id auth.Identity) error
}

func repoAccess(repo string, actions ...string) []auth.Access {
	return []auth.Access{{Type: auth.TypeRepository, Name: repo, Actions: actions}}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	var challenge func() string
	var body *requestBody
	if r.Body != nil && r.Body != http.NoBody {
		// On a shallow copy: the server goes on seeing its own body, for
		// what it does with the unread rest after the handler.
		body = &requestBody{ReadCloser: r.Body}
		r = r.WithContext(r.Context())
		r.Body = body
	}
	if err := h.serve(w, r, &challenge); err != nil {
		if body != nil && !body.done {
			dropBody(w, r)
		}
		h.writeError(w, r, err, challenge)
	}
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request, challenge *func() string) error {
	rt, err := parseRoute(r.URL.EscapedPath())
	if err != nil {
		// A path that names no route (a ".." segment, an invalid name) is
		// refused after authentication, so it tells an anonymous caller
		// nothing about what is here.
		*challenge = func() string { return h.auth.Challenge(r, h.name, nil) }
		if _, aerr := h.auth.Authorize(r, h.name, nil); aerr != nil {
			return aerr
		}
		return err
	}
	o, err := h.op(rt, r)
	if err != nil {
		return err
	}
	scopes := o.need
	if o.challenge != nil {
		scopes = o.challenge
	}
	*challenge = func() string { return h.auth.Challenge(r, h.name, scopes) }
	id, err := h.auth.Authorize(r, h.name, o.need)
	if err != nil {
		return err
	}
	auth.RecordCaller(r.Context(), id)
	if o.write && h.guard != nil {
		if err := h.guard.CheckPush(r.Context(), h.name, rt.repo); err != nil {
			return err
		}
	}
	return o.serve(w, r, rt, id)
}

// op selects the operation for a route and method.
func (h *handler) op(rt route, r *http.Request) (op, error) {
	method := r.Method
	get := method == http.MethodGet || method == http.MethodHead
	switch rt.kind {
	case kindBase:
		if get {
			return op{serve: h.base}, nil
		}
	case kindCatalog:
		if method == http.MethodGet {
			return op{need: []auth.Access{{Type: auth.TypeRegistry, Name: auth.CatalogName, Actions: []string{auth.ActionCatalog}}}, serve: h.catalog}, nil
		}
	case kindTags:
		if method == http.MethodGet {
			return op{need: repoAccess(rt.repo, auth.ActionList), serve: h.tags}, nil
		}
	case kindReferrers:
		if method == http.MethodGet {
			return op{need: repoAccess(rt.repo, auth.ActionPull), serve: h.referrers}, nil
		}
	case kindManifest:
		switch {
		case get:
			return op{need: repoAccess(rt.repo, auth.ActionPull), serve: h.getManifest}, nil
		case method == http.MethodPut:
			return op{need: repoAccess(rt.repo, auth.ActionPush), write: true, serve: h.putManifest}, nil
		case method == http.MethodDelete:
			return op{need: repoAccess(rt.repo, auth.ActionDelete), serve: h.deleteManifest}, nil
		}
	case kindBlob:
		switch {
		case get:
			return op{need: repoAccess(rt.repo, auth.ActionPull), serve: h.getBlob}, nil
		case method == http.MethodDelete:
			return op{need: repoAccess(rt.repo, auth.ActionDelete), serve: h.deleteBlob}, nil
		}
	case kindUploadStart:
		if method == http.MethodPost {
			o := op{need: repoAccess(rt.repo, auth.ActionPush), write: true, serve: h.startUpload}
			q := r.URL.Query()
			if from := q.Get("from"); q.Get("mount") != "" && from != "" && from != rt.repo && store.ValidRepository(from) == nil {
				o.challenge = append(repoAccess(rt.repo, auth.ActionPush), repoAccess(from, auth.ActionPull)...)
			}
			return o, nil
		}
	case kindUpload:
		push := repoAccess(rt.repo, auth.ActionPush)
		switch method {
		case http.MethodGet:
			return op{need: push, serve: h.uploadStatus}, nil
		case http.MethodPatch:
			return op{need: push, write: true, serve: h.patchUpload}, nil
		case http.MethodPut:
			return op{need: push, write: true, serve: h.finishUpload}, nil
		case http.MethodDelete:
			return op{need: push, serve: h.cancelUpload}, nil
		}
	}
	return op{}, fmt.Errorf("%s: %w", method, errUnsupported)
}

func actor(id auth.Identity) store.Actor {
	return store.Actor{Principal: id.Principal, RunID: id.RunID}
}

func (h *handler) base(w http.ResponseWriter, r *http.Request, _ route, _ auth.Identity) error {
	return writeJSON(w, r, http.StatusOK, "application/json", struct{}{})
}

// isNotFound reports whether err means the content is absent (and a
// Fallback may supply it): the store's unknown-manifest, -tag, -repository
// and -blob errors all match db.ErrNotFound.
func isNotFound(err error) bool {
	return errors.Is(err, db.ErrNotFound)
}
