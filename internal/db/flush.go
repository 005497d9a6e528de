package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Group flush. With Durable, a write transaction (Tx) commits with
// synchronous=NORMAL — SQLite appends its frames to the WAL without an
// fsync, inside the write lock — and then, outside the lock, waits for an
// fsync of the WAL file that began after its commit: fsync covers every
// write made to the file before it, so one fsync makes all the commits
// before it durable, while the next transactions already run. Under
// concurrent pushes each fsync covers many commits, where
// synchronous=FULL made every commit pay for its own fsync while holding
// the lock. Tx returns only after that fsync: a returned commit is as
// durable as with FULL. Writes outside Tx (single statements on W) keep
// synchronous=FULL.
//
// Crash safety is SQLite's own for NORMAL (a process or OS crash never
// corrupts the database); durability comes from the fsync. A checkpoint
// that moves frames into the database file syncs that file before it
// resets or truncates the WAL, so a commit checkpointed before the fsync is
// durable as well.

// flusher coalesces fsyncs of the WAL file.
type flusher struct {
	path string // the -wal file

	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // fsyncs begun
	done    uint64 // fsyncs ended
	running bool
	// failed is the error of a failed fsync: after one, dirty pages may
	// have been dropped, so no later fsync proves anything (as PostgreSQL
	// decided), and every later flush fails with it.
	failed error
	// dirSynced records that the WAL's directory entry was made durable.
	dirSynced bool
	// syncs counts the fsyncs done (tests).
	syncs uint64
	// syncFile is os.File.Sync, replaced in tests.
	syncFile func(*os.File) error
}

func newFlusher(dbPath string) *flusher {
	f := &flusher{path: dbPath + "-wal", syncFile: (*os.File).Sync}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// flush returns once an fsync of the WAL that began after the call has
// ended: every commit that returned before the call is then durable.
func (f *flusher) flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	need := f.started + 1
	for f.done < need && f.failed == nil {
		if f.running {
			f.cond.Wait()
			continue
		}
		f.started++
		gen := f.started
		f.running = true
		f.mu.Unlock()
		err := f.fsync()
		f.mu.Lock()
		f.running = false
		f.done = gen
		f.syncs++
		if err != nil {
			f.failed = fmt.Errorf("syncing the database's write-ahead log: %w", err)
		}
		f.cond.Broadcast()
	}
	return f.failed
}

// err returns the error of a failed fsync, if any.
func (f *flusher) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// fsync syncs the WAL file (and, the first time, its directory, so that
// the file itself survives).
func (f *flusher) fsync() error {
	w, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		// No WAL: everything was checkpointed into the database file,
		// which the checkpoint synced.
		return nil
	}
	if err != nil {
		return err
	}
	err = f.syncFile(w)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil || f.dirSynced {
		return err
	}
	dir, err := os.Open(filepath.Dir(f.path))
	if err != nil {
		return err
	}
	err = f.syncFile(dir)
	if cerr := dir.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		f.dirSynced = true // only read and written by the one running fsync
	}
	return err
}

// durableTx runs fn in a write transaction committed with
// synchronous=NORMAL on the writer connection, restores FULL, and then
// waits for the group flush.
func (d *DB) durableTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	conn, err := d.W.Conn(ctx)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	committed, err := runNormal(ctx, conn, fn)
	// Restore FULL for the writes outside Tx, even if ctx ended; a
	// connection that cannot be restored is discarded, not reused.
	if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous=FULL"); rerr != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		d.log.Warn("restoring synchronous=FULL; dropping the writer connection", "err", rerr)
	}
	conn.Close()
	if err != nil || !committed {
		return err
	}
	return d.flush.flush()
}

// runNormal runs fn in a transaction on conn with synchronous=NORMAL and
// reports whether it committed.
func runNormal(ctx context.Context, conn *sql.Conn, fn func(tx *sql.Tx) error) (bool, error) {
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=NORMAL"); err != nil {
		return false, fmt.Errorf("beginning transaction: %w", err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("beginning transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("committing transaction: %w", err)
	}
	return true, nil
}
