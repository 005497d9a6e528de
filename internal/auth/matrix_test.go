package auth

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// matrixEnv is a server with one subject of every kind, seen from registry
// reg1.
type matrixEnv struct {
	*env
	creds map[string]func(*http.Request) // subject -> Basic credentials
}

func newMatrixEnv(t *testing.T) *matrixEnv {
	t.Helper()
	ctx := context.Background()
	// Failed logins repeat on purpose here; the limiter has its own test.
	e := newEnv(t, WithLoginLimits(1000, time.Second, time.Minute))
	s := e.s
	m := &matrixEnv{env: e, creds: map[string]func(*http.Request){}}

	if _, err := s.EnsureAdmin(ctx, "correct horse battery staple", e.dir); err != nil {
		t.Fatal(err)
	}
	m.creds["admin"] = basic("admin", "correct horse battery staple")
	m.creds["anonymous"] = anonymous

	token := func(subject string, spec TokenSpec) Token {
		tok := mustToken(t, s, spec)
		m.creds[subject] = basic(spec.Name, tok.Passwords[0].Value)
		return tok
	}
	token("pull map", TokenSpec{Registry: "reg1", Name: "pull-token", ScopeMap: ScopeMapPull})
	token("push map", TokenSpec{Registry: "reg1", Name: "push-token", ScopeMap: ScopeMapPush})
	token("admin map", TokenSpec{Registry: "reg1", Name: "admin-token", ScopeMap: ScopeMapAdmin})
	token("repository token", TokenSpec{Registry: "reg1", Name: "repo-token",
		Repositories: []RepositoryRule{{Repository: "app", Actions: []string{ContentRead}}}})
	token("metadata token", TokenSpec{Registry: "reg1", Name: "meta-token",
		Repositories: []RepositoryRule{{Repository: "app", Actions: []string{MetadataRead}}}})
	token("wildcard token", TokenSpec{Registry: "reg1", Name: "wild-token",
		Repositories: []RepositoryRule{{Repository: "team/*", Actions: []string{ContentRead, ContentWrite}}}})
	token("disabled token", TokenSpec{Registry: "reg1", Name: "disabled-token", ScopeMap: ScopeMapAdmin, Status: TokenDisabled})
	token("expired password", TokenSpec{Registry: "reg1", Name: "expired-token", ScopeMap: ScopeMapAdmin, Expiry: e.clock.Now().Add(time.Hour)})
	good := token("wrong password", TokenSpec{Registry: "reg1", Name: "wrong-token", ScopeMap: ScopeMapAdmin})
	m.creds["wrong password"] = basic("wrong-token", good.Passwords[0].Value[1:]+"A")
	token("other registry token", TokenSpec{Registry: "reg2", Name: "other-token", ScopeMap: ScopeMapAdmin})
	e.clock.Advance(2 * time.Hour) // expires expired-token's passwords

	run := func(subject, registry, principal string) {
		secret, err := s.IssueRunCredential(ctx, RunGrant{Registry: registry, RunID: "ca1", Principal: principal, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		m.creds[subject] = basic(RunUsername, secret)
	}
	identity := func(subject string, role Role, scope string) {
		id, err := s.CreateIdentity(ctx, "task:reg2/"+subject)
		if err != nil {
			t.Fatal(err)
		}
		if role != "" {
			if _, err := s.CreateRoleAssignment(ctx, id.ID, role, scope); err != nil {
				t.Fatal(err)
			}
		}
		run(subject, "reg2", id.ID)
	}
	run("run of reg1", "reg1", "")
	run("run of reg2", "reg2", "")
	identity("identity acrpull registry", RoleAcrPull, "/registries/reg1")
	identity("identity acrpush repository", RoleAcrPush, "/registries/reg1/repositories/app")
	identity("identity owner registry", RoleOwner, "/registries/reg1")
	identity("identity owner containers", RoleOwner, "/containers")
	identity("identity without roles", "", "")
	return m
}

// TestAuthorizationMatrix checks every subject against every registry
// operation on reg1, with Basic credentials on each request and with bearer
// tokens from the token endpoint.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	m := newMatrixEnv(t)
	ops := []struct {
		name string
		need []Access
	}{
		{"pull", pull("app")},
		{"push", push("app")},
		{"delete", del("app")},
		{"catalog", catalog},
		{"tag list", tags("app")},
		{"pull other", pull("other")},
		{"push team/x", push("team/x")},
		{"push+pull", []Access{{Type: TypeRepository, Name: "app", Actions: []string{ActionPull, ActionPush}}}},
	}
	const A, U, D = allow, unauth, deny
	matrix := []struct {
		subject string
		want    []outcome // in the order of ops
	}{
		{"anonymous", []outcome{U, U, U, U, U, U, U, U}},
		{"admin", []outcome{A, A, A, A, A, A, A, A}},
		{"pull map", []outcome{A, D, D, D, A, A, D, D}},
		{"push map", []outcome{A, A, D, D, A, A, A, A}},
		{"admin map", []outcome{A, A, A, D, A, A, A, A}},
		{"repository token", []outcome{A, D, D, D, A, D, D, D}},
		{"metadata token", []outcome{D, D, D, D, A, D, D, D}},
		{"wildcard token", []outcome{D, D, D, D, D, D, A, D}},
		{"disabled token", []outcome{U, U, U, U, U, U, U, U}},
		{"expired password", []outcome{U, U, U, U, U, U, U, U}},
		{"wrong password", []outcome{U, U, U, U, U, U, U, U}},
		{"other registry token", []outcome{U, U, U, U, U, U, U, U}},
		{"run of reg1", []outcome{A, A, A, A, A, A, A, A}},
		{"run of reg2", []outcome{D, D, D, D, D, D, D, D}},
		{"identity acrpull registry", []outcome{A, D, D, A, A, A, D, D}},
		{"identity acrpush repository", []outcome{A, A, D, D, A, D, D, A}},
		{"identity owner registry", []outcome{A, A, A, A, A, A, A, A}},
		{"identity owner containers", []outcome{D, D, D, D, D, D, D, D}},
		{"identity without roles", []outcome{D, D, D, D, D, D, D, D}},
	}
	if len(matrix) != len(m.creds) {
		t.Fatalf("matrix has %d subjects, environment %d", len(matrix), len(m.creds))
	}
	for _, mode := range []string{"basic", "bearer"} {
		for _, row := range matrix {
			for i, op := range ops {
				var got outcome
				var err error
				how := m.creds[row.subject]
				if mode == "bearer" {
					w := tokenGet(m.s, "reg1", how, nil, scopeString(op.need[0]))
					if w.Code != http.StatusOK {
						got = unauth
						if w.Code != http.StatusUnauthorized {
							got = other
						}
						if got != row.want[i] {
							t.Errorf("%s: %s × %s: token endpoint %d %s, want %s", mode, row.subject, op.name, w.Code, w.Body, row.want[i])
						}
						continue
					}
					tok := decodeToken(t, w)
					how = bearer(tok)
				}
				r := request("GET", "/v2/app/manifests/latest")
				how(r)
				_, err = m.s.Authorize(r, "reg1", op.need)
				if got = classify(err); got != row.want[i] {
					t.Errorf("%s: %s × %s = %s (%v), want %s", mode, row.subject, op.name, got, err, row.want[i])
				}
			}
		}
	}
}

// TestAnonymousPull checks anonymous access to a registry created with
// anonymous pull, with and without the token endpoint.
func TestAnonymousPull(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.s
	const A, U = allow, unauth
	for _, tc := range []struct {
		name string
		need []Access
		want outcome
	}{
		{"base", nil, U},
		{"pull", pull("app"), A},
		{"tag list", tags("app"), A},
		{"push", push("app"), U},
		{"delete", del("app"), U},
		{"catalog", catalog, U},
		{"pull and push", []Access{{Type: TypeRepository, Name: "app", Actions: []string{ActionPull, ActionPush}}}, U},
	} {
		r := request("GET", "/v2/")
		id, err := s.Authorize(r, "pub", tc.need)
		if got := classify(err); got != tc.want {
			t.Errorf("pub %s = %s (%v), want %s", tc.name, got, err, tc.want)
		}
		if err == nil && !id.Anonymous() {
			t.Errorf("pub %s: identity %+v is not anonymous", tc.name, id)
		}
		r = request("GET", "/v2/")
		if _, err := s.Authorize(r, "reg1", tc.need); classify(err) != U {
			t.Errorf("reg1 %s = %v, want 401", tc.name, err)
		}
	}

	// Through the token endpoint: pull is granted, push is not.
	w := tokenGet(s, "pub", anonymous, nil, "repository:app:pull,push", "registry:catalog:*")
	if w.Code != http.StatusOK {
		t.Fatalf("anonymous token: %d %s", w.Code, w.Body)
	}
	c := tokenClaims(t, s, "pub", decodeToken(t, w))
	if len(c.Access) != 1 || c.Access[0].Name != "app" || len(c.Access[0].Actions) != 1 || c.Access[0].Actions[0] != ActionPull {
		t.Fatalf("anonymous token access = %+v", c.Access)
	}
	tok := decodeToken(t, w)
	for _, tc := range []struct {
		name string
		need []Access
		want outcome
	}{
		{"base", nil, A},
		{"pull", pull("app"), A},
		{"push", push("app"), U},
		{"pull other repository", pull("other"), U},
	} {
		r := request("GET", "/v2/")
		bearer(tok)(r)
		if _, err := s.Authorize(r, "pub", tc.need); classify(err) != tc.want {
			t.Errorf("bearer %s = %v, want %s", tc.name, err, tc.want)
		}
	}
	// No anonymous token for a private registry.
	if w := tokenGet(s, "reg1", anonymous, nil, "repository:app:pull"); w.Code != http.StatusUnauthorized {
		t.Fatalf("anonymous token for reg1: %d", w.Code)
	}
}

// TestBaseCheck checks GET /v2/ (no access needed): any valid credential
// passes, anonymous and bad credentials are challenged.
func TestBaseCheck(t *testing.T) {
	t.Parallel()
	m := newMatrixEnv(t)
	for subject, how := range m.creds {
		want := allow
		switch subject {
		case "anonymous", "disabled token", "expired password", "wrong password", "other registry token":
			want = unauth
		}
		r := request("GET", "/v2/")
		how(r)
		id, err := m.s.Authorize(r, "reg1", nil)
		if got := classify(err); got != want {
			t.Errorf("%s: %s (%v), want %s", subject, got, err, want)
		}
		if err == nil && id.Principal == "" {
			t.Errorf("%s: no principal", subject)
		}
	}
}
