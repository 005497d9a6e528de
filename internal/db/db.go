// Package db opens gantry's embedded SQLite database and applies its schema
// migrations.
//
// The database runs in WAL mode. Writes go through a pool of one connection
// so that SQLite never answers SQLITE_BUSY to a writer of ours; reads use
// separate pools and proceed concurrently with the writer: R for point
// reads on the hot paths (manifest and tag lookups, credentials), L for
// listings and aggregates (the catalog, tag and manifest lists, totals), so
// that listing traffic can take at most L's connections and never starves R.
// Each domain package owns its tables and queries; this package only owns
// the connections, the WAL checkpointer (checkpoint.go) and the ordered list
// of migrations in migrations/*.sql.
package db

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/gantryhq/gantry/internal/errdefs"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrNotFound is returned, wrapped, by domain stores when a row does not
// exist: the category errdefs.ErrNotFound.
var ErrNotFound = errdefs.ErrNotFound

// ErrConflict is returned, wrapped, when a write would violate a uniqueness
// or state constraint: the category errdefs.ErrConflict.
var ErrConflict = errdefs.ErrConflict

// DB holds the write and read pools of one database file.
type DB struct {
	// W is the write pool: one connection, so writers queue in Go rather than
	// spin on SQLite's lock.
	W *sql.DB
	// R is the read pool for point reads: short queries on the request
	// paths that must stay fast whatever else runs.
	R *sql.DB
	// L is the listing pool: a few connections for queries that scan
	// (listings, counts, sums). Under a flood of listings they queue here
	// instead of taking R's connections.
	L *sql.DB

	path string // the database file
	log  *slog.Logger
	// durable commits with synchronous=FULL, and Tx with the group flush
	// (Durable, flush.go).
	durable bool
	flush   *flusher
	ckpt    checkpointConfig

	stop func()         // ends the checkpointer
	done sync.WaitGroup // the checkpointer
}

// Option configures a DB.
type Option func(*DB)

// Durable makes every committed write durable against an OS crash or power
// loss before the commit returns: single statements on W with
// synchronous=FULL, transactions (Tx) with a group fsync of the WAL that
// concurrent transactions share (flush.go). Without it (WAL with
// synchronous=NORMAL) a commit survives a process crash but the last ones
// may be lost with the OS.
func Durable(on bool) Option { return func(d *DB) { d.durable = on } }

// WithLogger sets the logger (checkpoint results at debug, failures at
// warn); the default discards.
func WithLogger(l *slog.Logger) Option { return func(d *DB) { d.log = l } }

// WithCheckpointInterval sets how often the checkpointer runs (default
// DefaultCheckpointInterval); 0 turns it off, leaving only SQLite's own
// checkpoints, which cannot reset the WAL while reads never pause.
func WithCheckpointInterval(iv time.Duration) Option {
	return func(d *DB) { d.ckpt.interval = iv }
}

// WithWALLimit sets the WAL size the checkpointer keeps the -wal file
// under (default DefaultWALLimit): it truncates the WAL once it passes a
// eighth of the limit, and SQLite's journal_size_limit is set to it.
func WithWALLimit(bytes int64) Option { return func(d *DB) { d.ckpt.limit = bytes } }

// Defaults of the checkpointer.
const (
	DefaultCheckpointInterval = 250 * time.Millisecond
	DefaultWALLimit           = 64 << 20
)

// listConns is the size of the listing pool: half the CPUs (at least one),
// so that listings, which are CPU-bound in SQLite once the pages are
// cached, leave the other half to the point reads and everything else. On
// two CPUs, with two listing connections, a catalog load took manifest GET
// p50 from 0.2 to 1.9 ms; with one, it stayed at 0.2 ms
// (BenchmarkCatalogContention in internal/registry).
func listConns() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Open opens (creating if needed) the database at path, migrates it to the
// newest schema and starts its WAL checkpointer, which Close stops.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	d := &DB{
		path: path,
		log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		ckpt: checkpointConfig{interval: DefaultCheckpointInterval, limit: DefaultWALLimit},
		stop: func() {},
	}
	for _, o := range opts {
		o(d)
	}
	if d.ckpt.limit <= 0 {
		return nil, fmt.Errorf("WAL limit %d: must be positive", d.ckpt.limit)
	}
	if err := ensureDir(path); err != nil {
		return nil, err
	}
	d.flush = newFlusher(path)
	sync := "NORMAL"
	if d.durable {
		sync = "FULL"
	}
	w, err := open(path, 1, "immediate", d.ckpt.limit, sync)
	if err != nil {
		return nil, err
	}
	d.W = w
	if err := d.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	n := runtime.GOMAXPROCS(0) * 2
	if n < 4 {
		n = 4
	}
	if d.R, err = open(path, n, "deferred", d.ckpt.limit, "NORMAL"); err != nil {
		w.Close()
		return nil, err
	}
	if d.L, err = open(path, listConns(), "deferred", d.ckpt.limit, "NORMAL"); err != nil {
		d.R.Close()
		w.Close()
		return nil, err
	}
	if d.ckpt.interval > 0 {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		d.stop = cancel
		d.done.Add(1)
		go func() {
			defer d.done.Done()
			d.checkpointLoop(cctx)
		}()
	}
	return d, nil
}

func ensureDir(path string) error {
	dir := filepath.Dir(path)
	if dir == "" {
		return nil
	}
	return os.MkdirAll(dir, 0o700)
}

// busyTimeout is how long a connection waits for a lock SQLite's way.
const busyTimeout = 10 * time.Second

func open(path string, conns int, txlock string, walLimit int64, synchronous string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walLimit))
	q.Add("_pragma", "synchronous("+synchronous+")")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_pragma", "cache_size(-32000)")
	q.Set("_txlock", txlock)
	dsn := "file:" + path + "?" + q.Encode()
	s, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %w", path, err)
	}
	s.SetMaxOpenConns(conns)
	s.SetMaxIdleConns(conns)
	s.SetConnMaxLifetime(0)
	return s, nil
}

// Close stops the checkpointer and closes the pools.
func (d *DB) Close() error {
	d.stop()
	d.done.Wait()
	var errs []error
	if d.L != nil {
		errs = append(errs, d.L.Close())
	}
	if d.R != nil {
		errs = append(errs, d.R.Close())
	}
	if d.W != nil {
		errs = append(errs, d.W.Close())
	}
	return errors.Join(errs...)
}

// Tx runs fn in a write transaction and commits it if fn returns nil. With
// Durable it returns once the commit is on stable storage.
func (d *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if d.durable {
		return d.durableTx(ctx, fn)
	}
	tx, err := d.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing transaction: %w", err)
	}
	return nil
}

// migrate applies every migration file not yet recorded in schema_migrations,
// in file-name order, each in its own transaction.
func (d *DB) migrate(ctx context.Context) error {
	if _, err := d.W.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))`); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimSuffix(filepath.Base(name), ".sql")
		var n int
		if err := d.W.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = ?`, base).Scan(&n); err != nil {
			return fmt.Errorf("reading schema_migrations: %w", err)
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = d.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("applying migration %s: %w", base, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(name) VALUES (?)`, base)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
