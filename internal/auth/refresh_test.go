package auth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestIssueRefreshToken issues refresh tokens to control-API callers and
// exchanges them at the registry's token endpoint: they hold the caller's
// rights, expire with the requested lifetime or the credential, and stop
// working with the credential.
func TestIssueRefreshToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s
	srv := registryServer(t, s, "reg1")

	exchange := func(refresh string) int {
		t.Helper()
		resp, err := http.PostForm(srv.URL+TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh},
			"service": {"x"}, "scope": {"repository:app:pull"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	authenticate := func(registry, user, pass string) Identity {
		t.Helper()
		r := request("POST", "/v1/registries/reg1/token")
		r.SetBasicAuth(user, pass)
		id, err := s.Authenticate(r, registry)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	// A token of reg1 whose password expires in 2 hours: a 3-hour refresh
	// token ends with it.
	expiry := e.clock.Now().Add(2 * time.Hour)
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "puller", ScopeMap: ScopeMapPull, Expiry: expiry})
	id := authenticate("reg1", "puller", tok.Passwords[0].Value)
	refresh, exp, err := s.IssueRefreshToken(ctx, id, "reg1", 3*time.Hour)
	if err != nil || !exp.Equal(expiry) {
		t.Fatalf("refresh token: expires %v (want %v), %v", exp, expiry, err)
	}
	if c, err := s.parseToken(refresh, "reg1", useRefresh); err != nil || len(c.Access) != 0 || c.Subject != tok.ID {
		t.Fatalf("claims: %+v, %v", c, err)
	}
	if code := exchange(refresh); code != http.StatusOK {
		t.Fatalf("exchange: %d", code)
	}
	// Not for another registry: the token has no rights there.
	if _, _, err := s.IssueRefreshToken(ctx, id, "reg2", time.Hour); !errors.Is(err, ErrDenied) {
		t.Fatalf("token of reg1 for reg2: %v, want denied", err)
	}
	// Disabling the token ends its refresh tokens.
	disabled := TokenDisabled
	if _, err := s.UpdateToken(ctx, "reg1", "puller", TokenUpdate{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	if code := exchange(refresh); code != http.StatusUnauthorized {
		t.Fatalf("exchange after disabling: %d", code)
	}
	if _, _, err := s.IssueRefreshToken(ctx, id, "reg1", time.Hour); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("disabled token: %v, want unauthenticated", err)
	}

	// The admin, who authenticated on the control API: the lifetime is the
	// one asked for; a write-only token gets nothing.
	if _, err := s.EnsureAdmin(ctx, "the-admin-password", e.dir); err != nil {
		t.Fatal(err)
	}
	admin := authenticate("", AdminUsername, "the-admin-password")
	refresh, exp, err = s.IssueRefreshToken(ctx, admin, "reg1", 3*time.Hour)
	if err != nil || !exp.Equal(e.clock.Now().Add(3*time.Hour)) || exchange(refresh) != http.StatusOK {
		t.Fatalf("admin: expires %v, %v", exp, err)
	}
	w := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "writer", Repositories: []RepositoryRule{{Repository: "app", Actions: []string{ContentWrite}}}})
	if _, _, err := s.IssueRefreshToken(ctx, authenticate("reg1", "writer", w.Passwords[0].Value), "reg1", time.Hour); !errors.Is(err, ErrDenied) {
		t.Fatalf("write-only token: %v, want denied", err)
	}
	if _, _, err := s.IssueRefreshToken(ctx, Identity{}, "reg1", time.Hour); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("anonymous: %v, want unauthenticated", err)
	}
}
