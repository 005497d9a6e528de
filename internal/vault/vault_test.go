package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/testenv"
)

type env struct {
	v     *Service
	auth  *auth.Service
	db    *db.DB
	dir   string
	logs  *testenv.Buffer
	admin auth.Identity
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	d := testenv.DB(t, dir)
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := auth.New(d, filepath.Join(dir, "keys"), auth.WithPasswordHashCost(64, 1), auth.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	setup, err := a.EnsureAdmin(ctx, "admin-password", dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(d, filepath.Join(dir, "keys"), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	return &env{v: v, auth: a, db: d, dir: dir, logs: logs,
		admin: auth.Identity{Principal: setup.Principal, Name: auth.AdminUsername, Kind: auth.KindAdmin}}
}

func (e *env) identity(t *testing.T, name string) auth.Identity {
	t.Helper()
	p, err := e.auth.CreateIdentity(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return auth.Identity{Principal: p.ID, Name: name, Kind: auth.KindIdentity}
}

func randomValue(t *testing.T) string {
	t.Helper()
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "known-secret-" + hex.EncodeToString(b)
}

// TestEncryptedAtRest greps the whole data directory (database, WAL, keys)
// for a known secret value: it must not be there in any common encoding.
func TestEncryptedAtRest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	value := randomValue(t)
	if _, err := e.v.CreateVault(ctx, e.admin, "contoso-kv"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // several versions
		if _, err := e.v.SetSecret(ctx, e.admin, "contoso-kv", "registry-pass", value); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
	}
	got, err := e.v.GetSecret(ctx, e.admin, "contoso-kv", "registry-pass", "")
	if err != nil || got.Value != value {
		t.Fatalf("GetSecret = %q, %v", got.Value, err)
	}
	needles := [][]byte{
		[]byte(value),
		[]byte(base64.StdEncoding.EncodeToString([]byte(value))),
		[]byte(hex.EncodeToString([]byte(value))),
	}
	grep := func(stage string) {
		t.Helper()
		n := 0
		err := filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			n++
			for _, needle := range needles {
				if bytes.Contains(b, needle) {
					t.Errorf("%s: %s contains the secret value", stage, path)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < 3 {
			t.Fatalf("%s: only %d files searched", stage, n)
		}
	}
	grep("open")
	if strings.Contains(e.logs.String(), value) {
		t.Fatal("logs contain the secret value")
	}
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	grep("closed")

	// The master key is kept apart from the database, 0600.
	keyPath := filepath.Join(e.dir, "keys", MasterKeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v %v", fi, err)
	}
	key, _ := os.ReadFile(keyPath)
	dbBytes, _ := os.ReadFile(filepath.Join(e.dir, "gantry.db"))
	if bytes.Contains(dbBytes, bytes.TrimSpace(key)) {
		t.Fatal("database contains the master key")
	}
}

func TestTamperAndKeyMismatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	a, b := randomValue(t), randomValue(t)
	if _, err := e.v.CreateVault(ctx, e.admin, "kv1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.SetSecret(ctx, e.admin, "kv1", "a", a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.SetSecret(ctx, e.admin, "kv1", "b", b); err != nil {
		t.Fatal(err)
	}
	// Move a's ciphertext onto b: authentication fails, as the ciphertext is
	// bound to its name.
	if _, err := e.db.W.Exec(`UPDATE vault_secret_versions SET nonce = (SELECT nonce FROM vault_secret_versions WHERE name = 'a'),
		ciphertext = (SELECT ciphertext FROM vault_secret_versions WHERE name = 'a') WHERE name = 'b'`); err != nil {
		t.Fatal(err)
	}
	_, err := e.v.GetSecret(ctx, e.admin, "kv1", "b", "")
	if err == nil || strings.Contains(err.Error(), a) || strings.Contains(err.Error(), b) {
		t.Fatalf("moved ciphertext: %v", err)
	}
	if got, err := e.v.GetSecret(ctx, e.admin, "kv1", "a", ""); err != nil || got.Value != a {
		t.Fatalf("untouched secret: %v", err)
	}
	// Another master key cannot read, and says so.
	other, err := New(e.db, filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.GetSecret(ctx, e.admin, "kv1", "a", ""); err == nil || !strings.Contains(err.Error(), "another master key") {
		t.Fatalf("other key: %v", err)
	}
	// The same key directory works across restarts.
	again, err := New(e.db, filepath.Join(e.dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.GetSecret(ctx, e.admin, "kv1", "a", ""); err != nil || got.Value != a {
		t.Fatalf("after restart: %v", err)
	}
}

func TestPolicies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	value := randomValue(t)
	if _, err := e.v.CreateVault(ctx, e.admin, "kv0"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.SetSecret(ctx, e.admin, "kv0", "pw", value); err != nil {
		t.Fatal(err)
	}
	getter := e.identity(t, "task:reg/getter")
	lister := e.identity(t, "task:reg/lister")
	both := e.identity(t, "task:reg/both")
	nobody := e.identity(t, "task:reg/nobody")
	for _, p := range []struct {
		id    auth.Identity
		perms []Permission
	}{{getter, []Permission{"Get"}}, {lister, []Permission{PermList}}, {both, []Permission{PermGet, PermList, PermGet}}} {
		if _, err := e.v.SetPolicy(ctx, e.admin, "KV0", p.id.Principal, p.perms); err != nil {
			t.Fatal(err)
		}
	}
	// A run of a task with the getter identity acts as that principal; a
	// run without identity has a principal of its own.
	getterRun := auth.Identity{Principal: getter.Principal, Kind: auth.KindRun, RunID: "ca1", Registry: "reg"}
	plainRun := auth.Identity{Principal: "8d1b7f16-0000-4000-8000-000000000000", Kind: auth.KindRun, RunID: "ca2", Registry: "reg"}
	anon := auth.Identity{}

	const A, D, U = "allow", "403", "401"
	outcome := func(err error) string {
		switch {
		case err == nil:
			return A
		case errors.Is(err, auth.ErrUnauthenticated):
			return U
		case errors.Is(err, auth.ErrDenied):
			return D
		}
		return "error: " + err.Error()
	}
	ops := []struct {
		name string
		do   func(id auth.Identity) error
	}{
		{"get", func(id auth.Identity) error {
			s, err := e.v.GetSecret(ctx, id, "kv0", "pw", "")
			if err == nil && s.Value != value {
				t.Errorf("wrong value")
			}
			return err
		}},
		{"resolve", func(id auth.Identity) error {
			_, err := e.v.Resolve(ctx, id, "https://kv0.vault.azure.net/secrets/pw")
			return err
		}},
		{"list", func(id auth.Identity) error { _, err := e.v.ListSecrets(ctx, id, "kv0"); return err }},
		{"set", func(id auth.Identity) error { _, err := e.v.SetSecret(ctx, id, "kv0", "other", "x"); return err }},
		{"delete", func(id auth.Identity) error { return e.v.DeleteSecret(ctx, id, "kv0", "nope") }},
		{"set-policy", func(id auth.Identity) error {
			_, err := e.v.SetPolicy(ctx, id, "kv0", nobody.Principal, []Permission{PermGet})
			if err == nil {
				err = e.v.DeletePolicy(ctx, id, "kv0", nobody.Principal)
			}
			return err
		}},
		{"create vault", func(id auth.Identity) error {
			_, err := e.v.CreateVault(ctx, id, "kv-new")
			if err == nil {
				err = e.v.DeleteVault(ctx, id, "kv-new")
			}
			return err
		}},
	}
	matrix := []struct {
		name string
		id   auth.Identity
		want []string
	}{
		{"admin", e.admin, []string{A, A, A, A, "error", A, A}},
		{"anonymous", anon, []string{U, U, U, U, U, U, U}},
		{"get policy", getter, []string{A, A, D, D, D, D, D}},
		{"list policy", lister, []string{D, D, A, D, D, D, D}},
		{"get+list policy", both, []string{A, A, A, D, D, D, D}},
		{"no policy", nobody, []string{D, D, D, D, D, D, D}},
		{"run with get identity", getterRun, []string{A, A, D, D, D, D, D}},
		{"run without identity", plainRun, []string{D, D, D, D, D, D, D}},
	}
	for _, row := range matrix {
		for i, op := range ops {
			err := op.do(row.id)
			got := outcome(err)
			if row.want[i] == "error" {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("%s × %s = %v, want not found", row.name, op.name, err)
				}
				continue
			}
			if got != row.want[i] {
				t.Errorf("%s × %s = %s, want %s", row.name, op.name, got, row.want[i])
			}
			if err != nil && strings.Contains(err.Error(), value) {
				t.Errorf("%s × %s: error contains the value", row.name, op.name)
			}
		}
	}

	// Policies: listed, replaced, validated, and gone with the principal.
	pols, err := e.v.ListPolicies(ctx, e.admin, "kv0")
	if err != nil || len(pols) != 3 {
		t.Fatalf("ListPolicies = %+v, %v", pols, err)
	}
	for _, p := range pols {
		if p.ObjectID == both.Principal && !slices.Equal(p.Permissions, []Permission{PermGet, PermList}) {
			t.Fatalf("policy of both = %v", p.Permissions)
		}
	}
	if _, err := e.v.SetPolicy(ctx, e.admin, "kv0", getter.Principal, []Permission{PermList}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.GetSecret(ctx, getter, "kv0", "pw", ""); !errors.Is(err, auth.ErrDenied) {
		t.Fatalf("after replacing get by list: %v", err)
	}
	for _, tc := range []struct {
		name   string
		vault  string
		object string
		perms  []Permission
		want   error
	}{
		{"unknown principal", "kv0", "00000000-0000-0000-0000-000000000000", []Permission{PermGet}, ErrNotFound},
		{"unknown vault", "nope", getter.Principal, []Permission{PermGet}, ErrNotFound},
		{"bad permission", "kv0", getter.Principal, []Permission{"set"}, ErrInvalid},
		{"no permissions", "kv0", getter.Principal, nil, ErrInvalid},
	} {
		if _, err := e.v.SetPolicy(ctx, e.admin, tc.vault, tc.object, tc.perms); !errors.Is(err, tc.want) {
			t.Errorf("SetPolicy %s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := e.auth.DeleteIdentity(ctx, both.Principal); err != nil {
		t.Fatal(err)
	}
	if pols, _ := e.v.ListPolicies(ctx, e.admin, "kv0"); len(pols) != 2 {
		t.Fatalf("policies after deleting an identity: %+v", pols)
	}
	if err := e.v.DeletePolicy(ctx, e.admin, "kv0", both.Principal); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeletePolicy(missing) = %v", err)
	}
}

func TestSecretsLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1, v2 := randomValue(t), randomValue(t)
	for _, name := range []string{"Contoso-KV", "other-kv"} {
		if _, err := e.v.CreateVault(ctx, e.admin, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.v.CreateVault(ctx, e.admin, "CONTOSO-kv"); !errors.Is(err, ErrExists) || !errors.Is(err, db.ErrConflict) {
		t.Fatalf("duplicate vault: %v", err)
	}
	for _, bad := range []string{"ab", "1abc", "abc-", "a--b", strings.Repeat("a", 25), "a_b"} {
		if _, err := e.v.CreateVault(ctx, e.admin, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateVault(%q) = %v", bad, err)
		}
	}
	vaults, err := e.v.ListVaults(ctx, e.admin)
	if err != nil || len(vaults) != 2 || vaults[0].Name != "contoso-kv" {
		t.Fatalf("ListVaults = %+v, %v", vaults, err)
	}

	first, err := e.v.SetSecret(ctx, e.admin, "contoso-kv", "Registry-Pass", v1)
	if err != nil {
		t.Fatal(err)
	}
	e2 := e.v
	second, err := e2.SetSecret(ctx, e.admin, "contoso-kv", "registry-pass", v2)
	if err != nil {
		t.Fatal(err)
	}
	if first.Version == second.Version || second.Name != "Registry-Pass" || !strings.HasPrefix(second.ID, "vault://contoso-kv/secrets/Registry-Pass/") {
		t.Fatalf("versions: %+v %+v", first, second)
	}
	// Newest by default, older by version, names case-insensitive.
	for _, tc := range []struct {
		name, version, want string
	}{
		{"registry-pass", "", v2},
		{"REGISTRY-PASS", "", v2},
		{"Registry-Pass", first.Version, v1},
		{"Registry-Pass", second.Version, v2},
	} {
		got, err := e.v.GetSecret(ctx, e.admin, "Contoso-KV", tc.name, tc.version)
		if err != nil || got.Value != tc.want {
			t.Errorf("GetSecret(%s, %q) = %v", tc.name, tc.version, err)
		}
	}
	if _, err := e.v.GetSecret(ctx, e.admin, "contoso-kv", "registry-pass", "0123"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown version: %v", err)
	}
	// Resolve: both URI forms and versions.
	for _, tc := range []struct {
		uri, want string
	}{
		{"vault://contoso-kv/secrets/registry-pass", v2},
		{"https://contoso-kv.vault.azure.net/secrets/registry-pass", v2},
		{"https://Contoso-KV.vault.azure.net/secrets/Registry-Pass/", v2},
		{"https://contoso-kv.vault.azure.net/secrets/registry-pass/" + first.Version, v1},
		{"vault://contoso-kv/secrets/registry-pass/" + first.Version, v1},
	} {
		got, err := e.v.Resolve(ctx, e.admin, tc.uri)
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%s): %v", tc.uri, err)
		}
	}
	_, err = e.v.Resolve(ctx, e.admin, "vault://contoso-kv/secrets/missing")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "vault://contoso-kv/secrets/missing") {
		t.Fatalf("Resolve(missing) = %v", err)
	}

	if _, err := e.v.SetSecret(ctx, e.admin, "contoso-kv", "empty", ""); err != nil {
		t.Fatalf("empty value: %v", err)
	}
	if _, err := e.v.SetSecret(ctx, e.admin, "contoso-kv", "big", strings.Repeat("x", MaxValueSize+1)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized value: %v", err)
	}
	if _, err := e.v.SetSecret(ctx, e.admin, "missing-kv", "x", v1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown vault: %v", err)
	}
	if _, err := e.v.SetSecret(ctx, e.admin, "contoso-kv", "bad_name", v1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad secret name: %v", err)
	}
	list, err := e.v.ListSecrets(ctx, e.admin, "contoso-kv")
	if err != nil || len(list) != 2 || list[0].Name != "empty" || list[1].Name != "Registry-Pass" || list[1].Version != second.Version {
		t.Fatalf("ListSecrets = %+v, %v", list, err)
	}
	if _, err := e.v.ListSecrets(ctx, e.admin, "missing-kv"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ListSecrets(missing) = %v", err)
	}
	if err := e.v.DeleteSecret(ctx, e.admin, "contoso-kv", "registry-PASS"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.GetSecret(ctx, e.admin, "contoso-kv", "registry-pass", first.Version); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted secret: %v", err)
	}
	if err := e.v.DeleteSecret(ctx, e.admin, "contoso-kv", "registry-pass"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	// Deleting a vault takes its secrets along.
	if err := e.v.DeleteVault(ctx, e.admin, "contoso-kv"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := e.db.R.QueryRow(`SELECT (SELECT count(*) FROM vault_secrets) + (SELECT count(*) FROM vault_secret_versions)`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows left: %d %v", n, err)
	}
	if _, err := e.v.GetVault(ctx, e.admin, "contoso-kv"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted vault: %v", err)
	}
	if err := e.v.DeleteVault(ctx, e.admin, "contoso-kv"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

func TestParseURI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want URI
		ok   bool
	}{
		{"vault://kv1/secrets/pw", URI{Vault: "kv1", Name: "pw"}, true},
		{"vault://KV1/secrets/pw/abc123", URI{Vault: "kv1", Name: "pw", Version: "abc123"}, true},
		{"https://kv1.vault.azure.net/secrets/registry-user", URI{Vault: "kv1", Name: "registry-user"}, true},
		{"https://KV1.Vault.Azure.Net/secrets/pw/0f1e", URI{Vault: "kv1", Name: "pw", Version: "0f1e"}, true},
		{"https://kv1.vault.azure.net/secrets/pw/", URI{Vault: "kv1", Name: "pw"}, true},
		{"vault://kv1/secret/pw", URI{}, false},
		{"vault://kv1/secrets", URI{}, false},
		{"vault://kv1/secrets/", URI{}, false},
		{"vault://kv1/secrets/a/b/c", URI{}, false},
		{"vault://kv1/secrets/bad_name", URI{}, false},
		{"vault:///secrets/pw", URI{}, false},
		{"vault://k/secrets/pw", URI{}, false},
		{"http://kv1.vault.azure.net/secrets/pw", URI{}, false},
		{"https://kv1.example.com/secrets/pw", URI{}, false},
		{"https://kv1.vault.azure.net:8443/secrets/pw", URI{}, false},
		{"https://user:pass@kv1.vault.azure.net/secrets/pw", URI{}, false},
		{"https://kv1.vault.azure.net/secrets/pw?api-version=7.4", URI{}, false},
		{"vault:kv1/secrets/pw", URI{}, false},
		{"kv1/secrets/pw", URI{}, false},
		{"", URI{}, false},
	} {
		got, err := ParseURI(tc.in)
		if tc.ok && (err != nil || got != tc.want) || !tc.ok && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseURI(%q) = %+v, %v", tc.in, got, err)
		}
		if tc.ok && got.String() != "vault://"+tc.want.Vault+"/secrets/"+tc.want.Name+map[bool]string{true: "/" + tc.want.Version}[tc.want.Version != ""] {
			t.Errorf("String() = %s", got)
		}
	}
	// A literal secret mistaken for a URI is never echoed.
	literal := "hunter2-" + randomValue(t)
	if _, err := ParseURI(literal); err == nil || strings.Contains(err.Error(), literal) {
		t.Fatalf("ParseURI(literal) = %v", err)
	}
	if _, err := ParseURI("https://u:" + literal + "@kv1.vault.azure.net/secrets/pw"); err == nil || strings.Contains(err.Error(), literal) {
		t.Fatalf("ParseURI(userinfo) = %v", err)
	}
	for in, want := range map[string]bool{
		"vault://kv/secrets/x":                  true,
		"https://kv.vault.azure.net/secrets/x":  true,
		"https://example.com/secrets/x":         false,
		"plain-password":                        false,
		"https://kv.vault.azure.net.evil.com/x": false,
	} {
		if IsURI(in) != want {
			t.Errorf("IsURI(%q) != %v", in, want)
		}
	}
}
