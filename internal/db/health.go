package db

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// readyKey is the settings row CheckWritable rewrites.
const readyKey = "ready-check"

// CheckWritable reports whether the database can take writes now and after
// a restart: it commits a one-row write (the time, in the settings table)
// through the write pool, and creates and removes a file beside the
// database, where SQLite creates its -wal and -shm files when it opens it.
// A read-only file system, a full disk, a locked database or an earlier
// failed fsync of the WAL (flush.go: durable writes fail until a restart)
// fail it. Errors name no path.
func (d *DB) CheckWritable(ctx context.Context) error {
	if err := d.flush.err(); err != nil {
		return fmt.Errorf("database: %w", errdefs.Pathless(errors.Unwrap(err)))
	}
	if d.path != "" {
		f, err := os.CreateTemp(filepath.Dir(d.path), ".ready-*")
		if err != nil {
			return fmt.Errorf("database directory not writable: %w", errdefs.Pathless(err))
		}
		name := f.Name()
		f.Close()
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("database directory: %w", errdefs.Pathless(err))
		}
	}
	_, err := d.W.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, readyKey, time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("database write: %w", err)
	}
	return nil
}
