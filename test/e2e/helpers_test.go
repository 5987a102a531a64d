package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// server is one `orgplane up` control plane in its own temp dir.
type server struct {
	t     *testing.T
	dir   string // the working dir; the data dir is dir/orgplane-data
	addr  string
	url   string
	flags []string
	proc  *e2etest.Proc

	token      string
	admin      *client.Client
	orgID      string
	platformID string
}

// startServer runs `orgplane up --addr <free> flags...` in a temp dir and
// waits until it has bootstrapped. Everything it leaves (box processes,
// containers of its org) is removed when the test ends, after the server
// itself is stopped.
func startServer(t *testing.T, flags ...string) *server {
	t.Helper()
	s := &server{t: t, dir: t.TempDir(), flags: flags}
	s.addr = e2etest.FreeAddr(t)
	s.url = "http://" + s.addr
	registerURL(s.url)
	// Registered before the server's own cleanup (e2etest.Start's Stop), so
	// it runs after it: a live control plane would re-provision what we kill.
	t.Cleanup(s.removeBoxes)
	s.start()
	return s
}

// startUnreachable is startServer with boxes told a control-plane URL
// under which no API answers (404): agent boxes never get a heartbeat
// through, so they are never healthy.
func startUnreachable(t *testing.T, flags ...string) *server {
	t.Helper()
	s := &server{t: t, dir: t.TempDir(), addr: e2etest.FreeAddr(t)}
	s.url = "http://" + s.addr
	boxURL := s.url + "/nowhere"
	s.flags = append(slices.Clone(flags), "--advertise-url", boxURL)
	registerURL(s.url)
	registerURL(boxURL)
	t.Cleanup(func() {
		s.removeBoxes()
		e2etest.KillAllBoxesUnder(boxURL)
	})
	s.start()
	return s
}

// start (re)starts the server process on the same dir and address.
func (s *server) start() {
	t := s.t
	t.Helper()
	args := append([]string{"up", "--addr", s.addr}, s.flags...)
	s.proc = e2etest.Start(t, s.dir, s.url, nil, args...)
	// /readyz answers before `up` has created the default org and written
	// the admin token: wait for the line printed after that.
	e2etest.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(s.proc.Output(), "orgplane is serving on")
	}, "orgplane up did not finish starting:\n%s", s.proc.Output())
	s.token = e2etest.AdminToken(t, s.dir)
	s.admin = client.New(s.url, s.token)
	me, err := s.admin.Whoami(bg)
	require.NoError(t, err)
	s.orgID = me.OrgID
	if usesDocker(s.flags) {
		registerOrg(s.orgID)
	}
	list, err := s.admin.ListWorkspaces(bg)
	require.NoError(t, err)
	for _, w := range list {
		if w.Kind == "platform" {
			s.platformID = w.ID
		}
	}
	require.NotEmpty(t, s.platformID, "no platform workspace")
}

// removeBoxes stops the server and kills every box it started (processes
// and, when docker is in use, its org's containers).
func (s *server) removeBoxes() {
	if s.proc != nil {
		s.proc.Stop()
	}
	e2etest.KillAllBoxesUnder(s.url)
	if s.orgID == "" || !usesDocker(s.flags) {
		return
	}
	c, err := dockerClient()
	if err != nil {
		s.t.Errorf("docker client for cleanup: %v", err)
		return
	}
	defer c.Close()
	ids, err := containersOf(context.Background(), c, "orgplane.org="+s.orgID)
	if err != nil {
		s.t.Errorf("list containers for cleanup: %v", err)
		return
	}
	removeContainers(c, ids)
}

func usesDocker(flags []string) bool {
	for i, f := range flags {
		if f == "--docker=on" || (f == "--docker" && i+1 < len(flags) && flags[i+1] == "on") {
			return true
		}
	}
	return false
}

// cli runs an orgplane client command in the server's dir (the CLI finds
// the server and the admin token in ./orgplane-data).
func (s *server) cli(args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	return e2etest.CLI(s.t, s.dir, nil, args...)
}

// cliOK runs a client command that must succeed and returns its stdout.
func (s *server) cliOK(args ...string) string {
	s.t.Helper()
	out, errOut, code := s.cli(args...)
	require.Equal(s.t, 0, code, "orgplane %v failed: %s", args, errOut)
	return out
}

// cliJSON runs a client command with --json and decodes its output.
func (s *server) cliJSON(v any, args ...string) {
	s.t.Helper()
	out := s.cliOK(append([]string{"--json"}, args...)...)
	require.NoError(s.t, json.Unmarshal([]byte(out), v), "orgplane --json %v printed:\n%s", args, out)
}

func (s *server) get(id string) client.Workspace {
	s.t.Helper()
	w, err := s.admin.GetWorkspace(bg, id)
	require.NoError(s.t, err)
	return w
}

func (s *server) create(in client.CreateWorkspace) client.Workspace {
	s.t.Helper()
	w, err := s.admin.CreateWorkspace(bg, in)
	require.NoError(s.t, err)
	return w
}

// waitStatus waits until the workspace has status and (when gen > 0) that
// generation; it returns the workspace.
func (s *server) waitStatus(id, status string, gen int64, timeout time.Duration) client.Workspace {
	s.t.Helper()
	var w client.Workspace
	eventually(s.t, timeout, func() bool {
		got, err := s.admin.GetWorkspace(bg, id)
		if err != nil {
			return false
		}
		w = got
		return w.Status == status && (gen == 0 || w.Generation == gen)
	}, func() string {
		return fmt.Sprintf("workspace %s: want status %s generation %d, last seen %s generation %d (last_error %q)",
			id, status, gen, w.Status, w.Generation, w.LastError)
	})
	return w
}

// audit returns the workspace's audit entries, newest first.
func (s *server) audit(wsID string) []client.AuditEntry {
	s.t.Helper()
	page, err := s.admin.ListAudit(bg, wsID, 500, 0)
	require.NoError(s.t, err)
	return page.Entries
}

// actions returns how many audit entries of the workspace have each action.
func (s *server) actions(wsID string) map[string]int {
	s.t.Helper()
	n := map[string]int{}
	for _, e := range s.audit(wsID) {
		n[e.Action]++
	}
	return n
}

// waitGaveUp waits until the control plane has given up on a workspace's
// box (audit box.gave_up): it stays failed from then on.
func (s *server) waitGaveUp(id string, timeout time.Duration) client.Workspace {
	s.t.Helper()
	eventually(s.t, timeout, func() bool { return s.actions(id)["box.gave_up"] > 0 }, func() string {
		w := s.get(id)
		return fmt.Sprintf("workspace %s: the control plane never gave up (status %s generation %d, audit: %v)",
			id, w.Status, w.Generation, s.actions(id))
	})
	w := s.get(id)
	require.Equal(s.t, "failed", w.Status, "after giving up")
	return w
}

// boxPID waits until exactly one process of the (process runtime)
// workspace runs, its box, and returns it.
func boxPID(t *testing.T, wsID string) int {
	t.Helper()
	var pids []int
	eventually(t, 15*time.Second, func() bool {
		pids = e2etest.BoxPIDs(wsID)
		return len(pids) == 1
	}, func() string { return fmt.Sprintf("workspace %s: want exactly one box process, have %v", wsID, pids) })
	return pids[0]
}

// procEnv reads a process's environment. Values may be secret: callers
// compare them, never print them.
func procEnv(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	require.NoError(t, err)
	env := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			env[k] = v
		}
	}
	return env
}

// waitGone waits until a process is gone (or a zombie).
func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	e2etest.Eventually(t, timeout, func() bool { return !e2etest.ProcessAlive(pid) }, "process %d still alive", pid)
}

// waitNoBox waits until no process of the workspace runs.
func waitNoBox(t *testing.T, wsID string, timeout time.Duration) {
	t.Helper()
	var pids []int
	eventually(t, timeout, func() bool {
		pids = e2etest.BoxPIDs(wsID)
		return len(pids) == 0
	}, func() string { return fmt.Sprintf("workspace %s: box processes still running: %v", wsID, pids) })
}

func kill9(t *testing.T, pid int) {
	t.Helper()
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
}

// apiStatus returns the HTTP status of an API error (0 for nil).
func apiStatus(err error) int {
	if err == nil {
		return 0
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status
	}
	return -1
}

// bg is the context of API calls; the client has its own timeout.
var bg = context.Background()

// eventually polls cond until it holds (see e2etest.Wait).
func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	e2etest.Wait(t, timeout, cond, msg)
}

func secretValue(t *testing.T) string { return e2etest.SecretValue(t) }

func spec(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func ptr[T any](v T) *T { return &v }

// with returns a copy of s whose helpers report to t (a subtest's).
func (s *server) with(t *testing.T) *server {
	c := *s
	c.t = t
	return &c
}
