package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

//go:embed migrations
var migrationsFS embed.FS

// Dialects.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Open opens the store named by url ("sqlite:PATH" or "postgres://...")
// and applies any pending migrations.
func Open(ctx context.Context, dbURL string) (Store, error) {
	switch {
	case strings.HasPrefix(dbURL, "sqlite:"):
		return openSQLite(ctx, strings.TrimPrefix(dbURL, "sqlite:"))
	case strings.HasPrefix(dbURL, "postgres://"), strings.HasPrefix(dbURL, "postgresql://"):
		return openPostgres(ctx, dbURL)
	default:
		return nil, fmt.Errorf("open store: unsupported --db %q: want sqlite:PATH or a postgres:// URL", redactURL(dbURL))
	}
}

// redactURL hides a password in a connection URL for error messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

func openSQLite(ctx context.Context, path string) (Store, error) {
	if path == "" {
		return nil, errors.New("open store: sqlite: empty path")
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	// The store holds ciphertexts and token hashes: owner-only. SQLite gives
	// its -wal and -shm files the database file's mode.
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		f.Close()
	}
	// WAL lets readers run beside the one writer; immediate transactions
	// take the write lock up front so two writers never deadlock on upgrade.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	// The writer plans global changes, which read every workspace of an org
	// with its secrets and restarts: a page cache of 64 MiB (allocated as
	// used; SQLite's default is 2 MiB) keeps a large org's pages in memory
	// rather than read from the file again on every plan.
	wdb, err := sql.Open("sqlite", dsn+"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=cache_size(-65536)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	wdb.SetMaxOpenConns(1) // one writer
	wdb.SetConnMaxIdleTime(0)
	rdb, err := sql.Open("sqlite", dsn+"&mode=ro")
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	rdb.SetMaxOpenConns(8)
	// Keep the readers open: each holds its own prepared statements, and
	// opening one costs more than the query it would serve.
	rdb.SetMaxIdleConns(8)
	fi, err := os.Stat(path)
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &sqlStore{dialect: SQLite, db: wdb, rdb: rdb, path: path, file: fi, slots: new(atomic.Int64),
		wc: newStmtCache(wdb), rc: newStmtCache(rdb)}
	s.w, s.r = cachedDB{db: wdb, cache: s.wc}, cachedDB{db: rdb, cache: s.rc}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openPostgres(ctx context.Context, dsn string) (Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store: %s: %w", redactURL(dsn), err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &sqlStore{dialect: Postgres, db: db, w: db, r: db, dsn: dsn, slots: new(atomic.Int64)}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// migrate applies the embedded numbered migrations of the dialect that are
// not yet recorded, each in its own transaction.
func (s *sqlStore) migrate(ctx context.Context) error {
	if s.dialect == Postgres {
		// Several replicas may start at once: one migrates, the others wait.
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("migrate: %w", mapErr(err))
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(7250157)`); err != nil {
			return fmt.Errorf("migrate: lock: %w", mapErr(err))
		}
		defer conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock(7250157)`) //nolint:errcheck
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", mapErr(err))
	}
	dir := "migrations/" + s.dialect
	entries, err := fs.ReadDir(migrationsFS, dir)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		version, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			return fmt.Errorf("migrate: bad migration name %q", e.Name())
		}
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
			return fmt.Errorf("migrate: %w", mapErr(err))
		}
		if n > 0 {
			continue
		}
		body, err := fs.ReadFile(migrationsFS, dir+"/"+e.Name())
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate: %w", mapErr(err))
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", e.Name(), err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, toMicros(time.Now())); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", e.Name(), mapErr(err))
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", e.Name(), mapErr(err))
		}
	}
	return nil
}
