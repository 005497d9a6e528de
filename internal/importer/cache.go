package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/store/manifest"
)

// failedRecheck bounds how soon a tag whose revalidation failed (upstream
// down or throttling) is checked again; meanwhile the cached copy is served.
const failedRecheck = 30 * time.Second

// sharedTimeout bounds upstream manifest work shared by concurrent clients
// (it outlives the client that started it).
const sharedTimeout = 2 * time.Minute

// cacheState is the in-memory state of pull-through caching: manifests
// fetched but not yet stored (servable at once), fills (running or waiting
// for a retry) and blob fetches in flight (one per content, whatever the
// number of clients), and when each cached tag was last revalidated.
type cacheState struct {
	mu sync.Mutex
	// pending holds manifests fetched from upstream whose content is still
	// being stored (the store only takes a manifest once everything it
	// references is there).
	pending map[string]fetched // reg/repo/digest
	// pendingTags are tags whose new upstream digest is being filled.
	pendingTags map[string]digest.Digest // reg/repo/tag
	// fresh says until when a cached tag is served without revalidation.
	fresh map[string]time.Time // reg/repo/tag
	// fills holds every fill from its start to its end, also while it
	// waits for a retry, so that pulls of the same content join it.
	fills map[string]*fillJob // reg/repo/root digest
	blobs map[string]*blobFlight
	// manifests deduplicates upstream manifest requests and revalidations.
	manifests singleflight.Group
}

func newCacheState() cacheState {
	return cacheState{
		pending:     map[string]fetched{},
		pendingTags: map[string]digest.Digest{},
		fresh:       map[string]time.Time{},
		fills:       map[string]*fillJob{},
		blobs:       map[string]*blobFlight{},
	}
}

func cacheKey(registry, repo, ref string) string { return registry + "\x00" + repo + "\x00" + ref }

// fillJob stores one manifest tree fetched from upstream: it runs attempts
// until one stores the tree, the fill is dropped, or the service stops
// (fills.go records it so that the next start resumes it).
type fillJob struct {
	key  string      // reg/repo/root digest
	root fetched     // the root manifest
	t    cacheTarget // the rule the fill was started under

	tags    []string // guarded by cacheState.mu
	created []string // pending keys this job added (guarded by cacheState.mu)
	// waiting is set between attempts (guarded by cacheState.mu): tags
	// waiting for the fill are then revalidated like cached ones.
	waiting bool
	// attempted is closed when the current attempt ends, and replaced when
	// the next one begins; lastErr is the error of the attempt that ended
	// (both guarded by cacheState.mu).
	attempted chan struct{}
	lastErr   error

	// Used by the job's goroutine alone.
	attempts int       // attempts begun, as recorded
	next     time.Time // when the next attempt may begin
	resumed  bool      // loaded from the database at start
	recorded bool      // the record exists (or existed)
}

func newFillJob(t cacheTarget, f fetched, key string) *fillJob {
	return &fillJob{key: key, root: f, t: t, created: []string{key}, attempted: make(chan struct{})}
}

// settle ends the current attempt for those waiting on it, with err
// (caller holds cacheState.mu).
func (j *fillJob) settle(err error) {
	j.lastErr = err
	select {
	case <-j.attempted:
	default:
		close(j.attempted)
	}
}

// blobFlight is one upstream fetch of a blob into a repository.
type blobFlight struct {
	started   chan struct{} // size and spool known (or done)
	done      chan struct{}
	startOnce sync.Once
	size      int64  // after started; -1 if the upstream does not say
	spool     *spool // after started; nil without streaming
	err       error  // after done
}

func (f *blobFlight) start() { f.startOnce.Do(func() { close(f.started) }) }

// cacheTarget is what a cache rule says about one repository.
type cacheTarget struct {
	rule     *compiledRule
	registry string
	repo     string
	upstream string // repository on the source
}

func (s *Service) target(ctx context.Context, registry, repo string) (cacheTarget, bool) {
	r, up, ok := s.ruleFor(ctx, registry, repo)
	if !ok {
		return cacheTarget{}, false
	}
	return cacheTarget{rule: r, registry: registry, repo: repo, upstream: up}, true
}

// cacheRemote returns the client of a rule's source with its credential
// set's secrets.
func (s *Service) cacheRemote(ctx context.Context, t cacheTarget) (*remote.Repository, error) {
	user, pass := "", ""
	if cs := t.rule.CredentialSet; cs != "" {
		var err error
		if user, pass, err = s.credentialsFor(ctx, t.registry, cs); err != nil {
			return nil, fmt.Errorf("cache rule %q: reading the secrets of credential set %q: %v: %w", t.rule.Name, cs, err, ErrUpstreamAuth)
		}
	}
	host := t.rule.source.host
	// Rules are created by the admin or registry owners alone (the control
	// API's write permission), so their fetches have Local reach.
	return s.remote.Repository(s.remote.Scheme(host), host, t.upstream, remote.Credential{Username: user, Password: pass}, egress.Local), nil
}

// notFound wraps err so that the registry answers 404 with the right code.
func notFound(kind error, err error) error {
	if errors.Is(err, ErrSourceUnknown) {
		return fmt.Errorf("%w: %w", kind, err)
	}
	if errors.Is(err, ErrUpstream) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func toManifest(f fetched) store.Manifest {
	m := store.Manifest{Digest: f.Digest, MediaType: f.MediaType, Body: f.Body, Size: int64(len(f.Body))}
	if f.Parsed != nil {
		m.ArtifactType = f.Parsed.ArtifactType
		if f.Parsed.Subject != nil {
			m.Subject = f.Parsed.Subject.Digest
		}
	}
	return m
}

func isMiss(err error) bool { return errors.Is(err, db.ErrNotFound) }

// LookupManifest implements registry.ManifestSource: for a repository a
// cache rule covers, it serves a manifest from the store, revalidating tags
// older than the TTL against the upstream with a HEAD (and fetching the new
// manifest when the digest moved), or fetches a missing one from upstream
// and serves it at once while its whole tree (every platform of an index)
// is stored in the background. When the upstream is down or throttling,
// the cached copy is served and a warning logged.
func (s *Service) LookupManifest(ctx context.Context, registry, repo, ref string) (store.Manifest, bool, error) {
	t, ok := s.target(ctx, registry, repo)
	if !ok {
		return store.Manifest{}, false, nil
	}
	m, err := s.cachedManifest(ctx, t, ref)
	return m, true, err
}

func (s *Service) cachedManifest(ctx context.Context, t cacheTarget, ref string) (store.Manifest, error) {
	if store.IsDigest(ref) {
		d, err := store.ParseDigest(ref)
		if err != nil {
			return store.Manifest{}, err
		}
		if m, err := s.st.GetManifest(ctx, t.registry, t.repo, ref); err == nil {
			return m, nil
		} else if !isMiss(err) {
			return store.Manifest{}, err
		}
		if f, ok := s.pendingManifest(t, d); ok {
			return toManifest(f), nil
		}
		f, err := s.fetchManifest(ctx, t, d.String(), s.policies.fill)
		if err != nil {
			return store.Manifest{}, notFound(store.ErrManifestUnknown, err)
		}
		s.startFill(t, f, "")
		return toManifest(f), nil
	}
	tag := ref
	if m, done, _, _, err := s.tagFromCache(ctx, t, tag); err != nil || done {
		return m, err
	}
	v, err, _ := s.cache.manifests.Do("tag\x00"+cacheKey(t.registry, t.repo, tag), func() (any, error) {
		// Again inside the flight: one that just ended may have settled it.
		m, done, local, hasLocal, err := s.tagFromCache(ctx, t, tag)
		if err != nil || done {
			return m, err
		}
		// Shared by every client asking meanwhile: the first one going
		// away must not fail the others.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedTimeout)
		defer cancel()
		return s.revalidate(ctx, t, tag, local, hasLocal)
	})
	if err != nil {
		return store.Manifest{}, err
	}
	return v.(store.Manifest), nil
}

// tagFromCache answers a tag without the upstream when it can: a fill of
// the tag's new content in progress, or a cached copy within its TTL (done).
// Otherwise it returns the cached copy, if any, to revalidate.
func (s *Service) tagFromCache(ctx context.Context, t cacheTarget, tag string) (m store.Manifest, done bool, local store.Manifest, hasLocal bool, err error) {
	key := cacheKey(t.registry, t.repo, tag)
	s.cache.mu.Lock()
	pd, pending := s.cache.pendingTags[key]
	var pf fetched
	waiting := false
	if pending {
		pk := cacheKey(t.registry, t.repo, pd.String())
		pf, pending = s.cache.pending[pk]
		if job := s.cache.fills[pk]; job != nil {
			waiting = job.waiting
		}
	}
	freshUntil := s.cache.fresh[key]
	s.cache.mu.Unlock()
	if pending {
		if !waiting || s.now().Before(freshUntil) {
			return toManifest(pf), true, local, false, nil
		}
		// The fill waits for a retry, maybe for long: its manifest is
		// revalidated like a cached copy (and served if the upstream is
		// down).
		return m, false, toManifest(pf), true, nil
	}
	local, err = s.st.GetManifest(ctx, t.registry, t.repo, tag)
	if err != nil {
		if isMiss(err) {
			err = nil
		}
		return m, err != nil, local, false, err
	}
	if s.now().Before(freshUntil) {
		return local, true, local, true, nil
	}
	return m, false, local, true, nil
}

// revalidate asks the upstream what tag points to now and returns what to
// serve.
func (s *Service) revalidate(ctx context.Context, t cacheTarget, tag string, local store.Manifest, hasLocal bool) (store.Manifest, error) {
	key := cacheKey(t.registry, t.repo, tag)
	stale := func(err error) (store.Manifest, error) {
		s.log.WarnContext(ctx, "upstream unavailable; serving the cached copy", "registry", t.registry, "repository", t.repo,
			"tag", tag, "digest", local.Digest, "rule", t.rule.Name, "upstream", t.rule.source.host+"/"+t.upstream, "err", err)
		s.markFresh(key, min(s.tagTTL, failedRecheck))
		return local, nil
	}
	p := s.policies.fill
	if hasLocal {
		p = s.policies.revalidate
	}
	rem, err := s.cacheRemote(ctx, t)
	if err != nil {
		if hasLocal {
			return stale(err)
		}
		return store.Manifest{}, err
	}
	d, err := rem.Head(ctx, p, tag)
	if err != nil {
		if hasLocal && ctx.Err() == nil {
			return stale(err)
		}
		return store.Manifest{}, notFound(store.ErrManifestUnknown, err)
	}
	if hasLocal && d == local.Digest {
		s.markFresh(key, s.tagTTL)
		return local, nil
	}
	if d != "" {
		// The tag moved to content being filled: join that fill.
		if f, ok := s.pendingManifest(t, d); ok {
			s.startFill(t, f, tag)
			s.markFresh(key, s.tagTTL)
			return toManifest(f), nil
		}
		// The tag moved to content we already hold: just move it (away
		// from a fill waiting for a retry, which no longer gets it).
		if m, err := s.st.GetManifest(ctx, t.registry, t.repo, d.String()); err == nil {
			if err := s.st.TagManifest(ctx, t.registry, t.repo, tag, d, store.Actor{}); err != nil {
				return store.Manifest{}, err
			}
			s.cache.mu.Lock()
			if pd, ok := s.cache.pendingTags[key]; ok && pd != d {
				delete(s.cache.pendingTags, key)
			}
			s.cache.mu.Unlock()
			s.markFresh(key, s.tagTTL)
			return m, nil
		}
	}
	ref := tag
	if d != "" {
		ref = d.String()
	}
	f, err := s.fetchManifest(ctx, t, ref, p)
	if err != nil {
		if hasLocal && ctx.Err() == nil {
			return stale(err)
		}
		return store.Manifest{}, notFound(store.ErrManifestUnknown, err)
	}
	if hasLocal {
		s.log.InfoContext(ctx, "cached tag moved upstream; fetching", "registry", t.registry, "repository", t.repo, "tag", tag,
			"old", local.Digest, "new", f.Digest)
	}
	s.startFill(t, f, tag)
	s.markFresh(key, s.tagTTL)
	return toManifest(f), nil
}

func (s *Service) markFresh(key string, ttl time.Duration) {
	s.cache.mu.Lock()
	s.cache.fresh[key] = s.now().Add(ttl)
	s.cache.mu.Unlock()
}

func (s *Service) pendingManifest(t cacheTarget, d digest.Digest) (fetched, bool) {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	f, ok := s.cache.pending[cacheKey(t.registry, t.repo, d.String())]
	return f, ok
}

// fetchManifest fetches a manifest from the rule's upstream, once however
// many callers ask at the same time, and keeps it pending until stored.
func (s *Service) fetchManifest(ctx context.Context, t cacheTarget, ref string, p remote.Policy) (fetched, error) {
	v, err, _ := s.cache.manifests.Do("manifest\x00"+cacheKey(t.registry, t.repo, ref), func() (any, error) {
		if d, err := digest.Parse(ref); err == nil {
			// A flight that just ended may have fetched it (pending is
			// dropped only once the store has it).
			if f, ok := s.pendingManifest(t, d); ok {
				return f, nil
			}
			if m, err := s.st.GetManifest(ctx, t.registry, t.repo, ref); err == nil {
				p, err := manifest.Parse(m.MediaType, m.Body)
				if err != nil {
					return fetched{}, err
				}
				return fetched{Digest: m.Digest, MediaType: m.MediaType, Body: m.Body, Parsed: p}, nil
			}
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedTimeout)
		defer cancel()
		rem, err := s.cacheRemote(ctx, t)
		if err != nil {
			return fetched{}, err
		}
		f, err := rem.Manifest(ctx, p, ref)
		if err != nil {
			return fetched{}, err
		}
		s.cache.mu.Lock()
		s.cache.pending[cacheKey(t.registry, t.repo, f.Digest.String())] = f
		s.cache.mu.Unlock()
		return f, nil
	})
	if err != nil {
		return fetched{}, err
	}
	return v.(fetched), nil
}

// startFill stores manifest f's whole tree in the background and points
// tag (if any) at it when done. A fill of the same manifest, running or
// waiting for a retry, takes the tag over.
func (s *Service) startFill(t cacheTarget, f fetched, tag string) {
	fkey := cacheKey(t.registry, t.repo, f.Digest.String())
	s.cache.mu.Lock()
	if tag != "" {
		s.cache.pendingTags[cacheKey(t.registry, t.repo, tag)] = f.Digest
	}
	if job, ok := s.cache.fills[fkey]; ok {
		if tag != "" && !slices.Contains(job.tags, tag) {
			job.tags = append(job.tags, tag)
		}
		s.cache.mu.Unlock()
		return
	}
	job := newFillJob(t, f, fkey)
	if tag != "" {
		job.tags = []string{tag}
	}
	s.cache.pending[fkey] = f
	s.cache.fills[fkey] = job
	s.cache.mu.Unlock()
	if !s.spawn(func(ctx context.Context) { s.runFill(ctx, job) }) {
		s.endFill(job, errNotStarted)
	}
}

// runFill runs a fill's attempts until one stores the tree, the fill is
// dropped (a permanent failure, too many attempts), or ctx ends. The first
// attempt of a pull's fill begins at once; retries and resumed fills wait
// for their time and for a background slot.
func (s *Service) runFill(ctx context.Context, job *fillJob) {
	for {
		background := job.resumed || job.attempts > 0
		if background {
			if err := s.awaitAttempt(ctx, job); err != nil {
				s.endFill(job, err) // the record stays: the next start resumes it
				return
			}
		}
		start := s.now()
		err := s.attemptFill(ctx, job)
		if background {
			s.releaseSlot()
		}
		if err == nil {
			s.completeFill(ctx, job, start)
			return
		}
		if !s.failedFill(ctx, job, err) {
			return
		}
	}
}

// attemptFill begins and runs one attempt of a fill: it checks that the
// rule still covers the repository (after the first attempt), records the
// attempt, and stores the tree under the fill timeout.
func (s *Service) attemptFill(ctx context.Context, job *fillJob) error {
	t := job.t
	if job.resumed || job.attempts > 0 {
		cur, ok := s.target(ctx, t.registry, t.repo)
		if !ok || cur.rule.Name != t.rule.Name {
			return fmt.Errorf("cache rule %q no longer covers %s/%s: %w", t.rule.Name, t.registry, t.repo, errRuleGone)
		}
		t = cur // with its current credential set
	}
	job.attempts++
	s.cache.mu.Lock()
	tags := slices.Clone(job.tags)
	job.waiting = false
	select {
	case <-job.attempted: // the last attempt's, ended
		job.attempted = make(chan struct{})
	default:
	}
	s.cache.mu.Unlock()
	if present, err := s.recordAttempt(ctx, job, tags); s.recordGone(ctx, present, err) {
		return errNoRecord
	}
	actx, cancel := context.WithTimeout(ctx, s.fillTimeout)
	defer cancel()
	if err := s.fill(actx, t, job); err != nil {
		return fmt.Errorf("cache fill of %s/%s@%s from %s/%s: %w", t.registry, t.repo, job.root.Digest, t.rule.source.host, t.upstream, err)
	}
	return nil
}

// completeFill deletes a stored fill's record and ends it.
func (s *Service) completeFill(ctx context.Context, job *fillJob, start time.Time) {
	if err := s.deleteFill(ctx, job.t.registry, job.t.repo, job.root.Digest); err != nil {
		s.log.ErrorContext(ctx, "cache fill stored, its record stays", "err", err)
	}
	s.endFill(job, nil)
	s.log.InfoContext(ctx, "cached from upstream", "registry", job.t.registry, "repository", job.t.repo, "digest", job.root.Digest,
		"mediaType", job.root.MediaType, "upstream", job.t.rule.source.host+"/"+job.t.upstream, "attempts", job.attempts,
		"duration", s.now().Sub(start))
}

// failedFill decides what a failed attempt leads to and reports whether
// the fill goes on: interrupted by the service stopping (the record stays,
// not counting the attempt, for the next start), dropped (permanentFill,
// or maxFillAttempts reached), or retried after fillBackoff.
func (s *Service) failedFill(ctx context.Context, job *fillJob, err error) bool {
	log := s.log.With("registry", job.t.registry, "repository", job.t.repo, "digest", job.root.Digest, "rule", job.t.rule.Name)
	s.cache.mu.Lock()
	tags := slices.Clone(job.tags)
	s.cache.mu.Unlock()
	if ctx.Err() != nil {
		job.attempts--
		job.next = s.now()
		if _, werr := s.recordFailure(ctx, job, tags, fmt.Errorf("interrupted by a stop: %w", err)); werr != nil {
			log.ErrorContext(ctx, "recording an interrupted cache fill", "err", werr)
		}
		log.InfoContext(ctx, "cache fill interrupted by the stop; the next start resumes it")
		s.endFill(job, err)
		return false
	}
	if permanentFill(err) || job.attempts >= maxFillAttempts {
		s.dropFill(ctx, job, err)
		return false
	}
	job.next = s.now().Add(s.fillBackoff(job.attempts, err))
	if present, werr := s.recordFailure(ctx, job, tags, err); s.recordGone(ctx, present, werr) {
		s.dropFill(ctx, job, errNoRecord)
		return false
	}
	log.WarnContext(ctx, "cache fill failed; retrying", "attempt", job.attempts, "next", job.next, "err", err)
	s.cache.mu.Lock()
	job.waiting = true
	job.settle(err)
	s.cache.mu.Unlock()
	return true
}

// dropFill gives a fill up: its record is deleted and what it kept pending
// forgotten (the next pull fetches it again).
func (s *Service) dropFill(ctx context.Context, job *fillJob, err error) {
	s.log.WarnContext(ctx, "cache fill failed; dropping it", "registry", job.t.registry, "repository", job.t.repo,
		"digest", job.root.Digest, "rule", job.t.rule.Name, "attempts", job.attempts, "err", err)
	if derr := s.deleteFill(ctx, job.t.registry, job.t.repo, job.root.Digest); derr != nil {
		s.log.ErrorContext(ctx, "dropping a cache fill", "err", derr)
	}
	s.endFill(job, err)
}

// endFill forgets a finished fill and what it kept pending (stored now, or
// to be fetched again by the next pull, or resumed by the next start).
func (s *Service) endFill(job *fillJob, err error) {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	delete(s.cache.fills, job.key)
	for _, k := range job.created {
		delete(s.cache.pending, k)
	}
	for _, tag := range job.tags {
		k := cacheKey(job.t.registry, job.t.repo, tag)
		if s.cache.pendingTags[k] == job.root.Digest {
			delete(s.cache.pendingTags, k)
			if err != nil {
				delete(s.cache.fresh, k)
			}
		}
	}
	job.settle(err)
}

// cacheSource reads a cache rule's upstream for a fill, through the
// pending manifests.
type cacheSource struct {
	s   *Service
	t   cacheTarget
	job *fillJob
}

func (c cacheSource) manifest(ctx context.Context, ref string) (fetched, error) {
	if d, err := digest.Parse(ref); err == nil {
		if f, ok := c.s.pendingManifest(c.t, d); ok {
			return f, nil
		}
		if m, err := c.s.st.GetManifest(ctx, c.t.registry, c.t.repo, ref); err == nil {
			p, err := manifest.Parse(m.MediaType, m.Body)
			if err != nil {
				return fetched{}, err
			}
			return fetched{Digest: m.Digest, MediaType: m.MediaType, Body: m.Body, Parsed: p}, nil
		}
	}
	f, err := c.s.fetchManifest(ctx, c.t, ref, c.s.policies.fill)
	if err != nil {
		return fetched{}, err
	}
	c.s.cache.mu.Lock()
	c.job.created = append(c.job.created, cacheKey(c.t.registry, c.t.repo, f.Digest.String()))
	c.s.cache.mu.Unlock()
	return f, nil
}

func (cacheSource) referrers(context.Context, digest.Digest) ([]ocispec.Descriptor, error) {
	return nil, nil
}

func (c cacheSource) copyBlob(ctx context.Context, desc ocispec.Descriptor, _ store.RepoRef) (int64, error) {
	f := c.s.blobFlight(c.t, desc.Digest)
	select {
	case <-f.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return 0, f.err
}

func (cacheSource) local() bool { return false }

// fill stores the job's tree: every manifest of an index (all platforms,
// not only the one a client asked for) and every blob they reference, then
// the tags that still wait for this content. Referrers are not pulled
// through; import them.
func (s *Service) fill(ctx context.Context, t cacheTarget, job *fillJob) error {
	f := job.root
	src := cacheSource{s: s, t: t, job: job}
	tr, err := s.walkTree(ctx, src, f.Digest.String(), false)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.concurrency)
	for _, b := range tr.blobs {
		g.Go(func() error {
			if _, err := s.st.StatBlob(gctx, t.registry, t.repo, b.Digest); err == nil {
				return nil
			}
			if s.linkCached(gctx, t, b.Digest) {
				return nil
			}
			_, err := src.copyBlob(gctx, b, store.RepoRef{})
			if err != nil {
				return fmt.Errorf("blob %s: %w", b.Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, m := range tr.order {
		var tags []string
		if m.Digest == f.Digest {
			s.cache.mu.Lock()
			for _, tag := range job.tags {
				// A newer fill may have taken the tag meanwhile.
				if s.cache.pendingTags[cacheKey(t.registry, t.repo, tag)] == f.Digest {
					tags = append(tags, tag)
				}
			}
			s.cache.mu.Unlock()
		}
		if _, err := s.st.PutManifest(ctx, t.registry, t.repo, store.PutManifestRequest{
			Reference: m.Digest.String(), MediaType: m.MediaType, Body: m.Body, Tags: tags,
		}); err != nil {
			return fmt.Errorf("storing manifest %s: %w", m.Digest, err)
		}
	}
	return nil
}

// linkCached links blob d, referenced by a manifest of t's upstream, from
// another repository of the registry cached from the same source host (a
// base layer shared by two images under a wildcard rule): no upstream
// request. Blobs that clients ask for by digest alone are never linked this
// way, so a client cannot reach content of a repository it may not pull.
func (s *Service) linkCached(ctx context.Context, t cacheTarget, d digest.Digest) bool {
	repos, err := s.st.BlobRepositories(ctx, t.registry, d, 16)
	if err != nil {
		return false
	}
	for _, r := range repos {
		if r == t.repo {
			return true
		}
		other, ok := s.target(ctx, t.registry, r)
		if !ok || other.rule.source.host != t.rule.source.host {
			continue
		}
		if _, err := s.st.LinkBlob(ctx, d, store.RepoRef{Registry: t.registry, Repository: r}, store.RepoRef{Registry: t.registry, Repository: t.repo}); err == nil {
			return true
		}
	}
	return false
}

// blobFlight returns the fetch of blob d into the target repository,
// starting it unless one is running.
func (s *Service) blobFlight(t cacheTarget, d digest.Digest) *blobFlight {
	key := cacheKey(t.registry, t.repo, d.String())
	s.cache.mu.Lock()
	if f, ok := s.cache.blobs[key]; ok {
		s.cache.mu.Unlock()
		return f
	}
	f := &blobFlight{started: make(chan struct{}), done: make(chan struct{}), size: -1}
	s.cache.blobs[key] = f
	s.cache.mu.Unlock()
	if !s.spawn(func(ctx context.Context) { s.runBlobFlight(ctx, t, d, key, f) }) {
		s.endBlobFlight(key, f, errNotStarted)
	}
	return f
}

func (s *Service) endBlobFlight(key string, f *blobFlight, err error) {
	f.err = err
	f.start()
	close(f.done)
	s.cache.mu.Lock()
	delete(s.cache.blobs, key)
	s.cache.mu.Unlock()
}

// runBlobFlight fetches a blob from upstream into the store, spooling it
// for clients that stream it meanwhile.
func (s *Service) runBlobFlight(ctx context.Context, t cacheTarget, d digest.Digest, key string, f *blobFlight) {
	ctx, cancel := context.WithTimeout(ctx, s.fillTimeout)
	defer cancel()
	err := s.fetchBlob(ctx, t, d, f)
	if err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "fetching blob from upstream failed", "registry", t.registry, "repository", t.repo,
			"digest", d, "rule", t.rule.Name, "err", err)
	}
	s.endBlobFlight(key, f, err)
}

func (s *Service) fetchBlob(ctx context.Context, t cacheTarget, d digest.Digest, f *blobFlight) error {
	if size, err := s.st.StatBlob(ctx, t.registry, t.repo, d); err == nil {
		f.size = size
		return nil
	}
	rem, err := s.cacheRemote(ctx, t)
	if err != nil {
		return err
	}
	rc, size, err := rem.Blob(ctx, s.policies.fill, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	f.size = size
	var body io.Reader = rc
	if size >= 0 {
		sp, err := newSpool(s.spoolDir, size)
		if err != nil {
			s.log.WarnContext(ctx, "cannot spool blob; clients wait for it to be stored", "digest", d, "err", err)
		} else {
			f.spool = sp
			body = io.TeeReader(rc, sp)
			defer sp.release()
		}
	}
	f.start()
	n, err := s.st.PutBlob(ctx, t.registry, t.repo, d, size, body)
	if err == nil {
		s.metrics.BlobImported("cache", n)
	}
	if f.spool != nil {
		f.spool.finish(err)
	}
	return err
}

// OpenBlob implements registry.BlobSource: a blob missing from a
// repository a cache rule covers is fetched from upstream (once for any
// number of clients) and streamed to the client while it is stored.
func (s *Service) OpenBlob(ctx context.Context, registry, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	t, ok := s.target(ctx, registry, repo)
	if !ok {
		return nil, 0, fmt.Errorf("blob %s in %s/%s: %w", d, registry, repo, store.ErrBlobUnknown)
	}
	if f, size, err := s.st.OpenBlob(ctx, registry, repo, d); err == nil {
		return f, size, nil
	}
	fl := s.blobFlight(t, d)
	select {
	case <-fl.started:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	if fl.spool != nil {
		if r := fl.spool.reader(ctx); r != nil {
			return r, fl.size, nil
		}
	}
	select {
	case <-fl.done:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	if fl.err != nil {
		return nil, 0, notFound(store.ErrBlobUnknown, fl.err)
	}
	f, size, err := s.st.OpenBlob(ctx, registry, repo, d)
	if err != nil {
		return nil, 0, err
	}
	return f, size, nil
}

// FetchManifest implements registry.Fallback for callers that only know
// that interface: it makes the manifest present in the store, waiting for
// the current attempt of its fill (a fill waiting for a retry answers its
// last error at once).
func (s *Service) FetchManifest(ctx context.Context, registry, repo, ref string) error {
	m, ok, err := s.LookupManifest(ctx, registry, repo, ref)
	if !ok {
		return fmt.Errorf("manifest %s in %s/%s: %w", ref, registry, repo, store.ErrManifestUnknown)
	}
	if err != nil {
		return err
	}
	s.cache.mu.Lock()
	job := s.cache.fills[cacheKey(registry, repo, m.Digest.String())]
	var attempted chan struct{}
	if job != nil {
		attempted = job.attempted
	}
	s.cache.mu.Unlock()
	if job == nil {
		return nil
	}
	select {
	case <-attempted:
		s.cache.mu.Lock()
		defer s.cache.mu.Unlock()
		return job.lastErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// FetchBlob implements registry.Fallback: it makes the blob present in the
// store (ranged reads of a missing blob wait for it).
func (s *Service) FetchBlob(ctx context.Context, registry, repo string, d digest.Digest) error {
	t, ok := s.target(ctx, registry, repo)
	if !ok {
		return fmt.Errorf("blob %s in %s/%s: %w", d, registry, repo, store.ErrBlobUnknown)
	}
	fl := s.blobFlight(t, d)
	select {
	case <-fl.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return notFound(store.ErrBlobUnknown, fl.err)
}

// WaitFills waits until no cache fill (running or waiting for a retry) or
// blob fetch is in flight, or ctx ends.
func (s *Service) WaitFills(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.cache.mu.Lock()
		busy := len(s.cache.fills) + len(s.cache.blobs)
		s.cache.mu.Unlock()
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
