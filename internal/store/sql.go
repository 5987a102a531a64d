package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type sqlStore struct {
	dialect string
	db      *sql.DB // writes (SQLite: the one writer connection)
	rdb     *sql.DB // SQLite read pool; nil on Postgres
	w, r    querier // where this Store writes and reads (a tx inside InTx)
	// wc, rc: the prepared statements of db and rdb (SQLite; nil on
	// Postgres, whose driver caches them per connection itself).
	wc, rc *stmtCache
	inTx   bool
	conn   *sql.Conn     // the connection of the transaction (Postgres, inside InTx)
	dsn    string        // Postgres: where to connect (a listener's own connection)
	path   string        // SQLite: the database file
	file   os.FileInfo   // SQLite: that file as opened
	slots  *atomic.Int64 // restart slots known to exist (ensureSlots)
}

func (s *sqlStore) Dialect() string { return s.dialect }

func (s *sqlStore) Close() error {
	if s.inTx {
		return errors.New("close store: inside a transaction")
	}
	if s.wc != nil {
		s.wc.close()
	}
	if s.rc != nil {
		s.rc.close()
	}
	err := s.db.Close()
	if s.rdb != nil {
		err = errors.Join(err, s.rdb.Close())
	}
	return err
}

func (s *sqlStore) Ping(ctx context.Context) error {
	// A real query, not a driver ping: it proves the store answers.
	var one int
	if err := s.r.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("ping store: %w", mapErr(err))
	}
	if s.dialect == SQLite {
		if err := s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
			return fmt.Errorf("ping store: %w", mapErr(err))
		}
		// An open SQLite file keeps answering after it was deleted or
		// replaced, and every write since is lost at the next start: say so.
		if fi, err := os.Stat(s.path); err != nil || !os.SameFile(fi, s.file) {
			return fmt.Errorf("ping store: %w: the database file %s was removed or replaced while open", ErrUnavailable, s.path)
		}
	}
	return nil
}

// txAttempts bounds how often a transaction that lost a deadlock or a
// serialization failure runs again before InTx answers ErrConflict.
const txAttempts = 4

func (s *sqlStore) ProbeWrite(ctx context.Context, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE readiness_probe SET probed_at = $1 WHERE id = 1`, toMicros(at))
	if err != nil {
		return fmt.Errorf("probe store write: %w", mapErr(err))
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("probe store write: %w: the probe row is missing", ErrUnavailable)
	}
	return nil
}

func (s *sqlStore) InTx(ctx context.Context, fn func(Store) error) error {
	if s.inTx {
		return fn(s) // nested: join the outer transaction
	}
	for attempt := 1; ; attempt++ {
		err := s.inTxOnce(ctx, fn)
		if !retryable(err) {
			return err
		}
		if attempt == txAttempts {
			return fmt.Errorf("%w: the transaction kept losing to concurrent ones (%v); try again", ErrConflict, err)
		}
		// Jittered, growing pauses let the winner finish.
		t := time.NewTimer(time.Duration(attempt) * time.Duration(5+rand.IntN(20)) * time.Millisecond)
		select {
		case <-ctx.Done():
			// The caller gave up meanwhile: say so, not the lost race.
			t.Stop()
			return fmt.Errorf("%w (after a transaction lost a concurrency race: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// retryable reports a Postgres deadlock (40P01) or serialization failure
// (40001): the transaction was rolled back and may simply run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return err != nil && errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

func (s *sqlStore) inTxOnce(ctx context.Context, fn func(Store) error) error {
	var missed missedQueries
	err := s.runTx(ctx, &missed, fn)
	if s.wc != nil {
		// The writer connection is free again: prepare what the
		// transaction ran unprepared, once, for the next ones.
		missed.prepare(ctx, s.wc)
	}
	return err
}

func (s *sqlStore) runTx(ctx context.Context, missed *missedQueries, fn func(Store) error) error {
	// The transaction runs on a connection we hold, so that Postgres bulk
	// writes can use COPY on it (conn.Raw) inside the transaction.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", mapErr(err))
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", mapErr(err))
	}
	// A panic (or t.FailNow) in fn must not leave the transaction open: on
	// SQLite it would hold the only writer connection for good. After
	// Commit this is a no-op.
	defer tx.Rollback() //nolint:errcheck
	txs := &sqlStore{dialect: s.dialect, db: s.db, rdb: s.rdb, w: tx, r: tx, inTx: true, conn: conn, dsn: s.dsn, slots: s.slots}
	if s.wc != nil {
		// On SQLite the transaction's reads run on the writer connection
		// too, so both go through the writer's statements.
		q := cachedTx{tx: tx, cache: s.wc, missed: missed}
		txs.w, txs.r = q, q
	}
	if err := fn(txs); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", mapErr(err))
	}
	return nil
}

// forUpdate is the row-lock suffix: Postgres locks the row; SQLite's
// immediate transaction already holds the only write lock.
func (s *sqlStore) forUpdate() string {
	if s.dialect == Postgres && s.inTx {
		return " FOR UPDATE"
	}
	return ""
}

// mapErr maps driver errors to the package's sentinels, once.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505", pgErr.Code == "23503", pgErr.Code == "23514":
			return fmt.Errorf("%w: %s", ErrConflict, pgErr.ConstraintName)
		case strings.HasPrefix(pgErr.Code, "08"), strings.HasPrefix(pgErr.Code, "53"),
			strings.HasPrefix(pgErr.Code, "57P"):
			return fmt.Errorf("%w: %s", ErrUnavailable, pgErr.Message)
		}
		return err
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		switch sqErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY,
			sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY, sqlite3.SQLITE_CONSTRAINT_CHECK:
			return fmt.Errorf("%w: %s", ErrConflict, sqErr.Error())
		}
		switch sqErr.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY,
			sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return fmt.Errorf("%w: %s", ErrUnavailable, sqErr.Error())
		}
		return err
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connErr) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "conn closed") {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

func toMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// affected turns "no row changed" into ErrNotFound.
func affected(res sql.Result, err error) error {
	if err != nil {
		return mapErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return mapErr(err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
