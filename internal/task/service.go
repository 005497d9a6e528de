package task

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task/worker"
)

// Registries looks up registries (their login servers).
type Registries interface {
	GetRegistry(ctx context.Context, name string) (store.Registry, error)
	// LocalRegistry finds the registry of this server a login server
	// names (store.Store.LocalRegistry).
	LocalRegistry(ctx context.Context, host string) (store.Registry, bool, error)
	// LoginServer is the name clients use for a registry: its hostname
	// when registries have one, else its listen address.
	LoginServer(r store.Registry) string
}

// Identities manages task identities and run credentials.
type Identities interface {
	CreateIdentity(ctx context.Context, name string) (auth.Principal, error)
	DeleteIdentity(ctx context.Context, id string) error
	IssueRunCredential(ctx context.Context, g auth.RunGrant) (string, error)
	RegistryRefreshToken(ctx context.Context, registry, username, password string, ttl time.Duration) (string, error)
	RevokeRun(ctx context.Context, registry, runID string) error
}

// Secrets resolves vault URIs with an identity's permissions.
type Secrets interface {
	Resolve(ctx context.Context, id auth.Identity, uri string) (string, error)
}

// Sealer encrypts the secrets a task stores itself.
type Sealer interface {
	Seal(plaintext []byte, binding string) ([]byte, error)
	Open(sealed []byte, binding string) ([]byte, error)
}

// Executor runs jobs on the container engine and cleans up after
// interrupted runs: what the workers need of it (worker.Engine).
type Executor = worker.Engine

var _ Executor = (*engine.Engine)(nil)

// Change describes a task that was created, updated or deleted; triggers
// subscribe to refresh what they watch.
type Change struct {
	Registry string
	Task     string
	TaskID   string
	Deleted  bool
}

// Service keeps tasks and runs and executes runs.
type Service struct {
	db      *db.DB
	regs    Registries
	ids     Identities
	secrets Secrets
	sealer  Sealer
	log     *slog.Logger
	now     func() time.Time
	dataDir string
	// contextRoots: WithContextRoots.
	contextRoots []string
	// privileged: WithPrivilegedRegistries.
	privileged []string
	// buildNetwork: WithBuildNetwork.
	buildNetwork string
	// controlURL is the control API address handed to steps running the
	// gantry CLI image.
	controlCA  string
	controlURL string
	// workerOpts: WithConcurrency, WithLogger.
	workerOpts []worker.Option

	logs *logBook
	pool *worker.Pool

	// dependents holds the prepared Dependents queries, by the number of
	// login-server spellings (*sql.Stmt): every tag push asks, and
	// compiling the query cost as much as running it.
	dependents sync.Map

	mu      sync.Mutex
	subs    []func(Change)
	runSubs []func(Run)
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(s *Service) {
		s.log = l
		s.workerOpts = append(s.workerOpts, worker.WithLogger(l))
	}
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithConcurrency sets how many runs execute at once (default 4).
func WithConcurrency(n int) Option {
	return func(s *Service) { s.workerOpts = append(s.workerOpts, worker.WithConcurrency(n)) }
}

// WithControlURL sets the control API address given to gantry CLI steps.
func WithControlURL(u string) Option { return func(s *Service) { s.controlURL = u } }

// WithControlCA gives gantry CLI steps the CA certificate (PEM) to trust
// the control API's TLS certificate by (GANTRY_CA_CERT): the local CA of a
// server started with --tls self-signed.
func WithControlCA(pem []byte) Option { return func(s *Service) { s.controlCA = string(pem) } }

// New returns a task service storing run logs and workspaces under dataDir.
func New(d *db.DB, dataDir string, regs Registries, ids Identities, secrets Secrets, sealer Sealer, exec Executor, opts ...Option) *Service {
	s := &Service{
		db:      d,
		regs:    regs,
		ids:     ids,
		secrets: secrets,
		sealer:  sealer,
		log:     slog.New(slog.DiscardHandler),
		now:     time.Now,
		dataDir: dataDir,
	}
	for _, o := range opts {
		o(s)
	}
	s.logs = newLogBook(filepath.Join(dataDir, "logs"))
	s.pool = worker.New(queue{s}, exec, s.workerOpts...)
	return s
}

// Start recovers runs interrupted by a previous process and starts the
// workers (package worker). They stop when ctx ends; Wait waits for them.
func (s *Service) Start(ctx context.Context) error { return s.pool.Start(ctx) }

// Wait waits for the workers to stop after Start's context ended.
func (s *Service) Wait() { s.pool.Wait() }

// Subscribe registers fn for task changes. fn must not block.
func (s *Service) Subscribe(fn func(Change)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = append(s.subs, fn)
}

// SubscribeRuns registers fn for run state changes (queued, started,
// finished). fn must not block.
func (s *Service) SubscribeRuns(fn func(Run)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runSubs = append(s.runSubs, fn)
}

func (s *Service) notify(c Change) { publish(&s.mu, &s.subs, c) }

func (s *Service) notifyRun(r Run) { publish(&s.mu, &s.runSubs, r) }

// publish calls each subscriber of subs (read under mu) with v.
func publish[T any](mu *sync.Mutex, subs *[]func(T), v T) {
	mu.Lock()
	fns := *subs
	mu.Unlock()
	for _, fn := range fns {
		fn(v)
	}
}
