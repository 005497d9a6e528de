package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/internal/db"
)

// Store is the content store. It is safe for concurrent use.
type Store struct {
	db          *db.DB
	root        string
	log         *slog.Logger
	now         func() time.Time
	sync        bool
	grace       time.Duration
	uploadTTL   time.Duration
	maxManifest int64
	addressing  Addressing

	cache    *cache
	regCache atomic.Pointer[map[string]Registry]
	regMu    sync.Mutex
	regGen   uint64
	events   events

	// blobLocks serialise publishing a blob file with GC removing it.
	blobLocks [256]sync.Mutex

	uploadsMu sync.Mutex
	uploads   map[string]*upload
	// inflight holds the file names of one-shot uploads being written.
	inflight sync.Map
	// checked maps digests to when a client last checked them (HEAD) in
	// some repository: a push that found a layer present and skipped its
	// upload needs it until the manifest arrives, so GC spares it for the
	// grace window as if it had been uploaded.
	checked  sync.Map // digest.Digest -> time.Time
	checkedN atomic.Uint64

	wstmts, rstmts, lstmts stmts
	batch                  batcher
}

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithSync makes the store fsync every blob file and its directory before
// publishing it. Off by default; see the package comment.
func WithSync(on bool) Option { return func(s *Store) { s.sync = on } }

// WithGCGrace sets how long GC spares an unreferenced blob after its last
// upload or link (default 1h): longer than any push takes from first blob to
// manifest.
func WithGCGrace(d time.Duration) Option { return func(s *Store) { s.grace = d } }

// WithUploadTTL sets how long an idle upload session lives before GC removes
// it (default 24h).
func WithUploadTTL(d time.Duration) Option { return func(s *Store) { s.uploadTTL = d } }

// WithManifestCache bounds the in-memory manifest cache in bytes (default
// 64 MiB; 0 disables it).
func WithManifestCache(bytes int64) Option {
	return func(s *Store) { s.cache = newCache(bytes) }
}

// WithMaxManifestSize sets the largest manifest PutManifest accepts
// (default 4 MiB).
func WithMaxManifestSize(n int64) Option { return func(s *Store) { s.maxManifest = n } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// DefaultMaxManifestSize is the default manifest size limit.
const DefaultMaxManifestSize = 4 << 20

// Open opens the store rooted at root (created if needed) with its metadata
// in database, and removes upload files left by a previous process that no
// upload session owns.
func Open(ctx context.Context, database *db.DB, root string, opts ...Option) (*Store, error) {
	s := &Store{
		db:          database,
		root:        root,
		log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:         time.Now,
		grace:       time.Hour,
		uploadTTL:   24 * time.Hour,
		maxManifest: DefaultMaxManifestSize,
		cache:       newCache(64 << 20),
		uploads:     map[string]*upload{},
	}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(s.uploadDir(), 0o700); err != nil {
		return nil, fmt.Errorf("creating upload directory: %w", err)
	}
	if _, err := s.removeOrphanUploads(ctx, time.Time{}); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) uploadDir() string { return filepath.Join(s.root, "uploads") }

// Stored times, in the layout every table uses.
var (
	formatTime = db.FormatTime
	parseTime  = db.ParseTime
)

// registryExists checks a registry inside a transaction or on the read pool.
func registryExists(ctx context.Context, q queryer, name string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM registries WHERE name = ?`, name).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return registryNotFound(name)
	}
	if err != nil {
		return fmt.Errorf("reading registry %q: %w", name, err)
	}
	return nil
}

// queryer is what *sql.DB, *sql.Tx and the prepared-statement wrappers
// (stmt.go) have in common.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// repoID returns the id of registry/repo, reading through the cache.
func (s *Store) repoID(ctx context.Context, registry, repo string) (int64, error) {
	if id, ok := s.cache.repo(registry, repo); ok {
		return id, nil
	}
	gen := s.cache.repoGeneration()
	var id int64
	err := s.rd().QueryRowContext(ctx, `SELECT id FROM repositories WHERE registry = ? AND name = ?`, registry, repo).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("repository %q in registry %q: %w", repo, registry, ErrRepositoryUnknown)
	}
	if err != nil {
		return 0, fmt.Errorf("reading repository %q: %w", repo, err)
	}
	s.cache.putRepo(registry, repo, id, gen)
	return id, nil
}

// ensureRepo returns the id of registry/repo inside tx, creating the
// repository if needed. The registry must exist.
func (s *Store) ensureRepo(ctx context.Context, tx *sql.Tx, registry, repo string) (int64, error) {
	if err := ValidRepository(repo); err != nil {
		return 0, err
	}
	var id int64
	err := s.in(tx).QueryRowContext(ctx, `SELECT id FROM repositories WHERE registry = ? AND name = ?`, registry, repo).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("reading repository %q: %w", repo, err)
	}
	if err := registryExists(ctx, s.in(tx), registry); err != nil {
		return 0, err
	}
	err = s.in(tx).QueryRowContext(ctx, `INSERT INTO repositories(registry, name, created_at) VALUES (?, ?, ?) RETURNING id`,
		registry, repo, formatTime(s.now())).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("creating repository %q: %w", repo, err)
	}
	return id, nil
}
