package db

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// TestFlushWaitsForAnFsyncBegunAfterIt: a flush called while an fsync is
// running (it may have begun before the caller's commit) does not return
// when that fsync ends, but after the next one.
func TestFlushWaitsForAnFsyncBegunAfterIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newFlusher(filepath.Join(dir, "x.db"))
	f.dirSynced = true
	if err := os.WriteFile(f.path, []byte("wal"), 0o600); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	f.syncFile = func(*os.File) error {
		started <- struct{}{}
		<-release
		return nil
	}
	a := make(chan error, 1)
	go func() { a <- f.flush() }()
	<-started // fsync 1 runs
	b := make(chan error, 1)
	go func() { b <- f.flush() }()
	time.Sleep(20 * time.Millisecond) // b is waiting
	release <- struct{}{}             // fsync 1 ends
	if err := <-a; err != nil {
		t.Fatal(err)
	}
	select {
	case <-b:
		t.Fatal("a flush returned after an fsync that began before it")
	case <-started: // fsync 2 runs, for b
	}
	select {
	case <-b:
		t.Fatal("a flush returned before its fsync ended")
	case <-time.After(20 * time.Millisecond):
	}
	release <- struct{}{}
	if err := <-b; err != nil {
		t.Fatal(err)
	}
	if f.syncs != 2 {
		t.Fatalf("%d fsyncs, want 2", f.syncs)
	}
}

// TestDurableTx: with Durable, Tx commits, waits for a WAL fsync, and
// leaves the writer at synchronous=FULL, also after a failed transaction
// (which flushes nothing); concurrent transactions share fsyncs; a failed
// fsync fails the transactions waiting for it and every later one.
func TestDurableTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d, err := Open(ctx, filepath.Join(t.TempDir(), "gantry.db"), Durable(true), WithCheckpointInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var mu sync.Mutex
	var syncs int
	d.flush.syncFile = func(f *os.File) error {
		time.Sleep(5 * time.Millisecond) // a slow disk: commits pile up meanwhile
		mu.Lock()
		syncs++
		mu.Unlock()
		return f.Sync()
	}
	if _, err := d.W.ExecContext(ctx, `CREATE TABLE t (n INTEGER)`); err != nil {
		t.Fatal(err)
	}
	synchronous := func() int {
		t.Helper()
		var got int
		if err := d.W.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	insert := func(tx *sql.Tx) error { _, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (1)`); return err }
	if err := d.Tx(ctx, insert); err != nil {
		t.Fatal(err)
	}
	if syncs < 1 || synchronous() != 2 {
		t.Fatalf("after a durable Tx: %d fsyncs, synchronous=%d; want at least 1 and 2 (FULL)", syncs, synchronous())
	}
	before := syncs
	boom := errors.New("boom")
	if err := d.Tx(ctx, func(*sql.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed Tx: %v", err)
	}
	if syncs != before || synchronous() != 2 {
		t.Fatalf("after a failed Tx: %d fsyncs (was %d), synchronous=%d", syncs, before, synchronous())
	}

	const n = 40
	var g errgroup.Group
	for range n {
		g.Go(func() error { return d.Tx(ctx, insert) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := d.R.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&rows); err != nil || rows != n+1 {
		t.Fatalf("%d rows, %v; want %d", rows, err, n+1)
	}
	if got := syncs - before; got >= n/2 {
		t.Fatalf("%d concurrent transactions took %d fsyncs: not shared", n, got)
	}
	t.Logf("%d concurrent transactions, %d fsyncs", n, syncs-before)

	d.flush.syncFile = func(*os.File) error { return errors.New("EIO") }
	if err := d.Tx(ctx, insert); err == nil {
		t.Fatal("a Tx whose fsync failed succeeded")
	}
	d.flush.syncFile = (*os.File).Sync
	if err := d.Tx(ctx, insert); err == nil {
		t.Fatal("a Tx after a failed fsync succeeded")
	}
	if err := d.CheckWritable(ctx); err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("readiness after a failed fsync: %v", err)
	}
}
