package auth

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// TestControlPlaneMatrix authenticates every subject on the control plane
// and checks it against the operation vocabulary.
func TestControlPlaneMatrix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMatrixEnv(t)
	ops := []struct {
		name  string
		op    Operation
		scope string
	}{
		{"create registry", OpWrite, "/registries"},
		{"read task", OpRead, "/registries/reg1/tasks/build"},
		{"write token", OpWrite, "/registries/reg1/tokens/x"},
		{"repository list", OpCatalog, "/registries/reg1"},
		{"show tags", OpMetadataRead, "/registries/reg1/repositories/app"},
		{"untag", OpMetadataWrite, "/registries/reg1/repositories/app"},
		{"delete repo", OpContentDelete, "/registries/reg1/repositories/app"},
		{"import", OpContentWrite, "/registries/reg1/repositories/team/x"},
		{"create container", OpWrite, "/containers/hello"},
		{"list containers", OpRead, "/containers"},
	}
	const A, U, D = allow, unauth, deny
	matrix := []struct {
		subject string
		want    []outcome
	}{
		{"anonymous", []outcome{U, U, U, U, U, U, U, U, U, U}},
		{"admin", []outcome{A, A, A, A, A, A, A, A, A, A}},
		{"pull map", []outcome{D, D, D, D, A, D, D, D, D, D}},
		{"push map", []outcome{D, D, D, D, A, A, D, A, D, D}},
		{"admin map", []outcome{D, D, D, D, A, A, A, A, D, D}},
		{"repository token", []outcome{D, D, D, D, D, D, D, D, D, D}},
		{"metadata token", []outcome{D, D, D, D, A, D, D, D, D, D}},
		{"wildcard token", []outcome{D, D, D, D, D, D, D, A, D, D}},
		{"disabled token", []outcome{U, U, U, U, U, U, U, U, U, U}},
		{"expired password", []outcome{U, U, U, U, U, U, U, U, U, U}},
		{"wrong password", []outcome{U, U, U, U, U, U, U, U, U, U}},
		{"other registry token", []outcome{U, U, U, U, U, U, U, U, U, U}},
		{"run of reg1", []outcome{D, D, D, A, A, A, A, A, D, D}},
		{"run of reg2", []outcome{D, D, D, D, D, D, D, D, D, D}},
		{"identity acrpull registry", []outcome{D, D, D, A, A, D, D, D, D, D}},
		{"identity acrpush repository", []outcome{D, D, D, D, A, A, D, D, D, D}},
		{"identity owner registry", []outcome{D, A, A, A, A, A, A, A, D, D}},
		{"identity owner containers", []outcome{D, D, D, D, D, D, D, D, A, A}},
		{"identity without roles", []outcome{D, D, D, D, D, D, D, D, D, D}},
	}
	for _, row := range matrix {
		for _, viaBearer := range []bool{false, true} {
			r := request("GET", "/v1/registries/reg1")
			m.creds[row.subject](r)
			if viaBearer {
				// Run credentials also work as Bearer tokens.
				_, secret, ok := r.BasicAuth()
				if !ok || !IsRunCredential(secret) {
					continue
				}
				r.Header.Set("Authorization", "Bearer "+secret)
			}
			id, err := m.s.Authenticate(r, "reg1")
			for i, op := range ops {
				got := classify(err)
				if err == nil {
					got = classify(m.s.Check(ctx, id, op.op, op.scope))
				}
				if got != row.want[i] {
					t.Errorf("%s (bearer %v) × %s: %s, want %s", row.subject, viaBearer, op.name, got, row.want[i])
				}
			}
		}
	}
}

func TestControlPlaneAuthenticate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "ci-token", ScopeMap: ScopeMapPush})
	pw := tok.Passwords[0].Value
	for _, tc := range []struct {
		name     string
		registry string
		how      func(*http.Request)
		want     outcome
	}{
		{"no credentials", "", anonymous, unauth},
		{"token needs a registry", "", basic("ci-token", pw), unauth},
		{"token in its registry", "reg1", basic("ci-token", pw), allow},
		{"token qualified", "", basic("reg1/ci-token", pw), allow},
		{"token qualified, same registry", "reg1", basic("reg1/ci-token", pw), allow},
		{"token qualified, other registry", "reg2", basic("reg1/ci-token", pw), unauth},
		{"token in another registry", "reg2", basic("ci-token", pw), unauth},
		{"registry JWT is not a control credential", "reg1", bearer(fetchToken(t, s, "reg1", basic("ci-token", pw), "repository:a:pull")), unauth},
		{"unknown scheme", "reg1", func(r *http.Request) { r.Header.Set("Authorization", "Digest x") }, unauth},
	} {
		r := request("GET", "/v1/x")
		tc.how(r)
		id, err := s.Authenticate(r, tc.registry)
		if got := classify(err); got != tc.want {
			t.Errorf("%s: %s (%v), want %s", tc.name, got, err, tc.want)
		}
		if err == nil && (id.Kind != KindToken || id.Registry != "reg1" || id.Name != "ci-token" || id.Principal != tok.ID) {
			t.Errorf("%s: identity %+v", tc.name, id)
		}
	}

	// Check sees the current state: a token disabled after authenticating.
	r := request("GET", "/v1/x")
	basic("ci-token", pw)(r)
	id, err := s.Authenticate(r, "reg1")
	if err != nil {
		t.Fatal(err)
	}
	scope := RepositoryScope("reg1", "app")
	if err := s.Check(ctx, id, OpContentWrite, scope); err != nil {
		t.Fatal(err)
	}
	disabled := TokenDisabled
	if _, err := s.UpdateToken(ctx, "reg1", "ci-token", TokenUpdate{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, id, OpContentWrite, scope); !errors.Is(err, ErrDenied) {
		t.Fatalf("disabled token: %v", err)
	}

	// Malformed scopes and operations.
	admin := Identity{Principal: "x", Kind: KindAdmin, Name: "admin"}
	for _, tc := range []struct {
		op    Operation
		scope string
	}{
		{OpRead, "registries"},
		{OpRead, "/registries/../x"},
		{OpCatalog, "/registries/reg1/repositories/app"},
		{OpContentRead, "/registries/reg1"},
		{OpContentRead, "/registries/reg1/repositories/Bad"},
		{"launch", "/registries/reg1"},
	} {
		if err := s.Check(ctx, admin, tc.op, tc.scope); !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%s, %q) = %v, want ErrInvalid", tc.op, tc.scope, err)
		}
	}
}

func TestIdentitiesAndRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s
	id, err := s.CreateIdentity(ctx, "task:reg1/hello-world")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.Principal(ctx, id.ID); err != nil || p.Kind != KindIdentity || p.Name != "task:reg1/hello-world" {
		t.Fatalf("Principal = %+v, %v", p, err)
	}
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "some-token", ScopeMap: ScopeMapPull})

	for _, tc := range []struct {
		name      string
		principal string
		role      Role
		scope     string
		want      error
	}{
		{"registry", id.ID, "AcrPull", "/registries/reg1", nil},
		{"repository", id.ID, RoleAcrPush, "/registries/reg1/repositories/samples/app", nil},
		{"containers", id.ID, "Owner", "/containers", nil},
		{"container", id.ID, RoleOwner, "/containers/hello/", nil},
		{"duplicate", id.ID, RoleAcrPull, "/registries/reg1", ErrExists},
		{"unknown registry", id.ID, RoleAcrPull, "/registries/nope", ErrNotFound},
		{"unknown principal", "00000000-0000-0000-0000-000000000000", RoleAcrPull, "/registries/reg1", ErrNotFound},
		{"token principal", tok.ID, RoleAcrPull, "/registries/reg1", ErrInvalid},
		{"bad role", id.ID, "reader", "/registries/reg1", ErrInvalid},
		{"root scope", id.ID, RoleOwner, "/", ErrInvalid},
		{"collection scope", id.ID, RoleOwner, "/registries", ErrInvalid},
		{"sub-resource scope", id.ID, RoleOwner, "/registries/reg1/tasks/x", ErrInvalid},
		{"relative scope", id.ID, RoleOwner, "registries/reg1", ErrInvalid},
		{"vault scope", id.ID, RoleOwner, "/vaults/v", ErrInvalid},
	} {
		_, err := s.CreateRoleAssignment(ctx, tc.principal, tc.role, tc.scope)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	list, err := s.ListRoleAssignments(ctx, RoleFilter{Principal: id.ID})
	if err != nil || len(list) != 4 {
		t.Fatalf("ListRoleAssignments = %+v, %v", list, err)
	}
	if list[3].Scope != "/containers/hello" || list[0].Role != RoleAcrPull {
		t.Fatalf("assignments = %+v", list)
	}
	byScope, err := s.ListRoleAssignments(ctx, RoleFilter{Scope: "/containers"})
	if err != nil || len(byScope) != 1 {
		t.Fatalf("by scope = %+v, %v", byScope, err)
	}

	ident := Identity{Principal: id.ID, Kind: KindIdentity, Name: "task:reg1/hello-world"}
	if err := s.Check(ctx, ident, OpWrite, ContainerScope("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteRoleAssignments(ctx, RoleFilter{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("delete without filter: %v", err)
	}
	n, err := s.DeleteRoleAssignments(ctx, RoleFilter{Principal: id.ID, Role: RoleOwner, Scope: "/containers"})
	if err != nil || n != 1 {
		t.Fatalf("delete = %d, %v", n, err)
	}
	// Still owner of /containers/hello, no longer of /containers/other.
	if err := s.Check(ctx, ident, OpWrite, ContainerScope("hello")); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, ident, OpWrite, ContainerScope("other")); !errors.Is(err, ErrDenied) {
		t.Fatalf("after removing /containers: %v", err)
	}
	if _, err := s.DeleteRoleAssignments(ctx, RoleFilter{ID: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}

	// Deleting the identity takes its assignments along; tokens are not
	// identities.
	if err := s.DeleteIdentity(ctx, tok.ID); !errors.Is(err, ErrInvalid) {
		t.Fatalf("DeleteIdentity(token) = %v", err)
	}
	if err := s.DeleteIdentity(ctx, id.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.ListRoleAssignments(ctx, RoleFilter{Principal: id.ID}); len(list) != 0 {
		t.Fatalf("assignments left: %+v", list)
	}
	if err := s.Check(ctx, ident, OpWrite, ContainerScope("hello")); !errors.Is(err, ErrDenied) {
		t.Fatalf("deleted identity: %v", err)
	}
	if err := s.DeleteIdentity(ctx, id.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteIdentity twice: %v", err)
	}
	if _, err := s.CreateIdentity(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty identity name: %v", err)
	}
}

func TestRunCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s
	id, err := s.CreateIdentity(ctx, "task:reg1/importer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRoleAssignment(ctx, id.ID, RoleAcrPull, RegistryScope("reg2")); err != nil {
		t.Fatal(err)
	}
	secret, err := s.IssueRunCredential(ctx, RunGrant{Registry: "reg1", RunID: "cb7", Principal: id.ID, Name: "task:reg1/importer", TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !IsRunCredential(secret) || len(secret) < 60 {
		t.Fatalf("secret %q", secret)
	}
	var stored int
	if err := e.db.R.QueryRow(`SELECT count(*) FROM run_credentials WHERE hash = ? OR name = ?`, secret, secret).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("secret stored in clear: %d %v", stored, err)
	}

	try := func(registry string, how func(*http.Request), need []Access) (Identity, error) {
		r := request("PUT", "/v2/app/manifests/1")
		how(r)
		return s.Authorize(r, registry, need)
	}
	for _, how := range []func(*http.Request){basic(RunUsername, secret), basic("anything", secret), bearer(secret)} {
		got, err := try("reg1", how, push("app"))
		if err != nil {
			t.Fatal(err)
		}
		if got.RunID != "cb7" || got.Kind != KindRun || got.Principal != id.ID || got.Registry != "reg1" || got.Name != "task:reg1/importer" {
			t.Fatalf("identity = %+v", got)
		}
	}
	// The identity's roles apply on other registries.
	if _, err := try("reg2", basic(RunUsername, secret), pull("base")); err != nil {
		t.Fatalf("pull from reg2 with acrpull: %v", err)
	}
	if _, err := try("reg2", basic(RunUsername, secret), push("base")); !errors.Is(err, ErrDenied) {
		t.Fatalf("push to reg2: %v", err)
	}
	// Through the token endpoint of reg2, the run gets pull only.
	c := tokenClaims(t, s, "reg2", fetchToken(t, s, "reg2", basic(RunUsername, secret), "repository:base:pull,push"))
	if len(c.Access) != 1 || len(c.Access[0].Actions) != 1 || c.RunID != "cb7" {
		t.Fatalf("claims = %+v", c)
	}
	// The bearer token does not outlive the credential.
	if exp := c.ExpiresAt.Time; exp.After(e.clock.Now().Add(10 * time.Minute)) {
		t.Fatalf("bearer token expires %v, after the credential", exp)
	}

	// Revocation applies to Basic, run-credential Bearer and issued JWTs.
	jwtTok := fetchToken(t, s, "reg1", basic(RunUsername, secret), "repository:app:pull")
	if err := s.RevokeRun(ctx, "reg1", "cb7"); err != nil {
		t.Fatal(err)
	}
	for _, how := range []func(*http.Request){basic(RunUsername, secret), bearer(secret), bearer(jwtTok)} {
		if _, err := try("reg1", how, pull("app")); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("revoked: %v", err)
		}
	}

	// Expiry.
	secret2, err := s.IssueRunCredential(ctx, RunGrant{Registry: "reg1", RunID: "cb8", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got, err := try("reg1", bearer(secret2), pull("app"))
	if err != nil || got.Name != "run:reg1/cb8" || got.Principal == "" {
		t.Fatalf("run without identity: %+v %v", got, err)
	}
	e.clock.Advance(time.Minute)
	if _, err := try("reg1", bearer(secret2), pull("app")); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("expired run credential: %v", err)
	}

	for _, tc := range []struct {
		name string
		g    RunGrant
		want error
	}{
		{"no registry", RunGrant{RunID: "x", TTL: time.Hour}, ErrInvalid},
		{"no run", RunGrant{Registry: "reg1", TTL: time.Hour}, ErrInvalid},
		{"no ttl", RunGrant{Registry: "reg1", RunID: "x"}, ErrInvalid},
		{"huge ttl", RunGrant{Registry: "reg1", RunID: "x", TTL: 30 * 24 * time.Hour}, ErrInvalid},
		{"unknown registry", RunGrant{Registry: "nope", RunID: "x", TTL: time.Hour}, ErrNotFound},
		{"unknown principal", RunGrant{Registry: "reg1", RunID: "x", Principal: "nope", TTL: time.Hour}, ErrNotFound},
	} {
		if _, err := s.IssueRunCredential(ctx, tc.g); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
