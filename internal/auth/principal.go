package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
)

// Principal is anything that can hold permissions: the admin user, a token
// or a task identity.
type Principal struct {
	ID        string
	Kind      Kind // KindAdmin, KindToken or KindIdentity
	Name      string
	CreatedAt time.Time
}

func principalKind(dbKind string) Kind {
	switch dbKind {
	case "user":
		return KindAdmin
	case "token":
		return KindToken
	default:
		return KindIdentity
	}
}

// CreateIdentity creates a task identity (the equivalent of a system-assigned
// managed identity) and returns it; its ID is the principal ID that role
// assignments and vault policies name. name is a display name such as
// "task:contoso/hello-world".
func (s *Service) CreateIdentity(ctx context.Context, name string) (Principal, error) {
	if name == "" || len(name) > 200 || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return Principal{}, fmt.Errorf("identity name %q: must be 1-200 printable characters: %w", name, ErrInvalid)
	}
	p := Principal{ID: uuid.NewString(), Kind: KindIdentity, Name: name, CreatedAt: s.now().UTC()}
	_, err := s.db.W.ExecContext(ctx, `INSERT INTO principals(id, kind, name, created_at) VALUES (?, 'identity', ?, ?)`,
		p.ID, p.Name, timeText(p.CreatedAt))
	if err != nil {
		return Principal{}, fmt.Errorf("creating identity %q: %w", name, err)
	}
	s.log.InfoContext(ctx, "identity created", "principal", p.ID, "name", name)
	return p, nil
}

// DeleteIdentity deletes a task identity with its role assignments, vault
// policies and run credentials.
func (s *Service) DeleteIdentity(ctx context.Context, id string) error {
	p, err := s.Principal(ctx, id)
	if err != nil {
		return err
	}
	if p.Kind != KindIdentity {
		return fmt.Errorf("principal %s is a %s, not an identity: %w", id, p.Kind, ErrInvalid)
	}
	if _, err := s.db.W.ExecContext(ctx, `DELETE FROM principals WHERE id = ?`, id); err != nil {
		return fmt.Errorf("deleting identity %s: %w", id, err)
	}
	s.changed(ctx, "identity deleted", "principal", id)
	return nil
}

// Principal returns the principal with the given ID.
func (s *Service) Principal(ctx context.Context, id string) (Principal, error) {
	var p Principal
	var kind, created string
	err := s.db.R.QueryRowContext(ctx, `SELECT id, kind, name, created_at FROM principals WHERE id = ?`, id).
		Scan(&p.ID, &kind, &p.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, fmt.Errorf("principal %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("reading principal %q: %w", id, err)
	}
	p.Kind = principalKind(kind)
	p.CreatedAt = parseTime(created)
	return p, nil
}

// Role is a built-in role of a role assignment.
type Role string

// Built-in roles.
const (
	// RoleAcrPull allows pulling (content/read, metadata/read).
	RoleAcrPull Role = "acrpull"
	// RoleAcrPush allows pulling and pushing (adds content/write,
	// metadata/write).
	RoleAcrPush Role = "acrpush"
	// RoleOwner allows everything under its scope, including deletes and
	// control-plane operations (OpRead, OpWrite).
	RoleOwner Role = "owner"
)

// ParseRole parses a role name case-insensitively ("AcrPull", "Owner").
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(s)); r {
	case RoleAcrPull, RoleAcrPush, RoleOwner:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want acrpull, acrpush or owner: %w", s, ErrInvalid)
}

func (r Role) actions() actionSet {
	switch r {
	case RoleAcrPull:
		return aContentRead | aMetadataRead
	case RoleAcrPush:
		return aContentRead | aContentWrite | aMetadataRead | aMetadataWrite
	case RoleOwner:
		return aAll
	}
	return 0
}

// RoleAssignment grants a role to a principal at a scope.
type RoleAssignment struct {
	ID        string
	Principal string
	Role      Role
	// Scope is one of /registries/<name>,
	// /registries/<name>/repositories/<repository>, /containers,
	// /containers/<name>.
	Scope     string
	CreatedAt time.Time
}

// CreateRoleAssignment grants role to the task identity principal at scope.
// Registry scopes must name an existing registry; the assignment goes away
// with the registry and with the principal.
func (s *Service) CreateRoleAssignment(ctx context.Context, principal string, role Role, scope string) (RoleAssignment, error) {
	role, err := ParseRole(string(role))
	if err != nil {
		return RoleAssignment{}, err
	}
	sc, err := parseAssignableScope(scope)
	if err != nil {
		return RoleAssignment{}, err
	}
	p, err := s.Principal(ctx, principal)
	if err != nil {
		return RoleAssignment{}, err
	}
	if p.Kind != KindIdentity {
		return RoleAssignment{}, fmt.Errorf("principal %s is a %s; roles are assigned to identities: %w", principal, p.Kind, ErrInvalid)
	}
	a := RoleAssignment{ID: uuid.NewString(), Principal: principal, Role: role, Scope: sc.path, CreatedAt: s.now().UTC()}
	var reg any
	if sc.registry != "" {
		reg = sc.registry
	}
	_, err = s.db.W.ExecContext(ctx, `INSERT INTO role_assignments(id, principal_id, role, scope, registry, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		a.ID, a.Principal, string(a.Role), a.Scope, reg, timeText(a.CreatedAt))
	if err != nil {
		switch {
		case isUniqueViolation(err):
			return RoleAssignment{}, fmt.Errorf("role assignment %s %s at %s: %w", principal, role, a.Scope, ErrExists)
		case isForeignKeyViolation(err):
			return RoleAssignment{}, fmt.Errorf("registry %q: %w", sc.registry, ErrNotFound)
		}
		return RoleAssignment{}, fmt.Errorf("creating role assignment: %w", err)
	}
	s.changed(ctx, "role assigned", "principal", principal, "role", string(role), "scope", a.Scope)
	return a, nil
}

// RoleFilter selects role assignments; empty fields match anything.
type RoleFilter struct {
	ID        string
	Principal string
	Role      Role
	Scope     string
}

func (f RoleFilter) where() (string, []any, error) {
	var conds []string
	var args []any
	if f.ID != "" {
		conds, args = append(conds, "id = ?"), append(args, f.ID)
	}
	if f.Principal != "" {
		conds, args = append(conds, "principal_id = ?"), append(args, f.Principal)
	}
	if f.Role != "" {
		r, err := ParseRole(string(f.Role))
		if err != nil {
			return "", nil, err
		}
		conds, args = append(conds, "role = ?"), append(args, string(r))
	}
	if f.Scope != "" {
		sc, err := parseAssignableScope(f.Scope)
		if err != nil {
			return "", nil, err
		}
		conds, args = append(conds, "scope = ?"), append(args, sc.path)
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

// ListRoleAssignments returns the assignments matching f, oldest first.
func (s *Service) ListRoleAssignments(ctx context.Context, f RoleFilter) ([]RoleAssignment, error) {
	where, args, err := f.where()
	if err != nil {
		return nil, err
	}
	return s.queryRoleAssignments(ctx, where, args)
}

func (s *Service) queryRoleAssignments(ctx context.Context, where string, args []any) ([]RoleAssignment, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, principal_id, role, scope, created_at FROM role_assignments`+where+` ORDER BY created_at, rowid`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing role assignments: %w", err)
	}
	defer rows.Close()
	var out []RoleAssignment
	for rows.Next() {
		var a RoleAssignment
		var role, created string
		if err := rows.Scan(&a.ID, &a.Principal, &role, &a.Scope, &created); err != nil {
			return nil, fmt.Errorf("listing role assignments: %w", err)
		}
		a.Role, a.CreatedAt = Role(role), parseTime(created)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing role assignments: %w", err)
	}
	return out, nil
}

// DeleteRoleAssignments deletes the assignments matching f and returns how
// many there were. At least one field of f must be set; no match is
// ErrNotFound.
func (s *Service) DeleteRoleAssignments(ctx context.Context, f RoleFilter) (int, error) {
	where, args, err := f.where()
	if err != nil {
		return 0, err
	}
	if where == "" {
		return 0, fmt.Errorf("deleting role assignments: no assignment, principal, role or scope given: %w", ErrInvalid)
	}
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM role_assignments`+where, args...)
	if err != nil {
		return 0, fmt.Errorf("deleting role assignments: %w", err)
	}
	n, _ := res.RowsAffected()
	if n == 0 {
		return 0, fmt.Errorf("role assignment: %w", ErrNotFound)
	}
	s.changed(ctx, "role assignments deleted", "count", n)
	return int(n), nil
}

// rolesOf returns the principal's role assignments (cached).
func (s *Service) rolesOf(ctx context.Context, principal string) ([]RoleAssignment, error) {
	if principal == "" {
		return nil, nil
	}
	return cached(s, s.roles, principal, func() ([]RoleAssignment, error) {
		return s.queryRoleAssignments(ctx, " WHERE principal_id = ?", []any{principal})
	})
}

// Scopes. A scope is a path naming a resource of the control plane.

// RegistryScope returns the scope path of a registry.
func RegistryScope(registry string) string { return "/registries/" + registry }

// RepositoryScope returns the scope path of a repository.
func RepositoryScope(registry, repository string) string {
	return "/registries/" + registry + "/repositories/" + repository
}

// ContainersScope is the scope of every container instance.
const ContainersScope = "/containers"

// ContainerScope returns the scope path of one container instance.
func ContainerScope(name string) string { return ContainersScope + "/" + name }

type scopeKind int

const (
	scopeOther      scopeKind = iota // "/", "/registries", "/vaults/...": admin only
	scopeRegistry                    // /registries/<r> and anything under it but repositories
	scopeRepository                  // /registries/<r>/repositories/<repo>
	scopeContainers                  // /containers
	scopeContainer                   // /containers/<name>[/...]
)

type scope struct {
	kind       scopeKind
	path       string // normalized
	registry   string
	repository string
	container  string
	sub        bool // a sub-resource of the registry or container (not the object itself)
}

// parseScope parses a control-plane scope path.
func parseScope(p string) (scope, error) {
	bad := func(why string) (scope, error) {
		return scope{}, fmt.Errorf("scope %q: %s: %w", p, why, ErrInvalid)
	}
	if !strings.HasPrefix(p, "/") {
		return bad("must start with /")
	}
	trimmed := strings.TrimSuffix(p, "/")
	if trimmed == "" {
		return scope{kind: scopeOther, path: "/"}, nil
	}
	segs := strings.Split(trimmed[1:], "/")
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return bad("empty, . or .. path segment")
		}
	}
	sc := scope{kind: scopeOther, path: "/" + strings.Join(segs, "/")}
	switch segs[0] {
	case "registries":
		if len(segs) == 1 {
			return sc, nil
		}
		sc.kind, sc.registry = scopeRegistry, segs[1]
		if len(segs) >= 4 && segs[2] == "repositories" {
			sc.kind, sc.repository = scopeRepository, strings.Join(segs[3:], "/")
			if !repositoryName.MatchString(sc.repository) {
				return bad("invalid repository name")
			}
		} else {
			sc.sub = len(segs) > 2
		}
	case "containers":
		sc.kind = scopeContainers
		if len(segs) >= 2 {
			sc.kind, sc.container, sc.sub = scopeContainer, segs[1], len(segs) > 2
		}
	}
	return sc, nil
}

// parseAssignableScope parses the scope of a role assignment.
func parseAssignableScope(p string) (scope, error) {
	sc, err := parseScope(p)
	if err != nil {
		return scope{}, err
	}
	if sc.kind == scopeOther || sc.sub {
		return scope{}, fmt.Errorf("scope %q: want /registries/<name>, /registries/<name>/repositories/<repository>, /containers or /containers/<name>: %w", p, ErrInvalid)
	}
	return sc, nil
}

// covers reports whether an assignment at a grants on q.
func (a scope) covers(q scope) bool {
	switch a.kind {
	case scopeRegistry:
		return (q.kind == scopeRegistry || q.kind == scopeRepository) && q.registry == a.registry
	case scopeRepository:
		return q.kind == scopeRepository && q.registry == a.registry && q.repository == a.repository
	case scopeContainers:
		return q.kind == scopeContainers || q.kind == scopeContainer
	case scopeContainer:
		return q.kind == scopeContainer && q.container == a.container
	}
	return false
}
