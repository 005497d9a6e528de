package store

import (
	"context"
	"fmt"
)

// Usage is what a registry holds.
type Usage struct {
	// Size is the bytes of the distinct content the registry stores: its
	// manifests and every blob readable in its repositories (uploaded,
	// mounted, imported or cached), each digest counted once however many
	// repositories or manifests share it. Blobs shared with other registries
	// count in each (they are stored once on disk). Blobs uploaded but not
	// (or no longer) referenced by any manifest count until GC removes them.
	// The registry's quota (Registry.Quota) limits this number.
	Size int64
	// Repositories is the number of repositories, as ListRepositories lists
	// them.
	Repositories int64
	// Manifests is the number of manifests summed over the repositories (a
	// manifest in two repositories counts twice), as their ManifestCount.
	Manifests int64
}

// sizeQuery is Usage.Size of registry ?1.
const sizeQuery = `SELECT coalesce(sum(size), 0) FROM (
		SELECT m.digest, m.size FROM manifests m
			JOIN repositories r ON r.id = m.repository_id
			WHERE r.registry = ?1
		UNION
		SELECT b.digest, b.size FROM repository_blobs rb
			JOIN repositories r ON r.id = rb.repository_id
			JOIN blobs b ON b.digest = rb.digest
			WHERE r.registry = ?1)`

// usageQuery reads the three numbers of a registry in one statement, so
// they come from one snapshot.
const usageQuery = `SELECT (` + sizeQuery + `),
	(SELECT count(*) FROM repositories WHERE registry = ?1),
	(SELECT count(*) FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.registry = ?1)`

// RegistryUsage returns what registry holds; errors wrap
// ErrRegistryUnknown.
func (s *Store) RegistryUsage(ctx context.Context, registry string) (Usage, error) {
	if err := registryExists(ctx, s.rd(), registry); err != nil {
		return Usage{}, err
	}
	var u Usage
	if err := s.rd().QueryRowContext(ctx, usageQuery, registry).Scan(&u.Size, &u.Repositories, &u.Manifests); err != nil {
		return Usage{}, fmt.Errorf("reading the usage of registry %q: %w", registry, err)
	}
	return u, nil
}

// RepositoryUsage is what one repository holds.
type RepositoryUsage struct {
	// Name is the repository's name.
	Name string
	// Size is the bytes of the distinct content the repository stores,
	// counted as Usage.Size counts it for a registry: blobs shared with
	// other repositories count in each, so the sizes of a registry's
	// repositories may add up to more than the registry's Size.
	Size int64
	// Manifests is the repository's manifest count.
	Manifests int64
}

// repositoryUsageQuery reads every repository of a registry in one
// statement, by name.
const repositoryUsageQuery = `SELECT r.name,
	(SELECT coalesce(sum(size), 0) FROM (
		SELECT m.digest, m.size FROM manifests m WHERE m.repository_id = r.id
		UNION
		SELECT b.digest, b.size FROM repository_blobs rb
			JOIN blobs b ON b.digest = rb.digest
			WHERE rb.repository_id = r.id)),
	(SELECT count(*) FROM manifests m WHERE m.repository_id = r.id)
	FROM repositories r WHERE r.registry = ? ORDER BY r.name`

// RepositoriesUsage returns what each repository of registry holds, by
// name; errors wrap ErrRegistryUnknown.
func (s *Store) RepositoriesUsage(ctx context.Context, registry string) ([]RepositoryUsage, error) {
	if err := registryExists(ctx, s.rd(), registry); err != nil {
		return nil, err
	}
	rows, err := s.rd().QueryContext(ctx, repositoryUsageQuery, registry)
	if err != nil {
		return nil, fmt.Errorf("reading the usage of the repositories of registry %q: %w", registry, err)
	}
	defer rows.Close()
	var out []RepositoryUsage
	for rows.Next() {
		var u RepositoryUsage
		if err := rows.Scan(&u.Name, &u.Size, &u.Manifests); err != nil {
			return nil, fmt.Errorf("reading the usage of the repositories of registry %q: %w", registry, err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the usage of the repositories of registry %q: %w", registry, err)
	}
	return out, nil
}
