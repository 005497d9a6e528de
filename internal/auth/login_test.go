package auth

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBruteForceLimiter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithLoginLimits(3, time.Second, 8*time.Second))
	s := e.s
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "target", ScopeMap: ScopeMapPull})
	good := tok.Passwords[0].Value

	try := func(ip, pass string) error {
		r := request("GET", "/v2/")
		r.RemoteAddr = ip + ":1234"
		r.SetBasicAuth("target", pass)
		_, err := s.Authorize(r, "reg1", pull("app"))
		return err
	}
	// Three free failures, then lockouts of 1s, 2s, 4s, 8s, 8s.
	for i := range 3 {
		if err := try("10.0.0.1", "wrong"); !errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrTooManyAttempts) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	for i, lock := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		if err := try("10.0.0.1", "wrong"); errors.Is(err, ErrTooManyAttempts) {
			t.Fatalf("attempt after waiting refused: %v", err)
		}
		// Now locked: even the right password is refused, with a retry delay.
		err := try("10.0.0.1", good)
		var te *ThrottledError
		if !errors.As(err, &te) || !errors.Is(err, ErrTooManyAttempts) || !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("lockout %d: %v", i+1, err)
		}
		if te.RetryAfter != lock {
			t.Fatalf("lockout %d: retry after %s, want %s", i+1, te.RetryAfter, lock)
		}
		// Another client (IP) and another user name are not affected.
		if err := try("10.0.0.2", good); err != nil {
			t.Fatalf("other IP during lockout: %v", err)
		}
		e.clock.Advance(lock - time.Millisecond)
		if err := try("10.0.0.1", good); !errors.Is(err, ErrTooManyAttempts) {
			t.Fatalf("just before the lockout ends: %v", err)
		}
		e.clock.Advance(time.Millisecond)
	}
	// A success resets the count.
	if err := try("10.0.0.1", good); err != nil {
		t.Fatalf("after lockout: %v", err)
	}
	for range 3 {
		if err := try("10.0.0.1", "wrong"); errors.Is(err, ErrTooManyAttempts) {
			t.Fatalf("count not reset: %v", err)
		}
	}
	// A quiet hour forgets failures.
	e.clock.Advance(2 * time.Hour)
	if err := try("10.0.0.1", "wrong"); errors.Is(err, ErrTooManyAttempts) {
		t.Fatalf("failures not forgotten: %v", err)
	}

	// The token endpoint answers 429 with Retry-After; the control plane
	// shares the limiter.
	for range 5 {
		try("10.0.0.3", "wrong")
	}
	r := request("GET", TokenPath+"?scope=repository:app:pull")
	r.RemoteAddr = "10.0.0.3:999"
	r.SetBasicAuth("target", good)
	w := newRecorder()
	s.TokenHandler("reg1").ServeHTTP(w, r)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "TOOMANYREQUESTS") {
		t.Fatalf("token endpoint during lockout: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	r = request("GET", "/v1/registries")
	r.RemoteAddr = "10.0.0.3:999"
	r.SetBasicAuth("target", good)
	if _, err := s.Authenticate(r, "reg1"); !errors.Is(err, ErrTooManyAttempts) {
		t.Fatalf("control plane during lockout: %v", err)
	}
}

// TestLimiterSparesRightPasswords checks that only wrong secrets count: an
// expired password or a disabled token does not lock its client out, and a
// revoked run does not lock out other runs on the same address.
func TestLimiterSparesRightPasswords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, WithLoginLimits(2, time.Minute, time.Hour))
	s := e.s
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "soon-off", ScopeMap: ScopeMapPull})
	try := func(how func(*http.Request)) error {
		r := request("GET", "/v2/")
		how(r)
		_, err := s.Authorize(r, "reg1", pull("app"))
		return err
	}
	disabled := TokenDisabled
	if _, err := s.UpdateToken(ctx, "reg1", "soon-off", TokenUpdate{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := try(basic("soon-off", tok.Passwords[0].Value)); errors.Is(err, ErrTooManyAttempts) || !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("disabled token: %v", err)
		}
	}
	old, err := s.IssueRunCredential(ctx, RunGrant{Registry: "reg1", RunID: "old", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	current, err := s.IssueRunCredential(ctx, RunGrant{Registry: "reg1", RunID: "new", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeRun(ctx, "reg1", "old"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		try(basic(RunUsername, old))
	}
	if err := try(basic(RunUsername, old)); !errors.Is(err, ErrTooManyAttempts) {
		t.Fatalf("revoked run credential not throttled: %v", err)
	}
	if err := try(basic(RunUsername, current)); err != nil {
		t.Fatalf("another run on the same address: %v", err)
	}
}

// TestTimingSafePaths checks that an unknown user costs what a wrong
// password costs: the same number of constant-time comparisons (and of
// argon2id hashes for the admin), whether the name exists or not.
func TestTimingSafePaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithLoginLimits(1000, time.Second, time.Minute))
	s := e.s
	ctx := context.Background()
	mustToken(t, s, TokenSpec{Registry: "reg1", Name: "known", ScopeMap: ScopeMapPull})
	one := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "one-password", ScopeMap: ScopeMapPull})
	if err := s.DeletePassword(ctx, "reg1", "one-password", Password2); err != nil {
		t.Fatal(err)
	}

	cost := func(user, pass string) (compares, hashes int64) {
		t.Helper()
		c0, h0 := s.compares.Load(), s.hashes.Load()
		r := request("GET", "/v2/")
		r.SetBasicAuth(user, pass)
		if _, err := s.Authorize(r, "reg1", pull("app")); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("%s: %v", user, err)
		}
		return s.compares.Load() - c0, s.hashes.Load() - h0
	}
	wrong, _ := cost("known", "wrong")
	unknown, _ := cost("unknown", "wrong")
	partial, _ := cost("one-password", one.Passwords[0].Value+"x")
	if wrong != 2 || unknown != wrong || partial != wrong {
		t.Fatalf("token comparisons: wrong password %d, unknown user %d, one password %d; want 2 each", wrong, unknown, partial)
	}
	// Run credentials: an unknown ID costs one comparison like a wrong secret.
	secret, err := s.IssueRunCredential(ctx, RunGrant{Registry: "reg1", RunID: "r1", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	wrongRun, _ := cost(RunUsername, secret[:len(secret)-2]+"xx")
	unknownRun, _ := cost(RunUsername, "gantryrun.00000000-0000-0000-0000-000000000000.abc")
	garbageRun, _ := cost(RunUsername, "garbage")
	if wrongRun != 1 || unknownRun != 1 || garbageRun != 1 {
		t.Fatalf("run comparisons: wrong %d, unknown %d, garbage %d; want 1", wrongRun, unknownRun, garbageRun)
	}

	// Admin before it exists: the argon2id hash is still computed (against a
	// dummy hash made on first use).
	cost("admin", "warm-up")
	_, before := cost("admin", "whatever")
	if before != 1 {
		t.Fatalf("admin login without admin user computed %d hashes, want 1", before)
	}
	if _, err := s.EnsureAdmin(ctx, "the-admin-password", e.dir); err != nil {
		t.Fatal(err)
	}
	_, wrongAdmin := cost("admin", "whatever")
	if wrongAdmin != 1 {
		t.Fatalf("wrong admin password computed %d hashes, want 1", wrongAdmin)
	}
}

func TestAdmin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("generated password", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		setup, err := e.s.EnsureAdmin(ctx, "", e.dir)
		if err != nil {
			t.Fatal(err)
		}
		if !setup.Created || setup.PasswordFile != filepath.Join(e.dir, AdminPasswordFile) || setup.Principal == "" {
			t.Fatalf("setup = %+v", setup)
		}
		fi, err := os.Stat(setup.PasswordFile)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("password file: %v %v", fi.Mode(), err)
		}
		b, _ := os.ReadFile(setup.PasswordFile)
		pw := strings.TrimSpace(string(b))
		if len(pw) < 24 {
			t.Fatalf("generated password %q too short", pw)
		}
		if id := adminLogin(t, e.s, pw); id.Principal != setup.Principal || !id.Admin() || id.Name != "admin" {
			t.Fatalf("identity = %+v", id)
		}
		// The second start changes nothing and writes no file.
		again, err := e.s.EnsureAdmin(ctx, "", e.dir)
		if err != nil || again.Created || again.PasswordFile != "" || again.Principal != setup.Principal {
			t.Fatalf("second start = %+v, %v", again, err)
		}
		// The password is stored hashed (argon2id), not in clear.
		var stored string
		if err := e.db.R.QueryRow(`SELECT password_hash FROM users WHERE name = 'admin'`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stored, "$argon2id$") || strings.Contains(stored, pw) {
			t.Fatalf("stored hash %q", stored)
		}
	})

	t.Run("configured password", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		setup, err := e.s.EnsureAdmin(ctx, "configured-1", e.dir)
		if err != nil || !setup.Created || setup.PasswordFile != "" {
			t.Fatalf("setup = %+v, %v", setup, err)
		}
		if _, err := os.Stat(filepath.Join(e.dir, AdminPasswordFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("password file written: %v", err)
		}
		adminLogin(t, e.s, "configured-1")

		// Per-request Basic logins are cached: no argon2id after the first.
		h0 := e.s.hashes.Load()
		for range 100 {
			adminLogin(t, e.s, "configured-1")
		}
		if n := e.s.hashes.Load() - h0; n != 0 {
			t.Fatalf("100 cached admin logins computed %d hashes", n)
		}

		// A new configured password replaces the old one, and bearer tokens
		// issued with the old one die.
		tok := fetchToken(t, e.s, "reg1", basic("admin", "configured-1"), "repository:app:pull")
		setup, err = e.s.EnsureAdmin(ctx, "configured-2", e.dir)
		if err != nil || !setup.PasswordChanged {
			t.Fatalf("password change = %+v, %v", setup, err)
		}
		r := request("GET", "/v2/")
		r.SetBasicAuth("admin", "configured-1")
		if _, err := e.s.Authorize(r, "reg1", pull("app")); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("old admin password: %v", err)
		}
		r = request("GET", "/v2/")
		bearer(tok)(r)
		if _, err := e.s.Authorize(r, "reg1", pull("app")); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("bearer token of old admin password: %v", err)
		}
		adminLogin(t, e.s, "configured-2")
	})
}

func adminLogin(t *testing.T, s *Service, pw string) Identity {
	t.Helper()
	r := request("GET", "/v1/registries")
	r.SetBasicAuth("admin", pw)
	id, err := s.Authenticate(r, "")
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	return id
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, name := range []string{SigningKeyFile, CredentialKeyFile} {
		fi, err := os.Stat(filepath.Join(e.dir, "keys", name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", name, fi, err)
		}
	}
	// A second Service over the same keys accepts the first one's tokens.
	tok := mustToken(t, e.s, TokenSpec{Registry: "reg1", Name: "keeper", ScopeMap: ScopeMapPull})
	bearerTok := fetchToken(t, e.s, "reg1", basic("keeper", tok.Passwords[0].Value), "repository:app:pull")
	s2, err := New(e.db, filepath.Join(e.dir, "keys"), WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	for _, how := range []func(*http.Request){basic("keeper", tok.Passwords[0].Value), bearer(bearerTok)} {
		r := request("GET", "/v2/")
		how(r)
		if _, err := s2.Authorize(r, "reg1", pull("app")); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	}
	// A loose key file is tightened; a corrupt one is refused.
	path := filepath.Join(e.dir, "keys", SigningKeyFile)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(e.db, filepath.Join(e.dir, "keys")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode())
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(e.db, filepath.Join(e.dir, "keys")); err == nil {
		t.Fatal("corrupt key accepted")
	}
}

// TestRegistryRefreshToken: a token's password exchanged server-side gives a
// refresh token for that registry only, which works at the token endpoint
// instead of the password; a wrong password gives none.
func TestRegistryRefreshToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.s
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "puller", ScopeMap: ScopeMapPull})
	ctx := context.Background()
	if _, err := s.RegistryRefreshToken(ctx, "reg1", "puller", "wrong", time.Hour); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong password: err = %v, want ErrUnauthenticated", err)
	}
	refresh, err := s.RegistryRefreshToken(ctx, "reg1", "puller", tok.Passwords[0].Value, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.parseToken(refresh, "reg1", useRefresh)
	if err != nil || c.Name != "puller" {
		t.Fatalf("refresh token: %+v %v", c, err)
	}
	if exp := c.ExpiresAt.Time; exp.After(time.Now().Add(61 * time.Minute)) {
		t.Errorf("refresh token expires at %s, want within the hour asked", exp)
	}
	if _, err := s.parseToken(refresh, "reg2", useRefresh); err == nil {
		t.Errorf("the refresh token of reg1 is accepted for reg2")
	}
}
