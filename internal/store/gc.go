package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
)

// Blob is a stored blob.
type Blob struct {
	Digest digest.Digest
	Size   int64
}

// GCResult tells what a GC pass removed.
type GCResult struct {
	// Blobs whose bytes were deleted.
	Blobs []Blob
	// Bytes is the total size of Blobs.
	Bytes int64
	// Uploads counts expired upload sessions and orphaned upload files.
	Uploads int
}

// GC removes blobs that no manifest of any registry references and that were
// not uploaded, linked or checked within the grace window (their repository
// links go with them), upload sessions idle for longer than the upload TTL, and files
// nothing owns. It is safe to run while pushes are in progress; see the
// package comment.
func (s *Store) GC(ctx context.Context) (GCResult, error) {
	var res GCResult
	cutoff := s.now().Add(-s.grace)
	var doomed []Blob
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := s.in(tx).QueryContext(ctx, `SELECT digest, size FROM blobs b WHERE touched_at < ?
			AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.digest = b.digest AND r.kind = ?)`,
			formatTime(cutoff), refBlob)
		if err != nil {
			return fmt.Errorf("finding unreferenced blobs: %w", err)
		}
		for rows.Next() {
			var b Blob
			var d string
			if err := rows.Scan(&d, &b.Size); err != nil {
				rows.Close()
				return fmt.Errorf("finding unreferenced blobs: %w", err)
			}
			b.Digest = digest.Digest(d)
			if at, ok := s.checked.Load(b.Digest); ok && !at.(time.Time).Before(cutoff) {
				continue // checked by a push in progress
			}
			doomed = append(doomed, b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("finding unreferenced blobs: %w", err)
		}
		for _, b := range doomed {
			if _, err := s.in(tx).ExecContext(ctx, `DELETE FROM repository_blobs WHERE digest = ?`, b.Digest.String()); err != nil {
				return fmt.Errorf("unlinking blob %s: %w", b.Digest, err)
			}
			if _, err := s.in(tx).ExecContext(ctx, `DELETE FROM blobs WHERE digest = ?`, b.Digest.String()); err != nil {
				return fmt.Errorf("deleting blob %s: %w", b.Digest, err)
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	s.pruneChecked(cutoff)
	for _, b := range doomed {
		removed, err := s.removeBlobFile(ctx, b.Digest)
		if err != nil {
			return res, err
		}
		if removed {
			res.Blobs = append(res.Blobs, b)
			res.Bytes += b.Size
		}
	}
	if err := s.sweepBlobFiles(ctx, &res); err != nil {
		return res, err
	}
	n, err := s.expireUploads(ctx)
	res.Uploads += n
	if err != nil {
		return res, err
	}
	n, err = s.removeOrphanUploads(ctx, cutoff)
	res.Uploads += n
	if len(res.Blobs) > 0 || res.Uploads > 0 {
		s.log.Info("garbage collected", "blobs", len(res.Blobs), "bytes", res.Bytes, "uploads", res.Uploads)
	}
	return res, err
}

// removeBlobFile deletes the file of d unless a blob row for d exists again
// (re-uploaded since GC picked it). The digest lock orders it with
// commitBlob, which holds the lock from rename to commit.
func (s *Store) removeBlobFile(ctx context.Context, d digest.Digest) (bool, error) {
	mu := s.blobLock(d)
	mu.Lock()
	defer mu.Unlock()
	var one int
	err := s.rd().QueryRowContext(ctx, `SELECT 1 FROM blobs WHERE digest = ?`, d.String()).Scan(&one)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("checking blob %s: %w", d, err)
	}
	if err := os.Remove(s.blobPath(d)); err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, fmt.Errorf("removing blob %s: %w", d, err)
	}
	return true, nil
}

// sweepBlobFiles removes blob files without a row, older than the grace
// window: left by a crash between publishing a file and committing its row.
func (s *Store) sweepBlobFiles(ctx context.Context, res *GCResult) error {
	cutoff := s.now().Add(-s.grace)
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		dirs, err := os.ReadDir(filepath.Join(s.root, "blobs", string(alg)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // no blob of this algorithm stored yet
		}
		if err != nil {
			return fmt.Errorf("listing blobs: %w", err)
		}
		for _, dir := range dirs {
			files, err := os.ReadDir(filepath.Join(s.root, "blobs", string(alg), dir.Name()))
			if err != nil {
				return fmt.Errorf("listing blobs: %w", err)
			}
			for _, f := range files {
				if err := ctx.Err(); err != nil {
					return err
				}
				d := digest.NewDigestFromEncoded(alg, f.Name())
				if d.Validate() != nil {
					continue
				}
				info, err := f.Info()
				if err != nil || info.ModTime().After(cutoff) {
					continue
				}
				var one int
				err = s.rd().QueryRowContext(ctx, `SELECT 1 FROM blobs WHERE digest = ?`, d.String()).Scan(&one)
				if err == nil || !errors.Is(err, sql.ErrNoRows) {
					continue
				}
				removed, err := s.removeBlobFile(ctx, d)
				if err != nil {
					return err
				}
				if removed {
					res.Blobs = append(res.Blobs, Blob{Digest: d, Size: info.Size()})
					res.Bytes += info.Size()
				}
			}
		}
	}
	return nil
}

// expireUploads deletes upload sessions idle for longer than the upload TTL.
func (s *Store) expireUploads(ctx context.Context) (int, error) {
	cutoff := formatTime(s.now().Add(-s.uploadTTL))
	var ids []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if ids, err = uploadIDs(ctx, s.in(tx), `SELECT id FROM uploads WHERE updated_at < ?`, cutoff); err != nil {
			return err
		}
		if _, err := s.in(tx).ExecContext(ctx, `DELETE FROM uploads WHERE updated_at < ?`, cutoff); err != nil {
			return fmt.Errorf("expiring uploads: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		s.uploadsMu.Lock()
		u := s.uploads[id]
		s.uploadsMu.Unlock()
		if u != nil {
			u.mu.Lock()
			u.gone = true
			u.mu.Unlock()
		}
	}
	s.dropUploadFiles(ids)
	return len(ids), nil
}
