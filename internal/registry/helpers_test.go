package registry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
)

// env is a registry served in-process on 127.0.0.1.
type env struct {
	h    http.Handler
	st   *store.Store
	srv  *httptest.Server
	root string
	name string
}

func newEnv(t testing.TB, opts ...registry.Option) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	d, err := db.Open(ctx, filepath.Join(dir, "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	st, err := store.Open(ctx, d, filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRegistry(ctx, store.Registry{Name: "test"}); err != nil {
		t.Fatal(err)
	}
	opts = append([]registry.Option{registry.WithAuthorizer(auth.AllowAll{})}, opts...)
	h := registry.New("test", st, opts...)
	mux := http.NewServeMux()
	mux.Handle("/v2/", h)
	return &env{h: h, st: st, srv: newServer(t, mux), root: filepath.Join(dir, "data"), name: "test"}
}

// newServer serves h on 127.0.0.1 until the test ends.
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// requireIntegration skips (or, with GANTRY_REQUIRE_INTEGRATION=1, fails)
// a test whose external tool or engine is missing.
func requireIntegration(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("GANTRY_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("%s is not available and GANTRY_REQUIRE_INTEGRATION=1", what)
	}
	t.Skipf("%s is not available", what)
}

// tool finds an external tool: in the repository's .tools/bin (where
// scripts/tools.sh installs the pinned versions), else on PATH.
func tool(t *testing.T, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", ".tools", "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	requireIntegration(t, name+" (run scripts/tools.sh)")
	return ""
}
