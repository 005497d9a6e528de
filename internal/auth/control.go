package auth

import (
	"context"
	"fmt"
	"net/http"
)

// Operation is a control-plane operation checked by Service.Check against a
// scope path.
//
// Scope paths: "/" and other top-level paths (e.g. "/registries" to list or
// create registries, "/identities") are the admin's alone. Under
// "/registries/<r>" any sub-path names something of that registry, e.g.
// "/registries/<r>/tasks/<t>", "/registries/<r>/tokens/<n>",
// "/registries/<r>/scope-maps/<m>", "/registries/<r>/runs/<id>"; the data
// operations take "/registries/<r>/repositories/<repo>". Container instances
// are "/containers/<name>" ("/containers" to list or create them). Build
// paths with RegistryScope, RepositoryScope, ContainerScope.
//
// Who may do what:
//
//	operation        scope                     admin  token (own registry)   run / task identity
//	OpRead, OpWrite  any                       yes    no                     owner role covering the scope
//	OpCatalog        /registries/<r>           yes    never                  own registry (run); any role on /registries/<r>
//	content/read     .../repositories/<repo>   yes    scope map              own registry (run); acrpull, acrpush, owner
//	metadata/read    .../repositories/<repo>   yes    scope map              own registry (run); acrpull, acrpush, owner
//	content/write    .../repositories/<repo>   yes    scope map              own registry (run); acrpush, owner
//	metadata/write   .../repositories/<repo>   yes    scope map              own registry (run); acrpush, owner
//	content/delete   .../repositories/<repo>   yes    scope map              own registry (run); owner
//
// Anonymous callers get ErrUnauthenticated for everything: the control API
// always requires authentication.
//
// Suggested mapping of control-API calls: registry create/list/delete →
// OpWrite/OpRead on "/registries" (admin); show/update registry, tokens,
// scope maps, tasks, runs, credential sets, cache rules, role assignments at
// a scope → OpRead/OpWrite on the object's path; repository list →
// OpCatalog; show-tags/show-manifests → OpMetadataRead; untag →
// OpMetadataWrite; repository/manifest delete → OpContentDelete; import into
// a repository → OpContentWrite on the target; container instances →
// OpRead/OpWrite on ContainerScope(name). Vault operations are checked by
// package vault itself.
type Operation string

// Control-plane operations.
const (
	OpRead          Operation = "read"
	OpWrite         Operation = "write"
	OpCatalog       Operation = "catalog"
	OpContentRead   Operation = ContentRead
	OpContentWrite  Operation = ContentWrite
	OpContentDelete Operation = ContentDelete
	OpMetadataRead  Operation = MetadataRead
	OpMetadataWrite Operation = MetadataWrite
)

// Authenticate authenticates a control-API request: HTTP Basic as admin, as
// a token, or with a run credential (any user name, e.g. RunUsername), or
// Bearer with a run credential. registry is the registry the request
// targets, if any: a token logs in by its name there, or as
// "<registry>/<token>" anywhere. A request without credentials gives
// ErrUnauthenticated. Failed logins go through the brute-force limiter
// (ThrottledError).
func (s *Service) Authenticate(r *http.Request, registry string) (Identity, error) {
	id, err := s.authenticate(r, registry)
	if err == nil {
		RecordCaller(r.Context(), id)
	}
	return id, err
}

func (s *Service) authenticate(r *http.Request, registry string) (Identity, error) {
	ctx := r.Context()
	switch scheme, value := authorization(r); scheme {
	case "":
		return Identity{}, fmt.Errorf("no credentials: %w", ErrUnauthenticated)
	case "basic":
		user, pass, ok := r.BasicAuth()
		if !ok {
			return Identity{}, fmt.Errorf("malformed basic credentials: %w", ErrUnauthenticated)
		}
		sess, err := s.login(ctx, r, registry, user, pass)
		if err != nil {
			return Identity{}, err
		}
		return controlIdentity(sess)
	case "bearer":
		if !IsRunCredential(value) {
			return Identity{}, fmt.Errorf("bearer tokens on the control API must be run credentials: %w", ErrUnauthenticated)
		}
		sess, err := s.verifyRun(ctx, value)
		if err != nil {
			return Identity{}, err
		}
		return controlIdentity(sess)
	default:
		return Identity{}, fmt.Errorf("unsupported authorization scheme %q: %w", scheme, ErrUnauthenticated)
	}
}

// controlIdentity is the identity of a control-API session: a run's
// registry credential is refused there (only the alias steps get a
// control-API credential).
func controlIdentity(sess session) (Identity, error) {
	if sess.registryOnly {
		return Identity{}, fmt.Errorf("the registry credential of run %s is not accepted by the control API: %w", sess.runID, ErrUnauthenticated)
	}
	return sess.identity(), nil
}

// Check returns nil if id may perform op on the scope path, an error wrapping
// ErrDenied (or ErrUnauthenticated for anonymous callers) if not, and
// ErrInvalid for a malformed scope or an operation that does not apply to it.
// Grants are the current ones: a token disabled after authentication is
// denied.
func (s *Service) Check(ctx context.Context, id Identity, op Operation, scopePath string) error {
	if id.Anonymous() {
		return fmt.Errorf("%s %s: %w", op, scopePath, ErrUnauthenticated)
	}
	sc, err := parseScope(scopePath)
	if err != nil {
		return err
	}
	sess := sessionOf(id)
	ok := false
	switch op {
	case OpRead, OpWrite:
		if id.Admin() {
			return nil
		}
		if id.Kind == KindRun || id.Kind == KindIdentity {
			roles, err := s.rolesOf(ctx, id.Principal)
			if err != nil {
				return err
			}
			for _, a := range roles {
				if as, err := parseScope(a.Scope); err == nil && a.Role == RoleOwner && as.covers(sc) {
					ok = true
					break
				}
			}
		}
	case OpCatalog:
		if sc.kind != scopeRegistry || sc.sub {
			return fmt.Errorf("operation %s needs a registry scope, not %q: %w", op, scopePath, ErrInvalid)
		}
		if ok, err = s.catalogGrant(ctx, sess, sc.registry); err != nil {
			return err
		}
	case OpContentRead, OpContentWrite, OpContentDelete, OpMetadataRead, OpMetadataWrite:
		if sc.kind != scopeRepository {
			return fmt.Errorf("operation %s needs a repository scope, not %q: %w", op, scopePath, ErrInvalid)
		}
		set, err := s.repoGrants(ctx, sess, sc.registry, sc.repository)
		if err != nil {
			return err
		}
		ok = set&actionBit(string(op)) != 0
	default:
		return fmt.Errorf("unknown operation %q: %w", op, ErrInvalid)
	}
	if !ok {
		return fmt.Errorf("%s may not %s %s: %w", describe(sess), op, sc.path, ErrDenied)
	}
	return nil
}
