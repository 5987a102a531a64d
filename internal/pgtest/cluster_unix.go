//go:build unix

package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ownerFile marks a cluster folder with the process that owns it, so a later
// run can tell a folder left by a killed test binary from a live one.
const ownerFile = "pgtest.owner"

// maxSocketPath keeps the socket path under the sun_path limit (108 bytes
// on Linux, 104 on macOS) with room to spare.
const maxSocketPath = 100

// binDirGlobs are the usual install folders, for machines where neither
// pg_config nor initdb is on PATH (Debian keeps initdb off PATH).
var binDirGlobs = []string{
	"/usr/lib/postgresql/*/bin",          // Debian, Ubuntu
	"/usr/pgsql-*/bin",                   // RHEL and friends (PGDG)
	"/usr/local/pgsql/bin",               // built from source
	"/opt/homebrew/opt/postgresql@*/bin", // Homebrew, Apple silicon
	"/usr/local/opt/postgresql@*/bin",    // Homebrew, Intel
}

// startLocal creates and starts a throwaway cluster in a fresh folder.
func startLocal() (*server, error) {
	bindir, err := findBinDir(binDirCandidates())
	if err != nil {
		return nil, &unavailableError{err.Error()}
	}
	// initdb refuses to run as root, and tests often run as root in
	// containers: there, run PostgreSQL as the postgres system user.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred, err = postgresUser()
		if err != nil {
			return nil, &unavailableError{err.Error()}
		}
	}

	base := os.TempDir()
	sweepStale(base)
	if fast, ok := fastBase(); ok {
		sweepStale(fast)
		base = fast
	}
	dir, err := makeClusterDir(base, cred)
	if err != nil {
		return nil, err
	}
	c := &cluster{bindir: bindir, dir: dir, cred: cred, done: make(chan struct{})}
	if err := c.start(); err != nil {
		c.stop()
		return nil, err
	}
	s := &server{adminDSN: c.dsn("postgres"), dsnFor: c.dsn, stop: c.stop}
	if err := s.tuneCreate(); err != nil {
		c.stop()
		return nil, err
	}
	return s, nil
}

// tuneCreate picks the faster way to create databases on a local cluster.
// FILE_COPY (PostgreSQL 15+) copies files and checkpoints, which with fsync
// off is half the cost of WAL_LOG, the default, which writes the whole
// template through the WAL. A shared server keeps its default: there a
// checkpoint may not be cheap.
func (s *server) tuneCreate() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return s.exec(ctx, func(conn *pgx.Conn) error {
		var version int
		if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
			return fmt.Errorf("read server version: %w", err)
		}
		if version >= 150000 {
			s.createOptions = " STRATEGY FILE_COPY"
		}
		return nil
	})
}

type cluster struct {
	bindir string
	dir    string // socket folder; the data folder is dir/data
	cred   *syscall.Credential
	cmd    *exec.Cmd
	done   chan struct{} // closed when postgres has exited
}

// dsn is the DSN of database name, as superuser postgres over the socket.
func (c *cluster) dsn(name string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Path:     "/" + name,
		RawQuery: url.Values{"host": {c.dir}}.Encode(),
	}
	return u.String()
}

func (c *cluster) start() error {
	data := filepath.Join(c.dir, "data")
	initdb := c.command(filepath.Join(c.bindir, "initdb"),
		"-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
		// No fsync of the new files: the cluster is thrown away anyway.
		"--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("run initdb: %w\n%s", err, out)
	}

	logFile, err := os.OpenFile(filepath.Join(c.dir, "postgres.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create postgres log: %w", err)
	}
	defer logFile.Close() // the child keeps its own descriptor

	// postgres runs as our child rather than daemonized by pg_ctl, so that
	// it gets a parent-death signal: a killed or timed-out test binary
	// takes its cluster down with it.
	c.cmd = c.command(filepath.Join(c.bindir, "postgres"), "-D", data,
		"-c", "listen_addresses=",
		"-c", "unix_socket_directories="+c.dir,
		"-c", "unix_socket_permissions=0700",
		// Durability is worthless for a throwaway cluster; speed is not.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "wal_level=minimal",
		"-c", "max_wal_senders=0",
		// Parallel tests each open a pool.
		"-c", "max_connections=300",
	)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	setParentDeathSignal(c.cmd.SysProcAttr)

	started := make(chan error, 1)
	go func() {
		// Linux sends the parent-death signal when the thread that started
		// the child exits, not the process; the runtime may retire idle
		// threads, so this goroutine keeps its thread until postgres exits.
		runtime.LockOSThread()
		if err := c.cmd.Start(); err != nil {
			started <- err
			close(c.done)
			return
		}
		started <- nil
		_ = c.cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	return c.waitReady(60 * time.Second)
}

// waitReady polls until postgres accepts connections, exits, or timeout.
func (c *cluster) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("start postgres: exited during startup: %s", c.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.dsn("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("start postgres: not ready after %s: %w; log: %s", timeout, lastErr, c.logTail())
}

func (c *cluster) logTail() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(bytes.TrimSpace(b))
}

// stop is an immediate shutdown (SIGQUIT, like pg_ctl stop -m immediate):
// nothing in the cluster is worth a checkpoint. Then the folder goes.
func (c *cluster) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	_ = os.RemoveAll(c.dir)
}

func (c *cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	// The test's working folder may not be readable by the postgres user.
	cmd.Dir = c.dir
	// A minimal environment: PG* variables or an odd locale from the
	// developer's shell must not change the cluster.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "LANG=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd
}

// binDirCandidates lists folders that may hold initdb and postgres, best
// first: what pg_config reports, then PATH, then the usual install folders
// (newest version first).
func binDirCandidates() []string {
	var dirs []string
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		// pg_config can belong to a client-only package whose version has
		// no server installed; findBinDir checks each candidate.
		if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
			dirs = append(dirs, strings.TrimSpace(string(out)))
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		// Follow symlinks: postgres sits next to the real initdb, not
		// next to a link to it.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	var globbed []string
	for _, g := range binDirGlobs {
		m, _ := filepath.Glob(g)
		globbed = append(globbed, m...)
	}
	slices.SortStableFunc(globbed, func(a, b string) int { return versionOf(b) - versionOf(a) })
	return append(dirs, globbed...)
}

// versionOf reads the major version out of an install folder path such as
// /usr/lib/postgresql/15/bin; 0 when there is none.
func versionOf(dir string) int {
	for _, part := range strings.FieldsFunc(dir, func(r rune) bool { return r < '0' || r > '9' }) {
		if v, err := strconv.Atoi(part); err == nil {
			return v
		}
	}
	return 0
}

// findBinDir returns the first candidate holding both initdb and postgres.
func findBinDir(candidates []string) (string, error) {
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no initdb and postgres binaries found (looked in pg_config --bindir, PATH, %s)", strings.Join(binDirGlobs, ", "))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, which initdb refuses, and no postgres system user to run it as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid of user postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid of user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// makeClusterDir creates the cluster's folder, owned by the user PostgreSQL
// runs as, with a path short enough for the socket inside it.
func makeClusterDir(base string, cred *syscall.Credential) (string, error) {
	dir, err := os.MkdirTemp(base, "opg")
	if err != nil {
		return "", fmt.Errorf("create cluster folder: %w", err)
	}
	if len(filepath.Join(dir, ".s.PGSQL.5432")) > maxSocketPath && base != "/tmp" {
		// A long TMPDIR (macOS has one) cannot hold the socket.
		_ = os.Remove(dir)
		return makeClusterDir("/tmp", cred)
	}
	host, _ := os.Hostname()
	owner := fmt.Sprintf("%d %s\n", os.Getpid(), host)
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("create cluster folder: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return "", fmt.Errorf("create cluster folder: %w", err)
		}
	}
	return dir, nil
}

// sweepStale removes cluster folders whose test binary and postgres are
// both gone: a killed test binary cannot clean up after itself, and every
// cluster folder holds tens of megabytes. Folders of other hosts (a /tmp
// shared between containers) and of live processes are left alone.
func sweepStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, "opg*"))
	host, _ := os.Hostname()
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being created
		}
		var pid int
		var owner string
		if _, err := fmt.Sscan(string(b), &pid, &owner); err != nil || owner != host || pid == os.Getpid() {
			continue
		}
		if alive(pid) {
			continue
		}
		if pm, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			line, _, _ := strings.Cut(string(pm), "\n")
			if pmPid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && alive(pmPid) {
				continue
			}
		}
		_ = os.RemoveAll(dir)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
