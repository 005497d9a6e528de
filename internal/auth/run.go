package auth

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// RunGrant describes the run a credential is issued for.
type RunGrant struct {
	// Registry is the run's own registry: the credential may pull, push and
	// delete in it.
	Registry string
	// RunID is the run's ID; the credential carries it so that tag history
	// records which run pushed.
	RunID string
	// Principal is the task identity the run acts as (optional): its role
	// assignments apply, on every registry, and it is the principal vault
	// policies are checked against.
	Principal string
	// Name is the display name of the caller, e.g. "task:contoso/hello-world";
	// it defaults to "run:<registry>/<run ID>".
	Name string
	// TTL is how long the credential works (at most 7 days), e.g. the task
	// timeout plus a margin.
	TTL time.Duration
	// RegistryOnly makes a credential the registries accept and the control
	// API refuses: the one every step finds in its Docker config, while
	// only the gantry and az alias steps get a control-API credential.
	RegistryOnly bool
}

// runCredentialPrefix starts every run credential. Its "." keeps it apart
// from token passwords (base64url) and JWTs (which start with "eyJ").
const runCredentialPrefix = "gantryrun."

// IsRunCredential reports whether s has the form of a run credential.
func IsRunCredential(s string) bool { return strings.HasPrefix(s, runCredentialPrefix) }

// IssueRunCredential returns a new secret for a task run. It is the password
// of HTTP Basic authentication with user name RunUsername (docker login -u
// gantry-run) on every gantry registry, and a Bearer token on the control
// API. It stops working after g.TTL or RevokeRun. The secret is stored only
// as a keyed hash.
func (s *Service) IssueRunCredential(ctx context.Context, g RunGrant) (string, error) {
	switch {
	case g.Registry == "" || g.RunID == "":
		return "", fmt.Errorf("run credential: registry and run ID are required: %w", ErrInvalid)
	case g.TTL <= 0 || g.TTL > 7*24*time.Hour:
		return "", fmt.Errorf("run credential for run %s: lifetime %s not in (0, 7 days]: %w", g.RunID, g.TTL, ErrInvalid)
	}
	if g.Principal != "" {
		p, err := s.Principal(ctx, g.Principal)
		if err != nil {
			return "", fmt.Errorf("run credential for run %s: %w", g.RunID, err)
		}
		if p.Kind != KindIdentity {
			return "", fmt.Errorf("run credential for run %s: principal %s is a %s, not an identity: %w", g.RunID, g.Principal, p.Kind, ErrInvalid)
		}
	}
	if g.Name == "" {
		g.Name = "run:" + g.Registry + "/" + g.RunID
	}
	id := uuid.NewString()
	secret := runCredentialPrefix + id + "." + base64.RawURLEncoding.EncodeToString(randomBytes(32))
	now := s.now().UTC()
	var principal any
	if g.Principal != "" {
		principal = g.Principal
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM run_credentials WHERE expires_at < ?`, timeText(now)); err != nil {
			return fmt.Errorf("pruning run credentials: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO run_credentials(id, registry, run_id, principal_id, name, hash, created_at, expires_at, registry_only)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, g.Registry, g.RunID, principal, g.Name, s.mac("run-credential", secret), timeText(now), timeText(now.Add(g.TTL)), g.RegistryOnly)
		if isForeignKeyViolation(err) {
			return fmt.Errorf("registry %q: %w", g.Registry, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("storing run credential for run %s: %w", g.RunID, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	s.log.InfoContext(ctx, "run credential issued", "registry", g.Registry, "run", g.RunID, "principal", g.Principal)
	return secret, nil
}

// RevokeRun revokes every credential issued for the run (e.g. when it ends).
// Revoking a run without credentials is not an error.
func (s *Service) RevokeRun(ctx context.Context, registry, runID string) error {
	if _, err := s.db.W.ExecContext(ctx, `DELETE FROM run_credentials WHERE registry = ? AND run_id = ?`, registry, runID); err != nil {
		return fmt.Errorf("revoking credentials of run %s: %w", runID, err)
	}
	s.changed(ctx, "run credentials revoked", "registry", registry, "run", runID)
	return nil
}

type runRecord struct {
	id        string
	registry  string
	runID     string
	principal string // task identity, may be empty
	name      string
	hash      []byte
	expires   time.Time
	// registryOnly: refused by the control API (RunGrant.RegistryOnly).
	registryOnly bool
}

func (s *Service) runRecord(ctx context.Context, id string) (*runRecord, error) {
	return cached(s, s.runs, id, func() (*runRecord, error) {
		r := runRecord{id: id}
		var principal sql.NullString
		var expires string
		err := s.db.R.QueryRowContext(ctx, `SELECT registry, run_id, principal_id, name, hash, expires_at, registry_only FROM run_credentials WHERE id = ?`, id).
			Scan(&r.registry, &r.runID, &principal, &r.name, &r.hash, &expires, &r.registryOnly)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading run credential: %w", err)
		}
		r.principal, r.expires = principal.String, parseTime(expires)
		return &r, nil
	})
}

// verifyRun checks a run credential.
func (s *Service) verifyRun(ctx context.Context, secret string) (session, error) {
	id, _, _ := strings.Cut(strings.TrimPrefix(secret, runCredentialPrefix), ".")
	var rec *runRecord
	if IsRunCredential(secret) && uuid.Validate(id) == nil {
		var err error
		if rec, err = s.runRecord(ctx, id); err != nil {
			return session{}, err
		}
	}
	want := s.dummy
	if rec != nil {
		want = rec.hash
	}
	if !s.equal(s.mac("run-credential", secret), want) || rec == nil {
		return session{}, errBadRunCredential
	}
	if !s.now().Before(rec.expires) {
		return session{}, fmt.Errorf("credential of run %s expired: %w", rec.runID, ErrUnauthenticated)
	}
	return rec.session(), nil
}

func (r *runRecord) session() session {
	principal := r.principal
	if principal == "" {
		principal = r.id
	}
	return session{kind: KindRun, principal: principal, name: r.name,
		registry: r.registry, runID: r.runID, ref: r.id, expires: r.expires, registryOnly: r.registryOnly}
}

// RegistryRefreshToken logs in to a registry's token endpoint on behalf of
// a server component (the task service, for a task's token credential)
// and returns a refresh token for that registry, valid for ttl (at most
// the refresh lifetime) and as long as the credential stays valid. The
// engine then presents the refresh token (docker's identity token) instead
// of the password, so what crosses loopback expires with the run
// (docs/security.md). Failed logins count for the brute-force limiter
// under the source "internal".
func (s *Service) RegistryRefreshToken(ctx context.Context, registry, username, password string, ttl time.Duration) (string, error) {
	if ttl <= 0 || ttl > s.refreshTTL {
		ttl = s.refreshTTL
	}
	r := (&http.Request{RemoteAddr: "internal"}).WithContext(ctx)
	sess, err := s.login(ctx, r, registry, username, password)
	if err != nil {
		return "", fmt.Errorf("logging in to registry %s as %s: %w", registry, username, err)
	}
	tok, _, _, err := s.sign(sess, registry, "", useRefresh, nil, ttl)
	return tok, err
}
