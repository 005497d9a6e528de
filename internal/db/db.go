// Package db opens gantry's embedded SQLite database and applies its schema
// migrations.
//
// The database runs in WAL mode. Writes go through a pool of one connection
// so that SQLite never answers SQLITE_BUSY to a writer of ours; reads use a
// separate pool and proceed concurrently with the writer. Each domain package
// owns its tables and queries; this package only owns the connection and the
// ordered list of migrations in migrations/*.sql.
package db

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

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
	// R is the read pool.
	R *sql.DB

	path string // the database file
}

// Open opens (creating if needed) the database at path and migrates it to the
// newest schema.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	var set settings
	for _, o := range opts {
		o(&set)
	}
	if err := ensureDir(path); err != nil {
		return nil, err
	}
	sync := "NORMAL"
	if set.durable {
		sync = "FULL"
	}
	w, err := open(path, 1, "immediate", sync)
	if err != nil {
		return nil, err
	}
	d := &DB{W: w, path: path}
	if err := d.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	n := runtime.GOMAXPROCS(0) * 2
	if n < 4 {
		n = 4
	}
	r, err := open(path, n, "deferred", "NORMAL")
	if err != nil {
		w.Close()
		return nil, err
	}
	d.R = r
	return d, nil
}

func ensureDir(path string) error {
	dir := filepath.Dir(path)
	if dir == "" {
		return nil
	}
	return os.MkdirAll(dir, 0o700)
}

// Option configures Open.
type Option func(*settings)

type settings struct{ durable bool }

// Durable makes every committed write transaction durable against an OS
// crash or power loss before the commit returns (synchronous=FULL). Without
// it (WAL with synchronous=NORMAL) a commit survives a process crash but
// the last ones may be lost with the OS.
func Durable(on bool) Option { return func(s *settings) { s.durable = on } }

func open(path string, conns int, txlock, synchronous string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
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

// Close closes both pools.
func (d *DB) Close() error {
	var errs []error
	if d.R != nil {
		errs = append(errs, d.R.Close())
	}
	if d.W != nil {
		errs = append(errs, d.W.Close())
	}
	return errors.Join(errs...)
}

// Tx runs fn in a write transaction and commits it if fn returns nil.
func (d *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
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
