package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Scope-map actions on repositories.
const (
	ContentRead   = "content/read"   // pull
	ContentWrite  = "content/write"  // push (use with content/read)
	ContentDelete = "content/delete" // delete manifests and repositories
	MetadataRead  = "metadata/read"  // list tags and manifests
	MetadataWrite = "metadata/write" // untag, change attributes
)

// scopeActions lists the scope-map actions in canonical (sorted) order.
var scopeActions = []string{ContentDelete, ContentRead, ContentWrite, MetadataRead, MetadataWrite}

// ScopeActions returns the scope-map actions in canonical order.
func ScopeActions() []string { return slices.Clone(scopeActions) }

type actionSet uint8

const (
	aContentRead actionSet = 1 << iota
	aContentWrite
	aContentDelete
	aMetadataRead
	aMetadataWrite

	aAll = aContentRead | aContentWrite | aContentDelete | aMetadataRead | aMetadataWrite
)

func actionBit(a string) actionSet {
	switch a {
	case ContentRead:
		return aContentRead
	case ContentWrite:
		return aContentWrite
	case ContentDelete:
		return aContentDelete
	case MetadataRead:
		return aMetadataRead
	case MetadataWrite:
		return aMetadataWrite
	}
	return 0
}

func (s actionSet) names() []string {
	var out []string
	for _, a := range scopeActions {
		if s&actionBit(a) != 0 {
			out = append(out, a)
		}
	}
	return out
}

// Built-in (system-defined) scope maps, present in every registry. They
// cannot be edited or deleted.
const (
	ScopeMapPull  = "_repositories_pull"
	ScopeMapPush  = "_repositories_push"
	ScopeMapAdmin = "_repositories_admin"
)

var systemScopeMaps = map[string]ScopeMap{
	ScopeMapPull: {Name: ScopeMapPull, System: true, Description: "Can pull any repository of the registry",
		Rules: []RepositoryRule{{Repository: "*", Actions: []string{ContentRead, MetadataRead}}}},
	ScopeMapPush: {Name: ScopeMapPush, System: true, Description: "Can push to any repository of the registry",
		Rules: []RepositoryRule{{Repository: "*", Actions: []string{ContentRead, ContentWrite, MetadataRead, MetadataWrite}}}},
	ScopeMapAdmin: {Name: ScopeMapAdmin, System: true, Description: "Can perform all read, write and delete operations on the registry",
		Rules: []RepositoryRule{{Repository: "*", Actions: ScopeActions()}}},
}

// ScopeMap is a named set of repository permissions in a registry.
type ScopeMap struct {
	Registry    string
	Name        string
	Description string
	// System is true for the built-in maps.
	System bool
	// Rules are sorted by repository pattern; actions are in canonical order.
	Rules     []RepositoryRule
	CreatedAt time.Time // zero for system maps
}

// Actions returns the scope-map actions the map grants on repository: the
// union over every matching rule (permissions are additive).
func (m ScopeMap) Actions(repository string) []string {
	return compileRules(m.Rules).match(repository).names()
}

// RepositoryRule grants actions on the repositories matching a pattern.
//
// A pattern is a repository name, a name followed by "/*" (every repository
// below it, at any depth, but not the name itself), or "*" (every
// repository). "*" may appear only once and only as a whole last path
// segment: "sample/*/teamA" and "sample/teamA*" are invalid.
type RepositoryRule struct {
	Repository string
	Actions    []string
}

// repositoryName is the OCI distribution-spec repository name grammar.
var repositoryName = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// ValidatePattern checks a repository pattern of a scope-map rule.
func ValidatePattern(p string) error {
	bad := func(why string) error { return fmt.Errorf("repository pattern %q: %s: %w", p, why, ErrInvalid) }
	switch {
	case p == "*":
		return nil
	case p == "":
		return bad("empty")
	case strings.Count(p, "*") > 1:
		return bad(`only one "*" is allowed, as the last path segment ("samples/*") or alone ("*")`)
	case strings.HasSuffix(p, "/*"):
		if !repositoryName.MatchString(strings.TrimSuffix(p, "/*")) {
			return bad("invalid repository name before /*")
		}
		return nil
	case strings.Contains(p, "*"):
		return bad(`"*" must be the whole last path segment ("samples/*") or the whole pattern ("*")`)
	case !repositoryName.MatchString(p):
		return bad("invalid repository name (lowercase letters, digits, separators . _ __ -, path components separated by /)")
	}
	return nil
}

// normalizeRules validates rules and merges rules with the same pattern.
// With allowEmpty, a rule without actions is kept (it means "every action"
// in a removal).
func normalizeRules(rules []RepositoryRule, allowEmpty bool) ([]RepositoryRule, error) {
	merged := map[string]actionSet{}
	for _, r := range rules {
		if err := ValidatePattern(r.Repository); err != nil {
			return nil, err
		}
		set := merged[r.Repository]
		for _, a := range r.Actions {
			bit := actionBit(a)
			if bit == 0 {
				return nil, fmt.Errorf("action %q for repository %q: want one of %s: %w",
					a, r.Repository, strings.Join(scopeActions, ", "), ErrInvalid)
			}
			set |= bit
		}
		if set == 0 && !allowEmpty {
			return nil, fmt.Errorf("repository %q: no actions given: %w", r.Repository, ErrInvalid)
		}
		merged[r.Repository] = set
	}
	out := make([]RepositoryRule, 0, len(merged))
	for repo, set := range merged {
		out = append(out, RepositoryRule{Repository: repo, Actions: set.names()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Repository < out[j].Repository })
	return out, nil
}

// rule is a compiled repository rule.
type rule struct {
	all     bool
	prefix  string // "samples/" for "samples/*"
	exact   string
	actions actionSet
}

type rules []rule

func compileRules(rs []RepositoryRule) rules {
	out := make(rules, 0, len(rs))
	for _, r := range rs {
		var set actionSet
		for _, a := range r.Actions {
			set |= actionBit(a)
		}
		c := rule{actions: set}
		switch {
		case r.Repository == "*":
			c.all = true
		case strings.HasSuffix(r.Repository, "/*"):
			c.prefix = strings.TrimSuffix(r.Repository, "*")
		default:
			c.exact = r.Repository
		}
		out = append(out, c)
	}
	return out
}

func (rs rules) match(repo string) actionSet {
	var set actionSet
	for _, r := range rs {
		if r.all || (r.prefix != "" && strings.HasPrefix(repo, r.prefix)) || (r.exact != "" && r.exact == repo) {
			set |= r.actions
		}
	}
	return set
}

// scopeMapName is the grammar of user-defined scope map names (system maps
// start with "_").
var scopeMapName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{4,59}$`)

func validateScopeMapName(name string) error {
	if _, ok := systemScopeMaps[name]; ok {
		return fmt.Errorf("scope map %s is system-defined and cannot be created, edited or deleted: %w", name, ErrInvalid)
	}
	if !scopeMapName.MatchString(name) {
		return fmt.Errorf("scope map name %q: want 5-60 letters, digits and hyphens: %w", name, ErrInvalid)
	}
	return nil
}

// CreateScopeMap creates a user-defined scope map in registry.
func (s *Service) CreateScopeMap(ctx context.Context, registry, name, description string, rs []RepositoryRule) (ScopeMap, error) {
	var m ScopeMap
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		m, err = s.createScopeMap(ctx, tx, registry, name, description, rs)
		return err
	})
	if err != nil {
		return ScopeMap{}, err
	}
	s.changed(ctx, "scope map created", "registry", registry, "scope_map", name)
	return m, nil
}

func (s *Service) createScopeMap(ctx context.Context, tx *sql.Tx, registry, name, description string, rs []RepositoryRule) (ScopeMap, error) {
	if err := validateScopeMapName(name); err != nil {
		return ScopeMap{}, err
	}
	rs, err := normalizeRules(rs, false)
	if err != nil {
		return ScopeMap{}, err
	}
	if len(rs) == 0 {
		return ScopeMap{}, fmt.Errorf("scope map %q: at least one repository rule is required: %w", name, ErrInvalid)
	}
	m := ScopeMap{Registry: registry, Name: name, Description: description, Rules: rs, CreatedAt: s.now().UTC()}
	_, err = tx.ExecContext(ctx, `INSERT INTO scope_maps(registry, name, description, created_at) VALUES (?, ?, ?, ?)`,
		registry, name, description, timeText(m.CreatedAt))
	if err != nil {
		switch {
		case isUniqueViolation(err):
			return ScopeMap{}, fmt.Errorf("scope map %q in registry %q: %w", name, registry, ErrExists)
		case isForeignKeyViolation(err):
			return ScopeMap{}, fmt.Errorf("registry %q: %w", registry, ErrNotFound)
		}
		return ScopeMap{}, fmt.Errorf("creating scope map %q: %w", name, err)
	}
	if err := insertRules(ctx, tx, registry, name, rs); err != nil {
		return ScopeMap{}, err
	}
	return m, nil
}

func insertRules(ctx context.Context, tx *sql.Tx, registry, name string, rs []RepositoryRule) error {
	for _, r := range rs {
		for _, a := range r.Actions {
			_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO scope_map_rules(registry, scope_map, repository, action) VALUES (?, ?, ?, ?)`,
				registry, name, r.Repository, a)
			if err != nil {
				return fmt.Errorf("writing scope map %q: %w", name, err)
			}
		}
	}
	return nil
}

// GetScopeMap returns a scope map of registry, system maps included.
func (s *Service) GetScopeMap(ctx context.Context, registry, name string) (ScopeMap, error) {
	if err := s.registryExists(ctx, s.db.R, registry); err != nil {
		return ScopeMap{}, err
	}
	return s.getScopeMap(ctx, s.db.R, registry, name)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Service) getScopeMap(ctx context.Context, q querier, registry, name string) (ScopeMap, error) {
	if m, ok := systemScopeMaps[name]; ok {
		m.Registry = registry
		return m, nil
	}
	m := ScopeMap{Registry: registry, Name: name}
	var created string
	err := q.QueryRowContext(ctx, `SELECT description, created_at FROM scope_maps WHERE registry = ? AND name = ?`, registry, name).
		Scan(&m.Description, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return ScopeMap{}, fmt.Errorf("scope map %q in registry %q: %w", name, registry, ErrNotFound)
	}
	if err != nil {
		return ScopeMap{}, fmt.Errorf("reading scope map %q: %w", name, err)
	}
	m.CreatedAt = parseTime(created)
	m.Rules, err = readRules(ctx, q, registry, name)
	if err != nil {
		return ScopeMap{}, err
	}
	return m, nil
}

func readRules(ctx context.Context, q querier, registry, name string) ([]RepositoryRule, error) {
	rows, err := q.QueryContext(ctx, `SELECT repository, action FROM scope_map_rules WHERE registry = ? AND scope_map = ?`, registry, name)
	if err != nil {
		return nil, fmt.Errorf("reading scope map %q: %w", name, err)
	}
	defer rows.Close()
	var rs []RepositoryRule
	for rows.Next() {
		var r RepositoryRule
		var a string
		if err := rows.Scan(&r.Repository, &a); err != nil {
			return nil, fmt.Errorf("reading scope map %q: %w", name, err)
		}
		r.Actions = []string{a}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading scope map %q: %w", name, err)
	}
	return normalizeRules(rs, true)
}

// ListScopeMaps returns the system maps, then the registry's own maps by name.
func (s *Service) ListScopeMaps(ctx context.Context, registry string) ([]ScopeMap, error) {
	if err := s.registryExists(ctx, s.db.R, registry); err != nil {
		return nil, err
	}
	var out []ScopeMap
	for _, name := range []string{ScopeMapAdmin, ScopeMapPull, ScopeMapPush} {
		m := systemScopeMaps[name]
		m.Registry = registry
		out = append(out, m)
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT name FROM scope_maps WHERE registry = ? ORDER BY name`, registry)
	if err != nil {
		return nil, fmt.Errorf("listing scope maps: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing scope maps: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing scope maps: %w", err)
	}
	for _, n := range names {
		m, err := s.getScopeMap(ctx, s.db.R, registry, n)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// ScopeMapUpdate changes a scope map. Remove rules without actions remove
// the repository pattern altogether; removals apply before additions.
type ScopeMapUpdate struct {
	Description *string
	Add         []RepositoryRule
	Remove      []RepositoryRule
}

// UpdateScopeMap changes a user-defined scope map. The change applies at
// once to every token using the map, including bearer tokens already issued.
func (s *Service) UpdateScopeMap(ctx context.Context, registry, name string, u ScopeMapUpdate) (ScopeMap, error) {
	if _, ok := systemScopeMaps[name]; ok {
		return ScopeMap{}, validateScopeMapName(name)
	}
	add, err := normalizeRules(u.Add, false)
	if err != nil {
		return ScopeMap{}, err
	}
	remove, err := normalizeRules(u.Remove, true)
	if err != nil {
		return ScopeMap{}, err
	}
	var m ScopeMap
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.getScopeMap(ctx, tx, registry, name); err != nil {
			return err
		}
		if u.Description != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE scope_maps SET description = ? WHERE registry = ? AND name = ?`,
				*u.Description, registry, name); err != nil {
				return fmt.Errorf("updating scope map %q: %w", name, err)
			}
		}
		for _, r := range remove {
			q, args := `DELETE FROM scope_map_rules WHERE registry = ? AND scope_map = ? AND repository = ?`, []any{registry, name, r.Repository}
			if len(r.Actions) > 0 {
				q += ` AND action IN (` + strings.TrimSuffix(strings.Repeat("?,", len(r.Actions)), ",") + `)`
				for _, a := range r.Actions {
					args = append(args, a)
				}
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("updating scope map %q: %w", name, err)
			}
		}
		if err := insertRules(ctx, tx, registry, name, add); err != nil {
			return err
		}
		var err error
		m, err = s.getScopeMap(ctx, tx, registry, name)
		return err
	})
	if err != nil {
		return ScopeMap{}, err
	}
	s.changed(ctx, "scope map updated", "registry", registry, "scope_map", name)
	return m, nil
}

// DeleteScopeMap deletes a user-defined scope map that no token uses.
func (s *Service) DeleteScopeMap(ctx context.Context, registry, name string) error {
	if _, ok := systemScopeMaps[name]; ok {
		return validateScopeMapName(name)
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		users, err := tokensUsing(ctx, tx, registry, name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("scope map %q is used by tokens %s: %w", name, strings.Join(users, ", "), ErrConflict)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM scope_maps WHERE registry = ? AND name = ?`, registry, name)
		if err != nil {
			return fmt.Errorf("deleting scope map %q: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("scope map %q in registry %q: %w", name, registry, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.changed(ctx, "scope map deleted", "registry", registry, "scope_map", name)
	return nil
}

func tokensUsing(ctx context.Context, q querier, registry, scopeMap string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM tokens WHERE registry = ? AND scope_map = ? ORDER BY name`, registry, scopeMap)
	if err != nil {
		return nil, fmt.Errorf("reading tokens: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("reading tokens: %w", err)
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// registryExists returns ErrNotFound unless the store's registries table has
// the registry.
func (s *Service) registryExists(ctx context.Context, q querier, registry string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM registries WHERE name = ?`, registry).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("registry %q: %w", registry, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("reading registry %q: %w", registry, err)
	}
	return nil
}
