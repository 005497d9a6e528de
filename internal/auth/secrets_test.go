package auth

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

// TestSecretsStayOutOfLogsAndErrors runs successful and failed logins of
// every kind and checks that no password, run credential or bearer token
// reaches a log line, an error string or the database in clear.
func TestSecretsStayOutOfLogsAndErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	logs := &testenv.Buffer{}
	e := newEnv(t, WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithLoginLimits(2, time.Second, time.Minute))
	s := e.s
	const adminPW = "admin-secret-password-123"
	if _, err := s.EnsureAdmin(ctx, adminPW, e.dir); err != nil {
		t.Fatal(err)
	}
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "secretive", ScopeMap: ScopeMapPull, Expiry: e.clock.Now().Add(time.Hour)})
	run, err := s.IssueRunCredential(ctx, RunGrant{Registry: "reg1", RunID: "r9", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	jwtTok := fetchToken(t, s, "reg1", basic("secretive", tok.Passwords[0].Value), "repository:app:pull")
	secrets := []string{adminPW, tok.Passwords[0].Value, tok.Passwords[1].Value, run, jwtTok}

	var errs []error
	attempt := func(how func(*http.Request)) {
		r := request("GET", "/v2/")
		how(r)
		if _, err := s.Authorize(r, "reg1", push("app")); err != nil {
			errs = append(errs, err)
		}
		r = request("GET", "/v1/x")
		how(r)
		if _, err := s.Authenticate(r, "reg1"); err != nil {
			errs = append(errs, err)
		}
		w := tokenGet(s, "reg1", how, nil, "repository:app:pull")
		if strings.Contains(w.Body.String(), "password") && w.Code == 200 {
			t.Errorf("token response mentions a password")
		}
		for _, sec := range secrets[:4] {
			if w.Code != 200 && strings.Contains(w.Body.String(), sec) {
				t.Errorf("token endpoint error body contains a secret")
			}
		}
	}
	for _, sec := range secrets {
		attempt(basic("admin", sec))
		attempt(basic("secretive", sec))
		attempt(basic(RunUsername, sec))
		attempt(basic("secretive", sec+"x"))
		attempt(basic("nobody-here", sec))
		attempt(bearer(sec))
		attempt(bearer(sec + "x"))
	}
	e.clock.Advance(2 * time.Hour) // expired password and run credential
	attempt(basic("secretive", tok.Passwords[0].Value))
	attempt(bearer(run))
	if len(errs) < 20 {
		t.Fatalf("only %d failures exercised", len(errs))
	}
	for _, err := range errs {
		for _, sec := range secrets {
			if strings.Contains(err.Error(), sec) {
				t.Errorf("error %q contains a secret", err)
			}
		}
	}
	out := logs.String()
	if !strings.Contains(out, "login failed") {
		t.Fatalf("failed logins were not logged:\n%s", out)
	}
	for _, sec := range secrets {
		if strings.Contains(out, sec) {
			t.Errorf("logs contain a secret")
		}
	}
	var n int
	q := `SELECT count(*) FROM users WHERE password_hash LIKE '%' || ? || '%'`
	if err := e.db.R.QueryRow(q, adminPW).Scan(&n); err != nil || n != 0 {
		t.Fatalf("admin password in clear: %d %v", n, err)
	}
}

func BenchmarkAuthorize(b *testing.B) {
	ctx := context.Background()
	e := newBenchEnv(b)
	s := e.s
	if _, err := s.EnsureAdmin(ctx, "bench-admin", e.dir); err != nil {
		b.Fatal(err)
	}
	tok, err := s.CreateToken(ctx, TokenSpec{Registry: "reg1", Name: "bench-token", Repositories: []RepositoryRule{
		{Repository: "team/*", Actions: []string{ContentRead, ContentWrite}}, {Repository: "app", Actions: []string{ContentRead}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	pw := tok.Passwords[0].Value
	w := tokenGet(s, "reg1", basic("bench-token", pw), nil, "repository:team/app:pull,push")
	var resp struct{ Token string }
	if err := jsonDecode(w.Body.Bytes(), &resp); err != nil {
		b.Fatal(err)
	}
	run, err := s.IssueRunCredential(ctx, RunGrant{Registry: "reg1", RunID: "b1", TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		how  func(*http.Request)
	}{
		{"basic-admin", basic("admin", "bench-admin")},
		{"basic-token", basic("bench-token", pw)},
		{"bearer-jwt", bearer(resp.Token)},
		{"bearer-run", bearer(run)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := request("GET", "/v2/team/app/manifests/latest")
			bc.how(r)
			need := pull("team/app")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Authorize(r, "reg1", need); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
