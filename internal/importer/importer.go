package importer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/store"
)

// Secrets resolves vault secret URIs with an identity's permissions
// (vault.Service).
type Secrets interface {
	Resolve(ctx context.Context, id auth.Identity, uri string) (string, error)
}

// Access is what the importer needs of the access service (auth.Service):
// permission checks on behalf of callers, and the identities of credential
// sets.
type Access interface {
	Check(ctx context.Context, id auth.Identity, op auth.Operation, scope string) error
	CreateIdentity(ctx context.Context, name string) (auth.Principal, error)
	DeleteIdentity(ctx context.Context, id string) error
}

// Service imports content into registries and runs their pull-through
// cache rules. It implements registry.Fallback (with the ManifestSource
// and BlobSource capabilities) and registry.PushGuard for every registry
// of the server. Start it before use; it is safe for concurrent use.
type Service struct {
	db      *db.DB
	st      *store.Store
	secrets Secrets
	access  Access

	log          *slog.Logger
	now          func() time.Time
	tagTTL       time.Duration
	concurrency  int
	maxManifests int
	maxManifest  int64
	spoolDir     string
	fillTimeout  time.Duration
	// fillRetry is the wait after a cache fill's first failed attempt
	// (WithFillRetry).
	fillRetry time.Duration
	insecure  map[string]remote.Host
	egress    *egress.Policy
	remote    *remote.Client
	policies  policies
	metrics   Metrics

	rulesMu sync.Mutex
	rules   atomic.Pointer[ruleSnapshot]

	credsMu sync.Mutex
	creds   map[string]resolvedCreds // registry/credential-set -> values

	cache cacheState
	// fillSlots bounds the fill attempts that run in the background
	// (retries, resumed fills).
	fillSlots chan struct{}

	jobs    chan func(context.Context)
	stopped chan struct{}
	started atomic.Bool
	jobsWG  sync.WaitGroup
}

// policies are the retry policies of the three kinds of upstream work.
type policies struct {
	imports, fill, revalidate remote.Policy
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithTagTTL sets how long a cached tag is served before it is revalidated
// against the upstream with a HEAD request (default 5 minutes; the config's
// cache.tagTTL). Digests never need revalidation.
func WithTagTTL(d time.Duration) Option { return func(s *Service) { s.tagTTL = d } }

// WithConcurrency sets how many blobs one import or cache fill transfers at
// once (default 6).
func WithConcurrency(n int) Option { return func(s *Service) { s.concurrency = n } }

// WithMaxManifests bounds the manifests one import copies: an index, its
// platform manifests and their referrers (default 256).
func WithMaxManifests(n int) Option { return func(s *Service) { s.maxManifests = n } }

// WithSpoolDir sets where blobs being streamed to pull-through clients are
// spooled while they are stored (default the system temporary directory;
// use a directory of its own on the data volume, e.g. DATA/spool; Start
// creates it). Spool files are unlinked as soon as they are created, so
// nothing is left behind even by a crash.
func WithSpoolDir(dir string) Option { return func(s *Service) { s.spoolDir = dir } }

// WithFillTimeout bounds a background cache fill (default 1 hour).
func WithFillTimeout(d time.Duration) Option { return func(s *Service) { s.fillTimeout = d } }

// WithFillRetry sets the wait before the second attempt of a cache fill
// that failed for a reason that may pass (an upstream outage, 5xx, 429, a
// timeout, a restart); it doubles with each further attempt up to 120 times
// d (and is at least the upstream's Retry-After within that bound). The
// default, also for d <= 0, is DefaultFillRetry: 30 seconds, so at most an
// hour. Tests use milliseconds.
func WithFillRetry(d time.Duration) Option { return func(s *Service) { s.fillRetry = d } }

// WithInsecureRegistries lets imports and cache rules reach these login
// servers (host:port) over plain HTTP. Loopback hosts always may.
func WithInsecureRegistries(hosts ...string) Option {
	return func(s *Service) {
		for _, h := range hosts {
			s.insecure[strings.ToLower(h)] = remote.Host{PlainHTTP: true}
		}
	}
}

// WithRemote sets the registry client of imports and cache rules (the
// server's one client, with its CA bundle and per-registry settings). By
// default the service makes its own from WithEgress and
// WithInsecureRegistries.
func WithRemote(c *remote.Client) Option { return func(s *Service) { s.remote = c } }

// WithEgress sets the policy of upstream fetches: the control API's
// address, the admin's allow and deny lists (default: egress.New(), which
// still refuses link-local and metadata addresses, and loopback for
// callers that are neither the admin nor a registry owner).
func WithEgress(p *egress.Policy) Option { return func(s *Service) { s.egress = p } }

// Metrics is told how many blob bytes were copied from upstream registries
// (the server's metrics): source is "import" or "cache" (a pull-through
// cache rule filling a repository). BlobImported must be cheap and must not
// block.
type Metrics interface {
	BlobImported(source string, bytes int64)
}

type noMetrics struct{}

func (noMetrics) BlobImported(string, int64) {}

// WithMetrics sets who is told about imported bytes (default: nobody).
func WithMetrics(m Metrics) Option {
	return func(s *Service) {
		if m != nil {
			s.metrics = m
		}
	}
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns the import and cache service over the store. secrets
// resolves credential URIs; access checks callers' permissions and creates
// the identities of credential sets.
func New(d *db.DB, st *store.Store, secrets Secrets, access Access, opts ...Option) *Service {
	s := &Service{
		db:           d,
		st:           st,
		secrets:      secrets,
		access:       access,
		log:          slog.New(slog.DiscardHandler),
		now:          time.Now,
		tagTTL:       5 * time.Minute,
		concurrency:  6,
		maxManifests: 256,
		maxManifest:  store.DefaultMaxManifestSize,
		spoolDir:     os.TempDir(),
		fillTimeout:  time.Hour,
		fillRetry:    DefaultFillRetry,
		insecure:     map[string]remote.Host{},
		policies:     policies{imports: remote.ImportPolicy, fill: remote.FillPolicy, revalidate: remote.RevalidatePolicy},
		creds:        map[string]resolvedCreds{},
		cache:        newCacheState(),
		fillSlots:    make(chan struct{}, backgroundFills),
		jobs:         make(chan func(context.Context)),
		stopped:      make(chan struct{}),
		metrics:      noMetrics{},
	}
	for _, o := range opts {
		o(s)
	}
	if s.concurrency < 1 {
		s.concurrency = 1
	}
	if s.maxManifests < 1 {
		s.maxManifests = 1
	}
	if s.tagTTL < 0 {
		s.tagTTL = 0
	}
	if s.egress == nil {
		s.egress, _ = egress.New() // no entries to reject
	}
	if s.remote == nil {
		s.remote = remote.New(remote.WithEgress(s.egress), remote.WithHosts(s.insecure), remote.WithLogger(s.log),
			remote.WithClock(s.now), remote.WithMaxManifest(s.maxManifest))
	}
	return s
}

var errNotStarted = errors.New("importer not started")

// Start loads the cache rules, resumes the cache fills a previous run left
// unfinished, and runs background cache fills until ctx ends; Wait then
// waits for them to stop.
func (s *Service) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("importer already started")
	}
	running := false
	defer func() {
		if !running {
			// Not started after all: spawn refuses work and Wait returns,
			// instead of both waiting for a loop that never ran.
			s.started.Store(false)
		}
	}()
	if err := os.MkdirAll(s.spoolDir, 0o700); err != nil {
		return fmt.Errorf("creating spool directory: %w", err)
	}
	if _, err := s.loadRules(ctx); err != nil {
		return err
	}
	fills, err := s.loadFills(ctx)
	if err != nil {
		return err
	}
	running = true
	go func() {
		defer close(s.stopped)
		for {
			select {
			case j := <-s.jobs:
				s.jobsWG.Add(1)
				go func() {
					defer s.jobsWG.Done()
					j(ctx)
				}()
			case <-ctx.Done():
				return
			}
		}
	}()
	s.resumeFills(ctx, fills)
	return nil
}

// Wait waits, after Start's context ended, for background work to stop.
func (s *Service) Wait() {
	if !s.started.Load() {
		return
	}
	<-s.stopped
	s.jobsWG.Wait()
}

// spawn runs j in the background under the service's context. It reports
// false if the service is not running.
func (s *Service) spawn(j func(context.Context)) bool {
	if !s.started.Load() {
		return false
	}
	select {
	case s.jobs <- j:
		return true
	case <-s.stopped:
		return false
	}
}

// reachOf is how far an import asked for by id may fetch: this machine
// only for the admin and owners of the registry (an owner role covering
// it), never for a repository-scoped token or a run without that role.
func (s *Service) reachOf(ctx context.Context, id auth.Identity, registry string) egress.Reach {
	if id.Admin() {
		return egress.Local
	}
	if err := s.access.Check(ctx, id, auth.OpWrite, auth.RegistryScope(registry)); err == nil {
		return egress.Local
	}
	return egress.External
}

// interface guards
var (
	_ registry.Fallback       = (*Service)(nil)
	_ registry.ManifestSource = (*Service)(nil)
	_ registry.BlobSource     = (*Service)(nil)
	_ registry.PushGuard      = (*Service)(nil)
)

// Stored times, in the layout every table uses.
var (
	formatTime = db.FormatTime
	parseTime  = db.ParseTime
)

// describe names a caller in log lines.
func describe(id auth.Identity) string {
	if id.Name != "" {
		return id.Name
	}
	if id.Principal != "" {
		return id.Principal
	}
	return "anonymous"
}
