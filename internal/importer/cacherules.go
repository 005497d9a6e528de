package importer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/store"
)

// CacheRuleUpdate changes a cache rule; nil fields stay. An empty
// CredentialSet removes it (anonymous access).
type CacheRuleUpdate struct {
	CredentialSet *string
}

// rulesRefresh is how often the in-memory rules are re-read even without a
// write through this service (a registry deleted elsewhere, another server).
const rulesRefresh = 30 * time.Second

// ruleSnapshot is every registry's rules, as last read.
type ruleSnapshot struct {
	byRegistry map[string]*ruleSet
	loadedAt   time.Time
}

const ruleCols = `registry, name, source_repo, target_repo, credential_set, created_at, updated_at`

func scanRule(sc interface{ Scan(...any) error }) (CacheRule, error) {
	var r CacheRule
	var created, updated string
	if err := sc.Scan(&r.Registry, &r.Name, &r.SourceRepository, &r.TargetRepository, &r.CredentialSet, &created, &updated); err != nil {
		return CacheRule{}, err
	}
	r.CreatedAt, r.UpdatedAt = parseTime(created), parseTime(updated)
	return r, nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryRules(ctx context.Context, q queryer, where string, args ...any) ([]CacheRule, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+ruleCols+` FROM cache_rules `+where+` ORDER BY registry, name`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading cache rules: %w", err)
	}
	defer rows.Close()
	out := []CacheRule{}
	for rows.Next() {
		r, err := scanRule(rows)
		if err != nil {
			return nil, fmt.Errorf("reading cache rules: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// loadRules re-reads every rule into the in-memory snapshot.
func (s *Service) loadRules(ctx context.Context) (*ruleSnapshot, error) {
	all, err := queryRules(ctx, s.db.R, "")
	if err != nil {
		return nil, err
	}
	grouped := map[string][]compiledRule{}
	for _, r := range all {
		c, err := compileRule(r)
		if err != nil {
			s.log.ErrorContext(ctx, "ignoring invalid cache rule", "registry", r.Registry, "rule", r.Name, "err", err)
			continue
		}
		grouped[r.Registry] = append(grouped[r.Registry], c)
	}
	snap := &ruleSnapshot{byRegistry: map[string]*ruleSet{}, loadedAt: s.now()}
	for reg, rs := range grouped {
		snap.byRegistry[reg] = newRuleSet(rs)
	}
	s.rules.Store(snap)
	return snap, nil
}

// ruleFor returns the cache rule covering a repository, if any, and the
// upstream repository it maps to.
func (s *Service) ruleFor(ctx context.Context, registry, repo string) (*compiledRule, string, bool) {
	snap := s.rules.Load()
	if snap == nil || s.now().Sub(snap.loadedAt) > rulesRefresh {
		s.rulesMu.Lock()
		if cur := s.rules.Load(); cur != nil && cur != snap && s.now().Sub(cur.loadedAt) <= rulesRefresh {
			snap = cur
		} else if fresh, err := s.loadRules(ctx); err == nil {
			snap = fresh
		} else {
			s.log.ErrorContext(ctx, "reloading cache rules", "err", err)
		}
		s.rulesMu.Unlock()
		if snap == nil {
			return nil, "", false
		}
	}
	return snap.byRegistry[registry].match(repo)
}

// reloadRules refreshes the snapshot after a write.
func (s *Service) reloadRules(ctx context.Context) {
	s.rulesMu.Lock()
	defer s.rulesMu.Unlock()
	if _, err := s.loadRules(ctx); err != nil {
		s.log.ErrorContext(ctx, "reloading cache rules", "err", err)
		s.rules.Store(nil) // force a reload on next use
	}
}

// checkCredentialSet verifies that a rule's credential set exists and is
// for the rule's source login server.
func (s *Service) checkCredentialSet(ctx context.Context, r compiledRule) error {
	if r.CredentialSet == "" {
		return nil
	}
	cs, err := s.getCredentialSet(ctx, r.Registry, r.CredentialSet)
	if err != nil {
		return err
	}
	if cs.LoginServer != r.source.host {
		return invalid("cache rule %q: credential set %q is for login server %q, the source is on %q",
			r.Name, cs.Name, cs.LoginServer, r.source.host)
	}
	return nil
}

// CreateCacheRule creates a cache rule. Wildcard rules may not overlap each
// other and static rules may not share a target (ErrConflict); a static
// target must not exist yet as a repository (it would mix pushed and cached
// content), as in ACR.
func (s *Service) CreateCacheRule(ctx context.Context, r CacheRule) (CacheRule, error) {
	c, err := compileRule(r)
	if err != nil {
		return CacheRule{}, err
	}
	if _, err := s.st.GetRegistry(ctx, r.Registry); err != nil {
		return CacheRule{}, err
	}
	// Only the admin and registry owners create rules (Local reach); the
	// source is checked again, by address, at every fetch.
	if err := s.remote.CheckURL(s.remote.Scheme(c.source.host), c.source.host, egress.Local); err != nil {
		return CacheRule{}, fmt.Errorf("cache rule %q: %w", r.Name, err)
	}
	if err := s.checkCredentialSet(ctx, c); err != nil {
		return CacheRule{}, err
	}
	if !c.target.wildcard {
		if _, err := s.st.GetRepository(ctx, r.Registry, c.target.path); err == nil {
			return CacheRule{}, fmt.Errorf("cache rule %q: repository %q already exists in registry %q; choose a new target repository or delete it first: %w",
				r.Name, c.target.path, r.Registry, ErrConflict)
		} else if !errors.Is(err, store.ErrRepositoryUnknown) {
			return CacheRule{}, err
		}
	}
	now := s.now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	tx, err := s.db.W.BeginTx(ctx, nil)
	if err != nil {
		return CacheRule{}, fmt.Errorf("creating cache rule %q: %w", r.Name, err)
	}
	defer tx.Rollback()
	existing, err := queryRules(ctx, tx, "WHERE registry = ?", r.Registry)
	if err != nil {
		return CacheRule{}, err
	}
	others := make([]compiledRule, 0, len(existing))
	for _, e := range existing {
		if e.Name == r.Name {
			return CacheRule{}, fmt.Errorf("cache rule %q in registry %q: %w", r.Name, r.Registry, ErrExists)
		}
		if ec, err := compileRule(e); err == nil {
			others = append(others, ec)
		}
	}
	if len(existing) >= MaxCacheRules {
		return CacheRule{}, fmt.Errorf("registry %q has %d cache rules, the limit: %w", r.Registry, MaxCacheRules, ErrConflict)
	}
	if err := checkOverlap(c, others); err != nil {
		return CacheRule{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO cache_rules(`+ruleCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		c.Registry, c.Name, c.SourceRepository, c.TargetRepository, c.CredentialSet, formatTime(now), formatTime(now)); err != nil {
		return CacheRule{}, fmt.Errorf("creating cache rule %q: %w", r.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return CacheRule{}, fmt.Errorf("creating cache rule %q: %w", r.Name, err)
	}
	s.reloadRules(ctx)
	s.log.InfoContext(ctx, "cache rule created", "registry", c.Registry, "rule", c.Name, "source", c.SourceRepository, "target", c.TargetRepository)
	return c.CacheRule, nil
}

// GetCacheRule returns a cache rule.
func (s *Service) GetCacheRule(ctx context.Context, registry, name string) (CacheRule, error) {
	rs, err := queryRules(ctx, s.db.R, "WHERE registry = ? AND name = ?", registry, name)
	if err != nil {
		return CacheRule{}, err
	}
	if len(rs) == 0 {
		return CacheRule{}, fmt.Errorf("cache rule %q in registry %q: %w", name, registry, ErrNotFound)
	}
	return rs[0], nil
}

// ListCacheRules returns a registry's cache rules by name.
func (s *Service) ListCacheRules(ctx context.Context, registry string) ([]CacheRule, error) {
	if _, err := s.st.GetRegistry(ctx, registry); err != nil {
		return nil, err
	}
	return queryRules(ctx, s.db.R, "WHERE registry = ?", registry)
}

// UpdateCacheRule changes a cache rule's credential set.
func (s *Service) UpdateCacheRule(ctx context.Context, registry, name string, u CacheRuleUpdate) (CacheRule, error) {
	r, err := s.GetCacheRule(ctx, registry, name)
	if err != nil {
		return CacheRule{}, err
	}
	if u.CredentialSet != nil {
		r.CredentialSet = *u.CredentialSet
	}
	c, err := compileRule(r)
	if err != nil {
		return CacheRule{}, err
	}
	if err := s.checkCredentialSet(ctx, c); err != nil {
		return CacheRule{}, err
	}
	c.UpdatedAt = s.now().UTC()
	res, err := s.db.W.ExecContext(ctx, `UPDATE cache_rules SET credential_set = ?, updated_at = ? WHERE registry = ? AND name = ?`,
		c.CredentialSet, formatTime(c.UpdatedAt), registry, name)
	if err != nil {
		return CacheRule{}, fmt.Errorf("updating cache rule %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return CacheRule{}, fmt.Errorf("cache rule %q in registry %q: %w", name, registry, ErrNotFound)
	}
	s.reloadRules(ctx)
	s.log.InfoContext(ctx, "cache rule updated", "registry", registry, "rule", name, "credentialSet", c.CredentialSet)
	return c.CacheRule, nil
}

// DeleteCacheRule deletes a cache rule. What it cached stays in the
// registry (and is now writable).
func (s *Service) DeleteCacheRule(ctx context.Context, registry, name string) error {
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM cache_rules WHERE registry = ? AND name = ?`, registry, name)
	if err != nil {
		return fmt.Errorf("deleting cache rule %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("cache rule %q in registry %q: %w", name, registry, ErrNotFound)
	}
	s.reloadRules(ctx)
	s.log.InfoContext(ctx, "cache rule deleted", "registry", registry, "rule", name)
	return nil
}

// CheckPush implements registry.PushGuard: pushes into a repository a cache
// rule covers are refused.
func (s *Service) CheckPush(ctx context.Context, registry, repo string) error {
	r, _, ok := s.ruleFor(ctx, registry, repo)
	if !ok {
		return nil
	}
	return fmt.Errorf("repository %q is the target of cache rule %q (pull-through from %s); pushes and imports into it are refused, delete the rule to write there: %w",
		repo, r.Name, r.SourceRepository, ErrCacheTarget)
}
