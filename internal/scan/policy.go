package scan

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/store/manifest"
	"github.com/gantryhq/gantry/internal/vulndb"
)

// Policy is a registry's scan policy.
type Policy struct {
	// ScanOnPush scans every manifest a tag is pushed to, in the
	// background.
	ScanOnPush bool
	// Quarantine, when set, refuses pulls of images with a finding at or
	// above it that is not allowlisted, or not scanned (yet).
	Quarantine vulndb.Severity
}

// Policy returns a registry's own scan policy (the one its repositories
// without a policy of their own follow).
func (s *Service) Policy(ctx context.Context, registry string) (Policy, error) {
	ps, err := s.policyRows(ctx, registry)
	return ps[""], err
}

// PolicyFor returns the policy that applies to a repository: its own, else
// its registry's.
func (s *Service) PolicyFor(ctx context.Context, registry, repo string) (Policy, error) {
	ps, err := s.policyRows(ctx, registry)
	if err != nil {
		return Policy{}, err
	}
	if p, ok := ps[repo]; ok {
		return p, nil
	}
	return ps[""], nil
}

// RepositoryPolicy returns a repository's own policy, if it has one.
func (s *Service) RepositoryPolicy(ctx context.Context, registry, repo string) (Policy, bool, error) {
	ps, err := s.policyRows(ctx, registry)
	p, ok := ps[repo]
	return p, ok, err
}

// policyRows returns a registry's policies by repository ("" the
// registry's own), cached.
func (s *Service) policyRows(ctx context.Context, registry string) (map[string]Policy, error) {
	s.mu.Lock()
	ps, ok := s.policies[registry]
	s.mu.Unlock()
	if ok {
		return ps, nil
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT repository, scan_on_push, quarantine_severity FROM scan_policies WHERE registry = ?`, registry)
	if err != nil {
		return nil, fmt.Errorf("reading the scan policies of %s: %w", registry, err)
	}
	defer rows.Close()
	ps = map[string]Policy{}
	for rows.Next() {
		var repo, q string
		var on int
		if err := rows.Scan(&repo, &on, &q); err != nil {
			return nil, err
		}
		ps[repo] = Policy{ScanOnPush: on != 0, Quarantine: vulndb.Severity(q)}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.policies[registry] = ps
	s.mu.Unlock()
	return ps, nil
}

// Forget drops what the service caches of a registry (deleted: its
// policy rows went with it).
func (s *Service) Forget(registry string) {
	s.mu.Lock()
	delete(s.policies, registry)
	s.mu.Unlock()
}

// SetPolicy sets a registry's own scan policy (repo "") or a repository's.
func (s *Service) SetPolicy(ctx context.Context, registry, repo string, p Policy) error {
	on := 0
	if p.ScanOnPush {
		on = 1
	}
	_, err := s.db.W.ExecContext(ctx, `INSERT INTO scan_policies(registry, repository, scan_on_push, quarantine_severity) VALUES (?, ?, ?, ?)
		ON CONFLICT(registry, repository) DO UPDATE SET scan_on_push = excluded.scan_on_push, quarantine_severity = excluded.quarantine_severity`,
		registry, repo, on, string(p.Quarantine))
	s.Forget(registry)
	if db.IsForeignKeyViolation(err) {
		return fmt.Errorf("registry %s: %w", registry, store.ErrRegistryUnknown)
	}
	if err != nil {
		return fmt.Errorf("storing the scan policy of %s: %w", registry, err)
	}
	return nil
}

// RemovePolicy removes a repository's own policy: its registry's applies
// again.
func (s *Service) RemovePolicy(ctx context.Context, registry, repo string) error {
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM scan_policies WHERE registry = ? AND repository = ? AND repository <> ''`, registry, repo)
	s.Forget(registry)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("repository %s of registry %s has no scan policy of its own: %w", repo, registry, errdefs.ErrNotFound)
	}
	return nil
}

// AdmitPull refuses the pull of a manifest that the registry's quarantine
// policy holds back (registry.PullGate): an image or index with a finding
// at or above the policy's severity that is not allowlisted, or not
// scanned. Artifacts (SBOMs, signatures, reports) pass.
func (s *Service) AdmitPull(ctx context.Context, registry, repo string, m store.Manifest) error {
	p, err := s.PolicyFor(ctx, registry, repo)
	if err != nil || p.Quarantine == "" {
		return err
	}
	pm, err := manifest.Parse(m.MediaType, m.Body)
	if err != nil || pm.Subject != nil || !manifest.IsIndex(pm.MediaType) && (pm.Config == nil || !isImageConfig(pm.Config.MediaType)) {
		return nil
	}
	ref := repo + "@" + m.Digest.String()
	show := fmt.Sprintf("gantry scan show -r %s --image %s", registry, ref)
	rep, err := s.report(ctx, registry, m.Digest)
	if errors.Is(err, ErrNoReport) {
		return fmt.Errorf("%s is quarantined: it has not been scanned yet (%s quarantines images not scanned or with findings at or above %s; scan it: gantry scan -r %s --image %s): %w",
			ref, registry+"/"+repo, p.Quarantine, registry, ref, ErrQuarantined)
	}
	if err != nil {
		return err
	}
	if rep.Status == StatusUnscanned {
		return fmt.Errorf("%s is quarantined: no package could be identified in it, so it cannot be shown to be free of findings at or above %s (%s): %w",
			ref, p.Quarantine, show, ErrQuarantined)
	}
	if n := rep.Summary.AtOrAbove(p.Quarantine); n > 0 {
		return fmt.Errorf("%s is quarantined: %d %s at or above %s (see them: %s): %w",
			ref, n, plural(n, "finding", "findings"), p.Quarantine, show, ErrQuarantined)
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// AllowEntry is an advisory accepted until an expiry.
type AllowEntry struct {
	// Registry is "" for every registry.
	Registry  string
	ID        string
	Expires   time.Time // zero: never
	Reason    string
	CreatedBy string
	CreatedAt time.Time
}

// Allow adds (or replaces) an allowlist entry.
func (s *Service) Allow(ctx context.Context, e AllowEntry) error {
	e.ID = strings.TrimSpace(e.ID)
	if e.ID == "" {
		return fmt.Errorf("advisory ID: must be set: %w", errdefs.ErrInvalid)
	}
	if !e.Expires.IsZero() && !e.Expires.After(s.now()) {
		return fmt.Errorf("expiry %s is in the past: %w", e.Expires.Format(time.RFC3339), errdefs.ErrInvalid)
	}
	_, err := s.db.W.ExecContext(ctx, `INSERT INTO scan_allowlist(registry, id, expires, reason, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(registry, id) DO UPDATE SET expires = excluded.expires, reason = excluded.reason,
			created_by = excluded.created_by, created_at = excluded.created_at`,
		e.Registry, e.ID, db.FormatTimeOrEmpty(e.Expires), e.Reason, e.CreatedBy, db.FormatTime(s.now()))
	if err != nil {
		return fmt.Errorf("storing allowlist entry %s: %w", e.ID, err)
	}
	return nil
}

// Disallow removes an allowlist entry.
func (s *Service) Disallow(ctx context.Context, registry, id string) error {
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM scan_allowlist WHERE registry = ? AND id = ?`, registry, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		where := "the global allowlist"
		if registry != "" {
			where = "the allowlist of registry " + registry
		}
		return fmt.Errorf("advisory %s is not in %s: %w", id, where, errdefs.ErrNotFound)
	}
	return nil
}

// Allowlist lists the entries of a registry and the global ones (registry
// "" lists every entry), expired ones included.
func (s *Service) Allowlist(ctx context.Context, registry string) ([]AllowEntry, error) {
	q := `SELECT registry, id, expires, reason, created_by, created_at FROM scan_allowlist`
	var args []any
	if registry != "" {
		q += ` WHERE registry IN ('', ?)`
		args = append(args, registry)
	}
	rows, err := s.db.R.QueryContext(ctx, q+` ORDER BY registry, id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AllowEntry
	for rows.Next() {
		var e AllowEntry
		var exp, created string
		if err := rows.Scan(&e.Registry, &e.ID, &exp, &e.Reason, &e.CreatedBy, &created); err != nil {
			return nil, err
		}
		if exp != "" {
			e.Expires = db.ParseTime(exp)
		}
		e.CreatedAt = db.ParseTime(created)
		out = append(out, e)
	}
	return out, rows.Err()
}

// allowlist returns the check of the entries in force for a registry.
func (s *Service) allowlist(ctx context.Context, registry string) (func(id string, aliases []string) bool, error) {
	es, err := s.Allowlist(ctx, registry)
	if err != nil {
		return nil, err
	}
	if registry == "" {
		es = slices.DeleteFunc(es, func(e AllowEntry) bool { return e.Registry != "" })
	}
	now := s.now()
	ids := map[string]bool{}
	for _, e := range es {
		if e.Expires.IsZero() || e.Expires.After(now) {
			ids[strings.ToUpper(e.ID)] = true
		}
	}
	return func(id string, aliases []string) bool {
		if ids[strings.ToUpper(id)] {
			return true
		}
		for _, a := range aliases {
			if ids[strings.ToUpper(a)] {
				return true
			}
		}
		return false
	}, nil
}
