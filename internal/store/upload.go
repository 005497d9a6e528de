package store

import (
	"context"
	"database/sql"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"
)

// upload is the live state of one upload session. Its hash covers exactly
// the first offset bytes of the file; it is kept in memory between requests
// and persisted after each one, so a restarted server resumes without
// re-reading the file.
type upload struct {
	mu       sync.Mutex
	id       string
	registry string
	repo     string
	alg      digest.Algorithm
	h        hash.Hash
	offset   int64
	gone     bool
}

func (s *Store) uploadPath(id string) string { return s.root + "/uploads/" + id }

// validUploadID keeps ids from naming anything but a file in uploads/.
func validUploadID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// StartUpload opens an upload session in a repository and returns its id.
// alg is the digest algorithm the client announced ("" for sha256); the
// upload can still finish with another one, at the cost of re-reading the
// file.
func (s *Store) StartUpload(ctx context.Context, registry, repo string, alg digest.Algorithm) (string, error) {
	if err := ValidRepository(repo); err != nil {
		return "", err
	}
	switch alg {
	case "":
		alg = digest.SHA256
	case digest.SHA256, digest.SHA512:
	default:
		return "", fmt.Errorf("digest algorithm %q: %w", alg, ErrDigestInvalid)
	}
	if err := s.admitUpload(ctx, registry); err != nil {
		return "", err
	}
	id := uuid.NewString()
	// Until the session row exists, only this mark keeps GC off the file.
	s.inflight.Store(id, struct{}{})
	defer s.inflight.Delete(id)
	f, err := os.OpenFile(s.uploadPath(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", fmt.Errorf("creating upload file: %w", err)
	}
	f.Close()
	now := formatTime(s.now())
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if err := registryExists(ctx, s.in(tx), registry); err != nil {
			return err
		}
		_, err := s.in(tx).ExecContext(ctx, `INSERT INTO uploads(id, registry, repository, offset, algorithm, created_at, updated_at)
			VALUES (?, ?, ?, 0, ?, ?, ?)`, id, registry, repo, string(alg), now, now)
		if err != nil {
			return fmt.Errorf("recording upload: %w", err)
		}
		return nil
	})
	if err != nil {
		os.Remove(s.uploadPath(id))
		return "", err
	}
	s.uploadsMu.Lock()
	s.uploads[id] = &upload{id: id, registry: registry, repo: repo, alg: alg, h: newHash(alg)}
	s.uploadsMu.Unlock()
	return id, nil
}

// lockUpload returns the session locked, loading it from the database after
// a restart. Errors wrap ErrUploadUnknown.
func (s *Store) lockUpload(ctx context.Context, registry, repo, id string) (*upload, error) {
	unknown := fmt.Errorf("upload %q in %s/%s: %w", id, registry, repo, ErrUploadUnknown)
	if !validUploadID(id) {
		return nil, unknown
	}
	s.uploadsMu.Lock()
	u, ok := s.uploads[id]
	s.uploadsMu.Unlock()
	if !ok {
		var err error
		if u, err = s.loadUpload(ctx, id); err != nil {
			return nil, err
		}
		s.uploadsMu.Lock()
		if prev, ok := s.uploads[id]; ok {
			u = prev
		} else {
			s.uploads[id] = u
		}
		s.uploadsMu.Unlock()
	}
	u.mu.Lock()
	if u.gone || u.registry != registry || u.repo != repo {
		u.mu.Unlock()
		return nil, unknown
	}
	return u, nil
}

func (s *Store) loadUpload(ctx context.Context, id string) (*upload, error) {
	u := &upload{id: id}
	var alg string
	var state []byte
	err := s.rd().QueryRowContext(ctx, `SELECT registry, repository, offset, algorithm, hash_state FROM uploads WHERE id = ?`, id).
		Scan(&u.registry, &u.repo, &u.offset, &alg, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("upload %q: %w", id, ErrUploadUnknown)
	}
	if err != nil {
		return nil, fmt.Errorf("reading upload %q: %w", id, err)
	}
	u.alg = digest.Algorithm(alg)
	u.h = newHash(u.alg)
	if u.offset > 0 {
		if um, ok := u.h.(encoding.BinaryUnmarshaler); !ok || len(state) == 0 || um.UnmarshalBinary(state) != nil {
			u.h = nil // rehash the file on first use
		}
	}
	return u, nil
}

// ready makes u.h cover exactly u.offset bytes of the file, re-reading the
// file if the hash state was lost.
func (s *Store) ready(u *upload) error {
	if u.h != nil {
		return nil
	}
	f, err := os.Open(s.uploadPath(u.id))
	if err != nil {
		return fmt.Errorf("reopening upload %q: %w", u.id, err)
	}
	defer f.Close()
	h := newHash(u.alg)
	n, err := io.Copy(h, io.LimitReader(f, u.offset))
	if err != nil {
		return fmt.Errorf("rehashing upload %q: %w", u.id, err)
	}
	u.h, u.offset = h, n
	return nil
}

// UploadOffset returns how many bytes an upload holds.
func (s *Store) UploadOffset(ctx context.Context, registry, repo, id string) (int64, error) {
	u, err := s.lockUpload(ctx, registry, repo, id)
	if err != nil {
		return 0, err
	}
	defer u.mu.Unlock()
	return u.offset, nil
}

// AppendUpload appends r to an upload. start is where the client says the
// chunk begins, or -1 for a streamed chunk; a chunk that does not start at
// the current end fails with ErrRangeInvalid. It returns the new length;
// on a read error the bytes received so far are kept.
func (s *Store) AppendUpload(ctx context.Context, registry, repo, id string, start int64, r io.Reader) (int64, error) {
	u, err := s.lockUpload(ctx, registry, repo, id)
	if err != nil {
		return 0, err
	}
	defer u.mu.Unlock()
	if err := s.appendLocked(ctx, u, start, r, true); err != nil {
		return u.offset, err
	}
	return u.offset, nil
}

// appendLocked appends r to the locked upload u. With save set it records
// the new length and hash state in the database (a finishing upload need
// not: its row is about to go).
func (s *Store) appendLocked(ctx context.Context, u *upload, start int64, r io.Reader, save bool) error {
	if start >= 0 && start != u.offset {
		return fmt.Errorf("chunk starts at %d, upload holds %d bytes: %w", start, u.offset, ErrRangeInvalid)
	}
	if err := s.ready(u); err != nil {
		return err
	}
	f, err := os.OpenFile(s.uploadPath(u.id), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening upload %q: %w", u.id, err)
	}
	// Drop whatever an earlier failed request left past the hashed length.
	if err := f.Truncate(u.offset); err != nil {
		f.Close()
		return fmt.Errorf("truncating upload %q: %w", u.id, err)
	}
	if _, err := f.Seek(u.offset, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("seeking upload %q: %w", u.id, err)
	}
	r, err = s.limitQuota(ctx, u.registry, "", u.offset, r)
	if err != nil {
		f.Close()
		return err
	}
	n, cerr := copyHashed(f, u.h, r)
	if err := f.Close(); cerr == nil && err != nil {
		cerr = fmt.Errorf("closing upload %q: %w", u.id, err)
	}
	if errors.Is(cerr, ErrQuotaExceeded) || errors.Is(cerr, syscall.ENOSPC) {
		// The push cannot finish: free its bytes now, not at expiry.
		s.discardLocked(ctx, u)
		return cerr
	}
	u.offset += n
	if save || cerr != nil {
		if err := s.saveUpload(ctx, u); err != nil && cerr == nil {
			cerr = err
		}
	}
	return cerr
}

func (s *Store) saveUpload(ctx context.Context, u *upload) error {
	var state []byte
	if m, ok := u.h.(encoding.BinaryMarshaler); ok {
		state, _ = m.MarshalBinary()
	}
	// A cancelled request context must not lose the bookkeeping of bytes
	// already written.
	ctx = context.WithoutCancel(ctx)
	_, err := s.wr().ExecContext(ctx, `UPDATE uploads SET offset = ?, hash_state = ?, updated_at = ? WHERE id = ?`,
		u.offset, state, formatTime(s.now()), u.id)
	if err != nil {
		return fmt.Errorf("saving upload %q: %w", u.id, err)
	}
	return nil
}

// FinishUpload appends the final chunk r (nil if none; start as for
// AppendUpload), checks the content against d and publishes the blob. On a
// digest mismatch the session is discarded. Errors wrap ErrDigestInvalid,
// ErrRangeInvalid or ErrUploadUnknown.
func (s *Store) FinishUpload(ctx context.Context, registry, repo, id string, start int64, r io.Reader, d digest.Digest) (int64, error) {
	if _, err := ParseDigest(d.String()); err != nil {
		return 0, err
	}
	u, err := s.lockUpload(ctx, registry, repo, id)
	if err != nil {
		return 0, err
	}
	defer u.mu.Unlock()
	if r != nil {
		if err := s.appendLocked(ctx, u, start, r, false); err != nil {
			return 0, err
		}
	} else if err := s.ready(u); err != nil {
		return 0, err
	}
	got, err := s.uploadDigest(u, d.Algorithm())
	if err != nil {
		return 0, err
	}
	if err := verify(d, got, -1, u.offset); err != nil {
		s.discardLocked(ctx, u)
		return 0, err
	}
	if s.sync {
		if err := syncFile(s.uploadPath(u.id)); err != nil {
			return 0, fmt.Errorf("syncing upload %q: %w", u.id, err)
		}
	}
	if err := s.commitBlob(ctx, registry, repo, d, u.offset, s.uploadPath(u.id), u.id); err != nil {
		// commitBlob consumed the file: the session cannot be finished.
		s.discardLocked(ctx, u)
		return 0, err
	}
	u.gone = true
	s.forgetUpload(u.id)
	return u.offset, nil
}

// uploadDigest returns the digest of the upload with alg, re-reading the
// file only if the session hashed with another algorithm.
func (s *Store) uploadDigest(u *upload, alg digest.Algorithm) (digest.Digest, error) {
	if alg == u.alg {
		return digest.NewDigest(alg, u.h), nil
	}
	f, err := os.Open(s.uploadPath(u.id))
	if err != nil {
		return "", fmt.Errorf("reopening upload %q: %w", u.id, err)
	}
	defer f.Close()
	h := newHash(alg)
	if _, err := io.Copy(h, io.LimitReader(f, u.offset)); err != nil {
		return "", fmt.Errorf("rehashing upload %q: %w", u.id, err)
	}
	return digest.NewDigest(alg, h), nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// CancelUpload discards an upload session and its bytes.
func (s *Store) CancelUpload(ctx context.Context, registry, repo, id string) error {
	u, err := s.lockUpload(ctx, registry, repo, id)
	if err != nil {
		return err
	}
	defer u.mu.Unlock()
	return s.discardLocked(ctx, u)
}

func (s *Store) discardLocked(ctx context.Context, u *upload) error {
	u.gone = true
	s.forgetUpload(u.id)
	_, err := s.wr().ExecContext(context.WithoutCancel(ctx), `DELETE FROM uploads WHERE id = ?`, u.id)
	if rerr := os.Remove(s.uploadPath(u.id)); rerr != nil && !os.IsNotExist(rerr) {
		s.log.Warn("removing upload file", "upload", u.id, "err", rerr)
	}
	if err != nil {
		return fmt.Errorf("deleting upload %q: %w", u.id, err)
	}
	return nil
}

func (s *Store) forgetUpload(id string) {
	s.uploadsMu.Lock()
	delete(s.uploads, id)
	s.uploadsMu.Unlock()
}

// removeOrphanUploads removes files in uploads/ that no session or upload
// in flight owns and that were last written before olderThan (zero: any age, used at Open when
// no request can be in flight), and sessions whose file is gone.
func (s *Store) removeOrphanUploads(ctx context.Context, olderThan time.Time) (int, error) {
	ids, err := uploadIDs(ctx, s.rd(), `SELECT id FROM uploads`)
	if err != nil {
		return 0, err
	}
	known := make(map[string]bool, len(ids))
	for _, id := range ids {
		known[id] = true
	}
	entries, err := os.ReadDir(s.uploadDir())
	if err != nil {
		return 0, fmt.Errorf("listing uploads: %w", err)
	}
	removed := 0
	present := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if known[name] {
			present[name] = true
			continue
		}
		if !olderThan.IsZero() {
			info, err := e.Info()
			if err != nil || info.ModTime().After(olderThan) {
				continue
			}
			// Check the in-flight mark before the row: a session created since
			// the ids were read is marked until its row is committed.
			if _, busy := s.inflight.Load(name); busy {
				continue
			}
			var one int
			if err := s.rd().QueryRowContext(ctx, `SELECT 1 FROM uploads WHERE id = ?`, name).Scan(&one); !errors.Is(err, sql.ErrNoRows) {
				continue
			}
		}
		if err := os.Remove(s.uploadPath(name)); err == nil {
			removed++
		}
	}
	if olderThan.IsZero() {
		for _, id := range ids {
			if !present[id] {
				if _, err := s.wr().ExecContext(ctx, `DELETE FROM uploads WHERE id = ?`, id); err != nil {
					return removed, fmt.Errorf("deleting upload %q: %w", id, err)
				}
				removed++
			}
		}
	}
	return removed, nil
}
