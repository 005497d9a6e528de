package store

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"database/sql"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"
)

// RepoRef names a repository of a registry. In LinkBlob's source an empty
// Repository means "any repository of the registry".
type RepoRef struct {
	Registry   string
	Repository string
}

func (s *Store) blobPath(d digest.Digest) string {
	enc := d.Encoded()
	return s.root + "/blobs/" + string(d.Algorithm()) + "/" + enc[:2] + "/" + enc
}

func (s *Store) blobLock(d digest.Digest) *sync.Mutex {
	enc := d.Encoded()
	var b byte
	if len(enc) >= 2 {
		b = unhex(enc[0])<<4 | unhex(enc[1])
	}
	return &s.blobLocks[b]
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return 0
}

func newHash(alg digest.Algorithm) hash.Hash {
	if alg == digest.SHA512 {
		return sha512.New()
	}
	return sha256.New()
}

// StatBlob returns the size of blob d if the repository may read it. Errors
// wrap ErrBlobUnknown.
func (s *Store) StatBlob(ctx context.Context, registry, repo string, d digest.Digest) (int64, error) {
	if _, err := ParseDigest(d.String()); err != nil {
		return 0, err
	}
	id, err := s.repoID(ctx, registry, repo)
	if errors.Is(err, ErrRepositoryUnknown) {
		return 0, fmt.Errorf("blob %s in %s/%s: %w", d, registry, repo, ErrBlobUnknown)
	}
	if err != nil {
		return 0, err
	}
	var size int64
	err = s.rd().QueryRowContext(ctx, `SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
		WHERE rb.repository_id = ? AND rb.digest = ?`, id, d.String()).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("blob %s in %s/%s: %w", d, registry, repo, ErrBlobUnknown)
	}
	if err != nil {
		return 0, fmt.Errorf("reading blob %s: %w", d, err)
	}
	s.noteChecked(d)
	return size, nil
}

// noteChecked records that a client saw blob d, and every few thousand
// calls forgets checks older than the grace window, which GC no longer
// consults.
func (s *Store) noteChecked(d digest.Digest) {
	now := s.now()
	s.checked.Store(d, now)
	if s.checkedN.Add(1)%4096 == 0 {
		s.pruneChecked(now.Add(-s.grace))
	}
}

func (s *Store) pruneChecked(cutoff time.Time) {
	s.checked.Range(func(k, v any) bool {
		if v.(time.Time).Before(cutoff) {
			s.checked.Delete(k)
		}
		return true
	})
}

// OpenBlob opens blob d for reading if the repository may read it. The
// caller closes the file; serving it with http.ServeContent or io.Copy to a
// socket uses sendfile.
func (s *Store) OpenBlob(ctx context.Context, registry, repo string, d digest.Digest) (*os.File, int64, error) {
	size, err := s.StatBlob(ctx, registry, repo, d)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, os.ErrNotExist) {
		// Collected between the lookup and the open.
		return nil, 0, fmt.Errorf("blob %s in %s/%s: %w", d, registry, repo, ErrBlobUnknown)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("opening blob %s: %w", d, err)
	}
	return f, size, nil
}

// PutBlob stores the content of r as blob d in a repository (created if
// needed). size is the declared length, or -1 if unknown. Nothing is stored
// unless the content matches: errors wrap ErrDigestInvalid, ErrSizeInvalid,
// ErrRegistryUnknown or ErrNameInvalid.
func (s *Store) PutBlob(ctx context.Context, registry, repo string, d digest.Digest, size int64, r io.Reader) (int64, error) {
	if _, err := ParseDigest(d.String()); err != nil {
		return 0, err
	}
	if err := ValidRepository(repo); err != nil {
		return 0, err
	}
	if err := registryExists(ctx, s.rd(), registry); err != nil {
		return 0, err
	}
	r, err := s.limitQuota(ctx, registry, d, 0, r)
	if err != nil {
		return 0, err
	}
	name := uuid.NewString()
	tmp := s.uploadPath(name)
	// GC leaves files of one-shot uploads in flight alone.
	s.inflight.Store(name, struct{}{})
	defer s.inflight.Delete(name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, fmt.Errorf("creating upload file: %w", err)
	}
	h := newHash(d.Algorithm())
	n, err := copyHashed(f, h, r)
	if err == nil && s.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = verify(d, digest.NewDigest(d.Algorithm(), h), size, n)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if err := s.commitBlob(ctx, registry, repo, d, n, tmp, ""); err != nil {
		return 0, err
	}
	return n, nil
}

func verify(want, got digest.Digest, wantSize, gotSize int64) error {
	if wantSize >= 0 && wantSize != gotSize {
		return fmt.Errorf("received %d bytes, declared %d: %w", gotSize, wantSize, ErrSizeInvalid)
	}
	if got != want {
		return fmt.Errorf("content digest %s does not match %s: %w", got, want, ErrDigestInvalid)
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// copyHashed copies r to f and h in large chunks. It returns the bytes
// written to both: on error, the file may hold a partial chunk beyond that.
func copyHashed(f *os.File, h hash.Hash, r io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		m, rerr := fill(r, buf)
		if m > 0 {
			if _, err := f.Write(buf[:m]); err != nil {
				return n, fmt.Errorf("writing upload: %w", err)
			}
			h.Write(buf[:m])
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("reading upload: %w", rerr)
		}
	}
}

// fill reads until buf is full or r fails; io.EOF marks the clean end.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// errDamaged marks a blob file whose size is not its digest's.
var errDamaged = errors.New("damaged blob file")

// commitBlob publishes the verified file tmp as blob d and links it into the
// repository, deleting upload session uploadID (if any) in the same
// transaction. It holds the digest's lock from the rename to the commit so
// that GC cannot remove the file in between.
func (s *Store) commitBlob(ctx context.Context, registry, repo string, d digest.Digest, size int64, tmp, uploadID string) error {
	mu := s.blobLock(d)
	mu.Lock()
	defer mu.Unlock()
	final := s.blobPath(d)
	created := false
	fi, err := os.Stat(final)
	if err == nil && fi.Size() != size {
		// A file of the wrong size under a digest's name is damaged (a
		// torn write before a crash, a disk error): the verified upload
		// replaces it.
		s.log.Warn("replacing a damaged blob file", "digest", d, "size", fi.Size(), "want", size)
		err = errDamaged
	}
	if err == nil {
		// Already stored: content-addressed, and of the right size.
		os.Remove(tmp)
	} else {
		// Fan-out directories are made on first use, not at Open: 512
		// mkdirs would cost every server start (and every test) ~0.3 s.
		fanout := filepath.Dir(final)
		_, statErr := os.Stat(fanout)
		if err := os.MkdirAll(fanout, 0o755); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("publishing blob %s: %w", d, err)
		}
		if err := os.Rename(tmp, final); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("publishing blob %s: %w", d, err)
		}
		created = true
		if s.sync {
			if err := syncDir(final); err != nil {
				s.log.Warn("syncing blob directory", "digest", d, "err", err)
			}
			if statErr != nil {
				// A new fan-out directory: make its own entry durable too.
				if err := syncDir(fanout); err != nil {
					s.log.Warn("syncing blob directory", "digest", d, "err", err)
				}
			}
		}
	}
	now := formatTime(s.now())
	err = s.tx(ctx, func(tx *sql.Tx) error {
		repoID, err := s.ensureRepo(ctx, tx, registry, repo)
		if err != nil {
			return err
		}
		if err := s.checkQuotaTx(ctx, tx, registry, d, size, false); err != nil {
			return err
		}
		if err := s.linkTx(ctx, tx, repoID, d, size, now); err != nil {
			return err
		}
		if uploadID != "" {
			if _, err := s.in(tx).ExecContext(ctx, `DELETE FROM uploads WHERE id = ?`, uploadID); err != nil {
				return fmt.Errorf("deleting upload: %w", err)
			}
		}
		return nil
	})
	if err != nil && created {
		// Nothing references the new file; do not leave it behind.
		os.Remove(final)
	}
	return err
}

func (s *Store) linkTx(ctx context.Context, tx *sql.Tx, repoID int64, d digest.Digest, size int64, now string) error {
	if _, err := s.in(tx).ExecContext(ctx, `INSERT INTO blobs(digest, size, touched_at) VALUES (?, ?, ?)
		ON CONFLICT(digest) DO UPDATE SET touched_at = excluded.touched_at`, d.String(), size, now); err != nil {
		return fmt.Errorf("recording blob %s: %w", d, err)
	}
	if _, err := s.in(tx).ExecContext(ctx, `INSERT INTO repository_blobs(repository_id, digest, created_at) VALUES (?, ?, ?)
		ON CONFLICT DO NOTHING`, repoID, d.String(), now); err != nil {
		return fmt.Errorf("linking blob %s: %w", d, err)
	}
	return nil
}

func syncDir(file string) error {
	dir, err := os.Open(file[:lastSlash(file)])
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

func lastSlash(p string) int {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return i
		}
	}
	return 0
}

// LinkBlob makes blob d, readable in from, readable in to as well, without
// copying bytes: a cross-repository mount, or a copy between registries of
// this server. from.Repository "" accepts the blob from any repository of
// from.Registry. The caller checks that the actor may read from. Errors
// wrap ErrBlobUnknown if from does not hold d.
func (s *Store) LinkBlob(ctx context.Context, d digest.Digest, from, to RepoRef) (int64, error) {
	if _, err := ParseDigest(d.String()); err != nil {
		return 0, err
	}
	if err := ValidRepository(to.Repository); err != nil {
		return 0, err
	}
	var size int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		err := s.in(tx).QueryRowContext(ctx, `SELECT b.size FROM repository_blobs rb
			JOIN repositories r ON r.id = rb.repository_id JOIN blobs b ON b.digest = rb.digest
			WHERE rb.digest = ? AND r.registry = ? AND (? = '' OR r.name = ?) LIMIT 1`,
			d.String(), from.Registry, from.Repository, from.Repository).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("blob %s in %s/%s: %w", d, from.Registry, from.Repository, ErrBlobUnknown)
		}
		if err != nil {
			return fmt.Errorf("reading blob %s: %w", d, err)
		}
		repoID, err := s.ensureRepo(ctx, tx, to.Registry, to.Repository)
		if err != nil {
			return err
		}
		if err := s.checkQuotaTx(ctx, tx, to.Registry, d, size, false); err != nil {
			return err
		}
		return s.linkTx(ctx, tx, repoID, d, size, formatTime(s.now()))
	})
	if err != nil {
		return 0, err
	}
	return size, nil
}

// DeleteBlob removes blob d from a repository: it is no longer readable
// there. The bytes stay while other repositories or manifests use them; GC
// removes them otherwise. Errors wrap ErrBlobUnknown.
func (s *Store) DeleteBlob(ctx context.Context, registry, repo string, d digest.Digest) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.in(tx).ExecContext(ctx, `DELETE FROM repository_blobs WHERE digest = ? AND repository_id =
			(SELECT id FROM repositories WHERE registry = ? AND name = ?)`, d.String(), registry, repo)
		if err != nil {
			return fmt.Errorf("deleting blob %s: %w", d, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("blob %s in %s/%s: %w", d, registry, repo, ErrBlobUnknown)
		}
		return nil
	})
}

// BlobRepositories returns up to limit repositories of a registry that may
// read blob d, by name: the candidate sources of a mount without "from".
func (s *Store) BlobRepositories(ctx context.Context, registry string, d digest.Digest, limit int) ([]string, error) {
	rows, err := s.rd().QueryContext(ctx, `SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
		WHERE rb.digest = ? AND r.registry = ? ORDER BY r.name LIMIT ?`, d.String(), registry, limit)
	if err != nil {
		return nil, fmt.Errorf("finding blob %s: %w", d, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("finding blob %s: %w", d, err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
