package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s

	login := func(registry, user, pass string) outcome {
		t.Helper()
		r := request("GET", "/v2/app/manifests/latest")
		r.SetBasicAuth(user, pass)
		_, err := s.Authorize(r, registry, pull("app"))
		return classify(err)
	}

	// Create with an expiry on both passwords.
	expiry := e.clock.Now().Add(48 * time.Hour)
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "puller", ScopeMap: ScopeMapPull, Expiry: expiry})
	if tok.ID == "" || tok.Status != TokenEnabled || len(tok.Passwords) != 2 {
		t.Fatalf("created token: %+v", tok)
	}
	p1, p2 := tok.Passwords[0], tok.Passwords[1]
	if p1.Name != Password1 || p2.Name != Password2 || p1.Value == "" || p2.Value == "" || p1.Value == p2.Value {
		t.Fatalf("passwords: %+v", tok.Passwords)
	}
	if len(p1.Value) < 40 {
		t.Fatalf("password %d characters: too little entropy", len(p1.Value))
	}
	if !p1.Expiry.Equal(expiry) {
		t.Fatalf("expiry = %v, want %v", p1.Expiry, expiry)
	}

	// Shown never again.
	shown, err := s.GetToken(ctx, "reg1", "puller")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range shown.Passwords {
		if p.Value != "" {
			t.Fatalf("GetToken shows a password value")
		}
	}
	if len(shown.Passwords) != 2 || shown.ScopeMap != ScopeMapPull || !shown.Passwords[1].Expiry.Equal(expiry) {
		t.Fatalf("GetToken = %+v", shown)
	}

	for _, tc := range []struct {
		step                 string
		registry, user, pass string
		want                 outcome
	}{
		{"password1", "reg1", "puller", p1.Value, allow},
		{"password2", "reg1", "puller", p2.Value, allow},
		{"wrong password", "reg1", "puller", p1.Value + "x", unauth},
		{"swapped user", "reg1", "pullerx", p1.Value, unauth},
		{"wrong registry", "reg2", "puller", p1.Value, unauth},
		{"admin name", "reg1", "admin", p1.Value, unauth},
		{"empty password", "reg1", "puller", "", unauth},
	} {
		if got := login(tc.registry, tc.user, tc.pass); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.step, got, tc.want)
		}
	}

	// Regenerate password1 with its own expiry: the old value stops working.
	np1, err := s.GeneratePassword(ctx, "reg1", "puller", Password1, e.clock.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if np1.Value == "" || np1.Value == p1.Value {
		t.Fatalf("regenerated password: %+v", np1)
	}
	if got := login("reg1", "puller", p1.Value); got != unauth {
		t.Fatalf("old password1 after regeneration: %s", got)
	}
	if got := login("reg1", "puller", np1.Value); got != allow {
		t.Fatalf("new password1: %s", got)
	}

	// Expiry: password1 expires after 24h, password2 after 48h.
	e.clock.Advance(24 * time.Hour)
	r := request("GET", "/v2/")
	r.SetBasicAuth("puller", np1.Value)
	_, err = s.Authorize(r, "reg1", pull("app"))
	if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired password1: %v", err)
	}
	if got := login("reg1", "puller", p2.Value); got != allow {
		t.Fatalf("password2 before its expiry: %s", got)
	}
	e.clock.Advance(24 * time.Hour)
	if got := login("reg1", "puller", p2.Value); got != unauth {
		t.Fatalf("expired password2: %s", got)
	}

	// A password without expiry; disabling and re-enabling the token.
	np2, err := s.GeneratePassword(ctx, "reg1", "puller", Password2, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !np2.Expiry.IsZero() {
		t.Fatalf("no-expiry password has expiry %v", np2.Expiry)
	}
	if got := login("reg1", "puller", np2.Value); got != allow {
		t.Fatalf("new password2: %s", got)
	}
	disabled := TokenDisabled
	if _, err := s.UpdateToken(ctx, "reg1", "puller", TokenUpdate{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	r = request("GET", "/v2/")
	r.SetBasicAuth("puller", np2.Value)
	if _, err := s.Authorize(r, "reg1", pull("app")); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("disabled token: %v", err)
	}
	enabled := TokenEnabled
	if _, err := s.UpdateToken(ctx, "reg1", "puller", TokenUpdate{Status: &enabled}); err != nil {
		t.Fatal(err)
	}
	if got := login("reg1", "puller", np2.Value); got != allow {
		t.Fatalf("re-enabled token: %s", got)
	}

	// Deleting a password, then the token.
	if err := s.DeletePassword(ctx, "reg1", "puller", Password2); err != nil {
		t.Fatal(err)
	}
	if got := login("reg1", "puller", np2.Value); got != unauth {
		t.Fatalf("deleted password2: %s", got)
	}
	if err := s.DeletePassword(ctx, "reg1", "puller", Password2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting a missing password: %v", err)
	}
	if err := s.DeleteToken(ctx, "reg1", "puller"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetToken(ctx, "reg1", "puller"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted token: %v", err)
	}
	if _, err := s.Principal(ctx, tok.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("principal of deleted token: %v", err)
	}
	if err := s.DeleteToken(ctx, "reg1", "puller"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

func TestCreateTokenValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s
	mustToken(t, s, TokenSpec{Registry: "reg1", Name: "existing", ScopeMap: ScopeMapPull})
	past := e.clock.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name string
		spec TokenSpec
		want error
	}{
		{"short name", TokenSpec{Registry: "reg1", Name: "abcd", ScopeMap: ScopeMapPull}, ErrInvalid},
		{"long name", TokenSpec{Registry: "reg1", Name: strings.Repeat("a", 51), ScopeMap: ScopeMapPull}, ErrInvalid},
		{"bad character", TokenSpec{Registry: "reg1", Name: "bad_name", ScopeMap: ScopeMapPull}, ErrInvalid},
		{"reserved admin", TokenSpec{Registry: "reg1", Name: "Admin", ScopeMap: ScopeMapPull}, ErrInvalid},
		{"reserved run user", TokenSpec{Registry: "reg1", Name: RunUsername, ScopeMap: ScopeMapPull}, ErrInvalid},
		{"no scope", TokenSpec{Registry: "reg1", Name: "noscope"}, ErrInvalid},
		{"both scopes", TokenSpec{Registry: "reg1", Name: "both-scopes", ScopeMap: ScopeMapPull,
			Repositories: []RepositoryRule{{Repository: "x", Actions: []string{ContentRead}}}}, ErrInvalid},
		{"unknown map", TokenSpec{Registry: "reg1", Name: "unknown-map", ScopeMap: "no-such-map"}, ErrNotFound},
		{"unknown registry", TokenSpec{Registry: "nope", Name: "unknown-reg", ScopeMap: ScopeMapPull}, ErrNotFound},
		{"duplicate", TokenSpec{Registry: "reg1", Name: "existing", ScopeMap: ScopeMapPull}, ErrExists},
		{"bad status", TokenSpec{Registry: "reg1", Name: "bad-status", ScopeMap: ScopeMapPull, Status: "paused"}, ErrInvalid},
		{"past expiry", TokenSpec{Registry: "reg1", Name: "past-expiry", ScopeMap: ScopeMapPull, Expiry: past}, ErrInvalid},
		{"bad inline pattern", TokenSpec{Registry: "reg1", Name: "bad-inline",
			Repositories: []RepositoryRule{{Repository: "a/*/b", Actions: []string{ContentRead}}}}, ErrInvalid},
	} {
		if _, err := s.CreateToken(ctx, tc.spec); !errors.Is(err, tc.want) {
			t.Errorf("%s: CreateToken = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Nothing was left behind by the failed inline creation.
	if _, err := s.GetScopeMap(ctx, "reg1", "bad-inline-scope-map"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed creation left a scope map: %v", err)
	}
	// The same name in another registry is fine.
	mustToken(t, s, TokenSpec{Registry: "reg2", Name: "existing", ScopeMap: ScopeMapPull})

	// Inline repository rules create <name>-scope-map.
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "node-reader",
		Repositories: []RepositoryRule{{Repository: "node", Actions: []string{ContentRead}}}})
	if tok.ScopeMap != "node-reader-scope-map" {
		t.Fatalf("scope map = %q", tok.ScopeMap)
	}
	m, err := s.GetScopeMap(ctx, "reg1", "node-reader-scope-map")
	if err != nil || !rulesEqual(m.Rules, []RepositoryRule{{Repository: "node", Actions: []string{ContentRead}}}) {
		t.Fatalf("inline scope map = %+v, %v", m, err)
	}
	// Disabled at creation, and without passwords.
	tok = mustToken(t, s, TokenSpec{Registry: "reg1", Name: "later", ScopeMap: ScopeMapPull, Status: "Disabled", NoPasswords: true})
	if tok.Status != TokenDisabled || len(tok.Passwords) != 0 {
		t.Fatalf("token = %+v", tok)
	}
	list, err := s.ListTokens(ctx, "reg1")
	if err != nil || len(list) != 3 || list[0].Name != "existing" || list[1].Name != "later" {
		t.Fatalf("ListTokens = %+v, %v", list, err)
	}
	if _, err := s.ListTokens(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ListTokens(unknown registry) = %v", err)
	}
	bad := "no-such-map"
	if _, err := s.UpdateToken(ctx, "reg1", "later", TokenUpdate{ScopeMap: &bad}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateToken to unknown map: %v", err)
	}
	if _, err := s.GeneratePassword(ctx, "reg1", "later", "password3", time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("GeneratePassword(password3): %v", err)
	}
	if _, err := s.GeneratePassword(ctx, "reg1", "missing", Password1, time.Time{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GeneratePassword(missing token): %v", err)
	}
	// Errors also match the db sentinels.
	_, err = s.GetToken(ctx, "reg1", "missing")
	if !errors.Is(err, ErrNotFound) || err.Error() != `token "missing" in registry "reg1": not found` {
		t.Fatalf("GetToken(missing) = %v", err)
	}
}

// TestRegistryDeletionCascades checks that deleting a registry (done by the
// store) removes its tokens with their principals, scope maps, role
// assignments and run credentials.
func TestRegistryDeletionCascades(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s
	tok := mustToken(t, s, TokenSpec{Registry: "reg2", Name: "doomed", Repositories: []RepositoryRule{{Repository: "x", Actions: []string{ContentRead}}}})
	id, err := s.CreateIdentity(ctx, "task:reg1/t")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRoleAssignment(ctx, id.ID, RoleAcrPull, "/registries/reg2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRoleAssignment(ctx, id.ID, RoleOwner, "/containers"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.IssueRunCredential(ctx, RunGrant{Registry: "reg2", RunID: "ca1", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.W.ExecContext(ctx, `DELETE FROM registries WHERE name = 'reg2'`); err != nil {
		t.Fatal(err)
	}
	s.Invalidate()
	for _, q := range []string{
		`SELECT count(*) FROM tokens WHERE registry = 'reg2'`,
		`SELECT count(*) FROM scope_maps WHERE registry = 'reg2'`,
		`SELECT count(*) FROM scope_map_rules WHERE registry = 'reg2'`,
		`SELECT count(*) FROM principals WHERE id = '` + tok.ID + `'`,
		`SELECT count(*) FROM token_passwords WHERE token_id = '` + tok.ID + `'`,
		`SELECT count(*) FROM role_assignments WHERE scope = '/registries/reg2'`,
		`SELECT count(*) FROM run_credentials WHERE registry = 'reg2'`,
	} {
		var n int
		if err := e.db.R.QueryRowContext(ctx, q).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s = %d, %v; want 0", q, n, err)
		}
	}
	left, err := s.ListRoleAssignments(ctx, RoleFilter{Principal: id.ID})
	if err != nil || len(left) != 1 || left[0].Scope != "/containers" {
		t.Fatalf("remaining assignments = %+v, %v", left, err)
	}
	r := request("GET", "/v2/")
	r.SetBasicAuth("doomed", tok.Passwords[0].Value)
	if _, err := s.Authorize(r, "reg2", pull("x")); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("token of deleted registry: %v", err)
	}
}

// TestDeleteTokenDeletesItsScopeMap checks that deleting a token deletes
// the scope map made from its repositories, but not one another token also
// uses, nor a map of another name.
func TestDeleteTokenDeletesItsScopeMap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newEnv(t).s
	repos := []RepositoryRule{{Repository: "node", Actions: []string{ContentRead}}}
	mustToken(t, s, TokenSpec{Registry: "reg1", Name: "reader", Repositories: repos})
	if err := s.DeleteToken(ctx, "reg1", "reader"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetScopeMap(ctx, "reg1", "reader-scope-map"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the scope map created for a deleted token: %v, want not found", err)
	}
	// Shared with another token: kept.
	mustToken(t, s, TokenSpec{Registry: "reg1", Name: "shared", Repositories: repos})
	mustToken(t, s, TokenSpec{Registry: "reg1", Name: "second", ScopeMap: "shared-scope-map"})
	if err := s.DeleteToken(ctx, "reg1", "shared"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetScopeMap(ctx, "reg1", "shared-scope-map"); err != nil {
		t.Errorf("a scope map another token uses was deleted: %v", err)
	}
	// A map of its own choosing stays.
	if _, err := s.CreateScopeMap(ctx, "reg1", "my-own-map", "", repos); err != nil {
		t.Fatal(err)
	}
	mustToken(t, s, TokenSpec{Registry: "reg1", Name: "map-user", ScopeMap: "my-own-map"})
	if err := s.DeleteToken(ctx, "reg1", "map-user"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetScopeMap(ctx, "reg1", "my-own-map"); err != nil {
		t.Errorf("a named scope map was deleted with its token: %v", err)
	}
}
