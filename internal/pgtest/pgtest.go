// Package pgtest gives each test a fresh, empty PostgreSQL database.
//
// The databases live on one cluster per test binary. If
// ORGPLANE_TEST_POSTGRES_URL is set, that server is used (the role needs
// CREATEDB); otherwise pgtest starts a throwaway cluster from the machine's
// PostgreSQL binaries (initdb and postgres, found through pg_config --bindir,
// PATH, or the usual install folders), listening only on a unix socket in a
// fresh folder (on /dev/shm when that is a roomy tmpfs, else in TMPDIR),
// tuned for speed rather than durability. Running as root, PostgreSQL runs
// as the postgres system user, since initdb refuses root.
//
// Where PostgreSQL is unavailable the tests that need it are skipped, unless
// ORGPLANE_TEST_REQUIRE_POSTGRES=1 (set it in CI), which fails them instead.
//
// A package that uses pgtest stops the cluster after its tests:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(pgtest.Wrap(m))
//	}
//
// or, without goleak:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		pgtest.Stop()
//		os.Exit(code)
//	}
//
// Without that, the local cluster still dies with the test binary (on Linux),
// and the next run removes its folder; a shared server keeps the template
// databases (named tpl_*) until they are dropped by hand; and goleak, if
// used, reports the goroutine that watches the cluster.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables that configure pgtest.
const (
	// EnvURL names a PostgreSQL server to create the test databases on,
	// instead of starting a local cluster.
	EnvURL = "ORGPLANE_TEST_POSTGRES_URL"
	// EnvRequire, set to 1, turns "PostgreSQL not available" from a skip
	// into a failure, so CI cannot pass by silently testing nothing.
	EnvRequire = "ORGPLANE_TEST_REQUIRE_POSTGRES"
)

// opTimeout bounds each administrative statement. CREATE DATABASE from a
// template waits up to 5s for stray sessions on the template, so this leaves
// room for that.
const opTimeout = time.Minute

// server is the cluster the test databases are created on.
type server struct {
	// adminDSN reaches a maintenance database, from which databases are
	// created and dropped.
	adminDSN string
	// dsnFor returns the DSN of database name on this server.
	dsnFor func(name string) string
	// stop shuts a local cluster down and removes its folder; nil for a
	// shared server.
	stop func()
	// createOptions are appended to CREATE DATABASE.
	createOptions string

	mu        sync.Mutex
	templates map[string]*template
}

// template is one migrated template database, built once per name.
type template struct {
	once sync.Once
	db   string
	err  error
}

// unavailableError means PostgreSQL cannot be had on this machine: tests
// skip (or fail under EnvRequire) rather than report a bug.
type unavailableError struct{ reason string }

func (e *unavailableError) Error() string { return e.reason }

var errStopped = errors.New("pgtest.Stop was already called in this test binary")

var (
	mu      sync.Mutex
	started bool
	srv     *server
	srvErr  error
)

// getServer starts (or connects to) the cluster on first use. It holds mu
// while doing so: a second caller has to wait for the same cluster anyway.
func getServer() (*server, error) {
	mu.Lock()
	defer mu.Unlock()
	if !started {
		started = true
		srv, srvErr = startServer()
	}
	return srv, srvErr
}

func startServer() (*server, error) {
	if dsn := os.Getenv(EnvURL); dsn != "" {
		s, err := sharedServer(dsn)
		if err != nil {
			return nil, fmt.Errorf("use %s: %w", EnvURL, err)
		}
		return s, nil
	}
	return startLocal()
}

// sharedServer uses an existing server: the databases are created there and
// the DSN of each is the given one with its database replaced.
func sharedServer(dsn string) (*server, error) {
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return nil, fmt.Errorf("parse DSN: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(dsn), err)
	}
	_ = conn.Close(ctx)
	return &server{
		adminDSN: dsn,
		dsnFor:   func(name string) string { return withDatabase(dsn, name) },
	}, nil
}

// need returns the server, or skips/fails t and returns nil.
func need(t testing.TB) *server {
	t.Helper()
	s, err := getServer()
	if err == nil {
		return s
	}
	if ue, ok := errors.AsType[*unavailableError](err); ok {
		unavailable(t, ue.reason)
		return nil
	}
	t.Fatalf("pgtest: %v", err)
	return nil
}

func unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("PostgreSQL not available: %s (%s=1 requires it; set %s or install postgresql)", reason, EnvRequire, EnvURL)
		return
	}
	t.Skipf("PostgreSQL not available: %s; set %s or install postgresql", reason, EnvURL)
}

// URL returns the DSN of a fresh, empty database for this test. The database
// is dropped when the test ends, even if connections to it are still open.
func URL(t testing.TB) string {
	t.Helper()
	s := need(t)
	if s == nil {
		return ""
	}
	return s.newDatabase(t, "")
}

// Template returns the DSN of a fresh database for this test, cloned from a
// template database that migrate brought up to date. The template is built
// once per name per test binary, so each test pays for a file copy rather
// than for the migrations. migrate should close its connections; any it
// leaves open are terminated before cloning. If migrate fails, every test
// asking for that template fails with its error.
func Template(t testing.TB, name string, migrate func(dsn string) error) string {
	t.Helper()
	s := need(t)
	if s == nil {
		return ""
	}
	tpl, err := s.template(name, migrate)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
		return ""
	}
	return s.newDatabase(t, tpl)
}

// Stop shuts the local cluster down and removes its folder, or, on a shared
// server, drops the template databases. Call it from TestMain after m.Run
// (or use Wrap); URL and Template fail after it. It is safe to call more
// than once, and when no test used PostgreSQL.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	s := srv
	started, srv, srvErr = true, nil, errStopped
	if s == nil {
		return
	}
	if s.stop != nil {
		s.stop()
		return
	}
	s.dropTemplates()
}

// TestingM is what TestMain runs; *testing.M implements it, and so does
// what goleak.VerifyTestMain accepts.
type TestingM interface{ Run() int }

// Wrap returns m with Stop run after its tests, so that goleak (which checks
// after Run) sees the cluster's goroutines gone:
//
//	goleak.VerifyTestMain(pgtest.Wrap(m))
func Wrap(m TestingM) TestingM { return stopAfter{m} }

type stopAfter struct{ m TestingM }

func (s stopAfter) Run() int {
	defer Stop()
	return s.m.Run()
}

// newDatabase creates a database (empty, or a copy of template) that is
// dropped in t's cleanup, and returns its DSN.
func (s *server) newDatabase(t testing.TB, template string) string {
	t.Helper()
	name := dbName("t", t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := s.create(ctx, name, template); err != nil {
		t.Fatalf("pgtest: %v", err)
		return ""
	}
	t.Cleanup(func() {
		// t.Context is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := s.drop(ctx, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s.dsnFor(name)
}

func (s *server) template(name string, migrate func(dsn string) error) (string, error) {
	s.mu.Lock()
	if s.templates == nil {
		s.templates = map[string]*template{}
	}
	tpl, ok := s.templates[name]
	if !ok {
		tpl = &template{}
		s.templates[name] = tpl
	}
	s.mu.Unlock()

	tpl.once.Do(func() {
		// sync.Once counts a panicking call as done; without this error
		// later callers would clone from the empty name.
		tpl.err = fmt.Errorf("build template %q: migrate panicked in an earlier test", name)
		tpl.db, tpl.err = s.buildTemplate(name, migrate)
	})
	return tpl.db, tpl.err
}

func (s *server) buildTemplate(name string, migrate func(dsn string) error) (_ string, err error) {
	db := dbName("tpl", name)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := s.create(ctx, db, ""); err != nil {
		return "", fmt.Errorf("build template %q: %w", name, err)
	}
	defer func() {
		// A half-migrated template must not stay behind, also when migrate
		// panics. A fresh context: the failure may have been a timeout.
		r := recover()
		if r != nil || err != nil {
			dropCtx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			_ = s.drop(dropCtx, db)
		}
		if r != nil {
			panic(r)
		}
	}()
	if err := migrate(s.dsnFor(db)); err != nil {
		return "", fmt.Errorf("migrate template %q: %w", name, err)
	}
	err = s.exec(ctx, func(conn *pgx.Conn) error {
		// A session left open by migrate would make every clone wait 5s
		// and then fail. Terminating needs privileges a shared server may
		// not grant; then the clone reports the stray session itself.
		_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db)
		// No new sessions either; cloning does not need one.
		_, err := conn.Exec(ctx, "ALTER DATABASE "+ident(db)+" WITH ALLOW_CONNECTIONS false")
		return err
	})
	if err != nil {
		return "", fmt.Errorf("seal template %q: %w", name, err)
	}
	return db, nil
}

func (s *server) dropTemplates() {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, tpl := range s.templates {
		if tpl.db != "" {
			_ = s.drop(ctx, tpl.db)
		}
	}
}

func (s *server) create(ctx context.Context, name, template string) error {
	q := "CREATE DATABASE " + ident(name)
	if template != "" {
		q += " TEMPLATE " + ident(template)
	}
	q += s.createOptions
	if err := s.exec(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, q)
		return err
	}); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func (s *server) drop(ctx context.Context, name string) error {
	if err := s.exec(ctx, func(conn *pgx.Conn) error {
		// FORCE (PostgreSQL 13+) ends the sessions a test left open, so a
		// leaked pool cannot make the drop fail.
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)")
		return err
	}); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// exec runs f on a new connection to the maintenance database. A connection
// per call costs a few milliseconds over a unix socket, and unlike a shared
// pool it leaves no goroutines behind for goleak to find.
func (s *server) exec(ctx context.Context, f func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, s.adminDSN)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(s.adminDSN), err)
	}
	defer conn.Close(context.Background())
	return f(conn)
}

// dbName makes a database name that says which test owns it (handy on a
// shared server) and cannot collide: names are at most 63 bytes in
// PostgreSQL, so the test name is cut and a random suffix added.
func dbName(prefix, testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 24 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	return prefix + "_" + b.String() + "_" + hex.EncodeToString(suffix[:])
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// withDatabase returns dsn pointing at database name instead of its own. It
// handles both DSN forms pgx accepts: URLs and keyword/value strings.
func withDatabase(dsn, name string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path, u.RawPath = "/"+name, ""
		return u.String()
	}
	// In keyword/value form a later keyword overrides an earlier one.
	return dsn + " dbname=" + name
}

// redact hides a password so a DSN can go into an error message.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "the configured server"
}
