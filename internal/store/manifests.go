package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/gantryhq/gantry/internal/store/manifest"
)

// Manifest describes a stored manifest. Body is only filled by GetManifest
// and PutManifest; it may be shared with the cache and must not be modified.
type Manifest struct {
	Digest       digest.Digest
	MediaType    string
	ArtifactType string
	// Subject is the digest of the manifest this one refers to, if any.
	Subject digest.Digest
	Size    int64
	// Tags pointing at the manifest (ListManifests only).
	Tags      []string
	CreatedAt time.Time
	Body      []byte
}

// PutManifestRequest is one manifest push.
type PutManifestRequest struct {
	// Reference is a tag, a digest the body must match, or "" to push by
	// the body's sha256 digest.
	Reference string
	// MediaType is the Content-Type the client sent ("" to infer it).
	MediaType string
	// Body is the manifest as sent. The store keeps the slice (in its
	// cache): do not modify it after the call.
	Body []byte
	// Tags are further tags to point at the manifest (OCI tag parameters).
	Tags []string
	// By is recorded in the history of every tag that moves.
	By Actor
}

// Reference kinds of manifest_refs.
const (
	refBlob     = 0
	refManifest = 1
)

// PutManifest validates and stores a manifest in a repository (created if
// needed) and points the requested tags at it. Every blob and child manifest
// it references must already be readable in the repository, except
// non-distributable layers and the subject. Errors wrap ErrManifestInvalid
// (and manifest.ErrInvalid or manifest.ErrUnsupported), ErrManifestTooLarge,
// ErrManifestBlobUnknown, ErrDigestInvalid, ErrNameInvalid or
// ErrRegistryUnknown. Tag moves are announced to subscribers after the
// commit.
func (s *Store) PutManifest(ctx context.Context, registry, repo string, req PutManifestRequest) (Manifest, error) {
	if err := ValidRepository(repo); err != nil {
		return Manifest{}, err
	}
	if int64(len(req.Body)) > s.maxManifest {
		return Manifest{}, fmt.Errorf("%d bytes, limit %d: %w", len(req.Body), s.maxManifest, ErrManifestTooLarge)
	}
	var d digest.Digest
	tags := make([]string, 0, len(req.Tags)+1)
	switch {
	case req.Reference == "":
		d = digest.SHA256.FromBytes(req.Body)
	case IsDigest(req.Reference):
		want, err := ParseDigest(req.Reference)
		if err != nil {
			return Manifest{}, err
		}
		if d = want.Algorithm().FromBytes(req.Body); d != want {
			return Manifest{}, fmt.Errorf("manifest digest %s does not match reference %s: %w", d, want, ErrDigestInvalid)
		}
	default:
		d = digest.SHA256.FromBytes(req.Body)
		tags = append(tags, req.Reference)
	}
	for _, t := range req.Tags {
		if !contains(tags, t) {
			tags = append(tags, t)
		}
	}
	for _, t := range tags {
		if err := ValidTag(t); err != nil {
			return Manifest{}, err
		}
	}
	m, err := manifest.Parse(req.MediaType, req.Body)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %w", ErrManifestInvalid, err)
	}
	now := s.now()
	out := Manifest{Digest: d, MediaType: m.MediaType, ArtifactType: m.ArtifactType, Size: int64(len(req.Body)),
		CreatedAt: now.UTC(), Body: req.Body}
	if m.Subject != nil {
		out.Subject = m.Subject.Digest
	}
	annotations := ""
	if len(m.Annotations) > 0 {
		b, _ := json.Marshal(m.Annotations)
		annotations = string(b)
	}
	var repoID int64
	var evs []TagEvent
	err = s.batchTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		repoID, evs = 0, nil
		var err error
		if repoID, err = s.ensureRepo(ctx, tx, registry, repo); err != nil {
			return err
		}
		refs, err := s.checkRefs(ctx, tx, repoID, m)
		if err != nil {
			return err
		}
		if err := s.checkQuotaTx(ctx, tx, registry, d, out.Size, true); err != nil {
			return err
		}
		var id int64
		err = s.in(tx).QueryRowContext(ctx, `INSERT INTO manifests(repository_id, digest, media_type, artifact_type, subject, size, annotations, body, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(repository_id, digest) DO NOTHING RETURNING id`,
			repoID, d.String(), out.MediaType, out.ArtifactType, out.Subject.String(), out.Size, annotations, req.Body, formatTime(now)).Scan(&id)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Already stored: same bytes, same references.
		case err != nil:
			return fmt.Errorf("storing manifest %s: %w", d, err)
		default:
			for dg, kind := range refs {
				if _, err := s.in(tx).ExecContext(ctx, `INSERT INTO manifest_refs(manifest_id, digest, kind) VALUES (?, ?, ?)`, id, dg, kind); err != nil {
					return fmt.Errorf("recording references of %s: %w", d, err)
				}
			}
		}
		for _, t := range tags {
			ev, err := s.setTag(ctx, tx, registry, repo, repoID, t, d, req.By, now)
			if err != nil {
				return err
			}
			if ev != nil {
				evs = append(evs, *ev)
			}
		}
		return nil
	}, func(eff *effects) {
		cached := out
		eff.manifests = append(eff.manifests, repoManifest{repoID, &cached})
		if len(tags) > 0 {
			eff.tags = append(eff.tags, repoTags{repoID, tags, d})
		}
		eff.events = append(eff.events, evs...)
	})
	if err != nil {
		return Manifest{}, err
	}
	return out, nil
}

// checkRefs verifies that the repository holds everything m references and
// returns the references to record (digest -> kind).
func (s *Store) checkRefs(ctx context.Context, tx *sql.Tx, repoID int64, m *manifest.Manifest) (map[string]int, error) {
	refs := map[string]int{}
	for _, b := range m.Blobs() {
		if _, ok := refs[b.Digest.String()]; ok {
			continue
		}
		var size int64
		err := s.in(tx).QueryRowContext(ctx, `SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
			WHERE rb.repository_id = ? AND rb.digest = ?`, repoID, b.Digest.String()).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("blob %s: %w", b.Digest, ErrManifestBlobUnknown)
		}
		if err != nil {
			return nil, fmt.Errorf("checking blob %s: %w", b.Digest, err)
		}
		if size != b.Size {
			return nil, fmt.Errorf("blob %s has size %d, descriptor says %d: %w", b.Digest, size, b.Size, ErrManifestInvalid)
		}
		refs[b.Digest.String()] = refBlob
	}
	for _, c := range m.Manifests {
		if _, ok := refs[c.Digest.String()]; ok {
			continue
		}
		var size int64
		err := s.in(tx).QueryRowContext(ctx, `SELECT size FROM manifests WHERE repository_id = ? AND digest = ?`, repoID, c.Digest.String()).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("manifest %s: %w", c.Digest, ErrManifestBlobUnknown)
		}
		if err != nil {
			return nil, fmt.Errorf("checking manifest %s: %w", c.Digest, err)
		}
		if size != c.Size {
			return nil, fmt.Errorf("manifest %s has size %d, descriptor says %d: %w", c.Digest, size, c.Size, ErrManifestInvalid)
		}
		refs[c.Digest.String()] = refManifest
	}
	return refs, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// GetManifest returns a manifest, with its body, by tag or digest. Errors
// wrap ErrManifestUnknown, ErrTagUnknown or ErrRepositoryUnknown (all
// db.ErrNotFound), ErrDigestInvalid or ErrNameInvalid.
func (s *Store) GetManifest(ctx context.Context, registry, repo, reference string) (Manifest, error) {
	id, err := s.repoID(ctx, registry, repo)
	if err != nil {
		return Manifest{}, err
	}
	var d digest.Digest
	if IsDigest(reference) {
		if d, err = ParseDigest(reference); err != nil {
			return Manifest{}, err
		}
	} else {
		if err := ValidTag(reference); err != nil {
			return Manifest{}, err
		}
		if d, err = s.resolveTag(ctx, id, registry, repo, reference); err != nil {
			return Manifest{}, err
		}
	}
	if m, ok := s.cache.manifest(id, d); ok {
		return *m, nil
	}
	gen := s.cache.generation()
	m := Manifest{Digest: d}
	var subject, created string
	err = s.rd().QueryRowContext(ctx, `SELECT media_type, artifact_type, subject, size, body, created_at FROM manifests
		WHERE repository_id = ? AND digest = ?`, id, d.String()).
		Scan(&m.MediaType, &m.ArtifactType, &subject, &m.Size, &m.Body, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Manifest{}, fmt.Errorf("manifest %s in %s/%s: %w", reference, registry, repo, ErrManifestUnknown)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("reading manifest %s: %w", d, err)
	}
	m.Subject, m.CreatedAt = digest.Digest(subject), parseTime(created)
	cached := m
	s.cache.fillManifest(id, &cached, gen)
	return m, nil
}

// ListManifests lists the manifests of a repository by digest, with their
// tags. Errors wrap ErrRepositoryUnknown.
func (s *Store) ListManifests(ctx context.Context, registry, repo string, p Page) ([]Manifest, error) {
	id, err := s.repoID(ctx, registry, repo)
	if err != nil {
		return nil, err
	}
	rows, err := s.lst().QueryContext(ctx, `SELECT m.digest, m.media_type, m.artifact_type, m.subject, m.size, m.created_at,
		coalesce((SELECT group_concat(t.name, ',') FROM (SELECT name FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest ORDER BY name) t), '')
		FROM manifests m WHERE m.repository_id = ? AND m.digest > ? ORDER BY m.digest LIMIT ?`, id, p.Last, p.limit())
	if err != nil {
		return nil, fmt.Errorf("listing manifests of %q: %w", repo, err)
	}
	defer rows.Close()
	out := []Manifest{}
	for rows.Next() {
		var m Manifest
		var d, subject, created, tags string
		if err := rows.Scan(&d, &m.MediaType, &m.ArtifactType, &subject, &m.Size, &created, &tags); err != nil {
			return nil, fmt.Errorf("listing manifests of %q: %w", repo, err)
		}
		m.Digest, m.Subject, m.CreatedAt = digest.Digest(d), digest.Digest(subject), parseTime(created)
		m.Tags = []string{}
		if tags != "" {
			m.Tags = strings.Split(tags, ",")
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeleteManifest deletes a manifest by digest and every tag pointing to it
// (recorded in the tag history). Errors wrap ErrManifestUnknown.
func (s *Store) DeleteManifest(ctx context.Context, registry, repo string, d digest.Digest, by Actor) error {
	var repoID int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var id int64
		err := s.in(tx).QueryRowContext(ctx, `SELECT m.id, m.repository_id FROM manifests m JOIN repositories r ON r.id = m.repository_id
			WHERE r.registry = ? AND r.name = ? AND m.digest = ?`, registry, repo, d.String()).Scan(&id, &repoID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("manifest %s in %s/%s: %w", d, registry, repo, ErrManifestUnknown)
		}
		if err != nil {
			return fmt.Errorf("reading manifest %s: %w", d, err)
		}
		_, err = s.in(tx).ExecContext(ctx, `INSERT INTO tag_history(registry, repository, tag, old_digest, new_digest, pushed_by, run_id, created_at)
			SELECT ?, ?, name, digest, '', ?, ?, ? FROM tags WHERE repository_id = ? AND digest = ? ORDER BY name`,
			registry, repo, by.Principal, by.RunID, formatTime(s.now()), repoID, d.String())
		if err != nil {
			return fmt.Errorf("recording tag history: %w", err)
		}
		if _, err := s.in(tx).ExecContext(ctx, `DELETE FROM tags WHERE repository_id = ? AND digest = ?`, repoID, d.String()); err != nil {
			return fmt.Errorf("deleting tags of %s: %w", d, err)
		}
		if _, err := s.in(tx).ExecContext(ctx, `DELETE FROM manifests WHERE id = ?`, id); err != nil {
			return fmt.Errorf("deleting manifest %s: %w", d, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.cache.dropManifest(repoID, d)
	return nil
}

// Referrers returns descriptors of the manifests in a repository whose
// subject is d, optionally only those of one artifactType. An unknown
// repository or subject yields an empty list.
func (s *Store) Referrers(ctx context.Context, registry, repo string, d digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	out := []ocispec.Descriptor{}
	id, err := s.repoID(ctx, registry, repo)
	if errors.Is(err, ErrRepositoryUnknown) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.rd().QueryContext(ctx, `SELECT digest, media_type, artifact_type, size, annotations FROM manifests
		WHERE repository_id = ? AND subject = ? AND (? = '' OR artifact_type = ?) ORDER BY created_at, digest`,
		id, d.String(), artifactType, artifactType)
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", d, err)
	}
	defer rows.Close()
	for rows.Next() {
		var desc ocispec.Descriptor
		var dg, annotations string
		if err := rows.Scan(&dg, &desc.MediaType, &desc.ArtifactType, &desc.Size, &annotations); err != nil {
			return nil, fmt.Errorf("listing referrers of %s: %w", d, err)
		}
		desc.Digest = digest.Digest(dg)
		if annotations != "" {
			if err := json.Unmarshal([]byte(annotations), &desc.Annotations); err != nil {
				return nil, fmt.Errorf("decoding annotations of %s: %w", dg, err)
			}
		}
		out = append(out, desc)
	}
	return out, rows.Err()
}
