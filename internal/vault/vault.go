package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/errdefs"
)

// Sentinel errors. ErrNotFound also matches db.ErrNotFound and ErrExists
// db.ErrConflict. Denials wrap auth.ErrDenied (auth.ErrUnauthenticated for
// anonymous callers).
var (
	ErrNotFound = errdefs.New("not found", db.ErrNotFound)
	ErrExists   = errdefs.New("already exists", db.ErrConflict)
	// ErrInvalid means a malformed name, URI, permission or value.
	ErrInvalid = errdefs.New("invalid argument", errdefs.ErrInvalid)
)

// MasterKeyFile is the master key's file in the keys directory (0600).
const MasterKeyFile = "vault-master.key"

// MaxValueSize is the largest secret value accepted.
const MaxValueSize = 64 << 10

// Permission is a secret permission of an access policy.
type Permission string

// Secret permissions.
const (
	PermGet  Permission = "get"
	PermList Permission = "list"
)

// ParsePermission parses a permission case-insensitively.
func ParsePermission(s string) (Permission, error) {
	switch p := Permission(strings.ToLower(s)); p {
	case PermGet, PermList:
		return p, nil
	}
	return "", fmt.Errorf("secret permission %q: want get or list: %w", s, ErrInvalid)
}

// Service manages vaults, secrets and access policies. It is safe for
// concurrent use.
type Service struct {
	db    *db.DB
	log   *slog.Logger
	now   func() time.Time
	aead  cipher.AEAD
	keyID string
}

// Option configures a Service.
type Option func(*Service) error

// WithLogger sets the logger; the default discards. Values never reach it.
func WithLogger(l *slog.Logger) Option {
	return func(s *Service) error {
		if l == nil {
			return fmt.Errorf("nil logger: %w", ErrInvalid)
		}
		s.log = l
		return nil
	}
}

// WithClock sets the clock for timestamps (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Service) error {
		if now == nil {
			return fmt.Errorf("nil clock: %w", ErrInvalid)
		}
		s.now = now
		return nil
	}
}

// New returns a Service over d. The master key is read from
// keysDir/vault-master.key, or created there (0600) on first use.
func New(d *db.DB, keysDir string, opts ...Option) (*Service, error) {
	if d == nil {
		return nil, fmt.Errorf("nil database: %w", ErrInvalid)
	}
	s := &Service{db: d, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, err
		}
	}
	key, err := loadKey(keysDir, MasterKeyFile)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("vault master key: %w", err)
	}
	if s.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("vault master key: %w", err)
	}
	sum := sha256.Sum256(append([]byte("gantry vault key id\x00"), key...))
	s.keyID = hex.EncodeToString(sum[:8])
	return s, nil
}

// Vault is a named set of secrets.
type Vault struct {
	Name      string
	CreatedAt time.Time
}

// vaultName is Azure Key Vault's naming rule: 3-24 letters, digits and
// single hyphens, starting with a letter and not ending with a hyphen.
var vaultName = regexp.MustCompile(`^[a-z][a-z0-9-]{1,22}[a-z0-9]$`)

func normalizeVault(name string) (string, error) {
	n := strings.ToLower(name)
	if !vaultName.MatchString(n) || strings.Contains(n, "--") {
		return "", fmt.Errorf("vault name %q: want 3-24 letters, digits and single hyphens, starting with a letter: %w", name, ErrInvalid)
	}
	return n, nil
}

var secretName = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

func validateSecretName(name string) error {
	if !secretName.MatchString(name) {
		return fmt.Errorf("secret name %q: want 1-127 letters, digits and hyphens: %w", name, ErrInvalid)
	}
	return nil
}

func requireAdmin(id auth.Identity, what string) error {
	if id.Anonymous() {
		return fmt.Errorf("%s: %w", what, auth.ErrUnauthenticated)
	}
	if !id.Admin() {
		return fmt.Errorf("%s: only the admin may do this: %w", what, auth.ErrDenied)
	}
	return nil
}

// permitted checks that id may use perm on vault: the admin, or a principal
// whose policy has it.
func (s *Service) permitted(ctx context.Context, id auth.Identity, vault string, perm Permission) error {
	if id.Anonymous() {
		return fmt.Errorf("vault %q: %w", vault, auth.ErrUnauthenticated)
	}
	if id.Admin() {
		return nil
	}
	var perms string
	err := s.db.R.QueryRowContext(ctx, `SELECT permissions FROM vault_policies WHERE vault = ? AND principal_id = ?`, vault, id.Principal).Scan(&perms)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("reading policy of vault %q: %w", vault, err)
	}
	if slices.Contains(strings.Split(perms, ","), string(perm)) {
		return nil
	}
	s.log.WarnContext(ctx, "vault access denied", "vault", vault, "principal", id.Principal, "permission", string(perm))
	return fmt.Errorf("principal %s (%s) has no %s permission on vault %q: %w", id.Principal, id.Name, perm, vault, auth.ErrDenied)
}

// CreateVault creates a vault (admin only). Names are case-insensitive and
// kept lowercase.
func (s *Service) CreateVault(ctx context.Context, id auth.Identity, name string) (Vault, error) {
	if err := requireAdmin(id, "creating vault"); err != nil {
		return Vault{}, err
	}
	n, err := normalizeVault(name)
	if err != nil {
		return Vault{}, err
	}
	v := Vault{Name: n, CreatedAt: s.now().UTC()}
	if _, err := s.db.W.ExecContext(ctx, `INSERT INTO vaults(name, created_at) VALUES (?, ?)`, n, timeText(v.CreatedAt)); err != nil {
		if isUniqueViolation(err) {
			return Vault{}, fmt.Errorf("vault %q: %w", n, ErrExists)
		}
		return Vault{}, fmt.Errorf("creating vault %q: %w", n, err)
	}
	s.log.InfoContext(ctx, "vault created", "vault", n)
	return v, nil
}

// GetVault returns a vault (admin only).
func (s *Service) GetVault(ctx context.Context, id auth.Identity, name string) (Vault, error) {
	if err := requireAdmin(id, "showing vault"); err != nil {
		return Vault{}, err
	}
	n, err := normalizeVault(name)
	if err != nil {
		return Vault{}, err
	}
	return s.getVault(ctx, n)
}

func (s *Service) getVault(ctx context.Context, n string) (Vault, error) {
	v := Vault{Name: n}
	var created string
	err := s.db.R.QueryRowContext(ctx, `SELECT created_at FROM vaults WHERE name = ?`, n).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		return Vault{}, fmt.Errorf("vault %q: %w", n, ErrNotFound)
	}
	if err != nil {
		return Vault{}, fmt.Errorf("reading vault %q: %w", n, err)
	}
	v.CreatedAt = parseTime(created)
	return v, nil
}

// ListVaults returns every vault by name (admin only).
func (s *Service) ListVaults(ctx context.Context, id auth.Identity) ([]Vault, error) {
	if err := requireAdmin(id, "listing vaults"); err != nil {
		return nil, err
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT name, created_at FROM vaults ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing vaults: %w", err)
	}
	defer rows.Close()
	var out []Vault
	for rows.Next() {
		var v Vault
		var created string
		if err := rows.Scan(&v.Name, &created); err != nil {
			return nil, fmt.Errorf("listing vaults: %w", err)
		}
		v.CreatedAt = parseTime(created)
		out = append(out, v)
	}
	return out, rows.Err()
}

// DeleteVault deletes a vault with its secrets and policies (admin only).
func (s *Service) DeleteVault(ctx context.Context, id auth.Identity, name string) error {
	if err := requireAdmin(id, "deleting vault"); err != nil {
		return err
	}
	n, err := normalizeVault(name)
	if err != nil {
		return err
	}
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM vaults WHERE name = ?`, n)
	if err != nil {
		return fmt.Errorf("deleting vault %q: %w", n, err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("vault %q: %w", n, ErrNotFound)
	}
	s.log.InfoContext(ctx, "vault deleted", "vault", n)
	return nil
}

// SecretInfo describes a secret version without its value.
type SecretInfo struct {
	Vault   string
	Name    string
	Version string
	// ID is the secret version's URI, vault://<vault>/secrets/<name>/<version>.
	ID        string
	CreatedAt time.Time // when the secret was first set
	UpdatedAt time.Time // when this version was set
}

// Secret is a secret version with its value.
type Secret struct {
	SecretInfo
	Value string
}

// SetSecret stores a new version of a secret (admin only) and returns its
// description.
func (s *Service) SetSecret(ctx context.Context, id auth.Identity, vault, name, value string) (SecretInfo, error) {
	if err := requireAdmin(id, "setting secret"); err != nil {
		return SecretInfo{}, err
	}
	v, err := normalizeVault(vault)
	if err != nil {
		return SecretInfo{}, err
	}
	if err := validateSecretName(name); err != nil {
		return SecretInfo{}, err
	}
	if len(value) > MaxValueSize {
		return SecretInfo{}, fmt.Errorf("secret %q: value larger than %d bytes: %w", name, MaxValueSize, ErrInvalid)
	}
	now := s.now().UTC()
	info := SecretInfo{Vault: v, Version: newVersion(), UpdatedAt: now}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO vault_secrets(vault, name, created_at, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT(vault, name) DO UPDATE SET updated_at = excluded.updated_at`, v, name, timeText(now), timeText(now)); err != nil {
			if isForeignKeyViolation(err) {
				return fmt.Errorf("vault %q: %w", v, ErrNotFound)
			}
			return fmt.Errorf("storing secret %q: %w", name, err)
		}
		var created string
		if err := tx.QueryRowContext(ctx, `SELECT name, created_at FROM vault_secrets WHERE vault = ? AND name = ?`, v, name).
			Scan(&info.Name, &created); err != nil {
			return fmt.Errorf("storing secret %q: %w", name, err)
		}
		info.CreatedAt = parseTime(created)
		nonce := make([]byte, s.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("storing secret %q: %w", name, err)
		}
		ct := s.aead.Seal(nil, nonce, []byte(value), aad(v, info.Name, info.Version))
		_, err := tx.ExecContext(ctx, `INSERT INTO vault_secret_versions(vault, name, version, key_id, nonce, ciphertext, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			v, info.Name, info.Version, s.keyID, nonce, ct, timeText(now))
		if err != nil {
			return fmt.Errorf("storing secret %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return SecretInfo{}, err
	}
	info.ID = URI{Vault: v, Name: info.Name, Version: info.Version}.String()
	s.log.InfoContext(ctx, "secret set", "vault", v, "secret", info.Name, "version", info.Version)
	return info, nil
}

// GetSecret returns a secret's value: the newest version, or the given one.
// It needs the admin or the get permission.
func (s *Service) GetSecret(ctx context.Context, id auth.Identity, vault, name, version string) (Secret, error) {
	v, err := normalizeVault(vault)
	if err != nil {
		return Secret{}, err
	}
	if err := validateSecretName(name); err != nil {
		return Secret{}, err
	}
	if err := s.permitted(ctx, id, v, PermGet); err != nil {
		return Secret{}, err
	}
	q := `SELECT s.name, s.created_at, v.version, v.key_id, v.nonce, v.ciphertext, v.created_at
		FROM vault_secrets s JOIN vault_secret_versions v ON v.vault = s.vault AND v.name = s.name
		WHERE s.vault = ? AND s.name = ?`
	args := []any{v, name}
	if version != "" {
		q += ` AND v.version = ?`
		args = append(args, version)
	}
	q += ` ORDER BY v.seq DESC LIMIT 1`
	sec := Secret{SecretInfo: SecretInfo{Vault: v}}
	var created, updated, keyID string
	var nonce, ct []byte
	err = s.db.R.QueryRowContext(ctx, q, args...).Scan(&sec.Name, &created, &sec.Version, &keyID, &nonce, &ct, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Secret{}, fmt.Errorf("secret %s: %w", URI{Vault: v, Name: name, Version: version}, ErrNotFound)
	}
	if err != nil {
		return Secret{}, fmt.Errorf("reading secret %s: %w", URI{Vault: v, Name: name}, err)
	}
	uri := URI{Vault: v, Name: sec.Name, Version: sec.Version}
	if keyID != s.keyID {
		return Secret{}, fmt.Errorf("secret %s was encrypted under another master key (key id %s, this server has %s)", uri, keyID, s.keyID)
	}
	plain, err := s.aead.Open(nil, nonce, ct, aad(v, sec.Name, sec.Version))
	if err != nil {
		return Secret{}, fmt.Errorf("secret %s: ciphertext fails authentication (tampered or moved)", uri)
	}
	sec.Value = string(plain)
	sec.ID, sec.CreatedAt, sec.UpdatedAt = uri.String(), parseTime(created), parseTime(updated)
	return sec, nil
}

// ListSecrets describes the newest version of every secret of a vault, by
// name. It needs the admin or the list permission.
func (s *Service) ListSecrets(ctx context.Context, id auth.Identity, vault string) ([]SecretInfo, error) {
	v, err := normalizeVault(vault)
	if err != nil {
		return nil, err
	}
	if err := s.permitted(ctx, id, v, PermList); err != nil {
		return nil, err
	}
	if _, err := s.getVault(ctx, v); err != nil {
		return nil, err
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT s.name, s.created_at, v.version, v.created_at
		FROM vault_secrets s JOIN vault_secret_versions v ON v.vault = s.vault AND v.name = s.name
		WHERE s.vault = ? AND v.seq = (SELECT max(seq) FROM vault_secret_versions WHERE vault = s.vault AND name = s.name)
		ORDER BY s.name COLLATE NOCASE`, v)
	if err != nil {
		return nil, fmt.Errorf("listing secrets of vault %q: %w", v, err)
	}
	defer rows.Close()
	var out []SecretInfo
	for rows.Next() {
		info := SecretInfo{Vault: v}
		var created, updated string
		if err := rows.Scan(&info.Name, &created, &info.Version, &updated); err != nil {
			return nil, fmt.Errorf("listing secrets of vault %q: %w", v, err)
		}
		info.CreatedAt, info.UpdatedAt = parseTime(created), parseTime(updated)
		info.ID = URI{Vault: v, Name: info.Name, Version: info.Version}.String()
		out = append(out, info)
	}
	return out, rows.Err()
}

// DeleteSecret deletes a secret with all its versions (admin only).
func (s *Service) DeleteSecret(ctx context.Context, id auth.Identity, vault, name string) error {
	if err := requireAdmin(id, "deleting secret"); err != nil {
		return err
	}
	v, err := normalizeVault(vault)
	if err != nil {
		return err
	}
	if err := validateSecretName(name); err != nil {
		return err
	}
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM vault_secrets WHERE vault = ? AND name = ?`, v, name)
	if err != nil {
		return fmt.Errorf("deleting secret %s: %w", URI{Vault: v, Name: name}, err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("secret %s: %w", URI{Vault: v, Name: name}, ErrNotFound)
	}
	s.log.InfoContext(ctx, "secret deleted", "vault", v, "secret", name)
	return nil
}

// Policy is the secret permissions of one principal on a vault.
type Policy struct {
	Vault       string
	ObjectID    string // principal ID
	Permissions []Permission
	UpdatedAt   time.Time
}

// SetPolicy sets (replaces) the secret permissions of principal objectID on
// vault (admin only). The principal must exist; the policy goes away with it.
func (s *Service) SetPolicy(ctx context.Context, id auth.Identity, vault, objectID string, perms []Permission) (Policy, error) {
	if err := requireAdmin(id, "setting vault policy"); err != nil {
		return Policy{}, err
	}
	v, err := normalizeVault(vault)
	if err != nil {
		return Policy{}, err
	}
	set := map[Permission]bool{}
	for _, p := range perms {
		pp, err := ParsePermission(string(p))
		if err != nil {
			return Policy{}, err
		}
		set[pp] = true
	}
	if len(set) == 0 {
		return Policy{}, fmt.Errorf("policy for %s on vault %q: no permissions (use DeletePolicy to remove it): %w", objectID, v, ErrInvalid)
	}
	p := Policy{Vault: v, ObjectID: objectID, UpdatedAt: s.now().UTC()}
	for perm := range set {
		p.Permissions = append(p.Permissions, perm)
	}
	sort.Slice(p.Permissions, func(i, j int) bool { return p.Permissions[i] < p.Permissions[j] })
	text := make([]string, len(p.Permissions))
	for i, perm := range p.Permissions {
		text[i] = string(perm)
	}
	if _, err := s.getVault(ctx, v); err != nil {
		return Policy{}, err
	}
	_, err = s.db.W.ExecContext(ctx, `INSERT INTO vault_policies(vault, principal_id, permissions, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT(vault, principal_id) DO UPDATE SET permissions = excluded.permissions, updated_at = excluded.updated_at`,
		v, objectID, strings.Join(text, ","), timeText(p.UpdatedAt))
	if isForeignKeyViolation(err) {
		return Policy{}, fmt.Errorf("principal %q: %w", objectID, ErrNotFound)
	}
	if err != nil {
		return Policy{}, fmt.Errorf("setting policy on vault %q: %w", v, err)
	}
	s.log.InfoContext(ctx, "vault policy set", "vault", v, "principal", objectID, "permissions", strings.Join(text, ","))
	return p, nil
}

// DeletePolicy removes the policy of objectID on vault (admin only).
func (s *Service) DeletePolicy(ctx context.Context, id auth.Identity, vault, objectID string) error {
	if err := requireAdmin(id, "deleting vault policy"); err != nil {
		return err
	}
	v, err := normalizeVault(vault)
	if err != nil {
		return err
	}
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM vault_policies WHERE vault = ? AND principal_id = ?`, v, objectID)
	if err != nil {
		return fmt.Errorf("deleting policy on vault %q: %w", v, err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("policy for %s on vault %q: %w", objectID, v, ErrNotFound)
	}
	s.log.InfoContext(ctx, "vault policy deleted", "vault", v, "principal", objectID)
	return nil
}

// ListPolicies returns the policies of a vault (admin only).
func (s *Service) ListPolicies(ctx context.Context, id auth.Identity, vault string) ([]Policy, error) {
	if err := requireAdmin(id, "listing vault policies"); err != nil {
		return nil, err
	}
	v, err := normalizeVault(vault)
	if err != nil {
		return nil, err
	}
	if _, err := s.getVault(ctx, v); err != nil {
		return nil, err
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT principal_id, permissions, updated_at FROM vault_policies WHERE vault = ? ORDER BY principal_id`, v)
	if err != nil {
		return nil, fmt.Errorf("listing policies of vault %q: %w", v, err)
	}
	defer rows.Close()
	var out []Policy
	for rows.Next() {
		p := Policy{Vault: v}
		var perms, updated string
		if err := rows.Scan(&p.ObjectID, &perms, &updated); err != nil {
			return nil, fmt.Errorf("listing policies of vault %q: %w", v, err)
		}
		for _, perm := range strings.Split(perms, ",") {
			p.Permissions = append(p.Permissions, Permission(perm))
		}
		p.UpdatedAt = parseTime(updated)
		out = append(out, p)
	}
	return out, rows.Err()
}

// Resolve returns the value a secret URI names, as id. Both
// vault://<vault>/secrets/<name>[/<version>] and
// https://<vault>.vault.azure.net/secrets/<name>[/<version>] are accepted.
// Errors name the URI, never the value.
func (s *Service) Resolve(ctx context.Context, id auth.Identity, uri string) (string, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return "", err
	}
	sec, err := s.GetSecret(ctx, id, u.Vault, u.Name, u.Version)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", u, err)
	}
	return sec.Value, nil
}

// aad is the additional authenticated data of a secret version.
func aad(vault, name, version string) []byte {
	return []byte("gantry-vault/v1\x00" + vault + "\x00" + strings.ToLower(name) + "\x00" + version)
}

func newVersion() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}
