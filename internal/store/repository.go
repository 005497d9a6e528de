package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Page selects part of a listing ordered by name (or digest): the entries
// after Last, at most N of them (N <= 0: all).
type Page struct {
	Last string
	N    int
}

func (p Page) limit() int {
	if p.N <= 0 {
		return -1
	}
	return p.N
}

// Repository describes one repository of a registry.
type Repository struct {
	Registry      string
	Name          string
	ManifestCount int
	TagCount      int
	CreatedAt     time.Time
	// UpdatedAt is the latest manifest push or tag change (CreatedAt if none).
	UpdatedAt time.Time
}

const repositorySelect = `SELECT r.registry, r.name, r.created_at,
	(SELECT count(*) FROM manifests m WHERE m.repository_id = r.id),
	(SELECT count(*) FROM tags t WHERE t.repository_id = r.id),
	max(r.created_at,
		coalesce((SELECT max(m.created_at) FROM manifests m WHERE m.repository_id = r.id), ''),
		coalesce((SELECT max(t.updated_at) FROM tags t WHERE t.repository_id = r.id), ''))
	FROM repositories r`

func scanRepository(sc interface{ Scan(...any) error }) (Repository, error) {
	var r Repository
	var created, updated string
	if err := sc.Scan(&r.Registry, &r.Name, &created, &r.ManifestCount, &r.TagCount, &updated); err != nil {
		return Repository{}, err
	}
	r.CreatedAt, r.UpdatedAt = parseTime(created), parseTime(updated)
	return r, nil
}

// ListRepositories lists the repositories of a registry by name, with their
// counts and times: it reads every manifest and tag of each. The catalog
// lists names only (ListRepositoryNames). Errors wrap ErrRegistryUnknown if
// the registry does not exist.
func (s *Store) ListRepositories(ctx context.Context, registry string, p Page) ([]Repository, error) {
	if err := registryExists(ctx, s.lst(), registry); err != nil {
		return nil, err
	}
	rows, err := s.lst().QueryContext(ctx, repositorySelect+` WHERE r.registry = ? AND r.name > ? ORDER BY r.name LIMIT ?`,
		registry, p.Last, p.limit())
	if err != nil {
		return nil, fmt.Errorf("listing repositories of %q: %w", registry, err)
	}
	defer rows.Close()
	var out []Repository
	for rows.Next() {
		r, err := scanRepository(rows)
		if err != nil {
			return nil, fmt.Errorf("listing repositories of %q: %w", registry, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// repositoryNamesQuery reads only the (registry, name) unique index: a
// keyset page, however many repositories there are before it.
const repositoryNamesQuery = `SELECT name FROM repositories WHERE registry = ? AND name > ? ORDER BY name LIMIT ?`

// ListRepositoryNames lists the names of the repositories of a registry in
// order, after p.Last, at most p.N of them: the catalog's query, which reads
// the (registry, name) index alone. Errors wrap ErrRegistryUnknown if the
// registry does not exist.
func (s *Store) ListRepositoryNames(ctx context.Context, registry string, p Page) ([]string, error) {
	if err := registryExists(ctx, s.lst(), registry); err != nil {
		return nil, err
	}
	rows, err := s.lst().QueryContext(ctx, repositoryNamesQuery, registry, p.Last, p.limit())
	if err != nil {
		return nil, fmt.Errorf("listing repositories of %q: %w", registry, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("listing repositories of %q: %w", registry, err)
		}
		out = append(out, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing repositories of %q: %w", registry, err)
	}
	return out, nil
}

// GetRepository returns one repository; errors wrap ErrRepositoryUnknown.
func (s *Store) GetRepository(ctx context.Context, registry, name string) (Repository, error) {
	r, err := scanRepository(s.rd().QueryRowContext(ctx, repositorySelect+` WHERE r.registry = ? AND r.name = ?`, registry, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Repository{}, fmt.Errorf("repository %q in registry %q: %w", name, registry, ErrRepositoryUnknown)
	}
	if err != nil {
		return Repository{}, fmt.Errorf("reading repository %q: %w", name, err)
	}
	return r, nil
}

// DeleteRepository deletes a repository with its manifests, tags, blob links
// and uploads. Tag history is kept and records the removal of every tag.
func (s *Store) DeleteRepository(ctx context.Context, registry, name string, by Actor) error {
	var uploads []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var id int64
		err := s.in(tx).QueryRowContext(ctx, `SELECT id FROM repositories WHERE registry = ? AND name = ?`, registry, name).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("repository %q in registry %q: %w", name, registry, ErrRepositoryUnknown)
		}
		if err != nil {
			return fmt.Errorf("reading repository %q: %w", name, err)
		}
		_, err = s.in(tx).ExecContext(ctx, `INSERT INTO tag_history(registry, repository, tag, old_digest, new_digest, pushed_by, run_id, created_at)
			SELECT ?, ?, name, digest, '', ?, ?, ? FROM tags WHERE repository_id = ? ORDER BY name`,
			registry, name, by.Principal, by.RunID, formatTime(s.now()), id)
		if err != nil {
			return fmt.Errorf("recording tag history: %w", err)
		}
		if uploads, err = uploadIDs(ctx, s.in(tx), `SELECT id FROM uploads WHERE registry = ? AND repository = ?`, registry, name); err != nil {
			return err
		}
		if _, err := s.in(tx).ExecContext(ctx, `DELETE FROM uploads WHERE registry = ? AND repository = ?`, registry, name); err != nil {
			return fmt.Errorf("deleting uploads: %w", err)
		}
		if _, err := s.in(tx).ExecContext(ctx, `DELETE FROM repositories WHERE id = ?`, id); err != nil {
			return fmt.Errorf("deleting repository %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.cache.clear()
	s.dropUploadFiles(uploads)
	return nil
}
