package importer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/store/manifest"
	"github.com/gantryhq/gantry/internal/vault"
)

// ImportRequest is one import into a registry.
type ImportRequest struct {
	// Source is the image to copy: host[:port]/repo[:tag][@digest], a
	// Docker Hub short name, or gantry://<registry>/repo[:tag][@digest]
	// (see ParseReference). A host that is the login server of a registry
	// of this server is a same-server import.
	Source string
	// Targets are repo[:tag] to create or move; a missing tag is the
	// source's.
	Targets []string
	// Repositories receive the content untagged (by digest only).
	Repositories []string
	// Username and Password log in to the source: literal values or vault
	// secret URIs, resolved with the caller's permissions.
	Username string
	Password string
	// Force moves target tags that exist and point elsewhere; without it
	// the import fails (ErrTagExists) before copying anything.
	Force bool
}

// ImportResult summarises an import.
type ImportResult struct {
	Source     string
	Digest     digest.Digest
	MediaType  string
	Targets    []string
	Untagged   []string
	SameServer bool
	// Manifests counts every manifest stored per target repository: the
	// root, platform manifests and referrers; Referrers counts the latter.
	Manifests int
	Referrers int
	// Blob counts over every target repository: copied from the source,
	// linked from content already on this server (no bytes moved), or
	// skipped because the repository had them.
	BlobsCopied  int
	BlobsLinked  int
	BlobsSkipped int
	BytesCopied  int64
	Duration     time.Duration
	// RateLimitRemaining is the source's last RateLimit-Remaining, -1 if
	// it sent none.
	RateLimitRemaining int
}

// Progress actions.
const (
	ActionStarted = "started"
	ActionCopying = "copying"
	ActionCopied  = "copied"
	ActionLinked  = "linked"
	ActionSkipped = "skipped"
	ActionStored  = "stored"
)

// Progress is one step of an import, reported as it happens.
type Progress struct {
	// Action is one of the Action constants.
	Action string
	// Kind is "blob", "manifest" or "image" (ActionStarted).
	Kind       string
	Repository string
	Digest     digest.Digest
	MediaType  string
	Size       int64
	Elapsed    time.Duration
	// Message describes ActionStarted.
	Message string
}

// contentSource is where an import reads from: a remote registry, or a
// registry of this server.
type contentSource interface {
	manifest(ctx context.Context, ref string) (fetched, error)
	referrers(ctx context.Context, d digest.Digest) ([]ocispec.Descriptor, error)
	// copyBlob makes blob desc readable in to and returns the bytes it
	// transferred (0 for a link).
	copyBlob(ctx context.Context, desc ocispec.Descriptor, to store.RepoRef) (int64, error)
	local() bool
}

type remoteSource struct {
	c  *remote.Repository
	p  remote.Policy
	st *store.Store
}

func (r remoteSource) manifest(ctx context.Context, ref string) (fetched, error) {
	return r.c.Manifest(ctx, r.p, ref)
}

func (r remoteSource) referrers(ctx context.Context, d digest.Digest) ([]ocispec.Descriptor, error) {
	return r.c.Referrers(ctx, r.p, d)
}

func (r remoteSource) copyBlob(ctx context.Context, desc ocispec.Descriptor, to store.RepoRef) (int64, error) {
	rc, size, err := r.c.Blob(ctx, r.p, desc.Digest)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if size >= 0 && size != desc.Size {
		return 0, fmt.Errorf("blob %s: the source sends %d bytes, the manifest says %d: %w", desc.Digest, size, desc.Size, ErrUpstream)
	}
	return r.st.PutBlob(ctx, to.Registry, to.Repository, desc.Digest, desc.Size, rc)
}

func (remoteSource) local() bool { return false }

type localSource struct {
	st       *store.Store
	registry string
	repo     string
}

func (l localSource) manifest(ctx context.Context, ref string) (fetched, error) {
	m, err := l.st.GetManifest(ctx, l.registry, l.repo, ref)
	if err != nil {
		if errors.Is(err, store.ErrManifestUnknown) || errors.Is(err, store.ErrTagUnknown) || errors.Is(err, store.ErrRepositoryUnknown) {
			return fetched{}, fmt.Errorf("%s/%s:%s: %w: %w", l.registry, l.repo, ref, ErrSourceUnknown, err)
		}
		return fetched{}, err
	}
	p, err := manifest.Parse(m.MediaType, m.Body)
	if err != nil {
		return fetched{}, fmt.Errorf("manifest %s of %s/%s: %w", m.Digest, l.registry, l.repo, err)
	}
	return fetched{Digest: m.Digest, MediaType: m.MediaType, Body: m.Body, Parsed: p}, nil
}

func (l localSource) referrers(ctx context.Context, d digest.Digest) ([]ocispec.Descriptor, error) {
	return l.st.Referrers(ctx, l.registry, l.repo, d, "")
}

func (l localSource) copyBlob(ctx context.Context, desc ocispec.Descriptor, to store.RepoRef) (int64, error) {
	_, err := l.st.LinkBlob(ctx, desc.Digest, store.RepoRef{Registry: l.registry, Repository: l.repo}, to)
	return 0, err
}

func (localSource) local() bool { return true }

// tree is everything one import copies, in the order it is stored.
type tree struct {
	root fetched
	// order lists manifests children first (a platform manifest before its
	// index, the subject's tree before its referrers).
	order     []fetched
	referrers map[digest.Digest]bool
	blobs     []ocispec.Descriptor
	seen      map[digest.Digest]bool
	seenBlobs map[digest.Digest]bool
}

// referrerDepth bounds the chain of referrers followed (a signature of an
// SBOM of an image is depth 2).
const referrerDepth = 3

// Import copies an image, index or artifact with its referrers into a
// registry as the caller id, who needs content/write on every target
// repository (and content/read on a same-server source). progress, if not
// nil, is called for each step, possibly from several goroutines at once
// (calls are serialised).
func (s *Service) Import(ctx context.Context, id auth.Identity, registry string, req ImportRequest, progress func(Progress)) (ImportResult, error) {
	start := s.now()
	report := func(Progress) {}
	if progress != nil {
		var mu sync.Mutex
		report = func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			progress(p)
		}
	}
	ref, err := ParseReference(strings.TrimSpace(req.Source), s.remote.PlainHTTP)
	if err != nil {
		return ImportResult{}, err
	}
	targets, untagged, err := importTargets(ref, req)
	if err != nil {
		return ImportResult{}, err
	}
	if _, err := s.st.GetRegistry(ctx, registry); err != nil {
		return ImportResult{}, err
	}
	repos := targetRepositories(targets, untagged)
	for _, repo := range repos {
		if err := s.access.Check(ctx, id, auth.OpContentWrite, auth.RepositoryScope(registry, repo)); err != nil {
			return ImportResult{}, err
		}
		if r, _, ok := s.ruleFor(ctx, registry, repo); ok {
			return ImportResult{}, fmt.Errorf("repository %q is the target of cache rule %q; imports into it are refused: %w", repo, r.Name, ErrCacheTarget)
		}
	}
	src, rem, err := s.openSource(ctx, id, registry, ref, req)
	if err != nil {
		return ImportResult{}, importError(ref, err)
	}
	res := ImportResult{Source: ref.String(), SameServer: src.local(), RateLimitRemaining: -1}
	for _, t := range targets {
		res.Targets = append(res.Targets, t.String())
	}
	res.Untagged = append(res.Untagged, untagged...)
	report(Progress{Action: ActionStarted, Kind: "image", Message: fmt.Sprintf("Importing %s into %s (%s)", ref, registry, strings.Join(append(res.Targets, res.Untagged...), ", "))})

	t, err := s.walkTree(ctx, src, ref.ref(), true)
	if err != nil {
		return ImportResult{}, importError(ref, err)
	}
	res.Digest, res.MediaType = t.root.Digest, t.root.MediaType
	if err := s.checkTags(ctx, registry, targets, t.root.Digest, req.Force); err != nil {
		return ImportResult{}, err
	}

	// Blobs: the first repository gets them from the source, the others
	// link them from there.
	var copied, linked, skipped atomic.Int64
	var bytes atomic.Int64
	for i, repo := range repos {
		to := store.RepoRef{Registry: registry, Repository: repo}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.concurrency)
		for _, b := range t.blobs {
			g.Go(func() error {
				if _, err := s.st.StatBlob(gctx, registry, repo, b.Digest); err == nil {
					skipped.Add(1)
					report(Progress{Action: ActionSkipped, Kind: "blob", Repository: repo, Digest: b.Digest, MediaType: b.MediaType, Size: b.Size})
					return nil
				}
				if i > 0 {
					if _, err := s.st.LinkBlob(gctx, b.Digest, store.RepoRef{Registry: registry, Repository: repos[0]}, to); err != nil {
						return err
					}
					linked.Add(1)
					report(Progress{Action: ActionLinked, Kind: "blob", Repository: repo, Digest: b.Digest, MediaType: b.MediaType, Size: b.Size})
					return nil
				}
				if !src.local() && s.linkReadable(gctx, id, to, b.Digest) {
					linked.Add(1)
					report(Progress{Action: ActionLinked, Kind: "blob", Repository: repo, Digest: b.Digest, MediaType: b.MediaType, Size: b.Size})
					return nil
				}
				began := s.now()
				if !src.local() {
					report(Progress{Action: ActionCopying, Kind: "blob", Repository: repo, Digest: b.Digest, MediaType: b.MediaType, Size: b.Size})
				}
				n, err := src.copyBlob(gctx, b, to)
				if err != nil {
					return fmt.Errorf("blob %s: %w", b.Digest, err)
				}
				if src.local() {
					linked.Add(1)
					report(Progress{Action: ActionLinked, Kind: "blob", Repository: repo, Digest: b.Digest, MediaType: b.MediaType, Size: b.Size})
					return nil
				}
				copied.Add(1)
				bytes.Add(n)
				s.metrics.BlobImported("import", n)
				report(Progress{Action: ActionCopied, Kind: "blob", Repository: repo, Digest: b.Digest, MediaType: b.MediaType, Size: n, Elapsed: s.now().Sub(began)})
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return ImportResult{}, importError(ref, err)
		}
	}

	// Manifests, children first; the root gets its tags (rechecked: a tag
	// may have appeared while the blobs were copied).
	tagsOf := map[string][]string{}
	for _, tg := range targets {
		tagsOf[tg.Repository] = append(tagsOf[tg.Repository], tg.Tag)
	}
	by := store.Actor{Principal: id.Principal, RunID: id.RunID}
	for _, repo := range repos {
		for _, m := range t.order {
			var tags []string
			if m.Digest == t.root.Digest {
				tags = tagsOf[repo]
				if err := s.checkTags(ctx, registry, targetsIn(targets, repo), m.Digest, req.Force); err != nil {
					return ImportResult{}, err
				}
			}
			if _, err := s.st.PutManifest(ctx, registry, repo, store.PutManifestRequest{
				Reference: m.Digest.String(), MediaType: m.MediaType, Body: m.Body, Tags: tags, By: by,
			}); err != nil {
				return ImportResult{}, fmt.Errorf("storing manifest %s in %s: %w", m.Digest, repo, err)
			}
			res.Manifests++
			if t.referrers[m.Digest] {
				res.Referrers++
			}
			report(Progress{Action: ActionStored, Kind: "manifest", Repository: repo, Digest: m.Digest, MediaType: m.MediaType, Size: int64(len(m.Body))})
		}
	}
	res.BlobsCopied, res.BlobsLinked, res.BlobsSkipped = int(copied.Load()), int(linked.Load()), int(skipped.Load())
	res.BytesCopied = bytes.Load()
	res.Duration = s.now().Sub(start)
	if rem != nil {
		res.RateLimitRemaining = s.remote.RateRemaining(rem.Host())
	}
	s.log.InfoContext(ctx, "import finished", "registry", registry, "source", res.Source, "digest", res.Digest,
		"targets", strings.Join(append(res.Targets, res.Untagged...), ","), "manifests", res.Manifests,
		"blobsCopied", res.BlobsCopied, "blobsLinked", res.BlobsLinked, "blobsSkipped", res.BlobsSkipped,
		"bytes", res.BytesCopied, "duration", res.Duration, "by", describe(id))
	return res, nil
}

// importError names the source in an error of the egress policy, which
// otherwise names only the upstream's address.
func importError(ref Reference, err error) error {
	if errors.Is(err, ErrRefused) {
		return fmt.Errorf("import from %s: %w", ref, err)
	}
	return err
}

// importTargets works out where an import writes: --image targets (their
// tag defaults to the source's), --repository untagged targets, or, with
// neither, the source's repository and tag.
func importTargets(ref Reference, req ImportRequest) ([]Target, []string, error) {
	var targets []Target
	for _, s := range req.Targets {
		t, err := parseTarget(strings.TrimSpace(s), ref.Tag)
		if err != nil {
			return nil, nil, err
		}
		targets = append(targets, t)
	}
	var untagged []string
	for _, r := range req.Repositories {
		r = strings.TrimSpace(r)
		if err := store.ValidRepository(r); err != nil {
			return nil, nil, invalid("repository %q: %v", r, err)
		}
		untagged = append(untagged, r)
	}
	if len(targets) == 0 && len(untagged) == 0 {
		if ref.Tag != "" {
			targets = []Target{{Repository: ref.Repository, Tag: ref.Tag}}
		} else {
			untagged = []string{ref.Repository}
		}
	}
	return targets, untagged, nil
}

// targetRepositories lists the distinct repositories of the targets.
func targetRepositories(targets []Target, untagged []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(r string) {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	for _, t := range targets {
		add(t.Repository)
	}
	for _, r := range untagged {
		add(r)
	}
	return out
}

func targetsIn(targets []Target, repo string) []Target {
	var out []Target
	for _, t := range targets {
		if t.Repository == repo {
			out = append(out, t)
		}
	}
	return out
}

// checkTags fails with ErrTagExists if, without force, a target tag exists
// and points somewhere other than d.
func (s *Service) checkTags(ctx context.Context, registry string, targets []Target, d digest.Digest, force bool) error {
	if force {
		return nil
	}
	for _, t := range targets {
		cur, err := s.st.ResolveTag(ctx, registry, t.Repository, t.Tag)
		if err != nil {
			if errors.Is(err, store.ErrTagUnknown) || errors.Is(err, store.ErrRepositoryUnknown) {
				continue
			}
			return err
		}
		if cur != d {
			return fmt.Errorf("tag %s in registry %q points at %s; importing %s would move it (use --force to overwrite): %w",
				t, registry, cur, d, ErrTagExists)
		}
	}
	return nil
}

// openSource resolves the source: a registry of this server (checked for
// the caller's read access) or a remote registry with the request's
// credentials, which the egress policy must admit for the caller (see
// reachOf).
func (s *Service) openSource(ctx context.Context, id auth.Identity, registry string, ref Reference, req ImportRequest) (contentSource, *remote.Repository, error) {
	local := ref.Local
	if local == "" {
		if reg, ok, err := s.st.LocalRegistry(ctx, ref.Host); err != nil {
			return nil, nil, err
		} else if ok {
			local = reg.Name
		}
	} else if _, err := s.st.GetRegistry(ctx, local); err != nil {
		return nil, nil, err
	}
	if local != "" {
		if err := s.access.Check(ctx, id, auth.OpContentRead, auth.RepositoryScope(local, ref.Repository)); err != nil {
			return nil, nil, err
		}
		return localSource{st: s.st, registry: local, repo: ref.Repository}, nil, nil
	}
	if (req.Username == "") != (req.Password == "") {
		return nil, nil, invalid("give both --username and --password, or neither")
	}
	reach := s.reachOf(ctx, id, registry)
	if err := s.remote.CheckURL(ref.Scheme, ref.Host, reach); err != nil {
		return nil, nil, err
	}
	user, err := s.resolveLiteral(ctx, id, "username", req.Username)
	if err != nil {
		return nil, nil, err
	}
	pass, err := s.resolveLiteral(ctx, id, "password", req.Password)
	if err != nil {
		return nil, nil, err
	}
	rem := s.remote.Repository(ref.Scheme, ref.Host, ref.Repository, remote.Credential{Username: user, Password: pass}, reach)
	return remoteSource{c: rem, p: s.policies.imports, st: s.st}, rem, nil
}

// resolveLiteral returns v, or the secret it names when it is a vault URI.
func (s *Service) resolveLiteral(ctx context.Context, id auth.Identity, field, v string) (string, error) {
	if v == "" || !vault.IsURI(v) {
		return v, nil
	}
	out, err := s.secrets.Resolve(ctx, id, v)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	return out, nil
}

// linkReadable links blob d into to from another repository of the same
// registry that holds it and the caller may read: no bytes move.
func (s *Service) linkReadable(ctx context.Context, id auth.Identity, to store.RepoRef, d digest.Digest) bool {
	repos, err := s.st.BlobRepositories(ctx, to.Registry, d, 16)
	if err != nil {
		return false
	}
	for _, r := range repos {
		if r == to.Repository || s.access.Check(ctx, id, auth.OpContentRead, auth.RepositoryScope(to.Registry, r)) != nil {
			continue
		}
		if _, err := s.st.LinkBlob(ctx, d, store.RepoRef{Registry: to.Registry, Repository: r}, to); err == nil {
			return true
		}
	}
	return false
}

// walkTree reads the manifest tree of ref from src: the root, every child
// of an index, and with referrers (to referrerDepth) the referrers of each,
// with their trees; and the blobs they all reference.
func (s *Service) walkTree(ctx context.Context, src contentSource, ref string, referrers bool) (*tree, error) {
	root, err := src.manifest(ctx, ref)
	if err != nil {
		return nil, err
	}
	t := &tree{root: root, referrers: map[digest.Digest]bool{}, seen: map[digest.Digest]bool{}, seenBlobs: map[digest.Digest]bool{}}
	subjects, err := s.visit(ctx, src, t, root)
	if err != nil {
		return nil, err
	}
	if !referrers {
		subjects = nil
	}
	for depth := 0; depth < referrerDepth && len(subjects) > 0; depth++ {
		lists := make([][]ocispec.Descriptor, len(subjects))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.concurrency)
		for i, d := range subjects {
			g.Go(func() error {
				l, err := src.referrers(gctx, d)
				if err != nil {
					return fmt.Errorf("listing referrers of %s: %w", d, err)
				}
				lists[i] = l
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		var next []digest.Digest
		for _, l := range lists {
			for _, desc := range l {
				if t.seen[desc.Digest] || !manifest.Supported(desc.MediaType) {
					continue
				}
				f, err := src.manifest(ctx, desc.Digest.String())
				if err != nil {
					return nil, fmt.Errorf("referrer %s: %w", desc.Digest, err)
				}
				added, err := s.visit(ctx, src, t, f)
				if err != nil {
					return nil, err
				}
				t.referrers[f.Digest] = true
				next = append(next, added...)
			}
		}
		subjects = next
	}
	return t, nil
}

// visit adds f and (for an index) its children to the tree, children
// first, and returns the digests added (the subjects whose referrers to
// look for next).
func (s *Service) visit(ctx context.Context, src contentSource, t *tree, f fetched) ([]digest.Digest, error) {
	if t.seen[f.Digest] {
		return nil, nil
	}
	t.seen[f.Digest] = true
	if len(t.seen) > s.maxManifests {
		return nil, fmt.Errorf("more than %d manifests to copy: %w", s.maxManifests, ErrTooLarge)
	}
	var added []digest.Digest
	if manifest.IsIndex(f.MediaType) {
		children := make([]fetched, len(f.Parsed.Manifests))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.concurrency)
		for i, c := range f.Parsed.Manifests {
			if t.seen[c.Digest] {
				continue
			}
			g.Go(func() error {
				cf, err := src.manifest(gctx, c.Digest.String())
				if err != nil {
					return fmt.Errorf("manifest %s of index %s: %w", c.Digest, f.Digest, err)
				}
				children[i] = cf
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		for _, c := range children {
			if c.Body == nil {
				continue
			}
			more, err := s.visit(ctx, src, t, c)
			if err != nil {
				return nil, err
			}
			added = append(added, more...)
		}
	} else {
		for _, b := range f.Parsed.Blobs() {
			if !t.seenBlobs[b.Digest] {
				t.seenBlobs[b.Digest] = true
				t.blobs = append(t.blobs, b)
			}
		}
	}
	t.order = append(t.order, f)
	return append(added, f.Digest), nil
}

// fetched is a manifest read from a source, verified.
type fetched = remote.Manifest
