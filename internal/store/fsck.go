package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
)

// Damage is one blob (or manifest) whose stored bytes are not its digest's.
type Damage struct {
	Digest digest.Digest
	// Problem says what is wrong: missing, wrong size, digest mismatch.
	Problem string
	// Quarantined is where the damaged file was moved ("" when missing or
	// a manifest, whose body is in the database).
	Quarantined string
	// Manifests are the manifests that reference the blob (or are it), as
	// registry/repository@digest.
	Manifests []string
}

// FsckReport is what Fsck found.
type FsckReport struct {
	// Blobs and Bytes are what was read and verified (blobs and manifest
	// bodies).
	Blobs    int
	Bytes    int64
	Damaged  []Damage
	Duration time.Duration
}

// Fsck reads every blob of registry (every blob when registry is "") and
// every manifest body, and verifies each against its digest. A damaged blob
// file is moved to DATA/quarantine (so it is never served again; pushing
// the blob again stores a good copy) and reported with the manifests that
// reference it.
func (s *Store) Fsck(ctx context.Context, registry string) (FsckReport, error) {
	start := s.now()
	var rep FsckReport
	if registry != "" {
		if err := registryExists(ctx, s.rd(), registry); err != nil {
			return rep, err
		}
	}
	type blob struct {
		d    digest.Digest
		size int64
	}
	var blobs []blob
	rows, err := s.db.R.QueryContext(ctx, `SELECT DISTINCT b.digest, b.size FROM blobs b
		LEFT JOIN repository_blobs rb ON rb.digest = b.digest
		LEFT JOIN repositories r ON r.id = rb.repository_id
		WHERE ?1 = '' OR r.registry = ?1 ORDER BY b.digest`, registry)
	if err != nil {
		return rep, fmt.Errorf("fsck: listing blobs: %w", err)
	}
	for rows.Next() {
		var b blob
		var d string
		if err := rows.Scan(&d, &b.size); err != nil {
			rows.Close()
			return rep, fmt.Errorf("fsck: listing blobs: %w", err)
		}
		b.d = digest.Digest(d)
		blobs = append(blobs, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("fsck: listing blobs: %w", err)
	}
	for _, b := range blobs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		problem, n, err := s.checkBlob(b.d, b.size)
		if err != nil {
			return rep, err
		}
		rep.Blobs++
		rep.Bytes += n
		if problem == "" {
			continue
		}
		dmg := Damage{Digest: b.d, Problem: problem}
		if problem != "missing" && problem != "invalid digest" {
			if dmg.Quarantined, err = s.quarantine(b.d); err != nil {
				return rep, err
			}
		}
		if dmg.Manifests, err = s.referrersOf(ctx, b.d, registry); err != nil {
			return rep, err
		}
		s.log.ErrorContext(ctx, "fsck: damaged blob", "digest", b.d, "problem", problem, "quarantined", dmg.Quarantined, "manifests", dmg.Manifests)
		rep.Damaged = append(rep.Damaged, dmg)
	}
	if err := s.fsckManifests(ctx, registry, &rep); err != nil {
		return rep, err
	}
	rep.Duration = s.now().Sub(start)
	s.log.InfoContext(ctx, "fsck", "registry", registry, "checked", rep.Blobs, "bytes", rep.Bytes, "damaged", len(rep.Damaged), "duration", rep.Duration)
	return rep, nil
}

// checkBlob reads blob d and says what is wrong with it ("" for nothing),
// and how many bytes it read.
func (s *Store) checkBlob(d digest.Digest, size int64) (string, int64, error) {
	if err := d.Validate(); err != nil {
		return "invalid digest", 0, nil
	}
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return "missing", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("fsck: %w", err)
	}
	defer f.Close()
	h := newHash(d.Algorithm())
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Sprintf("unreadable: %v", err), n, nil
	}
	if n != size {
		return fmt.Sprintf("size %d, want %d", n, size), n, nil
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return "content has digest " + got.String(), n, nil
	}
	return "", n, nil
}

// quarantine moves blob d's file to DATA/quarantine, under the digest's
// lock (a push of the blob then stores a good copy).
func (s *Store) quarantine(d digest.Digest) (string, error) {
	mu := s.blobLock(d)
	mu.Lock()
	defer mu.Unlock()
	dir := filepath.Join(s.root, "quarantine")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("fsck: %w", err)
	}
	to := filepath.Join(dir, d.Algorithm().String()+"-"+d.Encoded()+"-"+s.now().UTC().Format("20060102T150405.000000000"))
	if err := os.Rename(s.blobPath(d), to); err != nil {
		return "", fmt.Errorf("fsck: quarantining %s: %w", d, err)
	}
	return to, nil
}

// referrersOf names the manifests (of registry, or all) that reference d.
func (s *Store) referrersOf(ctx context.Context, d digest.Digest, registry string) ([]string, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT r.registry, r.name, m.digest FROM manifest_refs mr
		JOIN manifests m ON m.id = mr.manifest_id
		JOIN repositories r ON r.id = m.repository_id
		WHERE mr.digest = ?1 AND (?2 = '' OR r.registry = ?2) ORDER BY r.registry, r.name, m.digest`, d.String(), registry)
	if err != nil {
		return nil, fmt.Errorf("fsck: manifests of %s: %w", d, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var reg, repo, md string
		if err := rows.Scan(&reg, &repo, &md); err != nil {
			return nil, err
		}
		out = append(out, reg+"/"+repo+"@"+md)
	}
	return out, rows.Err()
}

// fsckManifests verifies the manifests' bodies (kept in the database).
func (s *Store) fsckManifests(ctx context.Context, registry string, rep *FsckReport) error {
	rows, err := s.db.R.QueryContext(ctx, `SELECT r.registry, r.name, m.digest, m.body FROM manifests m
		JOIN repositories r ON r.id = m.repository_id
		WHERE ?1 = '' OR r.registry = ?1 ORDER BY m.id`, registry)
	if err != nil {
		return fmt.Errorf("fsck: listing manifests: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var reg, repo, md string
		var body []byte
		if err := rows.Scan(&reg, &repo, &md, &body); err != nil {
			return err
		}
		d := digest.Digest(md)
		rep.Blobs++
		rep.Bytes += int64(len(body))
		if d.Validate() == nil && d.Algorithm().FromBytes(body) == d {
			continue
		}
		dmg := Damage{Digest: d, Problem: "manifest body does not match its digest", Manifests: []string{reg + "/" + repo + "@" + md}}
		s.log.ErrorContext(ctx, "fsck: damaged manifest", "manifest", dmg.Manifests[0])
		rep.Damaged = append(rep.Damaged, dmg)
	}
	return rows.Err()
}
