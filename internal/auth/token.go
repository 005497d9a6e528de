package auth

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// TokenStatus is enabled or disabled.
type TokenStatus string

// Token statuses.
const (
	TokenEnabled  TokenStatus = "enabled"
	TokenDisabled TokenStatus = "disabled"
)

// ParseTokenStatus parses a status case-insensitively.
func ParseTokenStatus(s string) (TokenStatus, error) {
	switch st := TokenStatus(strings.ToLower(s)); st {
	case TokenEnabled, TokenDisabled:
		return st, nil
	}
	return "", fmt.Errorf("token status %q: want enabled or disabled: %w", s, ErrInvalid)
}

// PasswordSlot names one of a token's two passwords.
type PasswordSlot string

// Password slots.
const (
	Password1 PasswordSlot = "password1"
	Password2 PasswordSlot = "password2"
)

func (p PasswordSlot) index() (int, error) {
	switch p {
	case Password1:
		return 0, nil
	case Password2:
		return 1, nil
	}
	return 0, fmt.Errorf("password %q: want password1 or password2: %w", p, ErrInvalid)
}

var passwordSlots = [2]PasswordSlot{Password1, Password2}

// Token is a repository-scoped credential of one registry. Its user name for
// docker login is its name.
type Token struct {
	// ID is the token's principal ID.
	ID        string
	Registry  string
	Name      string
	ScopeMap  string
	Status    TokenStatus
	CreatedAt time.Time
	// Passwords lists the passwords that are set, password1 first.
	Passwords []TokenPassword
}

// TokenPassword describes one password of a token.
type TokenPassword struct {
	Name PasswordSlot
	// Value is the password itself. It is only set in the results of
	// CreateToken and GeneratePassword; it is never stored and cannot be
	// shown again.
	Value     string
	CreatedAt time.Time
	// Expiry is when the password stops working; zero means never.
	Expiry time.Time
}

// TokenSpec describes a token to create.
type TokenSpec struct {
	Registry string
	Name     string
	// ScopeMap names an existing scope map (system maps included). Exactly
	// one of ScopeMap and Repositories must be set.
	ScopeMap string
	// Repositories creates the scope map "<Name>-scope-map" with these rules.
	Repositories []RepositoryRule
	// Status defaults to enabled.
	Status TokenStatus
	// NoPasswords creates the token without passwords; otherwise both are
	// generated and returned.
	NoPasswords bool
	// Expiry of the generated passwords; zero means never.
	Expiry time.Time
}

// Reserved user names, which no token may have.
const (
	// RunUsername is the user name to log in with a run credential.
	RunUsername = "gantry-run"
)

var tokenName = regexp.MustCompile(`^[a-zA-Z0-9-]{5,50}$`)

func validateTokenName(name string) error {
	if !tokenName.MatchString(name) {
		return fmt.Errorf("token name %q: want 5-50 letters, digits and hyphens: %w", name, ErrInvalid)
	}
	if strings.EqualFold(name, AdminUsername) || strings.EqualFold(name, RunUsername) {
		return fmt.Errorf("token name %q is reserved: %w", name, ErrInvalid)
	}
	return nil
}

// CreateToken creates a token and, unless spec.NoPasswords, both of its
// passwords, whose values are in the result and nowhere else.
func (s *Service) CreateToken(ctx context.Context, spec TokenSpec) (Token, error) {
	if err := validateTokenName(spec.Name); err != nil {
		return Token{}, err
	}
	if (spec.ScopeMap == "") == (len(spec.Repositories) == 0) {
		return Token{}, fmt.Errorf("token %q: give either a scope map or repositories with actions: %w", spec.Name, ErrInvalid)
	}
	status := TokenEnabled
	if spec.Status != "" {
		var err error
		if status, err = ParseTokenStatus(string(spec.Status)); err != nil {
			return Token{}, err
		}
	}
	now := s.now().UTC()
	if !spec.Expiry.IsZero() && !spec.Expiry.After(now) {
		return Token{}, fmt.Errorf("token %q: expiry %s is in the past: %w", spec.Name, spec.Expiry.Format(time.RFC3339), ErrInvalid)
	}
	t := Token{ID: uuid.NewString(), Registry: spec.Registry, Name: spec.Name, ScopeMap: spec.ScopeMap, Status: status, CreatedAt: now}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := s.registryExists(ctx, tx, spec.Registry); err != nil {
			return err
		}
		if len(spec.Repositories) > 0 {
			t.ScopeMap = tokenScopeMap(spec.Name)
			if _, err := s.createScopeMap(ctx, tx, spec.Registry, t.ScopeMap, tokenScopeMapDescription(spec.Name), spec.Repositories); err != nil {
				return err
			}
		} else if _, err := s.getScopeMap(ctx, tx, spec.Registry, spec.ScopeMap); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO principals(id, kind, name, created_at) VALUES (?, 'token', ?, ?)`,
			t.ID, spec.Registry+"/"+spec.Name, timeText(now)); err != nil {
			return fmt.Errorf("creating token %q: %w", spec.Name, err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens(principal_id, registry, name, scope_map, status, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			t.ID, t.Registry, t.Name, t.ScopeMap, string(t.Status), timeText(now))
		if isUniqueViolation(err) {
			return fmt.Errorf("token %q in registry %q: %w", spec.Name, spec.Registry, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("creating token %q: %w", spec.Name, err)
		}
		if spec.NoPasswords {
			return nil
		}
		for _, slot := range passwordSlots {
			p, err := s.setPassword(ctx, tx, t.ID, slot, spec.Expiry, now)
			if err != nil {
				return err
			}
			t.Passwords = append(t.Passwords, p)
		}
		return nil
	})
	if err != nil {
		return Token{}, err
	}
	s.changed(ctx, "token created", "registry", t.Registry, "token", t.Name, "scope_map", t.ScopeMap)
	return t, nil
}

// setPassword generates, stores (hashed) and returns a new password.
func (s *Service) setPassword(ctx context.Context, tx *sql.Tx, tokenID string, slot PasswordSlot, expiry, now time.Time) (TokenPassword, error) {
	p := TokenPassword{Name: slot, Value: base64.RawURLEncoding.EncodeToString(randomBytes(32)), CreatedAt: now, Expiry: expiry.UTC()}
	var exp any
	if !expiry.IsZero() {
		exp = timeText(expiry)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO token_passwords(token_id, slot, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(token_id, slot) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at, expires_at = excluded.expires_at`,
		tokenID, string(slot), s.mac("token-password", p.Value), timeText(now), exp)
	if err != nil {
		return TokenPassword{}, fmt.Errorf("storing %s: %w", slot, err)
	}
	if expiry.IsZero() {
		p.Expiry = time.Time{}
	}
	return p, nil
}

// GetToken returns a token with its password metadata (never values).
func (s *Service) GetToken(ctx context.Context, registry, name string) (Token, error) {
	return s.getToken(ctx, s.db.R, registry, name)
}

func (s *Service) getToken(ctx context.Context, q querier, registry, name string) (Token, error) {
	t := Token{Registry: registry, Name: name}
	var status, created string
	err := q.QueryRowContext(ctx, `SELECT principal_id, scope_map, status, created_at FROM tokens WHERE registry = ? AND name = ?`, registry, name).
		Scan(&t.ID, &t.ScopeMap, &status, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("token %q in registry %q: %w", name, registry, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("reading token %q: %w", name, err)
	}
	t.Status, t.CreatedAt = TokenStatus(status), parseTime(created)
	pws, err := readPasswords(ctx, q, t.ID)
	if err != nil {
		return Token{}, err
	}
	for _, p := range pws {
		if p.set {
			t.Passwords = append(t.Passwords, TokenPassword{Name: p.slot, CreatedAt: p.created, Expiry: p.expires})
		}
	}
	return t, nil
}

type passwordRecord struct {
	slot    PasswordSlot
	set     bool
	hash    []byte
	created time.Time
	expires time.Time // zero: never
}

// fingerprint identifies a password value (a digest of its keyed hash):
// bearer and refresh tokens carry it, so they die when the password is
// regenerated.
func (p passwordRecord) fingerprint() string {
	sum := sha256.Sum256(p.hash)
	return hex.EncodeToString(sum[:8])
}

func readPasswords(ctx context.Context, q querier, tokenID string) ([2]passwordRecord, error) {
	out := [2]passwordRecord{{slot: Password1}, {slot: Password2}}
	rows, err := q.QueryContext(ctx, `SELECT slot, hash, created_at, expires_at FROM token_passwords WHERE token_id = ?`, tokenID)
	if err != nil {
		return out, fmt.Errorf("reading token passwords: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var slot, created string
		var hash []byte
		var expires sql.NullString
		if err := rows.Scan(&slot, &hash, &created, &expires); err != nil {
			return out, fmt.Errorf("reading token passwords: %w", err)
		}
		i, err := PasswordSlot(slot).index()
		if err != nil {
			return out, err
		}
		out[i] = passwordRecord{slot: PasswordSlot(slot), set: true, hash: hash, created: parseTime(created)}
		if expires.Valid {
			out[i].expires = parseTime(expires.String)
		}
	}
	return out, rows.Err()
}

// ListTokens returns the tokens of registry by name.
func (s *Service) ListTokens(ctx context.Context, registry string) ([]Token, error) {
	if err := s.registryExists(ctx, s.db.R, registry); err != nil {
		return nil, err
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT name FROM tokens WHERE registry = ? ORDER BY name`, registry)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing tokens: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	out := make([]Token, 0, len(names))
	for _, n := range names {
		t, err := s.GetToken(ctx, registry, n)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// TokenUpdate changes a token; nil fields are left alone.
type TokenUpdate struct {
	Status   *TokenStatus
	ScopeMap *string
}

// UpdateToken changes a token's status or scope map. It applies at once,
// including to bearer tokens already issued.
func (s *Service) UpdateToken(ctx context.Context, registry, name string, u TokenUpdate) (Token, error) {
	var t Token
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		if t, err = s.getToken(ctx, tx, registry, name); err != nil {
			return err
		}
		if u.Status != nil {
			st, err := ParseTokenStatus(string(*u.Status))
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE tokens SET status = ? WHERE principal_id = ?`, string(st), t.ID); err != nil {
				return fmt.Errorf("updating token %q: %w", name, err)
			}
		}
		if u.ScopeMap != nil {
			if _, err := s.getScopeMap(ctx, tx, registry, *u.ScopeMap); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE tokens SET scope_map = ? WHERE principal_id = ?`, *u.ScopeMap, t.ID); err != nil {
				return fmt.Errorf("updating token %q: %w", name, err)
			}
		}
		t, err = s.getToken(ctx, tx, registry, name)
		return err
	})
	if err != nil {
		return Token{}, err
	}
	s.changed(ctx, "token updated", "registry", registry, "token", name, "status", string(t.Status), "scope_map", t.ScopeMap)
	return t, nil
}

// GeneratePassword replaces one password of a token with a new random one
// and returns it (the only time its value is available). expiry zero means
// it never expires.
func (s *Service) GeneratePassword(ctx context.Context, registry, name string, slot PasswordSlot, expiry time.Time) (TokenPassword, error) {
	if _, err := slot.index(); err != nil {
		return TokenPassword{}, err
	}
	now := s.now().UTC()
	if !expiry.IsZero() && !expiry.After(now) {
		return TokenPassword{}, fmt.Errorf("%s of token %q: expiry %s is in the past: %w", slot, name, expiry.Format(time.RFC3339), ErrInvalid)
	}
	var p TokenPassword
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		t, err := s.getToken(ctx, tx, registry, name)
		if err != nil {
			return err
		}
		p, err = s.setPassword(ctx, tx, t.ID, slot, expiry, now)
		return err
	})
	if err != nil {
		return TokenPassword{}, err
	}
	s.changed(ctx, "token password generated", "registry", registry, "token", name, "password", string(slot))
	return p, nil
}

// DeletePassword removes one password of a token.
func (s *Service) DeletePassword(ctx context.Context, registry, name string, slot PasswordSlot) error {
	if _, err := slot.index(); err != nil {
		return err
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		t, err := s.getToken(ctx, tx, registry, name)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM token_passwords WHERE token_id = ? AND slot = ?`, t.ID, string(slot))
		if err != nil {
			return fmt.Errorf("deleting %s of token %q: %w", slot, name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%s of token %q: %w", slot, name, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.changed(ctx, "token password deleted", "registry", registry, "token", name, "password", string(slot))
	return nil
}

// DeleteToken deletes a token and its passwords, and the scope map created
// for it (from its repositories, named <token>-scope-map) unless another
// token uses that map too.
func (s *Service) DeleteToken(ctx context.Context, registry, name string) error {
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		t, err := s.getToken(ctx, tx, registry, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM principals WHERE id = ?`, t.ID); err != nil {
			return fmt.Errorf("deleting token %q: %w", name, err)
		}
		if t.ScopeMap != tokenScopeMap(name) {
			return nil
		}
		users, err := tokensUsing(ctx, tx, registry, t.ScopeMap)
		if err != nil || len(users) > 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM scope_maps WHERE registry = ? AND name = ? AND description = ?`,
			registry, t.ScopeMap, tokenScopeMapDescription(name))
		if err != nil {
			return fmt.Errorf("deleting the scope map of token %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.changed(ctx, "token deleted", "registry", registry, "token", name)
	return nil
}

// tokenRecord is what authentication and authorization need of a token,
// cached.
type tokenRecord struct {
	id       string
	registry string
	name     string
	enabled  bool
	pw       [2]passwordRecord
	rules    rules
}

func (s *Service) tokenRecord(ctx context.Context, registry, name string) (*tokenRecord, error) {
	return cached(s, s.tokens, registry+"\x00"+name, func() (*tokenRecord, error) {
		t := tokenRecord{registry: registry, name: name}
		var scopeMap, status string
		err := s.db.R.QueryRowContext(ctx, `SELECT principal_id, scope_map, status FROM tokens WHERE registry = ? AND name = ?`, registry, name).
			Scan(&t.id, &scopeMap, &status)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading token %q: %w", name, err)
		}
		t.enabled = status == string(TokenEnabled)
		if t.pw, err = readPasswords(ctx, s.db.R, t.id); err != nil {
			return nil, err
		}
		m, err := s.getScopeMap(ctx, s.db.R, registry, scopeMap)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		t.rules = compileRules(m.Rules) // a missing map grants nothing
		return &t, nil
	})
}

// verifyToken checks a token password. Both password slots are compared,
// against a dummy hash when the token or the slot does not exist, so an
// unknown token costs the same as a wrong password.
func (s *Service) verifyToken(ctx context.Context, registry, name, password string) (session, error) {
	rec, err := s.tokenRecord(ctx, registry, name)
	if err != nil {
		return session{}, err
	}
	got := s.mac("token-password", password)
	slot := -1
	for i := range 2 {
		want := s.dummy
		if rec != nil && rec.pw[i].set {
			want = rec.pw[i].hash
		}
		if s.equal(got, want) && rec != nil && rec.pw[i].set {
			slot = i
		}
	}
	if slot < 0 {
		return session{}, errBadCredentials
	}
	// The password is right: the reasons below are safe to tell.
	pw := rec.pw[slot]
	if !pw.expires.IsZero() && !s.now().Before(pw.expires) {
		return session{}, fmt.Errorf("%s of token %q expired at %s: %w", pw.slot, name, pw.expires.Format(time.RFC3339), ErrUnauthenticated)
	}
	if !rec.enabled {
		return session{}, fmt.Errorf("token %q is disabled: %w", name, ErrUnauthenticated)
	}
	return session{
		kind: KindToken, principal: rec.id, name: name, registry: registry,
		ref: fmt.Sprintf("%s:%d:%s", rec.id, slot, pw.fingerprint()), expires: pw.expires,
	}, nil
}

// tokenScopeMap is the name of the scope map a token created from its
// repositories gets, and tokenScopeMapDescription its description (which
// tells it from a map an operator named so).
func tokenScopeMap(token string) string { return token + "-scope-map" }

func tokenScopeMapDescription(token string) string { return "Token " + token + " scope map" }
