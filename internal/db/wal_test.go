package db_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/db"
)

// TestWALBounded writes for 12 s in small transactions, as pushes do,
// while readers keep overlapping read transactions open (so there is never
// an instant without a snapshot and SQLite alone can never restart the
// WAL), and requires the -wal file to stay below 64 MiB throughout, then
// to be truncated to zero bytes once writes stop. Without the checkpointer
// (WithCheckpointInterval(0), or before it existed) the WAL reached 444 MiB
// in these 12 s; with it, 24-28 MiB.
func TestWALBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("WAL soak skipped in -short mode")
	}
	const (
		walLimit = 64 << 20
		readers  = 4
		duration = 12 * time.Second
	)
	dir := t.TempDir()
	path := filepath.Join(dir, "gantry.db")
	d, err := db.Open(context.Background(), path, db.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	if _, err := d.W.ExecContext(ctx, `CREATE TABLE soak (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	// Each reader holds a read transaction for a while, as a client
	// streaming a long listing does; staggered, they leave no instant
	// without a snapshot, so SQLite's own checkpoints can never reset the
	// WAL.
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hold := time.NewTimer(time.Duration(i) * 10 * time.Millisecond)
			defer hold.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-hold.C:
				}
				tx, err := d.R.BeginTx(ctx, nil)
				if err != nil {
					continue
				}
				var id int64
				_ = tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM soak`).Scan(&id)
				hold.Reset(40 * time.Millisecond)
				select {
				case <-ctx.Done():
				case <-hold.C:
				}
				_ = tx.Rollback()
				hold.Reset(0)
			}
		}()
	}
	var maxWAL int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > maxWAL {
				maxWAL = fi.Size()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	v := make([]byte, 2<<10)
	writes := 0
	for ctx.Err() == nil {
		_, _ = rand.Read(v)
		err := d.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO soak(k, v) VALUES (hex(randomblob(16)), ?)`, v)
			return err
		})
		if err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
		writes++
	}
	wg.Wait()
	t.Logf("%d writes in %s; largest WAL %.1f MiB (limit %d MiB)", writes, duration, float64(maxWAL)/(1<<20), walLimit>>20)
	if maxWAL >= walLimit {
		t.Errorf("WAL grew to %d bytes, want < %d", maxWAL, walLimit)
	}

	// Idle, the WAL is cut to nothing within a few rounds.
	deadline := time.Now().Add(5 * time.Second)
	for {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle WAL still %d bytes after 5s", fi.Size())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testLogger logs to t at debug level.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestPools checks the pragmas every pool runs with and that the listing
// pool is separate from the read pool.
func TestPools(t *testing.T) {
	ctx := context.Background()
	d, err := db.Open(ctx, filepath.Join(t.TempDir(), "gantry.db"), db.WithWALLimit(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for name, pool := range map[string]*sql.DB{"W": d.W, "R": d.R, "L": d.L} {
		var limit int64
		var mode string
		if err := pool.QueryRowContext(ctx, `SELECT * FROM pragma_journal_size_limit, pragma_journal_mode`).Scan(&limit, &mode); err != nil {
			t.Fatal(err)
		}
		if limit != 8<<20 || mode != "wal" {
			t.Errorf("pool %s: journal_size_limit %d, journal_mode %s; want %d, wal", name, limit, mode, 8<<20)
		}
	}
	if d.L == d.R || d.L.Stats().MaxOpenConnections < 1 || d.R.Stats().MaxOpenConnections < 4 {
		t.Errorf("pools: R %d connections, L %d", d.R.Stats().MaxOpenConnections, d.L.Stats().MaxOpenConnections)
	}
	if _, err := db.Open(ctx, filepath.Join(t.TempDir(), "gantry.db"), db.WithWALLimit(0)); err == nil {
		t.Error("Open with a zero WAL limit succeeded")
	}
}
