package registry_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
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
	dir := t.TempDir()
	st := testenv.Store(t, testenv.DB(t, dir), filepath.Join(dir, "data"))
	testenv.CreateRegistries(t, st, "test")
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
