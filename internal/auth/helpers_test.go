package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/testenv"
)

// lookup is a RegistryLookup over a fixed set of anonymous-pull registries.
type lookup map[string]bool

func (l lookup) AnonymousPull(_ context.Context, registry string) (bool, error) {
	return l[registry], nil
}

type env struct {
	s     *Service
	db    *db.DB
	clock *testenv.Clock
	dir   string
}

// newEnv opens a fresh database in a temporary directory with registries
// reg1, reg2 and pub (anonymous pull) and a Service over it.
func newEnv(t *testing.T, opts ...Option) *env {
	t.Helper()
	return newEnvTB(t, opts...)
}

func newBenchEnv(b *testing.B, opts ...Option) *env {
	b.Helper()
	// Real clock and default hash cost: this is what the server runs.
	return newEnvTB(b, append([]Option{WithClock(time.Now), WithPasswordHashCost(defaultArgon.memory, defaultArgon.time)}, opts...)...)
}

func jsonDecode(b []byte, v any) error { return json.Unmarshal(b, v) }

func newEnvTB(t testing.TB, opts ...Option) *env {
	t.Helper()
	dir := t.TempDir()
	d := testenv.DB(t, dir)
	testenv.CreateRegistries(t, testenv.Store(t, d, t.TempDir()), "reg1", "reg2", "pub")
	clock := testenv.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	base := []Option{
		WithClock(clock.Now),
		WithRegistryLookup(lookup{"pub": true}),
		WithPasswordHashCost(64, 1),
	}
	// Later options win, so callers can override the defaults above.
	s, err := New(d, filepath.Join(dir, "keys"), append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &env{s: s, db: d, clock: clock, dir: dir}
}

func mustToken(t *testing.T, s *Service, spec TokenSpec) Token {
	t.Helper()
	tok, err := s.CreateToken(context.Background(), spec)
	if err != nil {
		t.Fatalf("CreateToken(%s/%s): %v", spec.Registry, spec.Name, err)
	}
	return tok
}

// request builds a registry or control-plane request from 127.0.0.1.
func request(method, target string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Host = "127.0.0.1:5001"
	return r
}

func basic(user, pass string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func anonymous(*http.Request) {}

func pull(repo string) []Access {
	return []Access{{Type: TypeRepository, Name: repo, Actions: []string{ActionPull}}}
}

func push(repo string) []Access {
	return []Access{{Type: TypeRepository, Name: repo, Actions: []string{ActionPush}}}
}

func del(repo string) []Access {
	return []Access{{Type: TypeRepository, Name: repo, Actions: []string{ActionDelete}}}
}

func tags(repo string) []Access {
	return []Access{{Type: TypeRepository, Name: repo, Actions: []string{ActionList}}}
}

var catalog = []Access{{Type: TypeRegistry, Name: CatalogName, Actions: []string{ActionCatalog}}}

// outcome classifies an authorization result.
type outcome string

const (
	allow  outcome = "allow"
	unauth outcome = "401"
	deny   outcome = "403"
	other  outcome = "error"
)

func classify(err error) outcome {
	switch {
	case err == nil:
		return allow
	case errors.Is(err, ErrUnauthenticated):
		return unauth
	case errors.Is(err, ErrDenied):
		return deny
	}
	return other
}

// tokenGet calls the token endpoint of registry with GET and the scopes.
func tokenGet(s *Service, registry string, how func(*http.Request), extra url.Values, scopes ...string) *httptest.ResponseRecorder {
	q := url.Values{"service": {"127.0.0.1:5001"}}
	for k, v := range extra {
		q[k] = v
	}
	q["scope"] = scopes
	r := request("GET", TokenPath+"?"+q.Encode())
	how(r)
	w := httptest.NewRecorder()
	s.TokenHandler(registry).ServeHTTP(w, r)
	return w
}

// fetchToken returns a bearer token for scopes, failing the test unless the
// endpoint answers 200.
func fetchToken(t *testing.T, s *Service, registry string, how func(*http.Request), scopes ...string) string {
	t.Helper()
	w := tokenGet(s, registry, how, nil, scopes...)
	if w.Code != http.StatusOK {
		t.Fatalf("token endpoint: %d %s", w.Code, w.Body)
	}
	var resp tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Token
}

func decodeToken(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var resp tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Token == "" || resp.Token != resp.AccessToken {
		t.Fatalf("token response %s", w.Body)
	}
	return resp.Token
}

func tokenClaims(t *testing.T, s *Service, registry, tok string) *claims {
	t.Helper()
	c, err := s.parseToken(tok, registry, useAccess)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
