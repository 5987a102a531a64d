//go:build unix

package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// hideEnv makes a test binary blind to the machine's PostgreSQL, for
// TestWithoutPostgres, which runs this binary again as a child.
const hideEnv = "PGTEST_HIDE_POSTGRES"

func init() {
	if os.Getenv(hideEnv) == "1" {
		binDirGlobs = nil // and the child's PATH is empty
	}
}

func TestWithoutPostgres(t *testing.T) {
	t.Parallel()
	if os.Getenv(hideEnv) == "1" {
		t.Skip("already the child")
	}
	run := func(requirePG string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestURLFreshAndIndependent$", "-test.v", "-test.count=1")
		for _, kv := range os.Environ() {
			k, _, _ := strings.Cut(kv, "=")
			if k != "PATH" && k != EnvURL && k != EnvRequire {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "PATH=", hideEnv+"=1", EnvRequire+"="+requirePG)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run("")
	require.NoError(t, err, out)
	require.Contains(t, out, "--- SKIP: TestURLFreshAndIndependent")
	require.Contains(t, out, "PostgreSQL not available: no initdb and postgres binaries found")
	require.Contains(t, out, "set ORGPLANE_TEST_POSTGRES_URL or install postgresql")

	out, err = run("1")
	require.Error(t, err, out)
	require.Contains(t, out, "--- FAIL: TestURLFreshAndIndependent")
	require.Contains(t, out, "ORGPLANE_TEST_REQUIRE_POSTGRES=1 requires it")
}

func TestFindBinDir(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	onlyInitdb := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(onlyInitdb, "initdb"), []byte("#!/bin/sh\n"), 0o755))
	full := t.TempDir()
	for _, n := range []string{"initdb", "postgres"} {
		require.NoError(t, os.WriteFile(filepath.Join(full, n), []byte("#!/bin/sh\n"), 0o755))
	}
	notExec := t.TempDir()
	for _, n := range []string{"initdb", "postgres"} {
		require.NoError(t, os.WriteFile(filepath.Join(notExec, n), nil, 0o644))
	}

	_, err := findBinDir(nil)
	require.ErrorContains(t, err, "no initdb and postgres binaries found")
	_, err = findBinDir([]string{empty, onlyInitdb, notExec, "/nonexistent"})
	require.Error(t, err)
	got, err := findBinDir([]string{empty, onlyInitdb, full})
	require.NoError(t, err)
	require.Equal(t, full, got)

	require.Equal(t, 15, versionOf("/usr/lib/postgresql/15/bin"))
	require.Equal(t, 16, versionOf("/opt/homebrew/opt/postgresql@16/bin"))
	require.Equal(t, 0, versionOf("/usr/local/pgsql/bin"))
}

func TestSweepStale(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	host, err := os.Hostname()
	require.NoError(t, err)

	// A pid that surely belongs to no process now: a child that has exited
	// and been reaped.
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	deadPid := cmd.Process.Pid

	mk := func(name, owner string, postmasterPid int) string {
		dir := filepath.Join(base, name)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o700))
		if owner != "" {
			require.NoError(t, os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644))
		}
		if postmasterPid != 0 {
			pm := fmt.Sprintf("%d\n%s/data\n", postmasterPid, dir)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "data", "postmaster.pid"), []byte(pm), 0o600))
		}
		return dir
	}
	stale := mk("opg1", fmt.Sprintf("%d %s\n", deadPid, host), 0)
	staleWithDeadServer := mk("opg2", fmt.Sprintf("%d %s\n", deadPid, host), deadPid)
	liveOwner := mk("opg3", fmt.Sprintf("%d %s\n", os.Getppid(), host), 0)
	liveServer := mk("opg4", fmt.Sprintf("%d %s\n", deadPid, host), os.Getppid())
	mine := mk("opg5", fmt.Sprintf("%d %s\n", os.Getpid(), host), 0)
	otherHost := mk("opg6", fmt.Sprintf("%d %s\n", deadPid, host+"-elsewhere"), 0)
	noOwner := mk("opg7", "", 0)
	garbled := mk("opg8", "garbage", 0)
	notOurs := mk("other", fmt.Sprintf("%d %s\n", deadPid, host), 0)

	sweepStale(base)

	require.NoDirExists(t, stale)
	require.NoDirExists(t, staleWithDeadServer)
	for _, kept := range []string{liveOwner, liveServer, mine, otherHost, noOwner, garbled, notOurs} {
		require.DirExists(t, kept)
	}
}

func TestClusterDir(t *testing.T) {
	t.Parallel()
	dir, err := makeClusterDir(t.TempDir(), nil)
	require.NoError(t, err)
	require.LessOrEqual(t, len(filepath.Join(dir, ".s.PGSQL.5432")), maxSocketPath)
	require.FileExists(t, filepath.Join(dir, ownerFile))

	// A base too long for a socket path falls back to /tmp.
	long := filepath.Join(t.TempDir(), "a-folder-name-long-enough-to-push-the-socket-path-past-the-limit-of-sun-path")
	require.NoError(t, os.MkdirAll(long, 0o700))
	dir, err = makeClusterDir(long, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.Equal(t, "/tmp", filepath.Dir(dir))
}

func TestLocalClusterDSN(t *testing.T) {
	t.Parallel()
	c := &cluster{dir: "/tmp/opg123"}
	dsn := c.dsn("t_x")
	require.Equal(t, "postgres://postgres@/t_x?host=%2Ftmp%2Fopg123", dsn)
}
