package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/keyfile"
)

// RegistryLookup reports registry settings the access rules depend on. The
// server implements it from the registry store. AnonymousPull is called on
// every anonymous registry request and on every request carrying an
// anonymous bearer token, so it should be cheap (a cached read).
type RegistryLookup interface {
	// AnonymousPull reports whether registry was created with anonymous
	// pull. An unknown registry reports false.
	AnonymousPull(ctx context.Context, registry string) (bool, error)
}

// Key files this package keeps in the keys directory (0600).
const (
	// SigningKeyFile holds the HMAC-SHA256 key that signs registry bearer
	// and refresh tokens.
	SigningKeyFile = "registry-token.key"
	// CredentialKeyFile holds the key of the keyed hash (HMAC-SHA256) under
	// which token passwords and run credentials are stored.
	CredentialKeyFile = "credential-hmac.key"
)

// Service implements users, tokens, scope maps, identities, role
// assignments, run credentials, registry authorization (it is the registries'
// Authorizer) and control-plane authorization. It is safe for concurrent use.
type Service struct {
	db     *db.DB
	log    *slog.Logger
	now    func() time.Time
	lookup RegistryLookup

	signKey  []byte // JWT HS256 key
	signKID  string
	credKey  []byte // keyed hash of token passwords and run credentials
	cacheKey []byte // per process: keys the admin verification cache
	dummy    []byte // compared against when a token is unknown

	dummyOnce sync.Once
	dummyHash string // argon2id hash verified against when there is no admin

	tokenTTL   time.Duration
	refreshTTL time.Duration
	cacheTTL   time.Duration
	hashParams argonParams

	gen     atomic.Uint64 // bumped after every write that changes grants
	limiter *limiter
	gate    *hashGate // bounds the admin password hashes computed at once

	verifyingMu sync.Mutex
	verifying   map[string]chan struct{} // adminOK key -> closed when its first verification ends

	tokens   *cache[string, *tokenRecord] // registry\x00name -> token (nil: unknown)
	runs     *cache[string, *runRecord]   // credential id -> run credential (nil: unknown)
	roles    *cache[string, []RoleAssignment]
	admin    *cache[string, *adminRecord]
	adminOK  *cache[string, struct{}]  // keyed hash of a verified admin password
	parsed   *cache[[32]byte, *claims] // sha256 of a verified JWT -> its claims (generation 0)
	compares atomic.Int64              // secret comparisons made, for tests of timing-safe paths
	hashes   atomic.Int64              // slow password hashes computed, likewise
}

// Option configures a Service.
type Option func(*options) error

type options struct {
	log        *slog.Logger
	now        func() time.Time
	lookup     RegistryLookup
	tokenTTL   time.Duration
	refreshTTL time.Duration
	cacheTTL   time.Duration
	limits     limits
	hashParams argonParams
	observer   LoginObserver
	hashSlots  int
	hashQueue  int
	hashWait   time.Duration
}

// WithLogger sets the logger; the default discards. Secrets never reach it.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("nil logger: %w", ErrInvalid)
		}
		o.log = l
		return nil
	}
}

// WithClock sets the clock used for expiry, token lifetimes and login
// throttling (tests inject a fake one). The default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return fmt.Errorf("nil clock: %w", ErrInvalid)
		}
		o.now = now
		return nil
	}
}

// WithRegistryLookup sets where anonymous-pull settings come from. Without
// it no registry allows anonymous pull.
func WithRegistryLookup(l RegistryLookup) Option {
	return func(o *options) error {
		o.lookup = l
		return nil
	}
}

// WithTokenTTL sets the lifetime of registry bearer tokens (default 5
// minutes, at most 1 hour).
func WithTokenTTL(d time.Duration) Option {
	return func(o *options) error {
		if d < time.Second || d > time.Hour {
			return fmt.Errorf("token lifetime %s not in [1s, 1h]: %w", d, ErrInvalid)
		}
		o.tokenTTL = d
		return nil
	}
}

// WithRefreshTTL sets the lifetime of refresh tokens handed to clients that
// ask for offline access (docker login stores them as identity tokens).
// Default 30 days. Refresh tokens stop working earlier when the credential
// they were issued for is disabled, expires, is regenerated or revoked.
func WithRefreshTTL(d time.Duration) Option {
	return func(o *options) error {
		if d < time.Minute {
			return fmt.Errorf("refresh token lifetime %s under 1m: %w", d, ErrInvalid)
		}
		o.refreshTTL = d
		return nil
	}
}

// WithCacheTTL bounds how long a cached grant is trusted when the database
// may have been changed behind the Service's back (default 30 seconds).
// Changes made through the Service apply at once regardless.
func WithCacheTTL(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("cache lifetime %s: %w", d, ErrInvalid)
		}
		o.cacheTTL = d
		return nil
	}
}

// WithLoginLimits tunes the brute-force limiter: free failed logins per
// client (remote IP + username) are not delayed; each further failure locks
// the client out for first, doubling up to max. A success resets the count,
// and so does a quiet hour. Defaults: 5, 1s, 15m.
func WithLoginLimits(free int, first, max time.Duration) Option {
	return func(o *options) error {
		if free < 0 || first <= 0 || max < first {
			return fmt.Errorf("login limits %d, %s, %s: %w", free, first, max, ErrInvalid)
		}
		o.limits = limits{free: free, first: first, max: max, forget: time.Hour}
		return nil
	}
}

// WithObserver sets who is told about the failed logins and lockouts of
// the brute-force limiter (default: nobody).
func WithObserver(o LoginObserver) Option {
	return func(o2 *options) error {
		o2.observer = o
		return nil
	}
}

// WithPasswordHashCost sets the argon2id cost of the admin password hash
// (memory in KiB, iterations). The default is 19456 KiB and 2 iterations
// (OWASP's minimum for argon2id); tests may lower it.
func WithPasswordHashCost(memoryKiB uint32, iterations uint32) Option {
	return func(o *options) error {
		if memoryKiB < 8 || iterations < 1 {
			return fmt.Errorf("password hash cost m=%d t=%d: %w", memoryKiB, iterations, ErrInvalid)
		}
		o.hashParams = argonParams{memory: memoryKiB, time: iterations, threads: 1, keyLen: 32, saltLen: 16}
		return nil
	}
}

// WithPasswordHashLimit bounds the password hashes (argon2id) computed at
// once to concurrent, with up to queued logins waiting at most wait for one
// to finish; further logins are refused with a ThrottledError matching
// ErrLoginBusy (429 with Retry-After). Defaults: one per core
// (GOMAXPROCS) but at most 32 MiB of hash memory (1 hash of the default
// cost), twice that, 1s. Each hash holds the memory cost of
// WithPasswordHashCost (19 MiB by default).
func WithPasswordHashLimit(concurrent, queued int, wait time.Duration) Option {
	return func(o *options) error {
		if concurrent < 1 || queued < 0 || wait < 0 {
			return fmt.Errorf("password hash limit %d, %d, %s: %w", concurrent, queued, wait, ErrInvalid)
		}
		o.hashSlots, o.hashQueue, o.hashWait = concurrent, queued, wait
		return nil
	}
}

// New returns a Service over the database d. keysDir is the directory of
// server keys (DIR/keys): the signing and credential-hash keys are read from
// it, or created there (0600) on first use.
func New(d *db.DB, keysDir string, opts ...Option) (*Service, error) {
	if d == nil {
		return nil, fmt.Errorf("nil database: %w", ErrInvalid)
	}
	o := options{
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:        time.Now,
		tokenTTL:   5 * time.Minute,
		refreshTTL: 30 * 24 * time.Hour,
		cacheTTL:   30 * time.Second,
		limits:     limits{free: 5, first: time.Second, max: 15 * time.Minute, forget: time.Hour},
		hashParams: defaultArgon,
		hashWait:   hashWait,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.hashSlots == 0 {
		o.hashSlots = defaultHashSlots(o.hashParams.memory)
		o.hashQueue = hashQueueFactor * o.hashSlots
	}
	signKey, err := loadKey(keysDir, SigningKeyFile)
	if err != nil {
		return nil, err
	}
	credKey, err := loadKey(keysDir, CredentialKeyFile)
	if err != nil {
		return nil, err
	}
	s := &Service{
		db:         d,
		log:        o.log,
		now:        o.now,
		lookup:     o.lookup,
		signKey:    signKey,
		credKey:    credKey,
		cacheKey:   randomBytes(32),
		tokenTTL:   o.tokenTTL,
		refreshTTL: o.refreshTTL,
		cacheTTL:   o.cacheTTL,
		hashParams: o.hashParams,
		limiter:    newLimiter(o.limits, o.now, o.observer),
		gate:       newHashGate(o.hashSlots, o.hashQueue, o.hashWait),
		tokens:     newCache[string, *tokenRecord](4096),
		runs:       newCache[string, *runRecord](4096),
		roles:      newCache[string, []RoleAssignment](4096),
		admin:      newCache[string, *adminRecord](1),
		adminOK:    newCache[string, struct{}](64),
		parsed:     newCache[[32]byte, *claims](4096),
		verifying:  make(map[string]chan struct{}),
	}
	sum := sha256.Sum256(signKey)
	s.signKID = hex.EncodeToString(sum[:8])
	s.dummy = s.mac("dummy", string(randomBytes(32)))
	return s, nil
}

// Invalidate drops every cached grant. Call it after changing the database
// behind the Service's back, e.g. after deleting a registry (which cascades
// to its tokens, scope maps and role assignments).
func (s *Service) Invalidate() { s.gen.Add(1) }

// changed records a change to what authenticates or authorizes: cached
// decisions are dropped (the generation moves on) and the change is logged.
func (s *Service) changed(ctx context.Context, msg string, args ...any) {
	s.Invalidate()
	s.log.InfoContext(ctx, msg, args...)
}

// mac is the keyed hash under which secrets are stored and compared. The
// purpose string separates the uses of the key.
func (s *Service) mac(purpose, secret string) []byte {
	h := hmac.New(sha256.New, s.credKey)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	return h.Sum(nil)
}

func hmacSum(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// cached returns the value of k in c, loading it with load on a miss.
func cached[K comparable, V any](s *Service, c *cache[K, V], k K, load func() (V, error)) (V, error) {
	gen, now := s.gen.Load(), s.now()
	if v, ok := c.get(k, gen, now, s.cacheTTL); ok {
		return v, nil
	}
	v, err := load()
	if err != nil {
		return v, err
	}
	c.put(k, v, gen, now)
	return v, nil
}

// equal compares two secret hashes in constant time.
func (s *Service) equal(a, b []byte) bool {
	s.compares.Add(1)
	return hmac.Equal(a, b)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never happens on supported platforms
	}
	return b
}

// loadKey and writeNewFile keep keys and the admin password file apart
// from the database.
func loadKey(dir, name string) ([]byte, error) {
	k, err := keyfile.Load(dir, name)
	if errors.Is(err, keyfile.ErrNoDir) {
		return nil, fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	return k, err
}

var writeNewFile = keyfile.WriteNew
