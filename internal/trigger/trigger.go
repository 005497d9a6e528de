// Package trigger starts task runs without a manual step: on a new commit
// of a task's git branch (polling, and webhooks from GitHub, Gitea, Gogs,
// Forgejo or GitLab), on a digest change of a base image a task built from
// (pushed to any gantry registry, or polled in an external one), and on a
// task's cron timers.
//
// # Base-image triggers
//
// The task service records, after every successful run that built
// something, the base images the run used (task_base_images: image, host,
// repository, tag, digest, runtime or build-time). The store announces every
// tag move after its commit; Service queues the event without blocking the
// push and a dispatcher goroutine looks the tag up in the index of tracked
// bases (host spellings of the registry's login server, repository, tag).
// A dependent task is triggered when all of these hold:
//
//   - the task is Enabled, its base-image trigger is on, and the base is its
//     runtime base or the trigger type is All;
//   - the new digest differs from the tracked digest (what the task last
//     built from) and from the digest the task was last triggered for (a
//     re-push of the same digest, or a digest already handled, does
//     nothing);
//   - the pushing run is neither a run of the task itself nor caused by
//     one (following the causal chain): no self-trigger loops.
//
// Changes for one task are gathered for a short debounce window (default
// 15 ms) and queued as one Image Update run; the run is not queued when the
// task already has a Queued Image Update run (that run will build from the
// newest bases), nor when a Running one was caused by the same pushing run
// (several tags one run pushed). A base that moved while the task's run was
// building is caught after the run succeeds: the task's bases are compared
// with their current digests then, as they are at Start for every task (a
// tag moved while the server was down queues one run).
//
// Bases in registries that are not gantry registries are polled with a
// manifest HEAD request (anonymous, with Docker bearer-token negotiation) at
// a jittered interval, first at Start. Polls obey the egress policy
// (WithEgress): never the control API, link-local or metadata addresses,
// or hosts the admin's lists exclude; a refused poll records its error.
//
// # Commit triggers
//
// Every enabled task with a git context and its commit trigger on is polled
// (git ls-remote of its branch, default every 2 s for local repositories
// and 60 s for remote ones, jittered), first at Start. The head last seen is
// kept per task; the first head seen is recorded without a run, a
// different head queues one Commit run. Webhooks record the head too, so
// that a push is queued once whichever sees it first.
//
// # Timers
//
// Each enabled timer of an enabled task fires at its cron occurrences (5
// fields, UTC). The last occurrence handled is stored in
// task_timers.last_fire before the next is awaited, so a restart neither
// repeats a fire nor loses one: occurrences missed while the server was
// down queue exactly one run, for the latest missed occurrence. A timer
// that is created, re-enabled or rescheduled starts from that moment.
//
// # Exactly once
//
// A run is queued before its trigger state is recorded. Before a commit or
// timer run, and before a base-image run found by a catch-up, the task's
// recent runs are checked for one with the same cause, so a crash in
// between neither loses nor doubles a run. Live base-image changes skip that
// read (the in-memory record covers them while the process lives; the
// catch-up at the next start does the check).
package trigger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNoGitContext: the task's context is not a git repository, so it has
	// no commit trigger (and no webhook).
	ErrNoGitContext = fmt.Errorf("the task's context is not a git repository: %w", task.ErrInvalid)
)

// TaskSource reads tasks and is told when they change (task.Service).
type TaskSource interface {
	Subscribe(fn func(task.Change))
	GetTask(ctx context.Context, registry, name string) (*task.Task, error)
	TaskByID(ctx context.Context, id string) (*task.Task, error)
	CommitTriggerTasks(ctx context.Context) ([]*task.Task, error)
	GitToken(ctx context.Context, t *task.Task) (string, error)
}

// RunQueue queues runs and reads them back (task.Service).
type RunQueue interface {
	SubscribeRuns(fn func(task.Run))
	QueueTaskRun(ctx context.Context, t *task.Task, trigger string, cause task.Cause) (*task.Run, error)
	RecentRuns(ctx context.Context, taskID, trigger string, limit int) ([]*task.Run, error)
	ActiveRuns(ctx context.Context, trigger string) ([]*task.Run, error)
	Chain(ctx context.Context, registry, runID string) ([]*task.Run, error)
	Pusher(ctx context.Context, c *task.ImageCause) (*task.Run, error)
}

// BaseIndex finds the tasks tracking a base image (task.Service).
type BaseIndex interface {
	Dependents(ctx context.Context, hosts []string, repository, tag string) ([]task.Dependent, error)
	WatchedBaseImages(ctx context.Context) ([]task.TaskBase, error)
	BaseImages(ctx context.Context, taskID string) ([]task.TrackedBase, error)
}

// TimerStore reads timers and records their last fire (task.Service).
type TimerStore interface {
	TimerStates(ctx context.Context, taskID string) ([]task.TimerState, error)
	SetTimerLastFire(ctx context.Context, taskID, name, schedule string, at time.Time) (bool, error)
}

// Tasks is everything the triggers use of the task service.
type Tasks interface {
	TaskSource
	RunQueue
	BaseIndex
	TimerStore
}

// Content is what the triggers use of the content store (store.Store): tag
// events and the registries' login servers.
type Content interface {
	Subscribe(fn func(store.TagEvent)) (unsubscribe func())
	ListRegistries(ctx context.Context) ([]store.Registry, error)
	// LoginServers are every name a registry is served under.
	LoginServers(r store.Registry) []string
	ResolveTag(ctx context.Context, registry, repo, tag string) (digest.Digest, error)
	TagHistory(ctx context.Context, registry, repo, tag string) ([]store.TagEvent, error)
}

// Sealer encrypts the webhook secrets (vault.Service).
type Sealer interface {
	Seal(plaintext []byte, binding string) ([]byte, error)
	Open(sealed []byte, binding string) ([]byte, error)
}

var _ Tasks = (*task.Service)(nil)
var _ Content = (*store.Store)(nil)

// Credentials returns the login for an external registry host ("" user for
// anonymous access).
type Credentials func(ctx context.Context, host string) (username, password string, err error)

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithClock replaces the system clock, for tests.
func WithClock(c Clock) Option { return func(s *Service) { s.clock = c } }

// WithCommitPollInterval sets how often branch heads are polled: local
// repositories (a path or file:// URL; default 2 s) and remote ones
// (default 60 s). Zero keeps a default; each wait is jittered.
func WithCommitPollInterval(local, remote time.Duration) Option {
	return func(s *Service) {
		if local > 0 {
			s.localPoll = local
		}
		if remote > 0 {
			s.remotePoll = remote
		}
	}
}

// WithExternalPollInterval sets how often base images in external
// registries are polled (default 1 min, jittered). ACR polls Docker Hub
// every 10-60 minutes.
func WithExternalPollInterval(d time.Duration) Option {
	return func(s *Service) {
		if d > 0 {
			s.externalPoll = d
		}
	}
}

// WithDebounce sets how long the base-image trigger gathers changes for a
// task before queueing its one run (default 15 ms; 0 queues at once). It
// adds to the push-to-queued latency.
func WithDebounce(d time.Duration) Option {
	return func(s *Service) {
		if d >= 0 {
			s.debounce = d
		}
	}
}

// WithJitter sets the fraction by which poll intervals vary (default 0.1).
func WithJitter(frac float64) Option { return func(s *Service) { s.jitter = frac } }

// Metrics is told how long each run a trigger queued took from the trigger
// firing to the run being queued (the server's metrics). RunQueued must be
// cheap and must not block.
type Metrics interface {
	RunQueued(trigger string, latency time.Duration)
}

type noMetrics struct{}

func (noMetrics) RunQueued(string, time.Duration) {}

// WithMetrics sets who is told about trigger latencies (default: nobody):
// for a base-image change, from the tag move reaching the trigger (after
// its commit) to the run queued, debounce included; for a commit, from the
// poll or webhook seeing the new head; for a timer, from its occurrence
// (from the trigger waking, for occurrences missed while the server was
// down).
func WithMetrics(m Metrics) Option {
	return func(s *Service) {
		if m != nil {
			s.metrics = m
		}
	}
}

// WithRemote sets the registry client of external polls (the server's
// one client, with its egress policy, CA bundle and per-registry settings).
// Polls have Local reach: only the admin and registry owners create tasks,
// so a base image on this machine may be polled.
func WithRemote(c *remote.Client) Option { return func(s *Service) { s.remote = c } }

// WithEgress sets the policy external registry polls obey when no client
// is given with WithRemote (default: egress.New(), which refuses
// link-local and metadata addresses).
func WithEgress(p *egress.Policy) Option {
	return func(s *Service) { s.remote = remote.New(remote.WithEgress(p)) }
}

// WithCredentials sets the logins used for external registry polls.
func WithCredentials(c Credentials) Option { return func(s *Service) { s.creds = c } }

// Service runs the commit, base-image and timer triggers. Build it with
// New, then Start it once; it stops when Start's context ends, and Wait
// waits for its goroutines.
type Service struct {
	db      *db.DB
	tasks   Tasks
	content Content
	sealer  Sealer

	log          *slog.Logger
	clock        Clock
	localPoll    time.Duration
	remotePoll   time.Duration
	externalPoll time.Duration
	debounce     time.Duration
	jitter       float64
	remote       *remote.Client
	creds        Credentials
	metrics      Metrics

	regs    atomic.Pointer[registryMap]
	regMu   sync.Mutex
	locks   keyedMutex
	base    *baseTrigger
	commits *commitTrigger
	timers  *timerTrigger
	ext     *externalPoller

	started   atomic.Bool
	stopped   atomic.Bool
	startedAt time.Time
	wg        sync.WaitGroup
	hooks     hooks
}

// hooks let tests observe the goroutines; nil fields are skipped.
type hooks struct {
	polled    func(taskID string, err error)
	extPolled func(image string, err error)
	timerWait func(next time.Time)
}

// New returns the triggers over the task service, the content store and the
// vault's sealer, with their state in d.
func New(d *db.DB, tasks Tasks, content Content, sealer Sealer, opts ...Option) *Service {
	s := &Service{
		db:           d,
		tasks:        tasks,
		content:      content,
		sealer:       sealer,
		log:          slog.New(slog.DiscardHandler),
		clock:        SystemClock{},
		localPoll:    2 * time.Second,
		remotePoll:   time.Minute,
		externalPoll: time.Minute,
		debounce:     15 * time.Millisecond,
		jitter:       0.1,
		metrics:      noMetrics{},
	}
	for _, o := range opts {
		o(s)
	}
	if s.remote == nil {
		s.remote = remote.New(remote.WithLogger(s.log))
	}
	s.base = newBaseTrigger(s)
	s.commits = newCommitTrigger(s)
	s.timers = newTimerTrigger(s)
	s.ext = newExternalPoller(s)
	return s
}

// Start loads the trigger state, subscribes to task, run and tag events and
// starts the triggers, which first catch up with what happened while the
// server was down. They stop when ctx ends; call Wait then.
func (s *Service) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("triggers already started")
	}
	s.startedAt = s.clock.Now()
	if err := s.RefreshRegistries(ctx); err != nil {
		return err
	}
	if err := s.base.load(ctx); err != nil {
		return err
	}
	unsubscribe := s.content.Subscribe(s.base.onTagEvent)
	s.tasks.Subscribe(func(c task.Change) {
		if s.stopped.Load() {
			return
		}
		s.commits.kick(c.TaskID)
		s.timers.kick(c.TaskID)
		s.ext.kick()
	})
	s.tasks.SubscribeRuns(func(r task.Run) {
		if s.stopped.Load() || r.TaskID == "" || r.Status != task.RunSucceeded {
			return
		}
		// The run's bases were just recorded: catch a base that moved while
		// it built, and poll new external bases.
		s.base.reconcileTask(r.TaskID)
		s.ext.kick()
	})
	for _, run := range []func(context.Context){s.base.run, s.commits.run, s.timers.run, s.ext.run} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			run(ctx)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		s.stopped.Store(true)
		unsubscribe()
	}()
	s.log.InfoContext(ctx, "triggers started")
	return nil
}

// Wait waits for the triggers to stop after Start's context ended.
func (s *Service) Wait() { s.wg.Wait() }

// registryMap maps gantry registries to their login servers and back.
type registryMap struct {
	// byName maps a registry name to the host spellings of its login
	// server, as they may appear in a FROM line.
	byName map[string][]string
	// byHost maps a normalised host:port to a registry name.
	byHost map[string]string
}

// RefreshRegistries reloads the registries' login servers; the triggers also
// reload them when an event names an unknown registry and every minute.
// Call it after a registry is created, moved or deleted.
func (s *Service) RefreshRegistries(ctx context.Context) error {
	regs, err := s.content.ListRegistries(ctx)
	if err != nil {
		return fmt.Errorf("listing registries: %w", err)
	}
	m := &registryMap{byName: map[string][]string{}, byHost: map[string]string{}}
	for _, r := range regs {
		var spellings []string
		for _, login := range s.content.LoginServers(r) {
			spellings = append(spellings, hostSpellings(login)...)
		}
		if len(spellings) == 0 {
			continue
		}
		m.byName[r.Name] = spellings
		for _, h := range spellings {
			m.byHost[normalizeHost(h)] = r.Name
		}
	}
	s.regs.Store(m)
	return nil
}

// registryOf returns the gantry registry whose login server is host, or "".
func (s *Service) registryOf(host string) string {
	m := s.regs.Load()
	if m == nil {
		return ""
	}
	return m.byHost[normalizeHost(host)]
}

// spellingsOf returns the host spellings of a registry's login server,
// reloading the registries once when it is unknown.
func (s *Service) spellingsOf(ctx context.Context, registry string) []string {
	if m := s.regs.Load(); m != nil {
		if h, ok := m.byName[registry]; ok {
			return h
		}
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if err := s.RefreshRegistries(ctx); err != nil {
		s.log.WarnContext(ctx, "reloading registries", "err", err)
		return nil
	}
	return s.regs.Load().byName[registry]
}

// loopbackHosts are the names of this machine's loopback interface.
var loopbackHosts = map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}

// wildcardHosts listen on every interface.
var wildcardHosts = map[string]bool{"": true, "0.0.0.0": true, "::": true}

// normalizeHost maps host[:port] to one spelling per address: lower case,
// loopback and wildcard hosts as 127.0.0.1.
func normalizeHost(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.Trim(hostport, "[]"), ""
	}
	host = strings.ToLower(host)
	if loopbackHosts[host] || wildcardHosts[host] {
		host = "127.0.0.1"
	}
	if port == "" {
		return host
	}
	return net.JoinHostPort(host, port)
}

// hostSpellings returns the ways a FROM line may name a registry listening
// on listen: as is, and for a loopback or wildcard address every loopback
// name (and the machine's host name for a wildcard).
func hostSpellings(listen string) []string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return []string{strings.ToLower(listen)}
	}
	host = strings.ToLower(host)
	out := []string{strings.ToLower(listen)}
	add := func(h string) {
		hp := net.JoinHostPort(h, port)
		for _, x := range out {
			if x == hp {
				return
			}
		}
		out = append(out, hp)
	}
	if loopbackHosts[host] || wildcardHosts[host] {
		add("127.0.0.1")
		add("localhost")
		add("::1")
	}
	if wildcardHosts[host] {
		add("0.0.0.0")
		if hn, err := os.Hostname(); err == nil && hn != "" {
			add(strings.ToLower(hn))
		}
	}
	return out
}

// keyedMutex serialises work per key (a task): a poll and a webhook of one
// task never decide concurrently.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// kicker collects keys to reload and wakes a goroutine; it never blocks.
type kicker struct {
	mu   sync.Mutex
	keys map[string]bool
	all  bool
	wake chan struct{}
}

func newKicker() *kicker { return &kicker{keys: map[string]bool{}, wake: make(chan struct{}, 1)} }

func (k *kicker) kick(key string) {
	k.mu.Lock()
	if key == "" {
		k.all = true
	} else {
		k.keys[key] = true
	}
	k.mu.Unlock()
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// take returns the keys kicked since the last take (all: a full reload).
func (k *kicker) take() (keys []string, all bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key := range k.keys {
		keys = append(keys, key)
	}
	all = k.all
	k.keys, k.all = map[string]bool{}, false
	return keys, all
}

// formatTime and parseTime store times as RFC 3339 UTC with nanoseconds.
// Stored times: "" means never.
var (
	formatTime = db.FormatTimeOrEmpty
	parseTime  = db.ParseTime
)
