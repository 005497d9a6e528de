package db

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/wait"
)

// The checkpointer keeps the WAL small. SQLite checkpoints on its own after
// a commit that leaves 1000 pages in the WAL (PASSIVE: it copies what no
// reader still needs), but it can only start the WAL over from the
// beginning when no reader uses any of it. A server whose read pools are
// never all idle at once (a steady pull load) never gets there, and the
// -wal file grows without bound (747 MB beside a 39 MB database was seen).
//
// Every interval it looks at the -wal file (a stat). When the WAL has grown
// past an eighth of its limit, or nothing was written since the previous
// round (idle), it checkpoints TRUNCATE: that waits a
// moment for the readers to move on to the newest snapshot, copies
// everything, and cuts the file to zero bytes. journal_size_limit (the
// limit) also trims the file whenever SQLite itself restarts the WAL.
//
// It runs on the write pool's one connection, so writers queue behind a
// checkpoint in Go as behind any writer, and it never makes a writer of
// ours see SQLITE_BUSY. A TRUNCATE waits for readers at most truncateWait
// (its busy timeout; four times that once the WAL is past half its limit),
// then gives up for that round: writers wait for it at most that long, plus
// the copying.
type checkpointConfig struct {
	interval time.Duration
	limit    int64
}

// checkpointResult is what PRAGMA wal_checkpoint answers: whether it was
// kept from finishing by a reader or writer, the frames in the WAL and the
// frames copied into the database.
type checkpointResult struct {
	busy         bool
	frames, done int64
}

func (d *DB) checkpointLoop(ctx context.Context) {
	var last walState // the WAL after the previous round
	wait.Every(ctx, d.ckpt.interval, func(ctx context.Context) {
		now, err := d.checkpointRound(ctx, last)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.log.Warn("WAL checkpoint failed", "error", err)
			now = walState{}
		}
		last = now
	})
}

// walState is the -wal file's size and modification time.
type walState struct {
	size int64
	mod  time.Time
}

// checkpointRound runs one round and returns the WAL's state for the next
// round's idle check. A round that finds nothing to do costs one stat and
// never takes the write connection: SQLite's own checkpoints (at commit)
// copy the pages; what it cannot do under a steady read load is start the
// WAL over, which TRUNCATE does when the WAL is large or idle.
func (d *DB) checkpointRound(ctx context.Context, last walState) (walState, error) {
	now, err := d.walState()
	if err != nil {
		return walState{}, err
	}
	switch {
	case now.size >= d.ckpt.limit/8:
		return walState{}, d.truncate(ctx, "size", now.size)
	case now.size > 0 && now == last:
		return walState{}, d.truncate(ctx, "idle", now.size)
	}
	return now, nil
}

// truncateWait is how long a TRUNCATE checkpoint waits for readers to move
// on to the newest snapshot and off the WAL.
const truncateWait = 250 * time.Millisecond

// truncate checkpoints TRUNCATE.
func (d *DB) truncate(ctx context.Context, why string, size int64) error {
	wait := truncateWait
	if size >= d.ckpt.limit/2 {
		wait *= 4
	}
	start := time.Now()
	res, err := d.checkpoint(ctx, "TRUNCATE", wait)
	if err != nil {
		return err
	}
	after, err := d.walSize()
	if err != nil {
		return err
	}
	args := []any{"mode", "truncate", "reason", why, "frames", res.frames, "copied", res.done,
		"busy", res.busy, "wal_bytes", size, "wal_bytes_after", after, "duration", time.Since(start)}
	if res.busy && after >= d.ckpt.limit {
		d.log.Warn("WAL over its limit: readers kept the checkpoint from finishing", args...)
		return nil
	}
	d.log.Debug("WAL checkpoint", args...)
	return nil
}

// checkpoint runs PRAGMA wal_checkpoint(mode) on the write connection. A
// positive wait replaces the busy timeout for it.
func (d *DB) checkpoint(ctx context.Context, mode string, wait time.Duration) (res checkpointResult, err error) {
	conn, err := d.W.Conn(ctx)
	if err != nil {
		return res, fmt.Errorf("checkpoint: %w", err)
	}
	defer conn.Close()
	if wait > 0 {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", wait.Milliseconds())); err != nil {
			return res, fmt.Errorf("checkpoint: setting busy timeout: %w", err)
		}
		defer func() {
			// Restore it even if ctx ended; a connection left with the short
			// timeout is discarded.
			_, rerr := conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeout.Milliseconds()))
			if rerr != nil {
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
				err = errors.Join(err, fmt.Errorf("checkpoint: restoring busy timeout: %w", rerr))
			}
		}()
	}
	var busy int
	err = conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &res.frames, &res.done)
	if err != nil {
		return res, fmt.Errorf("checkpoint %s: %w", mode, err)
	}
	res.busy = busy != 0
	return res, nil
}

// walSize is the size of the -wal file (0 if there is none).
func (d *DB) walSize() (int64, error) {
	w, err := d.walState()
	return w.size, err
}

// walState stats the -wal file (zero if there is none).
func (d *DB) walState() (walState, error) {
	fi, err := os.Stat(d.path + "-wal")
	if errors.Is(err, fs.ErrNotExist) {
		return walState{}, nil
	}
	if err != nil {
		return walState{}, fmt.Errorf("WAL size: %w", errdefs.Pathless(err))
	}
	return walState{size: fi.Size(), mod: fi.ModTime()}, nil
}
