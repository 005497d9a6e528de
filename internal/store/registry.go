package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"
)

// Registry is one login server: its own address and repositories.
type Registry struct {
	Name string
	// Listen is the host:port the registry serves on ("" if none yet).
	Listen string
	// AnonymousPull lets unauthenticated callers pull.
	AnonymousPull bool
	// Quota is the most bytes the registry may hold (Usage.Size); 0 means
	// no quota. Pushes that would take the registry beyond it are refused
	// with ErrQuotaExceeded.
	Quota     int64
	CreatedAt time.Time
}

// CreateRegistry creates a registry. Errors wrap ErrNameInvalid,
// ErrRegistryExists or ErrListenInUse.
func (s *Store) CreateRegistry(ctx context.Context, r Registry) (Registry, error) {
	if err := ValidRegistry(r.Name); err != nil {
		return Registry{}, err
	}
	if r.Quota < 0 {
		return Registry{}, fmt.Errorf("quota %d: %w", r.Quota, ErrQuotaInvalid)
	}
	r.CreatedAt = s.now().UTC()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := registryExists(ctx, s.in(tx), r.Name); err == nil {
			return fmt.Errorf("registry %q: %w", r.Name, ErrRegistryExists)
		} else if !errors.Is(err, ErrRegistryUnknown) {
			return err
		}
		if err := s.listenFree(ctx, tx, r.Name, r.Listen); err != nil {
			return err
		}
		_, err := s.in(tx).ExecContext(ctx, `INSERT INTO registries(name, listen, anonymous_pull, quota, created_at) VALUES (?, ?, ?, ?, ?)`,
			r.Name, r.Listen, r.AnonymousPull, r.Quota, formatTime(r.CreatedAt))
		if err != nil {
			return fmt.Errorf("creating registry %q: %w", r.Name, err)
		}
		return nil
	})
	s.invalidateRegistries()
	if err != nil {
		return Registry{}, err
	}
	return r, nil
}

func (s *Store) listenFree(ctx context.Context, tx *sql.Tx, name, listen string) error {
	if listen == "" {
		return nil
	}
	var other string
	err := s.in(tx).QueryRowContext(ctx, `SELECT name FROM registries WHERE listen = ? AND name <> ?`, listen, name).Scan(&other)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking listen address: %w", err)
	}
	return fmt.Errorf("%s is used by registry %q: %w", listen, other, ErrListenInUse)
}

// UpdateRegistry replaces the listen address, anonymous-pull setting and
// quota of an existing registry and returns the result. A quota below what
// the registry holds is accepted: it refuses further pushes until content
// is deleted and collected.
func (s *Store) UpdateRegistry(ctx context.Context, r Registry) (Registry, error) {
	if r.Quota < 0 {
		return Registry{}, fmt.Errorf("quota %d: %w", r.Quota, ErrQuotaInvalid)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := registryExists(ctx, s.in(tx), r.Name); err != nil {
			return err
		}
		if err := s.listenFree(ctx, tx, r.Name, r.Listen); err != nil {
			return err
		}
		_, err := s.in(tx).ExecContext(ctx, `UPDATE registries SET listen = ?, anonymous_pull = ?, quota = ? WHERE name = ?`,
			r.Listen, r.AnonymousPull, r.Quota, r.Name)
		if err != nil {
			return fmt.Errorf("updating registry %q: %w", r.Name, err)
		}
		return nil
	})
	s.invalidateRegistries()
	if err != nil {
		return Registry{}, err
	}
	return s.GetRegistry(ctx, r.Name)
}

// GetRegistry returns one registry; errors wrap ErrRegistryUnknown.
func (s *Store) GetRegistry(ctx context.Context, name string) (Registry, error) {
	var r Registry
	var created string
	err := s.rd().QueryRowContext(ctx, `SELECT name, listen, anonymous_pull, quota, created_at FROM registries WHERE name = ?`, name).
		Scan(&r.Name, &r.Listen, &r.AnonymousPull, &r.Quota, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Registry{}, registryNotFound(name)
	}
	if err != nil {
		return Registry{}, fmt.Errorf("reading registry %q: %w", name, err)
	}
	r.CreatedAt = parseTime(created)
	return r, nil
}

// ListRegistries returns every registry, by name.
func (s *Store) ListRegistries(ctx context.Context) ([]Registry, error) {
	rows, err := s.rd().QueryContext(ctx, `SELECT name, listen, anonymous_pull, quota, created_at FROM registries ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing registries: %w", err)
	}
	defer rows.Close()
	var out []Registry
	for rows.Next() {
		var r Registry
		var created string
		if err := rows.Scan(&r.Name, &r.Listen, &r.AnonymousPull, &r.Quota, &created); err != nil {
			return nil, fmt.Errorf("listing registries: %w", err)
		}
		r.CreatedAt = parseTime(created)
		out = append(out, r)
	}
	return out, rows.Err()
}

// DeleteRegistry deletes a registry with its repositories, manifests, tags,
// tag history and uploads (and every row of other domains that references
// it). Blob files shared with other registries stay; the others are left to
// GC.
func (s *Store) DeleteRegistry(ctx context.Context, name string) error {
	var uploads []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := registryExists(ctx, s.in(tx), name); err != nil {
			return err
		}
		ids, err := uploadIDs(ctx, s.in(tx), `SELECT id FROM uploads WHERE registry = ?`, name)
		if err != nil {
			return err
		}
		uploads = ids
		if _, err := s.in(tx).ExecContext(ctx, `DELETE FROM registries WHERE name = ?`, name); err != nil {
			return fmt.Errorf("deleting registry %q: %w", name, err)
		}
		return nil
	})
	s.invalidateRegistries()
	if err != nil {
		return err
	}
	s.cache.clear()
	s.dropUploadFiles(uploads)
	return nil
}

func uploadIDs(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing uploads: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// dropUploadFiles forgets upload sessions whose rows are gone and removes
// their files.
func (s *Store) dropUploadFiles(ids []string) {
	for _, id := range ids {
		s.uploadsMu.Lock()
		delete(s.uploads, id)
		s.uploadsMu.Unlock()
		if err := os.Remove(s.uploadPath(id)); err != nil && !os.IsNotExist(err) {
			s.log.Warn("removing upload file", "upload", id, "err", err)
		}
	}
}

// AnonymousPull reports whether a registry allows anonymous pulls; an
// unknown registry reports false. It reads a cache of the registries table
// that this store's writes invalidate, so auth can call it per request (it
// implements auth.RegistryLookup).
func (s *Store) AnonymousPull(ctx context.Context, registry string) (bool, error) {
	r, err := s.cachedRegistry(ctx, registry)
	return r.AnonymousPull, err
}

// cachedRegistry returns a registry from the cache of the registries table
// (the zero Registry if there is none by that name), loading it if a write
// invalidated it.
func (s *Store) cachedRegistry(ctx context.Context, registry string) (Registry, error) {
	m := s.regCache.Load()
	if m == nil {
		s.regMu.Lock()
		gen := s.regGen
		s.regMu.Unlock()
		regs, err := s.ListRegistries(ctx)
		if err != nil {
			return Registry{}, err
		}
		mm := make(map[string]Registry, len(regs))
		for _, r := range regs {
			mm[r.Name] = r
		}
		// Install the map only if no write invalidated the cache meanwhile.
		s.regMu.Lock()
		if s.regGen == gen {
			s.regCache.Store(&mm)
		}
		s.regMu.Unlock()
		m = &mm
	}
	return (*m)[registry], nil
}

func (s *Store) invalidateRegistries() {
	s.regMu.Lock()
	s.regGen++
	s.regCache.Store(nil)
	s.regMu.Unlock()
}
