package importer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/vault"
)

// CredentialSet holds the vault URIs of a user name and password for one
// upstream login server; cache rules name it to log in to their source.
// Like ACR's, it has its own identity: the server resolves the secrets as
// principal PrincipalID, which the admin grants `get` on the vault
// (gantry keyvault set-policy --object-id <PrincipalID> --secret-permissions get).
type CredentialSet struct {
	Registry       string
	Name           string
	LoginServer    string
	UsernameSecret string
	PasswordSecret string
	PrincipalID    string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// Health says whether the identity can read both secrets now (filled
	// by GetCredentialSet and ListCredentialSets).
	Health CredentialHealth
}

// Credential health statuses, as ACR reports them.
const (
	HealthHealthy   = "Healthy"
	HealthUnhealthy = "Unhealthy"
)

// CredentialHealth is the result of resolving a credential set's secrets.
type CredentialHealth struct {
	Status string
	// ErrorCode is SecretNotFound, AccessDenied or ResolveFailed when unhealthy.
	ErrorCode    string
	ErrorMessage string
}

// CredentialSetUpdate changes the secrets of a credential set; nil fields
// stay.
type CredentialSetUpdate struct {
	UsernameSecret *string
	PasswordSecret *string
}

// credsTTL is how long resolved credential-set secrets are reused: a
// rotated secret is picked up within it.
const credsTTL = time.Minute

type resolvedCreds struct {
	user, pass string
	at         time.Time
}

func identityName(registry, name string) string { return "credential-set:" + registry + "/" + name }

func checkSecretURI(field, uri string) error {
	if uri == "" {
		return invalid("%s: a secret URI is required (vault://<vault>/secrets/<name> or https://<vault>.vault.azure.net/secrets/<name>)", field)
	}
	if !vault.IsURI(uri) {
		// Never echo what may be a password given by mistake.
		return invalid("%s: not a secret URI; store the value in a key vault and give its URI", field)
	}
	if _, err := vault.ParseURI(uri); err != nil {
		return invalid("%s: %v", field, err)
	}
	return nil
}

// CreateCredentialSet creates a credential set and its identity.
func (s *Service) CreateCredentialSet(ctx context.Context, cs CredentialSet) (CredentialSet, error) {
	if err := validRuleName("credential set", cs.Name); err != nil {
		return CredentialSet{}, err
	}
	cs.LoginServer = normalizeLoginServer(cs.LoginServer)
	if err := validHost(cs.LoginServer); err != nil {
		return CredentialSet{}, invalid("login server: %v", err)
	}
	if err := checkSecretURI("username", cs.UsernameSecret); err != nil {
		return CredentialSet{}, err
	}
	if err := checkSecretURI("password", cs.PasswordSecret); err != nil {
		return CredentialSet{}, err
	}
	if _, err := s.st.GetRegistry(ctx, cs.Registry); err != nil {
		return CredentialSet{}, err
	}
	if _, err := s.getCredentialSet(ctx, cs.Registry, cs.Name); err == nil {
		return CredentialSet{}, fmt.Errorf("credential set %q in registry %q: %w", cs.Name, cs.Registry, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return CredentialSet{}, err
	}
	p, err := s.access.CreateIdentity(ctx, identityName(cs.Registry, cs.Name))
	if err != nil {
		return CredentialSet{}, err
	}
	now := s.now().UTC()
	cs.PrincipalID, cs.CreatedAt, cs.UpdatedAt = p.ID, now, now
	_, err = s.db.W.ExecContext(ctx, `INSERT INTO credential_sets(registry, name, login_server, username_uri, password_uri, principal_id, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, cs.Registry, cs.Name, cs.LoginServer, cs.UsernameSecret, cs.PasswordSecret, cs.PrincipalID,
		formatTime(now), formatTime(now))
	if err != nil {
		if derr := s.access.DeleteIdentity(ctx, p.ID); derr != nil {
			s.log.ErrorContext(ctx, "undoing credential-set identity", "principal", p.ID, "err", derr)
		}
		if _, gerr := s.getCredentialSet(ctx, cs.Registry, cs.Name); gerr == nil {
			return CredentialSet{}, fmt.Errorf("credential set %q in registry %q: %w", cs.Name, cs.Registry, ErrExists)
		}
		return CredentialSet{}, fmt.Errorf("creating credential set %q: %w", cs.Name, err)
	}
	s.log.InfoContext(ctx, "credential set created", "registry", cs.Registry, "name", cs.Name, "loginServer", cs.LoginServer, "principal", p.ID)
	cs.Health = s.health(ctx, cs)
	return cs, nil
}

// GetCredentialSet returns a credential set with its current health.
func (s *Service) GetCredentialSet(ctx context.Context, registry, name string) (CredentialSet, error) {
	cs, err := s.getCredentialSet(ctx, registry, name)
	if err != nil {
		return CredentialSet{}, err
	}
	cs.Health = s.health(ctx, cs)
	return cs, nil
}

// ListCredentialSets returns a registry's credential sets, by name, with
// their health.
func (s *Service) ListCredentialSets(ctx context.Context, registry string) ([]CredentialSet, error) {
	if _, err := s.st.GetRegistry(ctx, registry); err != nil {
		return nil, err
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+credCols+` FROM credential_sets WHERE registry = ? ORDER BY name`, registry)
	if err != nil {
		return nil, fmt.Errorf("listing credential sets: %w", err)
	}
	defer rows.Close()
	out := []CredentialSet{}
	for rows.Next() {
		cs, err := scanCredentialSet(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, cs)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing credential sets: %w", err)
	}
	for i := range out {
		out[i].Health = s.health(ctx, out[i])
	}
	return out, nil
}

// UpdateCredentialSet replaces the secret URIs of a credential set.
func (s *Service) UpdateCredentialSet(ctx context.Context, registry, name string, u CredentialSetUpdate) (CredentialSet, error) {
	cs, err := s.getCredentialSet(ctx, registry, name)
	if err != nil {
		return CredentialSet{}, err
	}
	if u.UsernameSecret != nil {
		if err := checkSecretURI("username", *u.UsernameSecret); err != nil {
			return CredentialSet{}, err
		}
		cs.UsernameSecret = *u.UsernameSecret
	}
	if u.PasswordSecret != nil {
		if err := checkSecretURI("password", *u.PasswordSecret); err != nil {
			return CredentialSet{}, err
		}
		cs.PasswordSecret = *u.PasswordSecret
	}
	cs.UpdatedAt = s.now().UTC()
	if _, err := s.db.W.ExecContext(ctx, `UPDATE credential_sets SET username_uri = ?, password_uri = ?, updated_at = ? WHERE registry = ? AND name = ?`,
		cs.UsernameSecret, cs.PasswordSecret, formatTime(cs.UpdatedAt), registry, name); err != nil {
		return CredentialSet{}, fmt.Errorf("updating credential set %q: %w", name, err)
	}
	s.forgetCreds(registry, name)
	s.log.InfoContext(ctx, "credential set updated", "registry", registry, "name", name)
	cs.Health = s.health(ctx, cs)
	return cs, nil
}

// DeleteCredentialSet deletes a credential set no cache rule uses, and its
// identity.
func (s *Service) DeleteCredentialSet(ctx context.Context, registry, name string) error {
	tx, err := s.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("deleting credential set %q: %w", name, err)
	}
	defer tx.Rollback()
	var users []string
	rows, err := tx.QueryContext(ctx, `SELECT name FROM cache_rules WHERE registry = ? AND credential_set = ? ORDER BY name`, registry, name)
	if err != nil {
		return fmt.Errorf("deleting credential set %q: %w", name, err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("deleting credential set %q: %w", name, err)
		}
		users = append(users, n)
	}
	rows.Close()
	if len(users) > 0 {
		return fmt.Errorf("credential set %q is used by cache rule(s) %s; update or delete them first: %w",
			name, strings.Join(users, ", "), ErrConflict)
	}
	// The trigger credential_sets_principal deletes the identity.
	res, err := tx.ExecContext(ctx, `DELETE FROM credential_sets WHERE registry = ? AND name = ?`, registry, name)
	if err != nil {
		return fmt.Errorf("deleting credential set %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("credential set %q in registry %q: %w", name, registry, ErrNotFound)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("deleting credential set %q: %w", name, err)
	}
	s.forgetCreds(registry, name)
	s.log.InfoContext(ctx, "credential set deleted", "registry", registry, "name", name)
	return nil
}

const credCols = `registry, name, login_server, username_uri, password_uri, principal_id, created_at, updated_at`

func scanCredentialSet(sc interface{ Scan(...any) error }) (CredentialSet, error) {
	var cs CredentialSet
	var created, updated string
	if err := sc.Scan(&cs.Registry, &cs.Name, &cs.LoginServer, &cs.UsernameSecret, &cs.PasswordSecret, &cs.PrincipalID, &created, &updated); err != nil {
		return CredentialSet{}, err
	}
	cs.CreatedAt, cs.UpdatedAt = parseTime(created), parseTime(updated)
	return cs, nil
}

func (s *Service) getCredentialSet(ctx context.Context, registry, name string) (CredentialSet, error) {
	cs, err := scanCredentialSet(s.db.R.QueryRowContext(ctx, `SELECT `+credCols+` FROM credential_sets WHERE registry = ? AND name = ?`, registry, name))
	if errors.Is(err, sql.ErrNoRows) {
		return CredentialSet{}, fmt.Errorf("credential set %q in registry %q: %w", name, registry, ErrNotFound)
	}
	if err != nil {
		return CredentialSet{}, fmt.Errorf("reading credential set %q: %w", name, err)
	}
	return cs, nil
}

func (cs CredentialSet) identity() auth.Identity {
	return auth.Identity{Kind: auth.KindIdentity, Principal: cs.PrincipalID, Name: identityName(cs.Registry, cs.Name)}
}

// resolve reads the credential set's secrets as its identity.
func (s *Service) resolve(ctx context.Context, cs CredentialSet) (user, pass string, err error) {
	id := cs.identity()
	if user, err = s.secrets.Resolve(ctx, id, cs.UsernameSecret); err != nil {
		return "", "", fmt.Errorf("credential set %q: username: %w", cs.Name, err)
	}
	if pass, err = s.secrets.Resolve(ctx, id, cs.PasswordSecret); err != nil {
		return "", "", fmt.Errorf("credential set %q: password: %w", cs.Name, err)
	}
	return user, pass, nil
}

// health tries to resolve a credential set's secrets.
func (s *Service) health(ctx context.Context, cs CredentialSet) CredentialHealth {
	_, _, err := s.resolve(ctx, cs)
	switch {
	case err == nil:
		return CredentialHealth{Status: HealthHealthy}
	case errors.Is(err, auth.ErrDenied) || errors.Is(err, auth.ErrUnauthenticated):
		return CredentialHealth{Status: HealthUnhealthy, ErrorCode: "AccessDenied", ErrorMessage: fmt.Sprintf(
			"%v; grant the credential set's identity access: gantry keyvault set-policy -n <vault> --object-id %s --secret-permissions get",
			err, cs.PrincipalID)}
	case errors.Is(err, vault.ErrNotFound):
		return CredentialHealth{Status: HealthUnhealthy, ErrorCode: "SecretNotFound", ErrorMessage: err.Error()}
	default:
		return CredentialHealth{Status: HealthUnhealthy, ErrorCode: "ResolveFailed", ErrorMessage: err.Error()}
	}
}

// credentialsFor returns the user name and password of a registry's
// credential set, resolved recently or now.
func (s *Service) credentialsFor(ctx context.Context, registry, name string) (string, string, error) {
	key := registry + "/" + name
	s.credsMu.Lock()
	c, ok := s.creds[key]
	s.credsMu.Unlock()
	if ok && s.now().Sub(c.at) < credsTTL {
		return c.user, c.pass, nil
	}
	cs, err := s.getCredentialSet(ctx, registry, name)
	if err != nil {
		return "", "", err
	}
	user, pass, err := s.resolve(ctx, cs)
	if err != nil {
		return "", "", err
	}
	s.credsMu.Lock()
	s.creds[key] = resolvedCreds{user: user, pass: pass, at: s.now()}
	s.credsMu.Unlock()
	return user, pass, nil
}

func (s *Service) forgetCreds(registry, name string) {
	s.credsMu.Lock()
	delete(s.creds, registry+"/"+name)
	s.credsMu.Unlock()
}

func normalizeLoginServer(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = strings.TrimPrefix(strings.TrimPrefix(h, "https://"), "http://")
	h = strings.TrimSuffix(h, "/")
	return oci.NormalizeHost(h)
}
