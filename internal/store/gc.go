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

// GCResult tells what a GC pass removed (or, for a dry run, would remove).
type GCResult struct {
	// Blobs whose bytes were deleted.
	Blobs []Blob
	// Bytes is the total size of Blobs.
	Bytes int64
	// Uploads counts expired upload sessions and orphaned upload files.
	Uploads int
	// Grace is the grace window the pass used.
	Grace time.Duration
	// Duration is how long the pass took.
	Duration time.Duration
}

// GCOptions scope and tune one GC pass. The zero value is a full pass with
// the store's grace window (WithGCGrace).
type GCOptions struct {
	// Registry, when set, limits the pass to that registry: it collects the
	// blobs that no manifest of any registry references and that are linked
	// only in repositories of this registry (a blob another registry also
	// links is left to that registry's pass or to a full pass), and expires
	// only this registry's upload sessions. Files nothing owns (blob files
	// without a row, upload files without a session) are swept by full
	// passes only. Manifests and tags are never removed by GC.
	Registry string
	// DryRun reports what the pass would remove and removes nothing. It
	// reports blobs and expired upload sessions, not files nothing owns.
	DryRun bool
	// Grace overrides the grace window when not nil; 0 collects even blobs
	// uploaded a moment ago, which is safe only when nothing is being pushed
	// (a push whose blobs were collected before its manifest arrived is
	// refused and must be retried).
	Grace *time.Duration
}

// unreferenced selects the blobs no manifest of any registry references,
// last touched before ?1; unreferencedIn adds: linked in registry ?3 and in
// no other registry.
const (
	unreferenced = `SELECT digest, size FROM blobs b WHERE touched_at < ?1
		AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.digest = b.digest AND r.kind = ?2)`
	unreferencedIn = unreferenced + `
		AND EXISTS (SELECT 1 FROM repository_blobs rb JOIN repositories p ON p.id = rb.repository_id
			WHERE rb.digest = b.digest AND p.registry = ?3)
		AND NOT EXISTS (SELECT 1 FROM repository_blobs rb JOIN repositories p ON p.id = rb.repository_id
			WHERE rb.digest = b.digest AND p.registry <> ?3)`
)

// GC removes blobs that no manifest of any registry references and that were
// not uploaded, linked or checked within the grace window (their repository
// links go with them), upload sessions idle for longer than the upload TTL, and files
// nothing owns. It is safe to run while pushes are in progress; see the
// package comment. Passes may overlap safely, but callers that schedule
// them (the server) run one at a time. Errors of a scoped pass wrap
// ErrRegistryUnknown when the registry does not exist.
func (s *Store) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	start := time.Now()
	res, err := s.gc(ctx, opts)
	res.Duration = time.Since(start)
	return res, err
}

func (s *Store) gc(ctx context.Context, opts GCOptions) (GCResult, error) {
	grace := s.grace
	if opts.Grace != nil {
		grace = max(*opts.Grace, 0)
	}
	res := GCResult{Grace: grace}
	if opts.Registry != "" {
		if err := registryExists(ctx, s.rd(), opts.Registry); err != nil {
			return res, err
		}
	}
	cutoff := s.now().Add(-grace)
	query, args := unreferenced, []any{formatTime(cutoff), refBlob}
	if opts.Registry != "" {
		query, args = unreferencedIn, append(args, opts.Registry)
	}
	var doomed []Blob
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := s.in(tx).QueryContext(ctx, query, args...)
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
		if opts.DryRun {
			return nil
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
	if opts.DryRun {
		for _, b := range doomed {
			res.Blobs = append(res.Blobs, b)
			res.Bytes += b.Size
		}
		n, err := s.countExpiredUploads(ctx, opts.Registry)
		res.Uploads = n
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
	if opts.Registry == "" {
		if err := s.sweepBlobFiles(ctx, cutoff, &res); err != nil {
			return res, err
		}
	}
	n, err := s.expireUploads(ctx, opts.Registry)
	res.Uploads += n
	if err != nil || opts.Registry != "" {
		return res, err
	}
	n, err = s.removeOrphanUploads(ctx, cutoff)
	res.Uploads += n
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
func (s *Store) sweepBlobFiles(ctx context.Context, cutoff time.Time, res *GCResult) error {
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

// expiredUploads selects the upload sessions idle since before ?1, of
// registry ?2 unless it is empty.
const expiredUploads = `FROM uploads WHERE updated_at < ?1 AND (?2 = '' OR registry = ?2)`

// countExpiredUploads counts the sessions expireUploads would delete.
func (s *Store) countExpiredUploads(ctx context.Context, registry string) (int, error) {
	var n int
	err := s.rd().QueryRowContext(ctx, `SELECT count(*) `+expiredUploads, formatTime(s.now().Add(-s.uploadTTL)), registry).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting expired uploads: %w", err)
	}
	return n, nil
}

// expireUploads deletes upload sessions idle for longer than the upload TTL
// (of registry, or of every registry when it is empty) and their files.
func (s *Store) expireUploads(ctx context.Context, registry string) (int, error) {
	cutoff := formatTime(s.now().Add(-s.uploadTTL))
	var ids []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if ids, err = uploadIDs(ctx, s.in(tx), `SELECT id `+expiredUploads, cutoff, registry); err != nil {
			return err
		}
		if _, err := s.in(tx).ExecContext(ctx, `DELETE `+expiredUploads, cutoff, registry); err != nil {
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
