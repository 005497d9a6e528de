package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
)

// batcher implements group commit: concurrent writers queue their
// transaction bodies, and one of them (the leader) runs every queued body in
// a single transaction, each inside its own savepoint, and commits once.
// SQLite spends about half of a small write transaction on the commit
// (writing the WAL frames), so under concurrent pushes this multiplies the
// manifest PUT rate; alone, a writer runs its body at once, as before.
type batcher struct {
	mu      sync.Mutex
	running bool
	pending []*batchOp
}

type batchOp struct {
	ctx      context.Context
	fn       func(ctx context.Context, tx *sql.Tx) error
	onCommit func(*effects)
	err      error
	wake     chan bool // true: done; false: lead the next batch
}

// maxBatch bounds how many bodies share a transaction.
const maxBatch = 64

// batchTx runs fn in a write transaction shared with other concurrent
// callers. fn's effects commit only if it returns nil; an error rolls back
// fn alone. fn must use the context it is given: it outlives the caller's
// cancellation, because interrupting a statement would roll back the whole
// shared transaction. onCommit (if not nil) runs after a successful commit,
// before the next batch starts, and records fn's effects: the cache writes
// and tag events of the batch are applied together, in commit order, then
// the events are emitted (effects).
func (s *Store) batchTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error, onCommit func(*effects)) error {
	b := &s.batch
	op := &batchOp{ctx: context.WithoutCancel(ctx), fn: fn, onCommit: onCommit, wake: make(chan bool, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, op)
	lead := !b.running
	b.running = true
	b.mu.Unlock()
	// A queued body cannot be withdrawn (it may be running already), so a
	// follower waits for the outcome even if its caller gave up.
	if !lead {
		if done := <-op.wake; done {
			return op.err
		}
	}
	for {
		b.mu.Lock()
		ops := b.pending
		if len(ops) > maxBatch {
			ops = ops[:maxBatch]
		}
		b.pending = b.pending[len(ops):]
		b.mu.Unlock()
		s.runBatch(ops)
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.running = false
			b.mu.Unlock()
			return op.err
		}
		if containsOp(ops, op) {
			// Hand leadership to the next waiter and return.
			next := b.pending[0]
			b.mu.Unlock()
			next.wake <- false
			return op.err
		}
		b.mu.Unlock()
	}
}

func containsOp(ops []*batchOp, op *batchOp) bool {
	for _, o := range ops {
		if o == op {
			return true
		}
	}
	return false
}

// runBatch runs ops in one transaction and wakes every op but the leader's
// own (which is not waiting).
func (s *Store) runBatch(ops []*batchOp) {
	ctx := ops[0].ctx
	var gen uint64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		// Read under the write lock: a writer that commits after this
		// moves the generation before or after the batch's cache writes,
		// and either way they cannot leave a stale entry (cache.apply).
		gen = s.cache.generation()
		for i, op := range ops {
			sp := fmt.Sprintf("op%d", i)
			if _, err := tx.ExecContext(op.ctx, "SAVEPOINT "+sp); err != nil {
				return fmt.Errorf("savepoint: %w", err)
			}
			op.err = op.fn(op.ctx, tx)
			if op.err != nil {
				if _, err := tx.ExecContext(op.ctx, "ROLLBACK TO "+sp); err != nil {
					return fmt.Errorf("rolling back to savepoint: %w", err)
				}
			}
			if _, err := tx.ExecContext(op.ctx, "RELEASE "+sp); err != nil {
				return fmt.Errorf("releasing savepoint: %w", err)
			}
		}
		return nil
	})
	var eff effects
	for _, op := range ops {
		if err != nil && op.err == nil {
			op.err = err
		}
		if op.err == nil && op.onCommit != nil {
			op.onCommit(&eff)
		}
	}
	if err == nil {
		s.cache.apply(gen, &eff)
		s.emit(eff.events)
	}
	for _, op := range ops {
		select {
		case op.wake <- true:
		default:
		}
	}
}

// effects are what the operations of a committed batch change besides the
// database: the cache entries they wrote (in commit order) and the tag
// events to announce once the cache shows them.
type effects struct {
	manifests []repoManifest
	tags      []repoTags
	events    []TagEvent
}

type repoManifest struct {
	repo int64
	m    *Manifest
}

type repoTags struct {
	repo int64
	tags []string
	d    digest.Digest
}
