package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// Actor identifies who made a change; tag history records it.
type Actor struct {
	// Principal is the principal ID of the caller ("" if anonymous).
	Principal string
	// RunID is set when a task run made the change.
	RunID string
}

// Tag is a tag and the manifest it points to.
type Tag struct {
	Name      string
	Digest    digest.Digest
	UpdatedAt time.Time
}

// TagEvent is one change of a tag: an entry of its history, and what
// Subscribe callbacks receive. New is "" when the tag was removed.
type TagEvent struct {
	Registry   string
	Repository string
	Tag        string
	Old        digest.Digest
	New        digest.Digest
	PushedBy   string
	RunID      string
	Time       time.Time
}

// events holds the tag-move subscribers; emit reads them without locking.
type events struct {
	mu   sync.Mutex
	next int
	subs map[int]func(TagEvent)
	list atomic.Pointer[[]func(TagEvent)]
}

// Subscribe registers fn to be called after every commit that creates a tag
// or moves it to a different digest, through HTTP or this API alike. fn runs
// on the committing goroutine, in commit order: it must not block or write
// to the store (hand the event to a queue and return). The returned function
// unsubscribes.
func (s *Store) Subscribe(fn func(TagEvent)) (unsubscribe func()) {
	e := &s.events
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs == nil {
		e.subs = map[int]func(TagEvent){}
	}
	id := e.next
	e.next++
	e.subs[id] = fn
	e.publish()
	return func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.subs, id)
		e.publish()
	}
}

func (e *events) publish() {
	l := make([]func(TagEvent), 0, len(e.subs))
	for _, fn := range e.subs {
		l = append(l, fn)
	}
	e.list.Store(&l)
}

func (s *Store) emit(evs []TagEvent) {
	l := s.events.list.Load()
	if l == nil {
		return
	}
	for _, ev := range evs {
		if ev.New == "" {
			continue
		}
		for _, fn := range *l {
			s.callSubscriber(fn, ev)
		}
	}
}

func (s *Store) callSubscriber(fn func(TagEvent), ev TagEvent) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("tag event subscriber panicked", "registry", ev.Registry, "repository", ev.Repository, "tag", ev.Tag, "panic", r)
		}
	}()
	fn(ev)
}

// setTag points tag at d inside tx and records history. It returns the event
// if the tag moved (nil if it already pointed at d).
func (s *Store) setTag(ctx context.Context, tx *sql.Tx, registry, repo string, repoID int64, tag string, d digest.Digest, by Actor, now time.Time) (*TagEvent, error) {
	var old string
	err := s.in(tx).QueryRowContext(ctx, `SELECT digest FROM tags WHERE repository_id = ? AND name = ?`, repoID, tag).Scan(&old)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("reading tag %q: %w", tag, err)
	}
	if old == d.String() {
		return nil, nil
	}
	ts := formatTime(now)
	if _, err := s.in(tx).ExecContext(ctx, `INSERT INTO tags(repository_id, name, digest, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT(repository_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
		repoID, tag, d.String(), ts); err != nil {
		return nil, fmt.Errorf("writing tag %q: %w", tag, err)
	}
	ev := &TagEvent{Registry: registry, Repository: repo, Tag: tag, Old: digest.Digest(old), New: d,
		PushedBy: by.Principal, RunID: by.RunID, Time: now.UTC()}
	if err := s.insertHistory(ctx, tx, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

func (s *Store) insertHistory(ctx context.Context, tx *sql.Tx, ev *TagEvent) error {
	_, err := s.in(tx).ExecContext(ctx, `INSERT INTO tag_history(registry, repository, tag, old_digest, new_digest, pushed_by, run_id, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		ev.Registry, ev.Repository, ev.Tag, ev.Old.String(), ev.New.String(), ev.PushedBy, ev.RunID, formatTime(ev.Time))
	if err != nil {
		return fmt.Errorf("recording tag history: %w", err)
	}
	return nil
}

// TagManifest points tag at the manifest d, which must exist in the
// repository (a promotion, a rollback, an import). Errors wrap
// ErrManifestUnknown or ErrNameInvalid.
func (s *Store) TagManifest(ctx context.Context, registry, repo, tag string, d digest.Digest, by Actor) error {
	if err := ValidTag(tag); err != nil {
		return err
	}
	var ev *TagEvent
	var repoID int64
	return s.batchTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		ev = nil
		if err := s.in(tx).QueryRowContext(ctx, `SELECT id FROM repositories WHERE registry = ? AND name = ?`, registry, repo).Scan(&repoID); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("manifest %s in %s/%s: %w", d, registry, repo, ErrManifestUnknown)
			}
			return fmt.Errorf("reading repository %q: %w", repo, err)
		}
		var one int
		if err := s.in(tx).QueryRowContext(ctx, `SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?`, repoID, d.String()).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("manifest %s in %s/%s: %w", d, registry, repo, ErrManifestUnknown)
			}
			return fmt.Errorf("reading manifest %s: %w", d, err)
		}
		var err error
		ev, err = s.setTag(ctx, tx, registry, repo, repoID, tag, d, by, s.now())
		return err
	}, func(eff *effects) {
		if ev != nil {
			eff.tags = append(eff.tags, repoTags{repoID, []string{tag}, d})
			eff.events = append(eff.events, *ev)
		}
	})
}

// ResolveTag returns the digest a tag points to. Errors wrap ErrTagUnknown
// (or ErrRepositoryUnknown).
func (s *Store) ResolveTag(ctx context.Context, registry, repo, tag string) (digest.Digest, error) {
	id, err := s.repoID(ctx, registry, repo)
	if err != nil {
		return "", err
	}
	return s.resolveTag(ctx, id, registry, repo, tag)
}

func (s *Store) resolveTag(ctx context.Context, repoID int64, registry, repo, tag string) (digest.Digest, error) {
	if d, ok := s.cache.tag(repoID, tag); ok {
		return d, nil
	}
	gen := s.cache.generation()
	var d string
	err := s.rd().QueryRowContext(ctx, `SELECT digest FROM tags WHERE repository_id = ? AND name = ?`, repoID, tag).Scan(&d)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("tag %q in %s/%s: %w", tag, registry, repo, ErrTagUnknown)
	}
	if err != nil {
		return "", fmt.Errorf("reading tag %q: %w", tag, err)
	}
	s.cache.fillTag(repoID, tag, digest.Digest(d), gen)
	return digest.Digest(d), nil
}

// ListTags lists the tags of a repository by name. Errors wrap
// ErrRepositoryUnknown.
func (s *Store) ListTags(ctx context.Context, registry, repo string, p Page) ([]Tag, error) {
	id, err := s.repoID(ctx, registry, repo)
	if err != nil {
		return nil, err
	}
	rows, err := s.lst().QueryContext(ctx, `SELECT name, digest, updated_at FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?`,
		id, p.Last, p.limit())
	if err != nil {
		return nil, fmt.Errorf("listing tags of %q: %w", repo, err)
	}
	defer rows.Close()
	out := []Tag{}
	for rows.Next() {
		var t Tag
		var d, updated string
		if err := rows.Scan(&t.Name, &d, &updated); err != nil {
			return nil, fmt.Errorf("listing tags of %q: %w", repo, err)
		}
		t.Digest, t.UpdatedAt = digest.Digest(d), parseTime(updated)
		out = append(out, t)
	}
	return out, rows.Err()
}

// Untag removes a tag (the manifest stays) and records it in the history.
// Errors wrap ErrTagUnknown.
func (s *Store) Untag(ctx context.Context, registry, repo, tag string, by Actor) error {
	var repoID int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var old string
		err := s.in(tx).QueryRowContext(ctx, `SELECT r.id, t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id
			WHERE r.registry = ? AND r.name = ? AND t.name = ?`, registry, repo, tag).Scan(&repoID, &old)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("tag %q in %s/%s: %w", tag, registry, repo, ErrTagUnknown)
		}
		if err != nil {
			return fmt.Errorf("reading tag %q: %w", tag, err)
		}
		if _, err := s.in(tx).ExecContext(ctx, `DELETE FROM tags WHERE repository_id = ? AND name = ?`, repoID, tag); err != nil {
			return fmt.Errorf("deleting tag %q: %w", tag, err)
		}
		return s.insertHistory(ctx, tx, &TagEvent{Registry: registry, Repository: repo, Tag: tag, Old: digest.Digest(old),
			PushedBy: by.Principal, RunID: by.RunID, Time: s.now()})
	})
	if err != nil {
		return err
	}
	s.cache.dropTags(repoID, []string{tag})
	return nil
}

// TagHistory returns every change of a tag, oldest first. It is empty (not
// an error) for a tag that never existed.
func (s *Store) TagHistory(ctx context.Context, registry, repo, tag string) ([]TagEvent, error) {
	rows, err := s.rd().QueryContext(ctx, `SELECT old_digest, new_digest, pushed_by, run_id, created_at FROM tag_history
		WHERE registry = ? AND repository = ? AND tag = ? ORDER BY id`, registry, repo, tag)
	if err != nil {
		return nil, fmt.Errorf("reading history of tag %q: %w", tag, err)
	}
	defer rows.Close()
	out := []TagEvent{}
	for rows.Next() {
		ev := TagEvent{Registry: registry, Repository: repo, Tag: tag}
		var old, nw, at string
		if err := rows.Scan(&old, &nw, &ev.PushedBy, &ev.RunID, &at); err != nil {
			return nil, fmt.Errorf("reading history of tag %q: %w", tag, err)
		}
		ev.Old, ev.New, ev.Time = digest.Digest(old), digest.Digest(nw), parseTime(at)
		out = append(out, ev)
	}
	return out, rows.Err()
}
