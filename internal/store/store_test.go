package store_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orgplane/orgplane/internal/pgtest"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

func sqliteURL(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "orgplane.db")
}

// pgURL is a fresh database cloned from a template the store migrated.
func pgURL(t testing.TB) string {
	t.Helper()
	return pgtest.Template(t, "store", func(dsn string) error {
		s, err := store.Open(context.Background(), dsn)
		if err != nil {
			return err
		}
		return s.Close()
	})
}

func open(t testing.TB, u string) store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), u)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, string) {
		u := sqliteURL(t)
		return open(t, u), u
	})
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, string) {
		u := pgURL(t)
		return open(t, u), u
	})
}

// TestPostgresUnmigrated runs the migrations themselves on an empty
// database, which the template-based suite skips.
func TestPostgresUnmigrated(t *testing.T) {
	u := pgtest.URL(t)
	s := open(t, u)
	require.Equal(t, store.Postgres, s.Dialect())
	require.NoError(t, s.Ping(t.Context()))
}

func TestOpenURLs(t *testing.T) {
	_, err := store.Open(t.Context(), "mysql://x")
	require.ErrorContains(t, err, "unsupported")
	_, err = store.Open(t.Context(), "postgres://user:hunter2@127.0.0.1:1/x")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2", "no password in errors")
	_, err = store.Open(t.Context(), "sqlite:")
	require.Error(t, err)

	u := sqliteURL(t)
	s := open(t, u)
	require.NoError(t, s.Close())
	fi, err := os.Stat(strings.TrimPrefix(u, "sqlite:"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the database file is owner-only")
}

// ---- a store that stops answering

func TestPostgresUnavailable(t *testing.T) {
	ctx := t.Context()
	t.Run("BackendsTerminatedMidTransaction", func(t *testing.T) {
		u := pgURL(t)
		s := open(t, u)
		err := s.InTx(ctx, func(tx store.Store) error {
			if _, err := tx.ListOrgs(ctx); err != nil {
				return err
			}
			terminateBackends(t, u)
			_, err := tx.ListOrgs(ctx)
			return err
		})
		require.ErrorIs(t, err, store.ErrUnavailable)
		// The pool drops the dead connections and dials new ones.
		recovers(t, func() error { return s.Ping(ctx) })
		require.NoError(t, s.CreateOrg(ctx, store.Org{ID: "o1", Name: "after", CreatedAt: time.Now()}))
	})

	t.Run("IdlePoolTerminated", func(t *testing.T) {
		u := pgURL(t)
		s := open(t, u)
		require.NoError(t, s.CreateOrg(ctx, store.Org{ID: "o1", Name: "before", CreatedAt: time.Now()}))
		terminateBackends(t, u)
		recovers(t, func() error {
			_, err := s.GetOrgByName(ctx, "before")
			return err
		})
	})

	t.Run("ServerGone", func(t *testing.T) {
		u := pgURL(t)
		p := pgtest.NewProxy(t, u)
		s := open(t, p.URL)
		require.NoError(t, s.CreateOrg(ctx, store.Org{ID: "o1", Name: "before", CreatedAt: time.Now()}))

		p.Stop()
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		require.ErrorIs(t, s.Ping(cctx), store.ErrUnavailable)
		_, err := s.ListOrgs(cctx)
		require.ErrorIs(t, err, store.ErrUnavailable)
		require.ErrorIs(t, s.CreateOrg(cctx, store.Org{ID: "o2", Name: "during", CreatedAt: time.Now()}), store.ErrUnavailable)
		err = s.InTx(cctx, func(tx store.Store) error {
			return tx.CreateOrg(cctx, store.Org{ID: "o2", Name: "during", CreatedAt: time.Now()})
		})
		require.ErrorIs(t, err, store.ErrUnavailable)
		_, err = store.Open(cctx, p.URL)
		require.ErrorIs(t, err, store.ErrUnavailable, "opening against a server that is down")

		p.Start()
		recovers(t, func() error { return s.Ping(ctx) }) // the server is back
		orgs, err := s.ListOrgs(ctx)
		require.NoError(t, err)
		require.Len(t, orgs, 1)
		require.NoError(t, s.CreateOrg(ctx, store.Org{ID: "o2", Name: "after", CreatedAt: time.Now()}))
	})
}

// recovers calls fn until it succeeds. Each dead pooled connection may cost
// one failed call (pgx pings a pooled connection before reuse only when it
// has been idle for over a second); every failure must say "unavailable",
// and the store must come back.
func recovers(t *testing.T, fn func() error) {
	t.Helper()
	var failures int
	for {
		err := fn()
		if err == nil {
			break
		}
		require.ErrorIs(t, err, store.ErrUnavailable)
		failures++
		require.Less(t, failures, 40, "the store does not recover")
	}
	t.Logf("%d failed call(s) before recovery", failures)
}

func terminateBackends(t *testing.T, dsn string) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	require.NoError(t, err)
	// pg_terminate_backend only signals: wait until they are gone.
	require.Eventually(t, func() bool {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n)
		return err == nil && n == 0
	}, 10*time.Second, 10*time.Millisecond)
}

func TestSQLiteUnavailable(t *testing.T) {
	ctx := t.Context()
	t.Run("LockedTooLong", func(t *testing.T) {
		t.Parallel()
		u := sqliteURL(t)
		s := open(t, u)
		require.NoError(t, s.CreateOrg(ctx, store.Org{ID: "o1", Name: "before", CreatedAt: time.Now()}))

		// Another process holds the write lock past the store's busy timeout.
		db, err := sql.Open("sqlite", "file:"+strings.TrimPrefix(u, "sqlite:"))
		require.NoError(t, err)
		defer db.Close()
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.ExecContext(ctx, `BEGIN IMMEDIATE`)
		require.NoError(t, err)

		start := time.Now()
		err = s.InTx(ctx, func(tx store.Store) error {
			return tx.CreateOrg(ctx, store.Org{ID: "o2", Name: "during", CreatedAt: time.Now()})
		})
		require.ErrorIs(t, err, store.ErrUnavailable)
		t.Logf("gave up after %s: %v", time.Since(start).Round(time.Millisecond), err)
		orgs, err := s.ListOrgs(ctx)
		require.NoError(t, err, "readers are not blocked by the writer (WAL)")
		require.Len(t, orgs, 1)

		_, err = conn.ExecContext(ctx, `ROLLBACK`)
		require.NoError(t, err)
		require.NoError(t, s.CreateOrg(ctx, store.Org{ID: "o2", Name: "after", CreatedAt: time.Now()}), "the lock is gone")
	})

}

// TestSQLiteFileRemoved: a database file deleted (or replaced) under a
// running store makes Ping say the store is unavailable, instead of
// writes going on into a file that is gone.
func TestSQLiteFileRemoved(t *testing.T) {
	t.Parallel()
	u := sqliteURL(t)
	s := open(t, u)
	require.NoError(t, s.Ping(t.Context()))
	require.NoError(t, os.Remove(strings.TrimPrefix(u, "sqlite:")))
	err := s.Ping(t.Context())
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.Contains(t, err.Error(), "removed or replaced")
}
