package store

import (
	"container/list"
	"context"
	"database/sql"
	"slices"
	"sync"
)

// stmtCacheSize bounds the prepared statements kept per handle. The store
// has about 150 fixed query texts; the rest (a LIMIT written into the
// text, IN lists, multi-row inserts) vary and are evicted first.
const stmtCacheSize = 256

// stmtCache keeps the prepared statements of one *sql.DB by query text, so
// that a query is parsed and planned once per connection rather than on
// every call: on SQLite, preparing is most of the cost of a small query
// (GetWorkspace: 84 µs prepared each time, 22 µs reused). database/sql
// prepares a cached *sql.Stmt lazily on each connection it runs on, keeps
// it there, and is safe for concurrent use.
//
// Postgres needs none: pgx's database/sql driver already prepares and
// caches statements per connection (QueryExecModeCacheStatement, 512 per
// connection by default).
type stmtCache struct {
	db *sql.DB

	mu     sync.Mutex
	closed bool
	m      map[string]*cachedStmt
	lru    list.List // of *cachedStmt, most recently used first
}

type cachedStmt struct {
	query   string
	stmt    *sql.Stmt
	elem    *list.Element
	refs    int  // calls using stmt right now
	evicted bool // out of the cache: closed when the last call is done
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*cachedStmt{}}
}

// lookup returns the cached statement of query, held for the caller (who
// must release it), or nil.
func (c *stmtCache) lookup(query string) *cachedStmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[query]
	if e == nil {
		return nil
	}
	e.refs++
	c.lru.MoveToFront(e.elem)
	return e
}

// get returns the statement of query, prepared now if need be, held for the
// caller; nil when it cannot be prepared (the caller runs the query
// unprepared, which reports the same error if there is one).
func (c *stmtCache) get(ctx context.Context, query string) *cachedStmt {
	if e := c.lookup(query); e != nil {
		return e
	}
	if !c.add(ctx, query) {
		return nil
	}
	return c.lookup(query)
}

// add prepares query and caches it, evicting the least recently used
// statement when the cache is full. It must not be called by a goroutine
// that holds one of db's connections (a transaction on the one SQLite
// writer connection): preparing waits for a free connection.
func (c *stmtCache) add(ctx context.Context, query string) bool {
	c.mu.Lock()
	_, ok := c.m[query]
	closed := c.closed
	c.mu.Unlock()
	if ok {
		return true
	}
	if closed {
		return false
	}
	stmt, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return false
	}
	var drop []*sql.Stmt
	c.mu.Lock()
	switch {
	case c.closed:
		drop = append(drop, stmt)
	case c.m[query] != nil:
		drop = append(drop, stmt) // another call prepared it meanwhile
	default:
		e := &cachedStmt{query: query, stmt: stmt}
		e.elem = c.lru.PushFront(e)
		c.m[query] = e
		for c.lru.Len() > stmtCacheSize {
			old := c.lru.Back().Value.(*cachedStmt)
			c.lru.Remove(old.elem)
			delete(c.m, old.query)
			old.evicted = true
			if old.refs == 0 {
				drop = append(drop, old.stmt)
			}
		}
	}
	c.mu.Unlock()
	for _, st := range drop {
		_ = st.Close()
	}
	return true
}

func (c *stmtCache) release(e *cachedStmt) {
	c.mu.Lock()
	e.refs--
	last := e.evicted && e.refs == 0
	c.mu.Unlock()
	if last {
		_ = e.stmt.Close()
	}
}

// close closes every statement not in use; those in use are closed by
// their last release.
func (c *stmtCache) close() {
	c.mu.Lock()
	c.closed = true
	var drop []*sql.Stmt
	for q, e := range c.m {
		delete(c.m, q)
		e.evicted = true
		if e.refs == 0 {
			drop = append(drop, e.stmt)
		}
	}
	c.lru.Init()
	c.mu.Unlock()
	for _, st := range drop {
		_ = st.Close()
	}
}

// cachedDB runs queries on a *sql.DB through its statement cache.
type cachedDB struct {
	db    *sql.DB
	cache *stmtCache
}

func (q cachedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	e := q.cache.get(ctx, query)
	if e == nil {
		return q.db.ExecContext(ctx, query, args...)
	}
	defer q.cache.release(e)
	return e.stmt.ExecContext(ctx, args...)
}

func (q cachedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	e := q.cache.get(ctx, query)
	if e == nil {
		return q.db.QueryContext(ctx, query, args...)
	}
	// Open rows keep their statement alive (database/sql closes it only
	// after them), so it may be released as soon as the query started.
	defer q.cache.release(e)
	return e.stmt.QueryContext(ctx, args...)
}

func (q cachedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	e := q.cache.get(ctx, query)
	if e == nil {
		return q.db.QueryRowContext(ctx, query, args...)
	}
	defer q.cache.release(e)
	return e.stmt.QueryRowContext(ctx, args...)
}

// cachedTx runs a transaction's queries through the statement cache of the
// connection pool the transaction came from (Tx.StmtContext reuses the
// statement already prepared on the transaction's connection, or prepares
// it there). A query not cached yet runs unprepared and is noted in missed:
// it cannot be prepared on the pool while this transaction holds the only
// writer connection, so the store prepares it once the transaction ended.
type cachedTx struct {
	tx     *sql.Tx
	cache  *stmtCache
	missed *missedQueries
}

// missedQueries are the query texts a transaction ran unprepared.
type missedQueries struct {
	mu sync.Mutex
	qs []string
}

func (m *missedQueries) add(query string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.qs) < stmtCacheSize && !slices.Contains(m.qs, query) {
		m.qs = append(m.qs, query)
	}
}

// prepare caches the missed queries; the caller holds no connection.
func (m *missedQueries) prepare(ctx context.Context, c *stmtCache) {
	m.mu.Lock()
	qs := m.qs
	m.qs = nil
	m.mu.Unlock()
	for _, q := range qs {
		if ctx.Err() != nil || !c.add(ctx, q) {
			return
		}
	}
}

func (q cachedTx) stmt(ctx context.Context, query string) (*sql.Stmt, *cachedStmt) {
	e := q.cache.lookup(query)
	if e == nil {
		q.missed.add(query)
		return nil, nil
	}
	return q.tx.StmtContext(ctx, e.stmt), e
}

func (q cachedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, e := q.stmt(ctx, query)
	if st == nil {
		return q.tx.ExecContext(ctx, query, args...)
	}
	defer q.cache.release(e)
	return st.ExecContext(ctx, args...)
}

func (q cachedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, e := q.stmt(ctx, query)
	if st == nil {
		return q.tx.QueryContext(ctx, query, args...)
	}
	defer q.cache.release(e)
	return st.QueryContext(ctx, args...)
}

func (q cachedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, e := q.stmt(ctx, query)
	if st == nil {
		return q.tx.QueryRowContext(ctx, query, args...)
	}
	defer q.cache.release(e)
	return st.QueryRowContext(ctx, args...)
}
