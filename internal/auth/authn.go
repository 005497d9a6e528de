package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// session is an authenticated credential: who, on whose behalf, and a
// reference to the credential that bearer and refresh tokens carry so that
// each use re-checks it is still valid.
type session struct {
	kind      Kind
	principal string
	name      string
	registry  string // home registry of a token or run
	runID     string
	ref       string
	expires   time.Time // when the credential expires; zero: never
	// registryOnly marks a run's registry credential, which the control
	// API refuses (RunGrant.RegistryOnly).
	registryOnly bool
}

func (s session) identity() Identity {
	return Identity{Principal: s.principal, Name: s.name, RunID: s.runID, Kind: s.kind, Registry: s.registry,
		credential: credentialRef{ref: s.ref, expires: s.expires}}
}

func sessionOf(id Identity) session {
	return session{kind: id.Kind, principal: id.Principal, name: id.Name, registry: id.Registry, runID: id.RunID,
		ref: id.credential.ref, expires: id.credential.expires}
}

// Failed logins that count for the brute-force limiter: a wrong secret or
// an unknown user. A right password that is expired or belongs to a disabled
// token gives other errors and does not lock the client out.
var (
	errBadCredentials   = errdefs.New("invalid username or password", ErrUnauthenticated)
	errBadRunCredential = errdefs.New("invalid or revoked run credential", errBadCredentials)
)

// login checks a user name and password (admin, token or run credential),
// through the brute-force limiter. registry is the registry a token must
// belong to ("" on the control plane unless the request targets one; there
// a token may also log in as "<registry>/<token>").
func (s *Service) login(ctx context.Context, r *http.Request, registry, username, password string) (session, error) {
	remote := remoteIP(r)
	// A token may log in as "<token>" where the request names its registry
	// and as "<registry>/<token>" anywhere: key its failures by the token
	// it names, so that the two spellings share one count and one lockout.
	reg, name := registry, username
	if before, after, ok := strings.Cut(username, "/"); ok && (registry == "" || registry == before) {
		reg, name = before, after
	}
	key := limiterKey(remote, username)
	if username != AdminUsername {
		key = limiterKey(remote, reg+"/"+name)
	}
	if IsRunCredential(password) && username != AdminUsername {
		// Runs share an address (host network) and a user name: key run
		// logins by credential so one revoked run cannot lock out the others.
		// Guessing a 256-bit run credential is hopeless anyway.
		id, _, _ := strings.Cut(strings.TrimPrefix(password, runCredentialPrefix), ".")
		key = limiterKey(remote, RunUsername+":"+id)
	}
	// admit refuses a locked-out client. It runs before anything else, and
	// again right before a slow hash: concurrent attempts all pass the first
	// check before any of them has failed, and may have queued for a while.
	admit := func() error {
		if wait, ok := s.limiter.check(key); !ok {
			s.log.WarnContext(ctx, "login refused: too many failures", "user", username, "remote", remote)
			return fmt.Errorf("user %q: %w", username, &ThrottledError{RetryAfter: wait})
		}
		return nil
	}
	if err := admit(); err != nil {
		return session{}, err
	}
	var sess session
	var err error
	switch {
	case username == AdminUsername:
		sess, err = s.verifyAdmin(ctx, password, admit)
	case username == RunUsername || IsRunCredential(password):
		sess, err = s.verifyRun(ctx, password)
	default:
		sess, err = s.verifyToken(ctx, reg, name, password)
	}
	if err != nil {
		var throttled *ThrottledError
		switch {
		case errors.As(err, &throttled):
			if errors.Is(err, ErrLoginBusy) {
				s.limiter.obs.LoginFailed(FailureBusy)
				s.log.WarnContext(ctx, "login refused: too many logins in progress", "user", username, "remote", remote)
			}
		case errors.Is(err, errBadCredentials):
			wait := s.limiter.fail(key)
			s.log.WarnContext(ctx, "login failed", "user", username, "remote", remote, "registry", registry,
				"reason", err.Error(), "lockout", wait.String())
		case errors.Is(err, ErrUnauthenticated):
			s.log.InfoContext(ctx, "login refused", "user", username, "remote", remote, "registry", registry, "reason", err.Error())
		}
		return session{}, err
	}
	s.limiter.succeed(key)
	return sess, nil
}

// revalidate checks that the credential a bearer or refresh token was
// issued for still works: the admin password unchanged, the token enabled
// with the same password unexpired, the run credential not revoked.
func (s *Service) revalidate(ctx context.Context, sess session) error {
	now := s.now()
	if !sess.expires.IsZero() && !now.Before(sess.expires) {
		return fmt.Errorf("credential expired: %w", ErrUnauthenticated)
	}
	switch sess.kind {
	case KindAnonymous:
		return nil
	case KindAdmin:
		rec, err := s.adminRecord(ctx)
		if err != nil {
			return err
		}
		if rec != nil && rec.id == sess.principal && rec.ref == sess.ref {
			return nil
		}
		return fmt.Errorf("admin password changed: %w", ErrUnauthenticated)
	case KindToken:
		id, rest, _ := strings.Cut(sess.ref, ":")
		slotText, fingerprint, _ := strings.Cut(rest, ":")
		slot, err1 := strconv.Atoi(slotText)
		rec, err := s.tokenRecord(ctx, sess.registry, sess.name)
		if err != nil {
			return err
		}
		switch {
		case err1 != nil || slot < 0 || slot > 1 || rec == nil || rec.id != id || id != sess.principal:
			return fmt.Errorf("token %q no longer exists: %w", sess.name, ErrUnauthenticated)
		case !rec.enabled:
			return fmt.Errorf("token %q is disabled: %w", sess.name, ErrUnauthenticated)
		case !rec.pw[slot].set || rec.pw[slot].fingerprint() != fingerprint:
			return fmt.Errorf("%s of token %q was regenerated or deleted: %w", rec.pw[slot].slot, sess.name, ErrUnauthenticated)
		case !rec.pw[slot].expires.IsZero() && !now.Before(rec.pw[slot].expires):
			return fmt.Errorf("%s of token %q expired: %w", rec.pw[slot].slot, sess.name, ErrUnauthenticated)
		}
		return nil
	case KindRun:
		rec, err := s.runRecord(ctx, sess.ref)
		if err != nil {
			return err
		}
		if rec == nil || rec.registry != sess.registry || rec.runID != sess.runID {
			return fmt.Errorf("credential of run %s revoked: %w", sess.runID, ErrUnauthenticated)
		}
		if !now.Before(rec.expires) {
			return fmt.Errorf("credential of run %s expired: %w", sess.runID, ErrUnauthenticated)
		}
		return nil
	}
	return fmt.Errorf("unknown credential kind %q: %w", sess.kind, ErrUnauthenticated)
}

func (s *Service) anonymousPull(ctx context.Context, registry string) (bool, error) {
	if s.lookup == nil {
		return false, nil
	}
	ok, err := s.lookup.AnonymousPull(ctx, registry)
	if err != nil {
		return false, fmt.Errorf("reading settings of registry %q: %w", registry, err)
	}
	return ok, nil
}

// repoGrants returns the scope-map actions sess currently holds on
// repository repo of registry.
func (s *Service) repoGrants(ctx context.Context, sess session, registry, repo string) (actionSet, error) {
	switch sess.kind {
	case KindAdmin:
		return aAll, nil
	case KindAnonymous:
		ok, err := s.anonymousPull(ctx, registry)
		if err != nil || !ok {
			return 0, err
		}
		return aContentRead | aMetadataRead, nil
	case KindToken:
		if sess.registry != registry {
			return 0, nil
		}
		rec, err := s.tokenRecord(ctx, registry, sess.name)
		if err != nil || rec == nil || rec.id != sess.principal || !rec.enabled {
			return 0, err
		}
		return rec.rules.match(repo), nil
	case KindRun, KindIdentity:
		var set actionSet
		if sess.kind == KindRun && sess.registry == registry {
			set = aAll
		}
		roles, err := s.rolesOf(ctx, sess.principal)
		if err != nil {
			return 0, err
		}
		q := scope{kind: scopeRepository, registry: registry, repository: repo}
		for _, a := range roles {
			if sc, err := parseScope(a.Scope); err == nil && sc.covers(q) {
				set |= a.Role.actions()
			}
		}
		return set, nil
	}
	return 0, nil
}

// catalogGrant reports whether sess may list the repositories of registry:
// the admin, a run in its own registry, and identities with a role on the
// whole registry. Never tokens or anonymous callers.
func (s *Service) catalogGrant(ctx context.Context, sess session, registry string) (bool, error) {
	switch sess.kind {
	case KindAdmin:
		return true, nil
	case KindRun, KindIdentity:
		return s.ownOrRole(ctx, sess, registry, func(sc scope, _ RoleAssignment) bool {
			return sc.kind == scopeRegistry
		})
	}
	return false, nil
}

// ownOrRole reports whether a run or identity session reaches registry: a
// run in its own registry, or a role of the principal on a scope of the
// registry that match accepts.
func (s *Service) ownOrRole(ctx context.Context, sess session, registry string, match func(scope, RoleAssignment) bool) (bool, error) {
	if sess.kind == KindRun && sess.registry == registry {
		return true, nil
	}
	roles, err := s.rolesOf(ctx, sess.principal)
	if err != nil {
		return false, err
	}
	for _, a := range roles {
		if sc, err := parseScope(a.Scope); err == nil && sc.registry == registry && match(sc, a) {
			return true, nil
		}
	}
	return false, nil
}

// allowed reports whether sess may perform every action of a on registry.
func (s *Service) allowed(ctx context.Context, sess session, registry string, a Access) (bool, error) {
	switch a.Type {
	case TypeRegistry:
		if a.Name != CatalogName {
			return false, nil
		}
		for _, act := range a.Actions {
			if act != ActionCatalog {
				return false, nil
			}
		}
		return s.catalogGrant(ctx, sess, registry)
	case TypeRepository:
		if !repositoryName.MatchString(a.Name) {
			return false, nil
		}
		set, err := s.repoGrants(ctx, sess, registry, a.Name)
		if err != nil {
			return false, err
		}
		for _, act := range a.Actions {
			if !actionAllowed(set, act) {
				return false, nil
			}
		}
		return true, nil
	}
	return false, nil
}

// actionAllowed maps a registry-protocol action onto scope-map actions.
func actionAllowed(set actionSet, action string) bool {
	switch action {
	case ActionPull:
		return set&aContentRead != 0
	case ActionList:
		return set&(aContentRead|aMetadataRead) != 0
	case ActionPush:
		return set&aContentWrite != 0
	case ActionDelete:
		return set&aContentDelete != 0
	case "*":
		return set&(aContentRead|aContentWrite|aContentDelete) == aContentRead|aContentWrite|aContentDelete
	}
	return false
}

// authorization splits an Authorization header into its scheme and value.
func authorization(r *http.Request) (scheme, value string) {
	h := r.Header.Get("Authorization")
	scheme, value, _ = strings.Cut(h, " ")
	return strings.ToLower(scheme), strings.TrimSpace(value)
}

// Authorize implements Authorizer for the registry registry. It accepts HTTP
// Basic (admin, token of this registry, run credential), Bearer tokens from
// this registry's token endpoint, Bearer run credentials, and anonymous
// requests (pull only, on anonymous-pull registries). An empty need
// (GET /v2/) requires authentication. A bearer token lacking a scope gives
// ErrUnauthenticated (the client then asks for a new token); a caller
// lacking a permission gives ErrDenied.
func (s *Service) Authorize(r *http.Request, registry string, need []Access) (Identity, error) {
	ctx := r.Context()
	var sess session
	var granted []accessClaim
	bearer := false
	switch scheme, value := authorization(r); scheme {
	case "":
	case "basic":
		user, pass, ok := r.BasicAuth()
		if !ok {
			return Identity{}, fmt.Errorf("malformed basic credentials: %w", ErrUnauthenticated)
		}
		var err error
		if sess, err = s.login(ctx, r, registry, user, pass); err != nil {
			return Identity{}, err
		}
	case "bearer":
		var err error
		if IsRunCredential(value) {
			sess, err = s.verifyRun(ctx, value)
		} else {
			bearer = true
			sess, granted, err = s.verifyAccessToken(ctx, registry, value)
		}
		if err != nil {
			return Identity{}, err
		}
	default:
		return Identity{}, fmt.Errorf("unsupported authorization scheme %q: %w", scheme, ErrUnauthenticated)
	}
	// Anonymous callers must authenticate for the base check (so docker login
	// verifies credentials) and for anything but pulls; an anonymous bearer
	// token from the token endpoint passes the base check.
	if sess.kind == KindAnonymous && (len(need) == 0 && !bearer || !anonymousEligible(need)) {
		return Identity{}, fmt.Errorf("registry %q: %w", registry, ErrUnauthenticated)
	}
	for _, a := range need {
		ok, err := s.allowed(ctx, sess, registry, a)
		if err != nil {
			return Identity{}, err
		}
		if !ok {
			if sess.kind == KindAnonymous {
				return Identity{}, fmt.Errorf("%s: %w", scopeString(a), ErrUnauthenticated)
			}
			return Identity{}, fmt.Errorf("%s may not access %s in registry %q: %w", describe(sess), scopeString(a), registry, ErrDenied)
		}
		if bearer && !claimsCover(granted, a) {
			return Identity{}, fmt.Errorf("bearer token does not cover %s (insufficient scope): %w", scopeString(a), ErrUnauthenticated)
		}
	}
	return sess.identity(), nil
}

// anonymousEligible reports whether need asks only for what anonymous
// callers can ever get: pulls and tag lists.
func anonymousEligible(need []Access) bool {
	for _, a := range need {
		if a.Type != TypeRepository {
			return false
		}
		for _, act := range a.Actions {
			if act != ActionPull && act != ActionList {
				return false
			}
		}
	}
	return true
}

func describe(sess session) string {
	switch sess.kind {
	case KindToken:
		return fmt.Sprintf("token %q", sess.name)
	case KindRun:
		return fmt.Sprintf("run %s", sess.runID)
	case KindAnonymous:
		return "anonymous caller"
	}
	return fmt.Sprintf("%s %q", sess.kind, sess.name)
}

// Challenge implements Authorizer: the Docker token-authentication challenge
// pointing at the token endpoint of the listener the request came through,
// as configured (WithEndpoint), never as the request's Host names it.
func (s *Service) Challenge(r *http.Request, registry string, need []Access) string {
	ep := endpointOf(r)
	var b strings.Builder
	b.WriteString(`Bearer realm="` + ep.URL + TokenPath + `",service="` + ep.Service + `"`)
	var scopes []string
	for _, a := range need {
		scopes = append(scopes, scopeString(a))
	}
	if len(scopes) > 0 {
		b.WriteString(`,scope="` + strings.Join(scopes, " ") + `"`)
	}
	return b.String()
}

// scopeString formats an Access as a Docker token scope, spelling
// ActionList as pull.
func scopeString(a Access) string {
	var acts []string
	seen := map[string]bool{}
	for _, act := range a.Actions {
		if act == ActionList {
			act = ActionPull
		}
		if !seen[act] {
			seen[act] = true
			acts = append(acts, act)
		}
	}
	return a.Type + ":" + a.Name + ":" + strings.Join(acts, ",")
}

var _ Authorizer = (*Service)(nil)
