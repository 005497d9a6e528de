// Package stack opens gantry's services over one data directory for
// tests, wired as the server wires them: the database, the store, auth
// and the vault, and serves registries of the store on 127.0.0.1.
//
// It imports auth, vault and registry, so the internal tests of those
// packages cannot use it (they use internal/testenv).
package stack

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/vault"
)

// Stack is the services over one data directory.
type Stack struct {
	Dir   string
	DB    *db.DB
	Store *store.Store
	Auth  *auth.Service
	Vault *vault.Service
}

// New opens the services over the data directory dir (a new temporary
// one when dir is ""); the database is closed when t ends. Auth looks
// registries up in the store and hashes passwords cheaply (tests create
// many); opts come after those and win.
func New(t testing.TB, dir string, opts ...auth.Option) *Stack {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	d := testenv.DB(t, dir)
	st := testenv.Store(t, d, dir)
	keys := filepath.Join(dir, "keys")
	opts = append([]auth.Option{auth.WithRegistryLookup(st), auth.WithPasswordHashCost(64, 1)}, opts...)
	au, err := auth.New(d, keys, opts...)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(d, keys)
	if err != nil {
		t.Fatal(err)
	}
	return &Stack{Dir: dir, DB: d, Store: st, Auth: au, Vault: v}
}

// Admin creates the admin with password (as a first start does) and
// returns its identity.
func (s *Stack) Admin(t testing.TB, password string) auth.Identity {
	t.Helper()
	setup, err := s.Auth.EnsureAdmin(context.Background(), password, s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return auth.Identity{Principal: setup.Principal, Name: auth.AdminUsername, Kind: auth.KindAdmin}
}

// ServeRegistry creates the registry r in the store, its login server a
// free port of 127.0.0.1, and serves it there until t ends: the
// Distribution API (authorized by the stack's auth unless opts say
// otherwise) and the token endpoint. It returns the login server
// (host:port).
func (s *Stack) ServeRegistry(t testing.TB, r store.Registry, opts ...registry.Option) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.Listen = ln.Addr().String()
	if _, err := s.Store.CreateRegistry(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", registry.New(r.Name, s.Store, append([]registry.Option{registry.WithAuthorizer(s.Auth)}, opts...)...))
	mux.Handle(auth.TokenPath, s.Auth.TokenHandler(r.Name))
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	srv.Start()
	t.Cleanup(srv.Close)
	return r.Listen
}

// NoRegistries is the control API's registry runner (httpapi.Registries)
// for tests that serve no registry: starting one only records it.
type NoRegistries struct{}

// Start returns r unchanged.
func (NoRegistries) Start(_ context.Context, r store.Registry) (store.Registry, error) {
	return r, nil
}

// Stop does nothing.
func (NoRegistries) Stop(context.Context, string) error { return nil }

// Running reports false.
func (NoRegistries) Running(string) bool { return false }
