package auth

import (
	"context"
	"fmt"
	"time"
)

// IssueRefreshToken returns a refresh token for registry issued to the
// caller id (authenticated on the control API), and when it expires: what
// the registry's token endpoint hands out with offline access, so Docker
// clients can present it as an identity token (grant_type=refresh_token)
// without ever holding the caller's password. `gantry registry login` and
// the docker-credential-gantry helper get theirs this way.
//
// The token lives ttl (at most WithRefreshTTL's lifetime), never past the
// expiry of the credential the caller authenticated with, and stops working
// with that credential: a changed admin password, a disabled, regenerated or
// expired token password, a revoked run. It carries no scopes: every access
// token it is exchanged for holds the caller's current grants.
//
// A caller without any pull right on registry (content/read or
// metadata/read on some repository, or the catalog) gets ErrDenied; an
// anonymous caller, or one whose credential no longer works,
// ErrUnauthenticated. Whether registry exists is the caller's to check.
func (s *Service) IssueRefreshToken(ctx context.Context, id Identity, registry string, ttl time.Duration) (string, time.Time, error) {
	if id.Anonymous() {
		return "", time.Time{}, fmt.Errorf("refresh token for registry %q: %w", registry, ErrUnauthenticated)
	}
	if ttl <= 0 || ttl > s.refreshTTL {
		ttl = s.refreshTTL
	}
	sess := sessionOf(id)
	if err := s.revalidate(ctx, sess); err != nil {
		return "", time.Time{}, err
	}
	ok, err := s.anyPull(ctx, sess, registry)
	if err != nil {
		return "", time.Time{}, err
	}
	if !ok {
		return "", time.Time{}, fmt.Errorf("%s may not pull from registry %q: %w", describe(sess), registry, ErrDenied)
	}
	tok, _, exp, err := s.sign(sess, registry, "", useRefresh, nil, ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	s.log.InfoContext(ctx, "refresh token issued", "registry", registry, "principal", sess.principal, "name", sess.name, "expires", exp)
	return tok, exp, nil
}

// anyPull reports whether sess may pull from some repository of registry:
// the admin; a token of registry whose scope map reads anything; a run in
// its own registry; a run or identity with a role on the registry or on one
// of its repositories (every role reads).
func (s *Service) anyPull(ctx context.Context, sess session, registry string) (bool, error) {
	switch sess.kind {
	case KindAdmin:
		return true, nil
	case KindToken:
		if sess.registry != registry {
			return false, nil
		}
		rec, err := s.tokenRecord(ctx, registry, sess.name)
		if err != nil || rec == nil || rec.id != sess.principal || !rec.enabled {
			return false, err
		}
		for _, r := range rec.rules {
			if r.actions&(aContentRead|aMetadataRead) != 0 {
				return true, nil
			}
		}
		return false, nil
	case KindRun, KindIdentity:
		return s.ownOrRole(ctx, sess, registry, func(sc scope, a RoleAssignment) bool {
			return (sc.kind == scopeRegistry || sc.kind == scopeRepository) && a.Role.actions()&(aContentRead|aMetadataRead) != 0
		})
	}
	return false, nil
}
