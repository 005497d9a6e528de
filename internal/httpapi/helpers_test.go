package httpapi_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/vault"
)

// services are the real stores behind a control API under test: a
// database in a temporary directory, an admin with adminPassword and the
// registry "contoso".
type services struct {
	store *store.Store
	auth  *auth.Service
	vault *vault.Service
}

func newServices(t *testing.T, adminPassword string) services {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	d, err := db.Open(ctx, filepath.Join(dir, "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	st, err := store.Open(ctx, d, dir)
	if err != nil {
		t.Fatal(err)
	}
	au, err := auth.New(d, filepath.Join(dir, "keys"), auth.WithRegistryLookup(st), auth.WithPasswordHashCost(64, 1))
	if err != nil {
		t.Fatal(err)
	}
	vlt, err := vault.New(d, filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := au.EnsureAdmin(ctx, adminPassword, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRegistry(ctx, store.Registry{Name: "contoso"}); err != nil {
		t.Fatal(err)
	}
	return services{store: st, auth: au, vault: vlt}
}

// noRegistries is a Registries that serves nothing.
type noRegistries struct{}

func (noRegistries) Start(_ context.Context, r store.Registry) (store.Registry, error) {
	return r, nil
}
func (noRegistries) Stop(context.Context, string) error { return nil }
func (noRegistries) Running(string) bool                { return false }
