package process_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/process"
	"github.com/orgplane/orgplane/internal/provision/provisiontest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syncBuffer collects slog output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type env struct {
	t    *testing.T
	bin  string
	dir  string
	logs *syncBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{t: t, bin: provisiontest.TestBox(t), dir: t.TempDir(), logs: &syncBuffer{}}
}

// prov returns a Provisioner on the env's log dir, closed at cleanup.
func (e *env) prov(cfg process.Config) *process.Provisioner {
	e.t.Helper()
	cfg.LogDir = e.dir
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, nil))
	p, err := process.New(cfg)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { require.NoError(e.t, p.Close()) })
	return p
}

// start starts the test box with args and stops it at cleanup, so that no
// process outlives the test even when it fails.
func (e *env) start(p *process.Provisioner, ws string, envv map[string]string, args ...string) provision.Handle {
	e.t.Helper()
	h, err := p.Start(context.Background(), provision.Spec{
		OrgID: "org1", WorkspaceID: ws, Generation: 1,
		Command: append([]string{e.bin}, args...),
		Env:     envv,
	})
	require.NoError(e.t, err)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(e.t, p.Stop(ctx, h))
	})
	return h
}

// waitLog waits until the workspace's log contains want and returns it.
func waitLog(t *testing.T, p *process.Provisioner, ws, want string) string {
	t.Helper()
	var out string
	require.Eventually(t, func() bool {
		b, err := p.Logs(context.Background(), ws, 0)
		require.NoError(t, err)
		out = string(b)
		return strings.Contains(out, want)
	}, 10*time.Second, 10*time.Millisecond, "log of %s never contained %q", ws, want)
	return out
}

func receive(t *testing.T, ch <-chan provision.State, within time.Duration) provision.State {
	t.Helper()
	select {
	case st, ok := <-ch:
		require.True(t, ok, "wait channel closed without a state")
		return st
	case <-time.After(within):
		t.Fatalf("no exit state within %s", within)
		return provision.State{}
	}
}

// alive reports whether pid is a live (non-zombie) process.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i > 0 && i+2 < len(data) && data[i+2] != 'Z' && data[i+2] != 'X'
}

func pidOf(t *testing.T, h provision.Handle) int {
	t.Helper()
	pid, err := strconv.Atoi(h.ID)
	require.NoError(t, err)
	return pid
}

func TestStartEnvIsExactlyTheSpecsAndOwnProcessGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.prov(process.Config{})
	const secret = "s3cr3t-value-that-must-not-leak"
	h := e.start(p, "ws-env", map[string]string{"A_SECRET": secret, "ORGPLANE_WORKSPACE_ID": "ws-env"},
		"-env", "A_SECRET,HOME,PATH", "-env-keys", "-ids", "-stdin", "-stderr", "to stderr")

	require.Equal(t, provision.RuntimeProcess, h.Runtime)
	require.Equal(t, "ws-env", h.WorkspaceID)
	require.NotZero(t, h.StartTicks)
	require.WithinDuration(t, time.Now(), h.StartedAt, time.Minute)

	out := waitLog(t, p, "ws-env", "ready")
	require.Contains(t, out, "env A_SECRET=set\n")
	require.Contains(t, out, "env HOME=unset\n")
	require.Contains(t, out, "env PATH=unset\n")
	require.Contains(t, out, "env-keys A_SECRET,ORGPLANE_WORKSPACE_ID\n", "the box must get exactly the spec's env")
	require.Contains(t, out, "stdin bytes=0\n", "stdin is /dev/null")
	require.Contains(t, out, "to stderr\n", "stderr goes to the log too")

	m := regexp.MustCompile(`pid=(\d+) pgid=(\d+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	require.Equal(t, h.ID, m[1])
	require.Equal(t, h.ID, m[2], "the box leads its own process group")
	require.NotEqual(t, strconv.Itoa(syscall.Getpgrp()), m[2])

	st, err := p.Inspect(context.Background(), h)
	require.NoError(t, err)
	require.True(t, st.Running)

	require.NotContains(t, out, secret)
	require.NotContains(t, e.logs.String(), secret)
	require.Contains(t, e.logs.String(), "box started")
}

func TestStartErrorsDoNotLeakSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.prov(process.Config{})
	const secret = "tok-9f8e7d6c5b4a"
	ctx := context.Background()

	_, err := p.Start(ctx, provision.Spec{WorkspaceID: "ws-x", Command: []string{"/nonexistent/" + secret}, Env: map[string]string{"TOKEN": secret}})
	require.Error(t, err)
	require.NotContains(t, err.Error(), secret)
	require.Contains(t, err.Error(), "[REDACTED]")

	_, err = p.Start(ctx, provision.Spec{WorkspaceID: "ws-x"})
	require.ErrorContains(t, err, "empty command")
	for _, bad := range []string{"", "../etc", "a/b", ".hidden"} {
		_, err = p.Start(ctx, provision.Spec{WorkspaceID: bad, Command: []string{e.bin}})
		require.ErrorContains(t, err, "invalid workspace id", bad)
	}
	require.NotContains(t, e.logs.String(), secret)
}

func TestStopSendsSIGTERMToTheGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.prov(process.Config{StopGrace: 5 * time.Second})
	h := e.start(p, "ws-term", nil, "-on-term=exit", "-spawn")
	out := waitLog(t, p, "ws-term", "ready")
	m := regexp.MustCompile(`child pid=(\d+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	child, _ := strconv.Atoi(m[1])
	require.True(t, alive(child))
	t.Cleanup(func() {
		if alive(child) {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
	})

	w := p.Wait(context.Background(), h)
	begin := time.Now()
	require.NoError(t, p.Stop(context.Background(), h))
	require.Less(t, time.Since(begin), 3*time.Second, "a box that handles SIGTERM stops without waiting out the grace")

	st := receive(t, w, 5*time.Second)
	require.Equal(t, provision.State{Exited: true, ExitCode: 0, Reason: "exited with code 0"}, st)
	require.Contains(t, waitLog(t, p, "ws-term", "got SIGTERM"), "got SIGTERM")
	// The grandchild ignores SIGTERM: only the group-wide kill removes it.
	require.Eventually(t, func() bool { return !alive(child) }, 5*time.Second, 10*time.Millisecond,
		"the box's child survived Stop")

	_, err := p.Inspect(context.Background(), h)
	require.ErrorIs(t, err, provision.ErrNotFound)
}

func TestStopKillsABoxThatIgnoresSIGTERMAfterTheGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const grace = 300 * time.Millisecond
	p := e.prov(process.Config{StopGrace: grace})
	h := e.start(p, "ws-stubborn", nil, "-on-term=ignore")
	waitLog(t, p, "ws-stubborn", "ready")

	w := p.Wait(context.Background(), h)
	begin := time.Now()
	require.NoError(t, p.Stop(context.Background(), h))
	require.GreaterOrEqual(t, time.Since(begin), grace)
	require.Less(t, time.Since(begin), grace+3*time.Second)

	st := receive(t, w, 5*time.Second)
	require.Equal(t, provision.State{Exited: true, ExitCode: 128 + 9, Reason: "killed by signal SIGKILL"}, st)
	require.False(t, alive(pidOf(t, h)))
	require.Contains(t, e.logs.String(), "box killed")
}

func TestStopIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.prov(process.Config{})
	ctx := context.Background()
	h := e.start(p, "ws-idem", nil)
	waitLog(t, p, "ws-idem", "ready")

	require.NoError(t, p.Stop(ctx, h))
	require.NoError(t, p.Stop(ctx, h))
	_, err := p.Inspect(ctx, h)
	require.ErrorIs(t, err, provision.ErrNotFound)
	_, err = p.Adopt(ctx, h)
	require.ErrorIs(t, err, provision.ErrNotFound)

	// A pid that does not exist at all (beyond pid_max).
	require.NoError(t, p.Stop(ctx, provision.Handle{ID: "2147483646", StartTicks: 1}))
}

func TestWaitReportsACrashWithItsExitCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.prov(process.Config{})
	ctx := context.Background()
	h := e.start(p, "ws-crash", nil, "-exit-after", "100ms", "-exit-code", "3")
	w := p.Wait(ctx, h)

	want := provision.State{Exited: true, ExitCode: 3, Reason: "exited with code 3"}
	require.Equal(t, want, receive(t, w, 10*time.Second))
	_, open := <-w
	require.False(t, open, "one state, then closed")

	st, err := p.Inspect(ctx, h)
	require.NoError(t, err, "the exit status is kept until Stop")
	require.Equal(t, want, st)
	// Waiting again on an exited box answers at once.
	require.Equal(t, want, receive(t, p.Wait(ctx, h), time.Second))
	require.NoError(t, p.Stop(ctx, h))
	_, err = p.Inspect(ctx, h)
	require.ErrorIs(t, err, provision.ErrNotFound)
}

func TestWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.prov(process.Config{})
	h := e.start(p, "ws-ctx", nil)
	ctx, cancel := context.WithCancel(context.Background())
	w := p.Wait(ctx, h)
	cancel()
	select {
	case st, ok := <-w:
		require.False(t, ok, "closed without a value, got %+v", st)
	case <-time.After(5 * time.Second):
		t.Fatal("wait channel not closed after ctx ended")
	}
}

func TestAdoptAfterControlPlaneRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	first := e.prov(process.Config{})
	h := e.start(first, "ws-adopt", nil, "-on-term=exit")
	waitLog(t, first, "ws-adopt", "ready")
	require.NoError(t, first.Close(), "the old control plane goes away; its box must not")

	second := e.prov(process.Config{StopGrace: 5 * time.Second})
	st, err := second.Adopt(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Running)
	st, err = second.Inspect(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Running)

	w := second.Wait(ctx, h)
	begin := time.Now()
	require.NoError(t, second.Stop(ctx, h))
	require.Less(t, time.Since(begin), 3*time.Second)
	st = receive(t, w, 5*time.Second)
	require.False(t, st.Running)
	require.Contains(t, waitLog(t, second, "ws-adopt", "got SIGTERM"), "got SIGTERM")
	require.False(t, alive(pidOf(t, h)))

	_, err = second.Adopt(ctx, h)
	require.ErrorIs(t, err, provision.ErrNotFound)
}

func TestAdoptedBoxExitIsNoticed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	first := e.prov(process.Config{})
	h := e.start(first, "ws-adopt-exit", nil, "-exit-after", "700ms", "-exit-code", "4")
	second := e.prov(process.Config{})
	st, err := second.Adopt(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Running)

	// Not second's child: second notices by polling /proc.
	st = receive(t, second.Wait(ctx, h), 10*time.Second)
	require.False(t, st.Running)
	require.NotEmpty(t, st.Reason)
	if st.Exited { // caught as a zombie before its parent reaped it
		require.Equal(t, 4, st.ExitCode)
	}
}

func TestPidReuseGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.prov(process.Config{StopGrace: 200 * time.Millisecond})
	ctx := context.Background()
	h := e.start(p, "ws-guard", nil, "-on-term=exit")
	waitLog(t, p, "ws-guard", "ready")

	// The same pid with another start time: what a reused pid looks like.
	reused := h
	reused.StartTicks++
	require.NoError(t, p.Stop(ctx, reused), "a box that is gone is not an error")
	_, err := p.Inspect(ctx, reused)
	require.ErrorIs(t, err, provision.ErrNotFound)
	_, err = p.Adopt(ctx, reused)
	require.ErrorIs(t, err, provision.ErrNotFound)
	st := receive(t, p.Wait(ctx, reused), time.Second)
	require.False(t, st.Running)

	// The real box was never signalled.
	time.Sleep(300 * time.Millisecond)
	st, err = p.Inspect(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Running)
	out, err := p.Logs(ctx, "ws-guard", 0)
	require.NoError(t, err)
	require.NotContains(t, string(out), "got SIGTERM")

	// Handles that cannot be verified are refused, never signalled.
	noTicks := h
	noTicks.StartTicks = 0
	require.ErrorContains(t, p.Stop(ctx, noTicks), "no start time")
	require.Error(t, p.Stop(ctx, provision.Handle{ID: "1", StartTicks: 1}))
	require.Error(t, p.Stop(ctx, provision.Handle{ID: "-5", StartTicks: 1}))
	_, err = p.Inspect(ctx, noTicks)
	require.Error(t, err)
}

func TestLogCapKeepsTheTailAndLogsReadsAcrossFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const max = 4096
	// No ticker during this test: Logs caps by itself, deterministically.
	p := e.prov(process.Config{LogMaxBytes: max, LogCheckInterval: time.Hour})
	ctx := context.Background()

	h := e.start(p, "ws-logs", nil, "-lines", "3000", "-exit-after", "0s")
	receive(t, p.Wait(ctx, h), 10*time.Second)

	out, err := p.Logs(ctx, "ws-logs", 3)
	require.NoError(t, err)
	require.Equal(t, "line 2998\nline 2999\nready\n", string(out))

	fi, err := os.Stat(p.LogPath("ws-logs"))
	require.NoError(t, err)
	require.LessOrEqual(t, fi.Size(), int64(max))
	fi, err = os.Stat(p.LogPath("ws-logs") + ".1")
	require.NoError(t, err)
	require.LessOrEqual(t, fi.Size(), int64(max))

	all, err := p.Logs(ctx, "ws-logs", 0)
	require.NoError(t, err)
	require.LessOrEqual(t, len(all), max)
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	require.Greater(t, len(lines), 100)
	require.Equal(t, "ready", lines[len(lines)-1])
	// The kept tail is whole, consecutive lines.
	var first int
	_, err = fmt.Sscanf(lines[0], "line %d", &first)
	require.NoError(t, err, lines[0])
	for i, l := range lines[:len(lines)-1] {
		require.Equal(t, fmt.Sprintf("line %d", first+i), l)
	}

	// The next generation appends to the same log; a tail spans both files.
	h2, err := p.Start(ctx, provision.Spec{WorkspaceID: "ws-logs", Generation: 2, Command: []string{e.bin, "-lines", "2", "-exit-after", "0s"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop(context.Background(), h2) })
	receive(t, p.Wait(ctx, h2), 10*time.Second)
	out, err = p.Logs(ctx, "ws-logs", 5)
	require.NoError(t, err)
	require.Equal(t, "line 2999\nready\nline 0\nline 1\nready\n", string(out))

	out, err = p.Logs(ctx, "never-ran", 10)
	require.NoError(t, err)
	require.Empty(t, out)
	_, err = p.Logs(ctx, "../escape", 10)
	require.Error(t, err)
}

func TestLogCapRunsOnATicker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const max = 4096
	p := e.prov(process.Config{LogMaxBytes: max, LogCheckInterval: 20 * time.Millisecond})
	e.start(p, "ws-ticker", nil, "-lines", "3000")
	path := p.LogPath("ws-ticker")
	// Without anyone reading the logs, the file comes back under the cap.
	require.Eventually(t, func() bool {
		cur, err1 := os.Stat(path)
		old, err2 := os.Stat(path + ".1")
		return err1 == nil && err2 == nil && cur.Size() <= max && old.Size() <= max
	}, 10*time.Second, 10*time.Millisecond)
}
