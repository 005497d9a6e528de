package testenv

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/store"
)

// DB opens (or creates) the database of the data directory dir,
// dir/gantry.db as the server keeps it, and closes it when t ends.
func DB(t testing.TB, dir string) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), filepath.Join(dir, "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// Store opens the store over d with its blobs under dir.
func Store(t testing.TB, d *db.DB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), d, dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// CreateRegistries creates the registries names (no listener, no
// anonymous pull) in st, as the server does.
func CreateRegistries(t testing.TB, st *store.Store, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := st.CreateRegistry(context.Background(), store.Registry{Name: name}); err != nil {
			t.Fatalf("creating registry %s: %v", name, err)
		}
	}
}
