package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/wait"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/store"
)

// Durable cache fills. A fill is recorded in cache_fills (migration 051)
// when its first attempt begins and deleted when it completes or is
// dropped. Start resumes the recorded fills; a failed attempt is retried
// with backoff unless the failure is permanent (permanentFill).

// DefaultFillRetry is the wait before a failed cache fill's second attempt
// (WithFillRetry).
const DefaultFillRetry = 30 * time.Second

const (
	// maxFillBackoff bounds the wait between attempts, as a multiple of
	// the first wait: 1 hour for the default 30 seconds.
	maxFillBackoff = 120
	// maxFillAttempts is how many attempts a fill gets before it is
	// dropped.
	maxFillAttempts = 10
	// backgroundFills bounds the attempts that run with no client waiting
	// (retries, fills resumed at start). The first attempt of a pull's fill
	// does not wait for one of these.
	backgroundFills = 4
	// bookkeepingTimeout bounds a write of a fill's record, which is made
	// even while the service stops.
	bookkeepingTimeout = 10 * time.Second
)

// errRuleGone means that the cache rule a fill was started under no longer
// covers its repository, or that its record was deleted with the rule or
// the registry.
var errRuleGone = errdefs.New("the cache rule is gone", errdefs.ErrNotFound)

// errNoRecord is the reason a fill whose record was deleted is dropped.
var errNoRecord = fmt.Errorf("its record was deleted with the cache rule or registry: %w", errRuleGone)

// permanentFill reports whether a failed fill attempt cannot succeed
// later, so that the fill is dropped rather than retried:
//
//   - the upstream says the content is gone: 404 for the manifest, a
//     platform manifest or a blob (remote.ErrSourceUnknown);
//   - the cache rule or the registry is gone (errRuleGone,
//     store.ErrRegistryUnknown);
//   - the tree exceeds a limit (ErrTooLarge: too many manifests;
//     errdefs.ErrTooLarge: a manifest over the store's size limit);
//   - the server's egress policy refuses the source (ErrRefused): no
//     request was made, and none will be under this configuration.
//
// Everything else is retried, up to maxFillAttempts: network errors,
// timeouts, 5xx and 429 (ErrUnavailable, ErrRateLimited), an attempt cut
// short by the service stopping (resumed at the next start), content that
// does not match its digest (a broken proxy may heal), credentials the
// upstream refuses (the admin may fix the credential set or its vault
// policy), and local failures such as a full disk.
func permanentFill(err error) bool {
	return errors.Is(err, ErrSourceUnknown) || errors.Is(err, errRuleGone) || errors.Is(err, store.ErrRegistryUnknown) ||
		errors.Is(err, ErrTooLarge) || errors.Is(err, errdefs.ErrTooLarge) || errors.Is(err, ErrRefused)
}

// fillBackoff is the wait after a fill's nth failed attempt (1-based):
// the first wait doubled n-1 times, at most maxFillBackoff times it, and
// at least the Retry-After of a throttling or unavailable upstream (within
// the same bound).
func (s *Service) fillBackoff(n int, err error) time.Duration {
	base := s.fillRetry
	if base <= 0 {
		base = DefaultFillRetry
	}
	ceiling := base * maxFillBackoff
	d := base << min(max(n-1, 0), 30)
	if d > ceiling || d <= 0 {
		d = ceiling
	}
	var ue *UpstreamError
	if errors.As(err, &ue) && ue.RetryAfter > d {
		d = min(ue.RetryAfter, ceiling)
	}
	return d
}

// fillRecord is a row of cache_fills.
type fillRecord struct {
	registry, repository string
	digest               digest.Digest
	mediaType            string
	body                 []byte
	tags                 []string
	rule                 string
	attempts             int
	next                 time.Time
	lastError            string
}

// bookkeeping returns a context for writing a fill's record: not cancelled
// with ctx (a stopping service records where its fills stand), but bounded.
func bookkeeping(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
}

// encodeTags is a fill's tags as the JSON array stored.
func encodeTags(tags []string) string {
	if len(tags) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(tags) // strings always marshal
	return string(b)
}

// recordAttempt records that a fill's attempt job.attempts begins, with
// its tags: the first record inserts the row (with the root manifest), the
// others update it. It reports false when the row is gone: deleted with
// its cache rule or registry.
func (s *Service) recordAttempt(ctx context.Context, job *fillJob, tags []string) (bool, error) {
	ctx, cancel := bookkeeping(ctx)
	defer cancel()
	now := s.now()
	if !job.recorded {
		_, err := s.db.W.ExecContext(ctx, `INSERT INTO cache_fills(registry, repository, digest, media_type, body, tags, rule,
			attempts, next_attempt, last_error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?)
			ON CONFLICT (registry, repository, digest) DO UPDATE SET tags = excluded.tags, rule = excluded.rule,
			attempts = excluded.attempts, next_attempt = excluded.next_attempt`,
			job.t.registry, job.t.repo, job.root.Digest.String(), job.root.MediaType, job.root.Body, encodeTags(tags),
			job.t.rule.Name, job.attempts, formatTime(now), formatTime(now))
		if err != nil {
			return true, fmt.Errorf("recording the cache fill of %s/%s@%s: %w", job.t.registry, job.t.repo, job.root.Digest, err)
		}
		job.recorded = true
		return true, nil
	}
	return s.updateFill(ctx, job, tags, now, "")
}

// recordFailure records a failed attempt: when the next one may begin and
// why this one failed. It reports false when the row is gone.
func (s *Service) recordFailure(ctx context.Context, job *fillJob, tags []string, failure error) (bool, error) {
	ctx, cancel := bookkeeping(ctx)
	defer cancel()
	return s.updateFill(ctx, job, tags, job.next, failure.Error())
}

// updateFill writes a fill's attempts, tags, next attempt time and last
// error (kept when lastError is ""). It reports false when the row is gone.
func (s *Service) updateFill(ctx context.Context, job *fillJob, tags []string, next time.Time, lastError string) (bool, error) {
	res, err := s.db.W.ExecContext(ctx, `UPDATE cache_fills SET attempts = ?, tags = ?, next_attempt = ?,
		last_error = CASE WHEN ? = '' THEN last_error ELSE ? END
		WHERE registry = ? AND repository = ? AND digest = ?`,
		job.attempts, encodeTags(tags), formatTime(next), lastError, lastError, job.t.registry, job.t.repo, job.root.Digest.String())
	if err != nil {
		return true, fmt.Errorf("recording the cache fill of %s/%s@%s: %w", job.t.registry, job.t.repo, job.root.Digest, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return true, fmt.Errorf("recording the cache fill of %s/%s@%s: %w", job.t.registry, job.t.repo, job.root.Digest, err)
	}
	return n > 0, nil
}

// deleteFill deletes a fill's record (completed or dropped).
func (s *Service) deleteFill(ctx context.Context, registry, repo string, d digest.Digest) error {
	ctx, cancel := bookkeeping(ctx)
	defer cancel()
	if _, err := s.db.W.ExecContext(ctx, `DELETE FROM cache_fills WHERE registry = ? AND repository = ? AND digest = ?`,
		registry, repo, d.String()); err != nil {
		return fmt.Errorf("deleting the cache fill of %s/%s@%s: %w", registry, repo, d, err)
	}
	return nil
}

// loadFills reads every recorded fill, oldest first.
func (s *Service) loadFills(ctx context.Context) ([]fillRecord, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT registry, repository, digest, media_type, body, tags, rule, attempts,
		next_attempt, last_error FROM cache_fills ORDER BY created_at, registry, repository, digest`)
	if err != nil {
		return nil, fmt.Errorf("reading cache fills: %w", err)
	}
	defer rows.Close()
	var out []fillRecord
	for rows.Next() {
		var r fillRecord
		var d, tags, next string
		if err := rows.Scan(&r.registry, &r.repository, &d, &r.mediaType, &r.body, &tags, &r.rule, &r.attempts, &next, &r.lastError); err != nil {
			return nil, fmt.Errorf("reading cache fills: %w", err)
		}
		r.digest = digest.Digest(d)
		r.next = parseTime(next)
		if err := json.Unmarshal([]byte(tags), &r.tags); err != nil {
			s.log.ErrorContext(ctx, "ignoring the unreadable tags of a cache fill", "registry", r.registry, "repository", r.repository,
				"digest", r.digest, "err", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading cache fills: %w", err)
	}
	return out, nil
}

// resumeFills resumes recorded fills (loaded by Start before the service
// ran) in the background: each waits for its next attempt time and for one
// of the backgroundFills slots. Those whose cache rule is gone, whose
// record does not hold a valid manifest, or that used up their attempts
// are dropped.
func (s *Service) resumeFills(ctx context.Context, recs []fillRecord) {
	for _, r := range recs {
		if r.attempts >= maxFillAttempts {
			// Each attempt was cut short by a crash (a clean stop does not
			// count its attempt): do not loop on it.
			s.dropRecord(ctx, r, fmt.Errorf("%d attempts begun, none finished: %s", r.attempts, r.lastError))
			continue
		}
		t, ok := s.target(ctx, r.registry, r.repository)
		if !ok || t.rule.Name != r.rule {
			s.dropRecord(ctx, r, fmt.Errorf("cache rule %q no longer covers %s/%s: %w", r.rule, r.registry, r.repository, errRuleGone))
			continue
		}
		f, err := remote.VerifyManifest(r.registry+"/"+r.repository, r.digest.String(), r.mediaType, "", r.body)
		if err != nil {
			s.dropRecord(ctx, r, fmt.Errorf("the recorded manifest: %w", err))
			continue
		}
		key := cacheKey(r.registry, r.repository, f.Digest.String())
		job := newFillJob(t, f, key)
		job.tags = r.tags
		job.attempts, job.next, job.resumed, job.recorded, job.waiting = r.attempts, r.next, true, true, true
		s.cache.mu.Lock()
		if _, dup := s.cache.fills[key]; dup {
			s.cache.mu.Unlock()
			continue
		}
		s.cache.pending[key] = f
		s.cache.fills[key] = job
		for _, tag := range r.tags {
			// Oldest first: a newer fill of the same tag wins it.
			s.cache.pendingTags[cacheKey(r.registry, r.repository, tag)] = f.Digest
		}
		s.cache.mu.Unlock()
		s.log.InfoContext(ctx, "resuming cache fill after restart", "registry", r.registry, "repository", r.repository,
			"digest", f.Digest, "rule", r.rule, "tags", r.tags, "attempts", r.attempts, "next", r.next, "lastError", r.lastError)
		if !s.spawn(func(ctx context.Context) { s.runFill(ctx, job) }) {
			s.endFill(job, errNotStarted)
		}
	}
}

// dropRecord deletes a recorded fill that cannot be resumed.
func (s *Service) dropRecord(ctx context.Context, r fillRecord, why error) {
	s.log.WarnContext(ctx, "cache fill failed; dropping it", "registry", r.registry, "repository", r.repository,
		"digest", r.digest, "rule", r.rule, "attempts", r.attempts, "err", why)
	if err := s.deleteFill(ctx, r.registry, r.repository, r.digest); err != nil {
		s.log.ErrorContext(ctx, "dropping a cache fill", "err", err)
	}
}

// awaitAttempt waits until a fill's next attempt may begin and takes one
// of the background slots (release with releaseSlot), or returns ctx's
// error.
func (s *Service) awaitAttempt(ctx context.Context, job *fillJob) error {
	if err := wait.For(ctx, job.next.Sub(s.now())); err != nil {
		return err
	}
	select {
	case s.fillSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// releaseSlot gives back the slot awaitAttempt took.
func (s *Service) releaseSlot() { <-s.fillSlots }

// recordGone reports whether a write of a fill's record (present, err)
// found the row deleted. A failed write is logged and the fill goes on,
// unrecorded: the database is not the fill's source of truth while it runs.
func (s *Service) recordGone(ctx context.Context, present bool, err error) bool {
	if err != nil {
		s.log.ErrorContext(ctx, "cache fill continues unrecorded", "err", err)
		return false
	}
	return !present
}
