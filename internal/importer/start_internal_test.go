package importer

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/store"
)

// TestFailedStartLeavesNothingWaiting: when Start fails (here: the
// database is closed, so the cache rules cannot be loaded), the service is
// not left half-started: spawn refuses work and Wait returns at once.
func TestFailedStartLeavesNothingWaiting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := db.Open(ctx, filepath.Join(dir, "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, d, filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	s := New(d, st, nil, nil, WithSpoolDir(filepath.Join(dir, "spool")))
	d.Close()
	if err := s.Start(ctx); err == nil {
		t.Fatal("Start succeeded on a closed database")
	}
	if s.spawn(func(context.Context) {}) {
		t.Fatal("a service whose Start failed took work")
	}
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait blocked after a failed Start")
	}
}
