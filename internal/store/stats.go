package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// Totals returns the bytes of every stored blob (each once, however many
// repositories link it) and the number of upload sessions in progress: one
// read of the blobs and uploads tables, for the metrics.
func (s *Store) Totals(ctx context.Context) (blobBytes int64, uploads int, err error) {
	err = s.lst().QueryRowContext(ctx, `SELECT COALESCE((SELECT SUM(size) FROM blobs), 0), (SELECT COUNT(*) FROM uploads)`).
		Scan(&blobBytes, &uploads)
	if err != nil {
		return 0, 0, fmt.Errorf("reading store usage: %w", err)
	}
	return blobBytes, uploads, nil
}

// CheckWritable reports whether blobs can be stored now: it creates and
// removes a file in DIR/uploads (where an upload's bytes go first) and in
// DIR/blobs (where they are renamed to). Errors name no path.
func (s *Store) CheckWritable(context.Context) error {
	for _, dir := range []string{"uploads", "blobs"} {
		// blobs/ appears with the first blob stored.
		if err := os.MkdirAll(filepath.Join(s.root, dir), 0o755); err != nil {
			return fmt.Errorf("%s/ not writable: %w", dir, errdefs.Pathless(err))
		}
		f, err := os.CreateTemp(filepath.Join(s.root, dir), ".ready-*")
		if err != nil {
			return fmt.Errorf("%s/ not writable: %w", dir, errdefs.Pathless(err))
		}
		name := f.Name()
		f.Close()
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("%s/: %w", dir, errdefs.Pathless(err))
		}
	}
	return nil
}
