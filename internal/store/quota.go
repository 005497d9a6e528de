package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/dustin/go-humanize"
	"github.com/opencontainers/go-digest"
)

// QuotaError refuses a push that would take a registry beyond its quota.
// It matches ErrQuotaExceeded (and so errdefs.ErrDenied).
type QuotaError struct {
	Registry string
	// Usage is what the registry holds (Usage.Size), Quota its limit, and
	// Adding what the refused operation would have added (0 when the
	// registry was already at or over its quota).
	Usage, Quota, Adding int64
	// CutOff reports an upload refused while its body arrived: it was
	// larger than what the quota left (its full size is not known).
	CutOff bool
}

func (e *QuotaError) Error() string {
	msg := fmt.Sprintf("quota exceeded: registry %s holds %s of its %s quota", e.Registry,
		humanize.IBytes(uint64(e.Usage)), humanize.IBytes(uint64(e.Quota)))
	switch {
	case e.CutOff:
		msg += fmt.Sprintf("; this upload is larger than the %s left", humanize.IBytes(uint64(max(e.Quota-e.Usage, 0))))
	case e.Adding > 0:
		msg += fmt.Sprintf("; storing %s more would exceed it", humanize.IBytes(uint64(e.Adding)))
	}
	return msg + " (delete content and run gc, or raise the quota with gantry registry update --quota-gb)"
}

func (e *QuotaError) Unwrap() error { return ErrQuotaExceeded }

// quota returns the quota of registry (0: none) from the registries cache.
func (s *Store) quota(ctx context.Context, registry string) (int64, error) {
	r, err := s.cachedRegistry(ctx, registry)
	return r.Quota, err
}

// admitUpload refuses to start an upload into a registry that is already at
// or over its quota, before any byte is sent.
func (s *Store) admitUpload(ctx context.Context, registry string) error {
	q, err := s.quota(ctx, registry)
	if err != nil || q == 0 {
		return err
	}
	used, err := usedBytes(ctx, s.lst(), registry)
	if err != nil {
		return err
	}
	if used >= q {
		return &QuotaError{Registry: registry, Usage: used, Quota: q}
	}
	return nil
}

// checkQuotaTx refuses, inside the write transaction that would store it,
// adding size bytes under digest d to registry beyond its quota. Content the
// registry already holds adds nothing. It costs nothing for a registry
// without a quota.
func (s *Store) checkQuotaTx(ctx context.Context, tx *sql.Tx, registry string, d digest.Digest, size int64, manifest bool) error {
	q, err := s.quota(ctx, registry)
	if err != nil || q == 0 {
		return err
	}
	if held, err := holds(ctx, s.in(tx), registry, d, manifest); err != nil || held {
		return err
	}
	used, err := usedBytes(ctx, s.in(tx), registry)
	if err != nil {
		return err
	}
	if used+size > q {
		return &QuotaError{Registry: registry, Usage: used, Quota: q, Adding: size}
	}
	return nil
}

// usedBytes reads registry's Usage.Size, the number its quota limits.
func usedBytes(ctx context.Context, q queryer, registry string) (int64, error) {
	var used int64
	if err := q.QueryRowContext(ctx, sizeQuery, registry).Scan(&used); err != nil {
		return 0, fmt.Errorf("reading the usage of registry %q: %w", registry, err)
	}
	return used, nil
}

// holds reports whether registry already holds blob (or, with manifest,
// manifest) d: storing it again adds nothing to its usage.
func holds(ctx context.Context, q queryer, registry string, d digest.Digest, manifest bool) (bool, error) {
	held := `SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
		WHERE rb.digest = ? AND r.registry = ? LIMIT 1`
	if manifest {
		held = `SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id
			WHERE m.digest = ? AND r.registry = ? LIMIT 1`
	}
	var one int
	switch err := q.QueryRowContext(ctx, held, d.String(), registry).Scan(&one); {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	default:
		return false, fmt.Errorf("checking the quota of registry %q: %w", registry, err)
	}
}

// limitQuota returns r cut off where registry's quota ends, for an upload
// that already holds offset bytes: a byte beyond fails the read with a
// QuotaError, so an upload's body is cut off there rather than written in
// full and refused at the end. Without a quota, or for blob d ("" if not
// known yet) that the registry already holds, it returns r.
func (s *Store) limitQuota(ctx context.Context, registry string, d digest.Digest, offset int64, r io.Reader) (io.Reader, error) {
	q, err := s.quota(ctx, registry)
	if err != nil || q == 0 {
		return r, err
	}
	if d != "" {
		if held, err := holds(ctx, s.rd(), registry, d, false); err != nil || held {
			return r, err
		}
	}
	used, err := usedBytes(ctx, s.lst(), registry)
	if err != nil {
		return nil, err
	}
	qe := &QuotaError{Registry: registry, Usage: used, Quota: q, CutOff: true}
	return &quotaReader{r: r, left: max(q-used-offset, 0), err: qe}, nil
}

type quotaReader struct {
	r    io.Reader
	left int64
	err  *QuotaError
}

func (q *quotaReader) Read(p []byte) (int, error) {
	if q.left <= 0 {
		// At the limit: only the end of the body is still welcome.
		var one [1]byte
		if n, err := q.r.Read(one[:]); n == 0 && err != nil {
			return 0, err
		}
		return 0, q.err
	}
	if int64(len(p)) > q.left {
		p = p[:q.left]
	}
	n, err := q.r.Read(p)
	q.left -= int64(n)
	return n, err
}
