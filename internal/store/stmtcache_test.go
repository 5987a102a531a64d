package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func openTestSQLite(t *testing.T) *sqlStore {
	t.Helper()
	st, err := openSQLite(context.Background(), filepath.Join(t.TempDir(), "orgplane.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st.(*sqlStore)
}

func cached(c *stmtCache, query string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[query]
	return ok
}

// TestStmtCacheInTx: a query first run inside a transaction runs there
// unprepared (the pool's one writer connection is the transaction's) and is
// prepared once the transaction ended; the next transaction reuses it.
func TestStmtCacheInTx(t *testing.T) {
	s := openTestSQLite(t)
	ctx := context.Background()
	const q = `SELECT COUNT(*) FROM orgs WHERE name <> $1`
	count := func() int {
		var n int
		require.NoError(t, s.InTx(ctx, func(tx Store) error {
			return tx.(*sqlStore).w.QueryRowContext(ctx, q, "x").Scan(&n)
		}))
		return n
	}
	require.Equal(t, 0, count())
	require.True(t, cached(s.wc, q), "prepared after the first transaction")
	require.NoError(t, s.CreateOrg(ctx, Org{ID: "o1", Name: "one"}))
	require.Equal(t, 1, count(), "the cached statement sees the new row")
	// A failing query is not cached and reports its error as before.
	err := s.InTx(ctx, func(tx Store) error {
		_, err := tx.(*sqlStore).w.ExecContext(ctx, `INSERT INTO no_such_table VALUES (1)`)
		return err
	})
	require.ErrorContains(t, err, "no_such_table")
	require.False(t, cached(s.wc, `INSERT INTO no_such_table VALUES (1)`))
	_, err = s.r.QueryContext(ctx, `SELECT x FROM nowhere`)
	require.ErrorContains(t, err, "nowhere")
}

// TestStmtCacheBoundedAndConcurrent: more distinct query texts than the
// cache holds, from several goroutines at once, inside and outside
// transactions: every answer is right, the cache stays bounded, and
// statements evicted while in use are not closed under their callers.
func TestStmtCacheBoundedAndConcurrent(t *testing.T) {
	s := openTestSQLite(t)
	ctx := context.Background()
	texts := stmtCacheSize + 64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3 * texts / 2 {
				k := (i*7 + g*31) % texts
				q := fmt.Sprintf(`SELECT $1 + %d`, k)
				var n int
				var err error
				if g%2 == 0 {
					err = s.r.QueryRowContext(ctx, q, i).Scan(&n)
				} else {
					err = s.InTx(ctx, func(tx Store) error { return tx.(*sqlStore).r.QueryRowContext(ctx, q, i).Scan(&n) })
				}
				if err == nil && n != i+k {
					err = fmt.Errorf("%s with %d gave %d", q, i, n)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for _, c := range []*stmtCache{s.rc, s.wc} {
		c.mu.Lock()
		require.LessOrEqual(t, len(c.m), stmtCacheSize)
		require.Equal(t, len(c.m), c.lru.Len())
		c.mu.Unlock()
	}
	require.NoError(t, s.Close())
	require.Empty(t, s.rc.m)
	require.Empty(t, s.wc.m)
	require.False(t, s.rc.add(ctx, `SELECT 1`), "a closed cache prepares nothing")
}
