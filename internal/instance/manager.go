package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/wait"
)

// Engine is what the manager needs of the container engine;
// *docker.Client implements it.
type Engine interface {
	PullImage(ctx context.Context, ref string, auth *docker.AuthConfig, out io.Writer) error
	InspectImage(ctx context.Context, ref string) (docker.Image, error)
	CreateContainer(ctx context.Context, name string, cfg docker.ContainerConfig, host docker.HostConfig) (string, error)
	StartContainer(ctx context.Context, id string) error
	WaitContainer(ctx context.Context, id string, cond docker.WaitCondition) (<-chan docker.WaitResult, error)
	InspectContainer(ctx context.Context, id string) (docker.Container, error)
	ListContainers(ctx context.Context, opts docker.ListContainersOptions) ([]docker.ContainerSummary, error)
	StopContainer(ctx context.Context, id string, timeout time.Duration) error
	RemoveContainer(ctx context.Context, id string, opts docker.RemoveContainerOptions) error
	ContainerLogs(ctx context.Context, id string, opts docker.LogsOptions, stdout, stderr io.Writer) error
}

var _ Engine = (*docker.Client)(nil)

// Sealer encrypts the secrets an instance stores (registry password, secure
// environment variables); *vault.Service implements it.
type Sealer interface {
	Seal(plaintext []byte, binding string) ([]byte, error)
	Open(sealed []byte, binding string) ([]byte, error)
}

// Labels on every container the manager creates.
const (
	// LabelInstance is the instance's name.
	LabelInstance = "io.gantry.instance"
	// LabelID is the instance's ID (a new instance of the same name has
	// another).
	LabelID = "io.gantry.instance.id"
	// LabelOwner is the owner ID of the database the instance is stored in.
	LabelOwner = "io.gantry.instance.owner"
)

// Log attribute keys.
const (
	logKeyInstance  = "instance"
	logKeyContainer = "container"
	logKeyImage     = "image"
	logKeyAddr      = "addr"
	logKeyOutcome   = "outcome"
	logKeyBy        = "by"
	logKeyErr       = "err"
)

// Defaults of the options.
const (
	DefaultStartupTimeout = 60 * time.Second
	DefaultDrainTimeout   = 5 * time.Second
	DefaultStopTimeout    = 10 * time.Second
	DefaultResyncInterval = 30 * time.Second
	DefaultFrontHost      = "127.0.0.1"
)

// cleanupTimeout bounds the engine calls made after the caller's context
// has ended (removing a container that did not start, retiring the old one).
const cleanupTimeout = 30 * time.Second

// Option configures a Manager.
type Option func(*options)

type options struct {
	log            *slog.Logger
	now            func() time.Time
	host           string
	startupTimeout time.Duration
	drainTimeout   time.Duration
	stopTimeout    time.Duration
	resync         time.Duration
	labels         map[string]string
	exchange       LoginExchange
}

// LoginExchange turns a user name and password for one of gantry's own
// registries (login server host:port) into an identity token (a refresh
// token of that registry) that the engine presents instead; ok is false for
// another registry or a login it refuses.
type LoginExchange func(ctx context.Context, loginServer, username, password string) (token string, ok bool)

// WithLoginExchange makes pulls from gantry's own registries present a
// short-lived identity token instead of the stored password, so that no
// reusable credential crosses loopback (docs/security.md).
func WithLoginExchange(f LoginExchange) Option { return func(o *options) { o.exchange = f } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithFrontHost sets the host the front proxies listen on (default
// 127.0.0.1). Containers always listen on loopback.
func WithFrontHost(host string) Option { return func(o *options) { o.host = host } }

// WithStartupTimeout bounds how long a new container may take to accept
// connections (default 60s); a Spec can ask for another.
func WithStartupTimeout(d time.Duration) Option {
	return func(o *options) { o.startupTimeout = d }
}

// WithDrainTimeout bounds how long a replaced container keeps serving the
// connections opened to it before it is stopped (default 5s).
func WithDrainTimeout(d time.Duration) Option { return func(o *options) { o.drainTimeout = d } }

// WithStopTimeout is how long a container gets between its stop signal and
// SIGKILL (default 10s).
func WithStopTimeout(d time.Duration) Option { return func(o *options) { o.stopTimeout = d } }

// WithResyncInterval sets how often the manager repairs instances in the
// background after Start (default 30s; 0 disables it).
func WithResyncInterval(d time.Duration) Option { return func(o *options) { o.resync = d } }

// WithLabels adds labels to every container the manager creates (tests use
// them to sweep up).
func WithLabels(l map[string]string) Option {
	return func(o *options) { o.labels = maps.Clone(l) }
}

func makeOptions(opts []Option) (options, error) {
	o := options{
		log:            slog.New(slog.DiscardHandler),
		now:            time.Now,
		host:           DefaultFrontHost,
		startupTimeout: DefaultStartupTimeout,
		drainTimeout:   DefaultDrainTimeout,
		stopTimeout:    DefaultStopTimeout,
		resync:         DefaultResyncInterval,
	}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.log == nil:
		return o, fmt.Errorf("nil logger: %w", ErrInvalid)
	case o.now == nil:
		return o, fmt.Errorf("nil clock: %w", ErrInvalid)
	case o.host == "":
		return o, fmt.Errorf("empty front host: %w", ErrInvalid)
	case o.startupTimeout <= 0, o.drainTimeout < 0, o.stopTimeout < 0, o.resync < 0:
		return o, fmt.Errorf("timeouts must not be negative, the startup timeout must be positive: %w", ErrInvalid)
	}
	for k := range o.labels {
		if k == LabelInstance || k == LabelID || k == LabelOwner {
			return o, fmt.Errorf("label %s is the manager's own: %w", k, ErrInvalid)
		}
	}
	return o, nil
}

// Manager creates, replaces, reports on and deletes container instances,
// and serves their front addresses.
//
// Lifecycle: New, then Start (before serving requests: it reconciles with
// the engine and removes containers no instance claims), then any number of
// concurrent Apply, Get, List, Logs and Delete calls, then Stop, which
// closes the front addresses and leaves the containers running.
type Manager struct {
	db     *db.DB
	engine Engine
	sealer Sealer
	o      options
	log    *slog.Logger

	locks keyedLock

	ownerMu sync.Mutex
	owner   string

	mu        sync.Mutex
	fronts    map[string]map[int]*front // instance name -> declared port -> front
	frontErrs map[string]string         // instance name -> why a front is not served
	retiring  map[string]chan struct{}  // instance name -> closed when its last retirement is done
	started   bool
	closed    bool // Stop was called
	stopBG    context.CancelFunc
	bg        sync.WaitGroup

	retirements sync.WaitGroup
	quit        chan struct{} // closed by Stop
}

// New returns a manager of the instances stored in d, running them on
// engine and sealing their secrets with sealer.
func New(d *db.DB, engine Engine, sealer Sealer, opts ...Option) (*Manager, error) {
	if d == nil || engine == nil || sealer == nil {
		return nil, fmt.Errorf("instance manager: database, engine and sealer are required: %w", ErrInvalid)
	}
	o, err := makeOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("instance manager: %w", err)
	}
	return &Manager{
		db:        d,
		engine:    engine,
		sealer:    sealer,
		o:         o,
		log:       o.log,
		fronts:    map[string]map[int]*front{},
		frontErrs: map[string]string{},
		retiring:  map[string]chan struct{}{},
		quit:      make(chan struct{}),
	}, nil
}

// Start reconciles the stored instances with the engine: it serves every
// front address again, adopts containers that kept running, re-creates
// missing or stopped ones (as their restart policy says) and removes this
// database's containers that no instance claims. Problems with one instance
// are logged and shown in its state; Start fails only when the database
// cannot be read. It then repairs instances in the background every resync
// interval until Stop.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("instance manager: already started")
	}
	m.started = true
	m.mu.Unlock()

	owner, err := m.ownerID(ctx)
	if err != nil {
		return err
	}
	names, err := m.names(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.resync(ctx, name); err != nil {
				m.log.ErrorContext(ctx, "container instance not restored", logKeyInstance, name, logKeyErr, err)
			}
		}()
	}
	wg.Wait()
	if err := m.removeUnclaimed(ctx, owner); err != nil {
		m.log.WarnContext(ctx, "removing unclaimed containers", logKeyErr, err)
	}
	m.log.InfoContext(ctx, "container instances started", "count", len(names))

	if m.o.resync > 0 {
		bgctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		m.mu.Lock()
		m.stopBG = cancel
		m.mu.Unlock()
		m.bg.Add(1)
		go m.loop(bgctx)
	}
	return nil
}

// Stop ends the background resync, cuts short the removal of replaced
// containers (the next Start removes what is left), and closes every front
// address. The serving containers keep running; the next Start adopts them.
// When ctx ends before the resync has stopped, Stop still closes the fronts
// and returns ctx's error.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	cancel := m.stopBG
	m.stopBG = nil
	if !m.closed {
		close(m.quit)
	}
	m.closed = true
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	done := make(chan struct{})
	go func() { m.bg.Wait(); m.retirements.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		// Containers still being retired are removed by the next Start.
		err = fmt.Errorf("stopping container instances: %w", ctx.Err())
	}
	m.mu.Lock()
	all := m.fronts
	m.fronts = map[string]map[int]*front{}
	m.mu.Unlock()
	for _, fs := range all {
		for _, f := range fs {
			f.close()
		}
	}
	return err
}

func (m *Manager) loop(ctx context.Context) {
	defer m.bg.Done()
	wait.Every(ctx, m.o.resync, m.resyncAll)
}

// resyncAll brings every container instance back to its definition.
func (m *Manager) resyncAll(ctx context.Context) {
	names, err := m.names(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.ErrorContext(ctx, "container instance resync", logKeyErr, err)
		}
		return
	}
	for _, name := range names {
		if err := m.resync(ctx, name); err != nil && ctx.Err() == nil {
			m.log.WarnContext(ctx, "container instance resync", logKeyInstance, name, logKeyErr, err)
		}
	}
}

// keyedLock is a set of mutexes by name that honour a context.
type keyedLock struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	ch   chan struct{}
	refs int
}

// lock takes the lock of key, or fails when ctx ends first. The returned
// function releases it.
func (l *keyedLock) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyedEntry{}
	}
	e := l.m[key]
	if e == nil {
		e = &keyedEntry{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.release(key, e) }, nil
	case <-ctx.Done():
		l.release(key, e)
		return nil, fmt.Errorf("waiting for another operation on container %q: %w", key, ctx.Err())
	}
}

func (l *keyedLock) release(key string, e *keyedEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(l.m, key)
	}
}
