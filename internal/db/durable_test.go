package db_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/db"
)

// TestDurableByDefault checks that the default configuration commits
// metadata durably (synchronous=FULL on the writer) and that fast mode is
// NORMAL, as documented.
func TestDurableByDefault(t *testing.T) {
	t.Parallel()
	if !config.Default().Storage.Durable() {
		t.Fatal("the default configuration is not durable")
	}
	for _, tt := range []struct {
		durability string
		want       int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{{"safe", 2}, {"fast", 1}} {
		c := config.Default()
		c.Storage.Durability = tt.durability
		d, err := db.Open(context.Background(), filepath.Join(t.TempDir(), "gantry.db"), db.Durable(c.Storage.Durable()))
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := d.W.QueryRow("PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		d.Close()
		if got != tt.want {
			t.Errorf("durability %s: synchronous = %d, want %d", tt.durability, got, tt.want)
		}
	}
}
