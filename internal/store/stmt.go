package store

import (
	"context"
	"database/sql"
	"sync"
)

// stmts caches prepared statements per query text (all queries are
// constants, so the cache is small). SQLite compiles a statement in about as
// long as it runs a small one; preparing once keeps the hot paths cheap.
//
// The write pool has a single connection: a statement cannot be prepared on
// it from inside a transaction (that would wait for the connection the
// transaction holds). Such queries run unprepared once and are prepared by
// Store.tx after the transaction ends.
type stmts struct {
	mu      sync.Mutex
	m       map[string]*sql.Stmt
	pending map[string]bool
}

// get returns the prepared statement for query, or nil. With defer set it
// only records a miss instead of preparing.
func (c *stmts) get(ctx context.Context, pool *sql.DB, query string, deferred bool) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.m[query]
	if ok || deferred {
		if !ok {
			if c.pending == nil {
				c.pending = map[string]bool{}
			}
			c.pending[query] = true
		}
		c.mu.Unlock()
		return st
	}
	c.mu.Unlock()
	// Prepare without holding the lock: preparing may wait for a
	// connection that a transaction holds while it calls get.
	st, err := pool.PrepareContext(ctx, query)
	if err != nil {
		return nil // the caller runs the query unprepared and reports the error
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok {
		st.Close()
		return prev
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = st
	return st
}

// prepared runs queries through prepared statements of pool, bound to tx
// when tx is not nil.
type prepared struct {
	s    *Store
	pool *sql.DB
	c    *stmts
	tx   *sql.Tx
}

// in returns a queryer for tx (a transaction on the write pool).
func (s *Store) in(tx *sql.Tx) queryer { return prepared{s: s, pool: s.db.W, c: &s.wstmts, tx: tx} }

// rd returns a queryer for the read pool: point reads.
func (s *Store) rd() queryer { return prepared{s: s, pool: s.db.R, c: &s.rstmts} }

// lst returns a queryer for the listing pool: queries that scan (listings,
// aggregates), kept off the read pool so that they cannot starve point
// reads (db.DB.L).
func (s *Store) lst() queryer { return prepared{s: s, pool: s.db.L, c: &s.lstmts} }

func (p prepared) stmt(ctx context.Context, query string) *sql.Stmt {
	st := p.c.get(ctx, p.pool, query, p.tx != nil)
	if st != nil && p.tx != nil {
		st = p.tx.StmtContext(ctx, st)
	}
	return st
}

func (p prepared) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	if p.tx != nil {
		return p.tx.QueryRowContext(ctx, query, args...)
	}
	return p.pool.QueryRowContext(ctx, query, args...)
}

func (p prepared) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	if p.tx != nil {
		return p.tx.QueryContext(ctx, query, args...)
	}
	return p.pool.QueryContext(ctx, query, args...)
}

func (p prepared) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	if p.tx != nil {
		return p.tx.ExecContext(ctx, query, args...)
	}
	return p.pool.ExecContext(ctx, query, args...)
}

// tx runs fn in a write transaction (db.Tx), then prepares the statements
// the transaction could not.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	err := s.db.Tx(ctx, fn)
	c := &s.wstmts
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for q := range pending {
		c.get(context.WithoutCancel(ctx), s.db.W, q, false)
	}
	return err
}

// wr returns a queryer for single statements on the write pool, outside any
// transaction.
func (s *Store) wr() queryer { return prepared{s: s, pool: s.db.W, c: &s.wstmts} }
