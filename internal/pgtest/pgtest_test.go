package pgtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(Wrap(m))
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func currentDB(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var name string
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name))
	return name
}

func databaseExists(t *testing.T, conn *pgx.Conn, name string) bool {
	t.Helper()
	var n int
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n))
	return n == 1
}

func tableCount(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	require.NoError(t, conn.QueryRow(t.Context(),
		"SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')").Scan(&n))
	return n
}

var templateSeq atomic.Int32

// freshTemplateName keeps runs under -count=N from finding the template an
// earlier run built: templates live as long as the test binary.
func freshTemplateName(base string) string {
	return fmt.Sprintf("%s%d", base, templateSeq.Add(1))
}

func TestURLFreshAndIndependent(t *testing.T) {
	t.Parallel()
	dsnA, dsnB := URL(t), URL(t)
	require.NotEqual(t, dsnA, dsnB)
	a, b := connect(t, dsnA), connect(t, dsnB)
	require.NotEqual(t, currentDB(t, a), currentDB(t, b))

	require.Zero(t, tableCount(t, a), "fresh database is empty")
	require.Zero(t, tableCount(t, b), "fresh database is empty")

	_, err := a.Exec(t.Context(), "CREATE TABLE things (id int primary key); INSERT INTO things VALUES (1)")
	require.NoError(t, err)
	require.Equal(t, 1, tableCount(t, a))
	require.Zero(t, tableCount(t, b), "a table in one database shows in the other")
}

func TestURLDroppedAfterTest(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("owner", func(t *testing.T) {
		conn := connect(t, URL(t))
		name = currentDB(t, conn)
		// The connection is still open when the drop runs (cleanups run
		// in reverse order, so the database cleanup goes first): the drop
		// must force it.
	})
	require.NotEmpty(t, name)
	require.True(t, strings.HasPrefix(name, "t_testurldroppedaftertes"), name)
	observer := connect(t, URL(t))
	require.False(t, databaseExists(t, observer, name), "database %s outlived its test", name)
}

func TestURLManyParallel(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	names := map[string]bool{}
	t.Run("group", func(t *testing.T) {
		for i := range 8 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				conn := connect(t, URL(t))
				_, err := conn.Exec(t.Context(), "CREATE TABLE t (v text)")
				require.NoError(t, err)
				mu.Lock()
				names[currentDB(t, conn)] = true
				mu.Unlock()
			})
		}
	})
	require.Len(t, names, 8)
}

func TestTemplate(t *testing.T) {
	t.Parallel()
	name := freshTemplateName("items")
	var calls atomic.Int32
	migrate := func(dsn string) error {
		calls.Add(1)
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return err
		}
		// Left open on purpose: Template must cope with a migrate that
		// forgets to close its session.
		_, err = conn.Exec(context.Background(), `
			CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
			INSERT INTO items VALUES (1, 'seed');`)
		return err
	}

	dsns := make([]string, 4)
	t.Run("clones", func(t *testing.T) {
		for i := range dsns {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				dsns[i] = Template(t, name, migrate)
				conn := connect(t, dsns[i])
				var n int
				require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM items").Scan(&n))
				require.Equal(t, 1, n, "clone has the migrated schema and seed rows")
				// Writes in one clone stay in it.
				_, err := conn.Exec(t.Context(), "INSERT INTO items VALUES ($1, 'mine')", 100+i)
				require.NoError(t, err)
				require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM items").Scan(&n))
				require.Equal(t, 2, n)
			})
		}
	})
	require.Equal(t, int32(1), calls.Load(), "template migrated once")
	require.Len(t, map[string]bool{dsns[0]: true, dsns[1]: true, dsns[2]: true, dsns[3]: true}, 4)

	// The template itself refuses connections, so nobody can change it
	// behind the clones' back.
	s := need(t)
	tpl, err := s.template(name, migrate)
	require.NoError(t, err)
	conn := connect(t, URL(t))
	var allow bool
	require.NoError(t, conn.QueryRow(t.Context(),
		"SELECT datallowconn FROM pg_database WHERE datname = $1", tpl).Scan(&allow))
	require.False(t, allow)
}

// migratedDB connects to dsn and returns its database name, proving the
// template existed while migrate ran.
func migratedDB(dsn string) (string, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var name string
	err = conn.QueryRow(ctx, "SELECT current_database()").Scan(&name)
	return name, err
}

func TestTemplateMigrateError(t *testing.T) {
	t.Parallel()
	s := need(t)
	name := freshTemplateName("broken")
	boom := errors.New("boom")
	var calls atomic.Int32
	var tplDB string
	migrate := func(dsn string) error {
		calls.Add(1)
		var err error
		if tplDB, err = migratedDB(dsn); err != nil {
			return err
		}
		return boom
	}
	for range 2 {
		_, err := s.template(name, migrate)
		require.ErrorIs(t, err, boom)
		require.ErrorContains(t, err, `migrate template "`+name+`"`)
	}
	require.Equal(t, int32(1), calls.Load(), "a failed template is not retried per test")
	require.NotEmpty(t, tplDB)
	require.False(t, databaseExists(t, connect(t, URL(t)), tplDB), "half-built template dropped")
}

func TestTemplateMigratePanics(t *testing.T) {
	t.Parallel()
	s := need(t)
	name := freshTemplateName("panicky")
	var tplDB string
	func() {
		defer func() { require.Equal(t, "migration bug", recover()) }()
		_, _ = s.template(name, func(dsn string) error {
			var err error
			if tplDB, err = migratedDB(dsn); err != nil {
				return err
			}
			panic("migration bug")
		})
	}()
	// Later tests get an error, not a clone of nothing.
	_, err := s.template(name, func(string) error { return nil })
	require.ErrorContains(t, err, "panicked")
	require.NotEmpty(t, tplDB)
	require.False(t, databaseExists(t, connect(t, URL(t)), tplDB), "half-built template dropped")
}

// The benchmarks time what each test pays: one create and one drop.

func BenchmarkCreateDrop(b *testing.B) {
	benchmarkCreateDrop(b, "")
}

func BenchmarkCreateDropFromTemplate(b *testing.B) {
	s := need(b)
	tpl, err := s.template("bench", func(dsn string) error {
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		for i := range 30 {
			if _, err := conn.Exec(context.Background(), fmt.Sprintf("CREATE TABLE t%d (id bigint PRIMARY KEY, v text, at timestamptz)", i)); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(b, err)
	benchmarkCreateDrop(b, tpl)
}

func benchmarkCreateDrop(b *testing.B, template string) {
	s := need(b)
	for b.Loop() {
		name := dbName("t", b.Name())
		require.NoError(b, s.create(b.Context(), name, template))
		require.NoError(b, s.drop(b.Context(), name))
	}
}

func TestSharedServer(t *testing.T) {
	t.Parallel()
	// The ORGPLANE_TEST_POSTGRES_URL path, driven against whatever server
	// this run has, in both DSN forms pgx accepts.
	local := need(t)
	keywordForm := func() string {
		cfg, err := pgx.ParseConfig(local.adminDSN)
		require.NoError(t, err)
		kv := fmt.Sprintf("host=%s port=%d user=%s dbname=%s", cfg.Host, cfg.Port, cfg.User, cfg.Database)
		if cfg.Password != "" {
			kv += " password=" + cfg.Password
		}
		return kv
	}()
	for _, dsn := range []string{local.adminDSN, keywordForm} {
		s, err := sharedServer(dsn)
		require.NoError(t, err)
		require.Nil(t, s.stop)
		name := dbName("t", t.Name())
		require.NoError(t, s.create(t.Context(), name, ""))
		conn := connect(t, s.dsnFor(name))
		require.Equal(t, name, currentDB(t, conn))
		require.NoError(t, s.drop(t.Context(), name))
		require.False(t, databaseExists(t, connect(t, s.adminDSN), name))
	}
	_, err := sharedServer("host=/nonexistent/socket/dir user=x password=hunter2 connect_timeout=2")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:p@db.example:5432/app?sslmode=require": "postgres://u:p@db.example:5432/t_x?sslmode=require",
		"postgresql://u@/postgres?host=%2Ftmp%2Fs":           "postgresql://u@/t_x?host=%2Ftmp%2Fs",
		"postgres://u@localhost":                             "postgres://u@localhost/t_x",
		"host=localhost user=u dbname=app":                   "host=localhost user=u dbname=app dbname=t_x",
	} {
		got := withDatabase(in, "t_x")
		require.Equal(t, want, got)
		cfg, err := pgx.ParseConfig(got)
		require.NoError(t, err)
		require.Equal(t, "t_x", cfg.Database, in)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	require.NotContains(t, redact("postgres://u:hunter2@h/db"), "hunter2")
	require.NotContains(t, redact("host=h password=hunter2"), "hunter2")
}

func TestDBName(t *testing.T) {
	t.Parallel()
	long := dbName("tpl", "TestSomething/With Spaces/and-a-very-long-name-that-goes-on-and-on")
	require.LessOrEqual(t, len(long), 63, "PostgreSQL truncates identifiers at 63 bytes")
	require.Regexp(t, `^tpl_testsomething_with_space_[0-9a-f]{12}$`, long)
	require.NotEqual(t, dbName("t", "x"), dbName("t", "x"))
}

// fakeTB records Skip and Fatal instead of stopping the goroutine.
type fakeTB struct {
	testing.TB
	skipped, fatal string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.fatal = fmt.Sprintf(format, args...) }

func TestUnavailableSkipsOrFails(t *testing.T) {
	// Not parallel: it sets environment variables.
	for _, tc := range []struct {
		require  string
		wantSkip bool
	}{
		{"", true},
		{"0", true},
		{"1", false},
	} {
		t.Setenv(EnvRequire, tc.require)
		f := &fakeTB{}
		unavailable(f, "no initdb here")
		if tc.wantSkip {
			require.Empty(t, f.fatal)
			require.Equal(t, "PostgreSQL not available: no initdb here; set ORGPLANE_TEST_POSTGRES_URL or install postgresql", f.skipped)
		} else {
			require.Empty(t, f.skipped)
			require.Contains(t, f.fatal, "no initdb here")
			require.Contains(t, f.fatal, EnvRequire+"=1")
		}
	}
}
