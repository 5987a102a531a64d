package process_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/process"
)

// isolated is a data dir laid out as `orgplane up` lays it out (0700, an
// admin token, box logs inside) and a provisioner that isolates boxes.
type isolated struct {
	data, boxDir string
	uids         process.UIDRange
	cfg          process.Config
}

func newIsolated(t *testing.T) *isolated {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("box isolation needs root: boxes run as their own users only when orgplane runs as root (CI runs as root)")
	}
	data := t.TempDir()
	require.NoError(t, os.Chmod(data, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(data, "admin.token"), []byte("op_admin_t1_ADMINSECRET\n"), 0o600))
	// Outside the data dir, reachable by every user (/tmp is 1777); a
	// range of its own per test process, so parallel runs do not meet.
	boxDir := filepath.Join(os.TempDir(), fmt.Sprintf("orgplane-boxes-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_")))
	t.Cleanup(func() { os.RemoveAll(boxDir) })
	first := uint32(300000 + (os.Getpid()%500)*100)
	i := &isolated{data: data, boxDir: boxDir, uids: process.UIDRange{First: first, Last: first + 99}}
	i.cfg = process.Config{LogDir: filepath.Join(data, "logs"), BoxUIDs: i.uids, BoxDir: boxDir,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	return i
}

func (i *isolated) prov(t *testing.T) *process.Provisioner {
	t.Helper()
	p, err := process.New(i.cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

func startSh(t *testing.T, p *process.Provisioner, ws, script string, env map[string]string) provision.Handle {
	t.Helper()
	h, err := p.Start(context.Background(), provision.Spec{OrgID: "o", WorkspaceID: ws, Generation: 1,
		Command: []string{"/bin/sh", "-c", script}, Env: env})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, p.Stop(ctx, h))
	})
	return h
}

// TestIsolatedBoxesCannotReadEachOtherOrTheControlPlane: as root, a box
// runs as its own user in its own directory, and a box that tries to read
// the admin token, another box's /proc/<pid>/environ and directory, and the
// control plane's environ, gets "permission denied" each time.
func TestIsolatedBoxesCannotReadEachOtherOrTheControlPlane(t *testing.T) {
	i := newIsolated(t)
	p := i.prov(t)
	const secretA = "box-a-secret-value"
	a := startSh(t, p, "ws-a", "echo a-up; exec sleep 1000", map[string]string{"SECRET_A": secretA, "ORGPLANE_TOKEN": "op_workspace_ta_TOKENA"})
	waitLog(t, p, "ws-a", "a-up")

	script := `id -u; id -g; id -G
cat "$DATA/admin.token"; echo "token-rc=$?"
cat /proc/$PIDA/environ; echo "environ-rc=$?"
cat /proc/$CP/environ; echo "cp-environ-rc=$?"
ls "$DIRA"; echo "dir-rc=$?"
ls "$DATA"; echo "data-rc=$?"
ls /proc/self/fd | tr '\n' ' '; echo
echo b-done; exec sleep 1000`
	b := startSh(t, p, "ws-b", script, map[string]string{"DATA": i.data, "PIDA": a.ID, "CP": strconv.Itoa(os.Getpid()), "DIRA": a.Dir})
	out := waitLog(t, p, "ws-b", "b-done")

	require.NotEqual(t, a.UID, b.UID, "each box its own user")
	for _, h := range []provision.Handle{a, b} {
		require.True(t, h.UID >= i.uids.First && h.UID <= i.uids.Last, "uid %d from the range", h.UID)
		fi, err := os.Stat(h.Dir)
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
		require.Equal(t, h.UID, st.Uid)
		require.False(t, strings.HasPrefix(h.Dir, i.data), "the box dir is outside the data dir")
	}
	lines := strings.Split(out, "\n")
	require.Equal(t, strconv.Itoa(int(b.UID)), lines[0], "uid: %s", out)
	require.Equal(t, strconv.Itoa(int(b.UID)), lines[1], "gid")
	require.Equal(t, strconv.Itoa(int(b.UID)), lines[2], "no supplementary groups")
	cwd, err := os.Readlink("/proc/" + b.ID + "/cwd")
	require.NoError(t, err)
	require.Equal(t, b.Dir, cwd, "working directory")
	for _, rc := range []string{"token-rc=1", "environ-rc=1", "cp-environ-rc=1", "dir-rc=2", "data-rc=2"} {
		require.Contains(t, out, rc, out)
	}
	require.GreaterOrEqual(t, strings.Count(strings.ToLower(out), "permission denied"), 5, out)
	require.NotContains(t, out, "ADMINSECRET")
	require.NotContains(t, out, secretA)
	require.NotContains(t, out, "TOKENA")
	require.Contains(t, out, "0 1 2 3 \n", "only stdin, stdout, stderr (and ls's own directory) are open")
}

// TestIsolatedBoxStopReleasesItsUser: Stop kills what the box left running
// as its user, even outside its process group (setsid), and removes its
// directory; after a control-plane restart (a new Provisioner adopting the
// handle) as well.
func TestIsolatedBoxStopReleasesItsUser(t *testing.T) {
	i := newIsolated(t)
	if _, err := os.Stat("/usr/bin/setsid"); err != nil {
		t.Skip("needs setsid(1)")
	}
	p := i.prov(t)
	h, err := p.Start(context.Background(), provision.Spec{OrgID: "o", WorkspaceID: "ws-s", Generation: 3,
		Command: []string{"/bin/sh", "-c", "setsid sleep 1000 & echo escaped; exec sleep 1000"}})
	require.NoError(t, err)
	waitLog(t, p, "ws-s", "escaped")
	byUID := func() []int {
		var out []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/status")
			if err == nil && strings.Contains(string(b), fmt.Sprintf("\nUid:\t%d\t", h.UID)) && alive(pid) {
				out = append(out, pid)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(byUID()) == 2 }, 10*time.Second, 10*time.Millisecond)

	// A restarted control plane adopts the box from its handle and stops it.
	q := i.prov(t)
	st, err := q.Adopt(context.Background(), h)
	require.NoError(t, err)
	require.True(t, st.Running)
	require.NoError(t, q.Stop(context.Background(), h))
	require.Eventually(t, func() bool { return len(byUID()) == 0 }, 10*time.Second, 10*time.Millisecond, "the setsid'd process is killed too")
	_, err = os.Stat(filepath.Dir(h.Dir))
	require.ErrorIs(t, err, os.ErrNotExist, "the box's directory and uid claim are gone")
	require.NoError(t, q.Stop(context.Background(), h), "stopping again is fine and touches nothing")
}

// TestIsolatedBoxProgramMustBeReachable: a program the box user cannot
// execute (under a 0700 directory) is refused at Start with a message
// that says why and what to do; no uid stays claimed.
func TestIsolatedBoxProgramMustBeReachable(t *testing.T) {
	i := newIsolated(t)
	p := i.prov(t)
	hidden := filepath.Join(t.TempDir(), "bin")
	require.NoError(t, os.MkdirAll(hidden, 0o700))
	prog := filepath.Join(hidden, "agent")
	require.NoError(t, os.WriteFile(prog, []byte("#!/bin/sh\nexit 0\n"), 0o755))
	_, err := p.Start(context.Background(), provision.Spec{OrgID: "o", WorkspaceID: "ws-h", Generation: 1, Command: []string{prog}})
	require.Error(t, err)
	require.Contains(t, err.Error(), "cannot be entered by uid")
	require.Contains(t, err.Error(), "every user may execute it")
	ents, err := os.ReadDir(i.boxDir)
	require.NoError(t, err)
	require.Empty(t, ents, "the claim was released")
}

// TestLogsMaskWhatTheBoxWasStartedWith: every value a box was started
// with (its secrets, its token, short ones as whole words) is masked in its
// output for as long as its output is read, whatever the secrets are now;
// and after a control-plane restart, from what /proc says the adopted box
// was started with.
func TestLogsMaskWhatTheBoxWasStartedWith(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := process.Config{LogDir: dir, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
	p, err := process.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	const secret, token = "the-old-secret-value", "op_workspace_t7_BOXTOKEN"
	h, err := p.Start(context.Background(), provision.Spec{OrgID: "o", WorkspaceID: "ws-m", Generation: 1,
		Command:    []string{"/bin/sh", "-c", `echo "key=$API_KEY tok=$ORGPLANE_TOKEN pin=$PIN port 4242 ws=$ORGPLANE_WORKSPACE_ID level=$LOG_LEVEL"; echo printed; exec sleep 1000`},
		Env:        map[string]string{"API_KEY": secret, "ORGPLANE_TOKEN": token, "PIN": "42", "ORGPLANE_WORKSPACE_ID": "ws-m", "LOG_LEVEL": "info"},
		PublicKeys: []string{"LOG_LEVEL"}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Stop(context.Background(), h)) })
	want := "key=[REDACTED] tok=[REDACTED] pin=[REDACTED] port 4242 ws=ws-m level=info\nprinted\n"
	out := waitLog(t, p, "ws-m", "printed")
	require.Equal(t, want, out)

	// A restarted control plane: a new provisioner adopts the box.
	q, err := process.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	raw, err := os.ReadFile(q.LogPath("ws-m"))
	require.NoError(t, err)
	require.Contains(t, string(raw), secret, "the file holds what the box printed")
	_, err = q.Adopt(context.Background(), h)
	require.NoError(t, err)
	b, err := q.Logs(context.Background(), "ws-m", 0)
	require.NoError(t, err)
	require.Equal(t, want, string(b))
	b, err = q.Logs(context.Background(), "ws-m", 1)
	require.NoError(t, err)
	require.Equal(t, "printed\n", string(b))
}

// TestIsolatedUIDClaims: with one id in the range, a live box holds it (a
// second box is refused), a claim left by a dead box is taken over, and
// the dead box's stale handle then releases nothing of the new box.
func TestIsolatedUIDClaims(t *testing.T) {
	i := newIsolated(t)
	i.cfg.BoxUIDs = process.UIDRange{First: i.uids.First, Last: i.uids.First}
	p := i.prov(t)
	uid := strconv.Itoa(int(i.uids.First))
	// A box that died with its control plane left its claim behind.
	stale := provision.Handle{Runtime: provision.RuntimeProcess, WorkspaceID: "ws-dead", Generation: 1, ID: "999999", StartTicks: 1,
		UID: i.uids.First, Dir: filepath.Join(i.boxDir, uid, "ws-dead-g1")}
	require.NoError(t, os.MkdirAll(stale.Dir, 0o700))

	h := startSh(t, p, "ws-live", "echo live; exec sleep 1000", nil)
	require.Equal(t, i.uids.First, h.UID, "the dead box's claim was taken over")
	waitLog(t, p, "ws-live", "live")
	_, err := p.Start(context.Background(), provision.Spec{OrgID: "o", WorkspaceID: "ws-other", Generation: 1,
		Command: []string{"/bin/sh", "-c", "exec sleep 1000"}})
	require.ErrorContains(t, err, "no free box uid")

	require.NoError(t, p.Stop(context.Background(), stale), "the stale handle")
	_, err = os.Stat(h.Dir)
	require.NoError(t, err, "the live box keeps its directory")
	st, err := p.Inspect(context.Background(), h)
	require.NoError(t, err)
	require.True(t, st.Running, "and its process")
}

// TestNotIsolatedWarns: without isolation (not root, or no uid range) the
// provisioner says so at startup, at warn level.
func TestNotIsolatedWarns(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	p, err := process.New(process.Config{LogDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	require.Contains(t, buf.String(), "level=WARN")
	require.Contains(t, buf.String(), "process boxes are not isolated")
	require.Contains(t, buf.String(), "docker runtime")
}

// TestUnreachableProgramIsShared: the reference agent of a `go run` lives
// in a 0700 build dir that box users cannot enter; boxes run a copy of it
// in the box dir instead, and that copy starts as the box user.
func TestUnreachableProgramIsShared(t *testing.T) {
	i := newIsolated(t)
	hidden := filepath.Join(t.TempDir(), "bin")
	require.NoError(t, os.MkdirAll(hidden, 0o700))
	prog := filepath.Join(hidden, "agent")
	body := []byte("#!/bin/sh\necho shared-ok\nexec sleep 1000\n")
	require.NoError(t, os.WriteFile(prog, body, 0o755))
	cfg := i.cfg
	cfg.Programs = []string{prog}
	p, err := process.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	shared := p.ProgramPath(prog)
	require.NotEqual(t, prog, shared)
	require.True(t, strings.HasPrefix(shared, filepath.Join(i.boxDir, "bin")+"/"), shared)
	got, err := os.ReadFile(shared)
	require.NoError(t, err)
	require.Equal(t, body, got)
	require.Equal(t, "/bin/sh", p.ProgramPath("/bin/sh"), "a reachable program is run where it is")

	h, err := p.Start(context.Background(), provision.Spec{OrgID: "o", WorkspaceID: "ws-s", Generation: 1, Command: []string{shared}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop(context.Background(), h) })
	waitLog(t, p, "ws-s", "shared-ok")

	// A second start of the control plane reuses the copy.
	q, err := process.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	require.Equal(t, shared, q.ProgramPath(prog))
}
