package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// Process boxes run with the docker runtime off, so these tests need no
// engine.
var processFlags = []string{"--docker", "off"}

// TestProcessStartEnv: a workspace created with no command gets a box
// running the reference agent at once, healthy on its first heartbeat,
// whose environment is the effective env (a global secret set before the
// workspace existed, the spec's env) plus the box contract's variables.
func TestProcessStartEnv(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	value := secretValue(t)
	_, err := s.admin.SetSecret(bg, "", "E2E_GLOBAL", value, false)
	require.NoError(t, err)

	w := s.create(client.CreateWorkspace{Name: "agent", Spec: spec(t, map[string]any{"env": map[string]string{"FROM_SPEC": "spec-value"}})})
	assert.Equal(t, "provisioning", w.Status, "started on create")
	w = s.waitStatus(w.ID, "running", 1, 15*time.Second)
	assert.False(t, w.Stale)
	pid := boxPID(t, w.ID)
	env := procEnv(t, pid)
	got, ok := env["E2E_GLOBAL"]
	assert.True(t, ok, "the global secret is in the box's env")
	assert.True(t, got == value, "the global secret has its value in the box's env") // never print it
	assert.Equal(t, "spec-value", env["FROM_SPEC"])
	assert.Equal(t, s.url, env["ORGPLANE_URL"])
	assert.Equal(t, w.ID, env["ORGPLANE_WORKSPACE_ID"])
	assert.Equal(t, "1", env["ORGPLANE_GENERATION"])
	require.NotEmpty(t, env["ORGPLANE_TOKEN"])

	// The box's token is a workspace token of exactly this workspace.
	me, err := client.New(s.url, env["ORGPLANE_TOKEN"]).Whoami(bg)
	require.NoError(t, err)
	assert.Equal(t, "workspace", me.Kind)
	assert.Equal(t, w.ID, me.WorkspaceID)
	acts := s.actions(w.ID)
	assert.Equal(t, 1, acts["box.provision"])
	assert.Equal(t, 1, acts["box.healthy"])

	// The secret value never shows in the box's audit trail or the server's
	// own output.
	page, err := s.admin.ListAudit(bg, "", 500, 0)
	require.NoError(t, err)
	for _, e := range page.Entries {
		assert.False(t, strings.Contains(string(e.Detail), value), "audit entry %d holds the secret value", e.ID)
	}
	assert.False(t, strings.Contains(s.proc.Output(), value), "the server printed the secret value")
}

// TestProcessRestart: an explicit restart provisions a new generation,
// stops the old box, and revokes the old box's token once the new box is
// healthy. The platform workspace is restarted the same way (explicitly, by
// an admin, audited with the reason).
func TestProcessRestart(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	w := s.create(client.CreateWorkspace{Name: "agent"})
	s.waitStatus(w.ID, "running", 1, 15*time.Second)
	s.waitStatus(s.platformID, "running", 1, 15*time.Second)

	for _, id := range []string{w.ID, s.platformID} {
		oldPID := boxPID(t, id)
		oldToken := procEnv(t, oldPID)["ORGPLANE_TOKEN"]
		_, err := client.New(s.url, oldToken).Whoami(bg)
		require.NoError(t, err, "the current box's token works")

		job, err := s.admin.RestartWorkspace(bg, id, "e2e restart of "+id)
		require.NoError(t, err)
		assert.Equal(t, "admin_restart", job.Reason)
		s.waitStatus(id, "running", 2, 20*time.Second)
		waitGone(t, oldPID, 10*time.Second)
		newPID := boxPID(t, id)
		assert.NotEqual(t, oldPID, newPID)
		newEnv := procEnv(t, newPID)
		assert.Equal(t, "2", newEnv["ORGPLANE_GENERATION"])
		assert.False(t, newEnv["ORGPLANE_TOKEN"] == oldToken, "a fresh token per provision")

		_, err = client.New(s.url, oldToken).Whoami(bg)
		assert.Equal(t, http.StatusUnauthorized, apiStatus(err), "the old generation's token is revoked: %v", err)
		_, err = client.New(s.url, newEnv["ORGPLANE_TOKEN"]).Whoami(bg)
		assert.NoError(t, err, "the new generation's token works")

		eventually(t, 10*time.Second, func() bool {
			j, err := s.admin.ListRestarts(bg, id)
			return err == nil && len(j) > 0 && j[0].State == "succeeded" && j[0].Reason == "admin_restart"
		}, func() string { return fmt.Sprintf("restart job of %s did not succeed", id) })
		found := false
		for _, e := range s.audit(id) {
			found = found || (e.Action == "workspace.restart" && strings.Contains(string(e.Detail), "e2e restart of "+id))
		}
		assert.True(t, found, "the restart is audited with its reason")
	}
}

// TestProcessPauseResume: pausing stops the boxes of the whole subtree;
// resuming provisions them again (a new generation each).
func TestProcessPauseResume(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	parent := s.create(client.CreateWorkspace{Name: "parent"})
	child := s.create(client.CreateWorkspace{Name: "child", ParentID: parent.ID})
	sibling := s.create(client.CreateWorkspace{Name: "sibling"})
	pids := map[string]int{}
	for _, id := range []string{parent.ID, child.ID, sibling.ID} {
		s.waitStatus(id, "running", 1, 15*time.Second)
		pids[id] = boxPID(t, id)
	}

	p, err := s.admin.PauseWorkspace(bg, parent.ID)
	require.NoError(t, err)
	assert.Equal(t, "paused", p.Status)
	for _, id := range []string{parent.ID, child.ID} {
		assert.Equal(t, "paused", s.get(id).Status)
		waitGone(t, pids[id], 10*time.Second)
		waitNoBox(t, id, 5*time.Second)
	}
	assert.Equal(t, "running", s.get(sibling.ID).Status, "outside the subtree")
	assert.True(t, e2etest.ProcessAlive(pids[sibling.ID]))

	// Resuming a workspace that is not paused is a conflict.
	_, err = s.admin.ResumeWorkspace(bg, sibling.ID)
	assert.Equal(t, http.StatusConflict, apiStatus(err), "%v", err)

	_, err = s.admin.ResumeWorkspace(bg, parent.ID)
	require.NoError(t, err)
	for _, id := range []string{parent.ID, child.ID} {
		s.waitStatus(id, "running", 2, 15*time.Second)
		assert.NotEqual(t, pids[id], boxPID(t, id))
	}
}

// TestProcessDelete: deleting a workspace stops its box; a workspace with
// children is removed only with cascade, and then every box of the subtree
// stops.
func TestProcessDelete(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	solo := s.create(client.CreateWorkspace{Name: "solo"})
	parent := s.create(client.CreateWorkspace{Name: "parent"})
	child := s.create(client.CreateWorkspace{Name: "child", ParentID: parent.ID})
	pids := map[string]int{}
	for _, id := range []string{solo.ID, parent.ID, child.ID} {
		s.waitStatus(id, "running", 1, 15*time.Second)
		pids[id] = boxPID(t, id)
	}

	_, err := s.admin.DeleteWorkspace(bg, solo.ID, false)
	require.NoError(t, err)
	waitGone(t, pids[solo.ID], 10*time.Second)
	assert.Equal(t, "removed", s.get(solo.ID).Status)

	_, err = s.admin.DeleteWorkspace(bg, parent.ID, false)
	assert.Equal(t, http.StatusConflict, apiStatus(err), "live children without cascade: %v", err)
	assert.True(t, e2etest.ProcessAlive(pids[parent.ID]), "a refused delete changes nothing")

	res, err := s.admin.DeleteWorkspace(bg, parent.ID, true)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{parent.ID, child.ID}, res.Removed)
	for _, id := range []string{parent.ID, child.ID} {
		waitGone(t, pids[id], 10*time.Second)
		waitNoBox(t, id, 5*time.Second)
	}
	// Nothing brings a removed workspace's box back.
	time.Sleep(2 * time.Second)
	for _, id := range []string{solo.ID, parent.ID, child.ID} {
		assert.Empty(t, e2etest.BoxPIDs(id), "box of removed workspace %s came back", id)
	}
}

// TestProcessCrashRecovery: a box killed with SIGKILL is noticed within
// seconds, recorded (failed, audit box.failed with the signal) and
// re-provisioned with a new generation. That holds for the platform
// workspace too: bringing a dead box back terminates nothing.
func TestProcessCrashRecovery(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	w := s.create(client.CreateWorkspace{Name: "agent"})
	cmdWS := s.create(client.CreateWorkspace{Name: "plain", Spec: spec(t, map[string]any{
		"command": []string{"/bin/sh", "-c", "echo plain-box-up; exec sleep 1000"}, "ready_after_seconds": 0.5})})
	for _, id := range []string{w.ID, cmdWS.ID, s.platformID} {
		s.waitStatus(id, "running", 1, 15*time.Second)
	}

	for _, id := range []string{w.ID, cmdWS.ID, s.platformID} {
		pid := boxPID(t, id)
		killed := time.Now()
		kill9(t, pid)
		// Noticed within seconds: an audit entry box.failed for generation 1.
		var failed client.AuditEntry
		eventually(t, 5*time.Second, func() bool {
			for _, e := range s.audit(id) {
				if e.Action == "box.failed" {
					failed = e
					return true
				}
			}
			return false
		}, func() string {
			return fmt.Sprintf("the crash of %s's box was not noticed (audit %v)", id, s.actions(id))
		})
		assert.Less(t, failed.At.Sub(killed), 5*time.Second)
		assert.Contains(t, string(failed.Detail), "SIGKILL", "the failure names the signal")
		// Recovered: a new generation, healthy, in a new process.
		r := s.waitStatus(id, "running", 2, 20*time.Second)
		assert.Empty(t, r.LastError, "a healthy box clears last_error")
		assert.NotEqual(t, pid, boxPID(t, id))
		// The recovery job records its outcome just after the box is healthy.
		var jobs []client.RestartJob
		eventually(t, 10*time.Second, func() bool {
			var err error
			jobs, err = s.admin.ListRestarts(bg, id)
			return err == nil && len(jobs) > 0 && jobs[0].State == "succeeded"
		}, func() string { return fmt.Sprintf("recovery job of %s: %+v", id, jobs) })
		assert.Equal(t, "box_failed", jobs[0].Reason)
	}
}

// TestProcessCrashLoop: a box that exits at once, every time, is
// re-provisioned a bounded number of times (--max-provision-retries,
// default 3) with backoff, then stays failed with last_error naming the
// exit code and the box's last output, with one box.failed audit entry per
// generation and a box.gave_up.
func TestProcessCrashLoop(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	w := s.create(client.CreateWorkspace{Name: "crasher", Spec: spec(t, map[string]any{
		"command": []string{"/bin/sh", "-c", "echo crash-loop-output; exit 3"}, "ready_after_seconds": 5})})
	w = s.waitGaveUp(w.ID, 40*time.Second)
	assert.Contains(t, w.LastError, "exited with code 3")
	assert.Contains(t, w.LastError, "crash-loop-output")
	assert.Equal(t, int64(4), w.Generation, "the first provision and 3 retries")
	acts := s.actions(w.ID)
	assert.Equal(t, 4, acts["box.failed"], "audit: %v", acts)
	assert.Equal(t, 4, acts["box.provision"], "audit: %v", acts)
	assert.Equal(t, 1, acts["box.gave_up"], "audit: %v", acts)
	// And it stays so.
	time.Sleep(3 * time.Second)
	again := s.get(w.ID)
	assert.Equal(t, "failed", again.Status)
	assert.Equal(t, int64(4), again.Generation)
	assert.Empty(t, e2etest.BoxPIDs(w.ID))
}

// TestProcessLogs: the box's output through the API (tail) and
// `orgplane workspaces logs ID --tail 5`.
func TestProcessLogs(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	w := s.create(client.CreateWorkspace{Name: "talker", Spec: spec(t, map[string]any{
		"command":             []string{"/bin/sh", "-c", "for i in $(seq 1 20); do echo line-$i; done; exec sleep 1000"},
		"ready_after_seconds": 0.5})})
	s.waitStatus(w.ID, "running", 1, 15*time.Second)
	want := "line-16\nline-17\nline-18\nline-19\nline-20\n"
	var logs []byte
	eventually(t, 5*time.Second, func() bool {
		var err error
		logs, err = s.admin.Logs(bg, w.ID, 5)
		return err == nil && string(logs) == want
	}, func() string { return fmt.Sprintf("logs tail 5: %q", logs) })
	all, err := s.admin.Logs(bg, w.ID, 0)
	require.NoError(t, err)
	assert.Equal(t, 20, strings.Count(string(all), "line-"))
	assert.Equal(t, want, s.cliOK("workspaces", "logs", w.ID, "--tail", "5"))
	assert.Equal(t, want, s.cliOK("ws", "logs", w.ID, "--tail", "5"))

	// The agent's box logs what it does (never its secrets).
	logs, err = s.admin.Logs(bg, s.platformID, 0)
	require.NoError(t, err)
	assert.Contains(t, string(logs), "starting")

	// Logs are for admins only.
	tok, err := s.admin.CreateToken(bg, client.CreateToken{Kind: "workspace", Name: "ws", WorkspaceID: w.ID})
	require.NoError(t, err)
	_, err = client.New(s.url, tok.Secret).Logs(bg, w.ID, 5)
	assert.Equal(t, http.StatusForbidden, apiStatus(err), "%v", err)
}

// TestProcessAdoption: kill -9 of the control plane leaves its boxes
// running; started again on the same data dir it adopts them (same pids,
// generation unchanged, still running and watched), while a box that died
// meanwhile is marked failed ("missing") and recovered.
func TestProcessAdoption(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	agent := s.create(client.CreateWorkspace{Name: "agent"})
	plain := s.create(client.CreateWorkspace{Name: "plain", Spec: spec(t, map[string]any{
		"command": []string{"/bin/sleep", "1000"}, "ready_after_seconds": 0.5})})
	doomed := s.create(client.CreateWorkspace{Name: "doomed"})
	ids := []string{s.platformID, agent.ID, plain.ID, doomed.ID}
	pids := map[string]int{}
	gens := map[string]int64{}
	for _, id := range ids {
		gens[id] = s.waitStatus(id, "running", 1, 15*time.Second).Generation
		pids[id] = boxPID(t, id)
	}

	s.proc.Kill()
	for _, id := range ids {
		assert.True(t, e2etest.ProcessAlive(pids[id]), "box of %s died with the control plane", id)
	}
	kill9(t, pids[doomed.ID])
	waitGone(t, pids[doomed.ID], 5*time.Second)

	s.start()
	for _, id := range []string{s.platformID, agent.ID, plain.ID} {
		w := s.get(id)
		assert.Equal(t, "running", w.Status, "%s after restart", id)
		assert.Equal(t, gens[id], w.Generation, "%s: generation unchanged", id)
		assert.Equal(t, []int{pids[id]}, e2etest.BoxPIDs(id), "%s: the same process, not a duplicate", id)
	}
	// The missing box: failed with the reason, then recovered.
	found := false
	eventually(t, 5*time.Second, func() bool {
		for _, e := range s.audit(doomed.ID) {
			if e.Action == "box.failed" && strings.Contains(string(e.Detail), "missing") {
				found = true
			}
		}
		return found
	}, func() string {
		return fmt.Sprintf("no box.failed (missing) for %s: %v", doomed.ID, s.actions(doomed.ID))
	})
	s.waitStatus(doomed.ID, "running", 2, 20*time.Second)

	// Adopted agent boxes keep heartbeating with their token: still running
	// well after a few heartbeats.
	time.Sleep(4 * time.Second)
	for _, id := range []string{s.platformID, agent.ID, plain.ID} {
		w := s.get(id)
		assert.Equal(t, "running", w.Status, "%s", id)
		assert.Equal(t, gens[id], w.Generation, "%s", id)
		assert.True(t, e2etest.ProcessAlive(pids[id]))
	}

	// Adopted boxes are watched: a crash is noticed and recovered.
	kill9(t, pids[plain.ID])
	s.waitStatus(plain.ID, "running", gens[plain.ID]+1, 20*time.Second)
}

// TestProcessFailurePaths: every way a box can fail ends in status failed
// with a reason in last_error, box.failed audit entries and, after the
// bounded retries (1 here), box.gave_up; no process is left behind.
func TestProcessFailurePaths(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--docker", "off", "--provision-timeout", "2s", "--max-provision-retries", "1")
	cases := []struct {
		name    string
		runtime string
		spec    map[string]any
		reason  []string // substrings of last_error
		// unreachable: on a server whose boxes cannot heartbeat
		unreachable bool
	}{
		{name: "exits-with-code", spec: map[string]any{"command": []string{"/bin/sh", "-c", "echo failing-box-said-this >&2; exit 3"}, "ready_after_seconds": 1.5},
			reason: []string{"exited with code 3", "failing-box-said-this"}},
		{name: "exits-zero-before-ready", spec: map[string]any{"command": []string{"/bin/true"}, "ready_after_seconds": 1},
			reason: []string{"exited with code 0"}},
		{name: "killed-by-signal", spec: map[string]any{"command": []string{"/bin/sh", "-c", "kill -9 $$"}, "ready_after_seconds": 1},
			reason: []string{"killed by signal SIGKILL"}},
		{name: "command-not-found", spec: map[string]any{"command": []string{"/nonexistent/e2e-box"}},
			reason: []string{"start box", "no such file or directory"}},
		// An agent box (no command) whose heartbeats never get through: the
		// server tells boxes a URL under which no API answers. (A plain box
		// can no longer ask for a ready_after the timeout cuts short.)
		{name: "never-healthy", spec: map[string]any{}, unreachable: true,
			reason: []string{"not healthy within 2s", "no heartbeat"}},
	}
	// A runtime that is not enabled is refused up front, not left to fail.
	_, err := s.admin.CreateWorkspace(bg, client.CreateWorkspace{Name: "runtime-not-enabled", Runtime: "docker", Spec: spec(t, map[string]any{"image": "orgplane-e2e/none:0"})})
	require.Equal(t, http.StatusUnprocessableEntity, apiStatus(err), "%v", err)
	require.Contains(t, err.Error(), "runtime_unavailable")
	unreachable := startUnreachable(t, "--docker", "off", "--provision-timeout", "2s", "--max-provision-retries", "1")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := s.with(t)
			if tc.unreachable {
				s = unreachable.with(t)
			}
			w := s.create(client.CreateWorkspace{Name: tc.name, Runtime: tc.runtime, Spec: spec(t, tc.spec)})
			w = s.waitGaveUp(w.ID, 30*time.Second)
			for _, r := range tc.reason {
				assert.Contains(t, strings.ToLower(w.LastError), strings.ToLower(r))
			}
			assert.Equal(t, int64(2), w.Generation, "the first provision and one retry")
			acts := s.actions(w.ID)
			assert.Equal(t, 2, acts["box.failed"], "audit: %v", acts)
			for _, e := range s.audit(w.ID) {
				if e.Action == "box.failed" {
					assert.Equal(t, "failed", e.Outcome)
				}
			}
			waitNoBox(t, w.ID, 5*time.Second)
		})
	}
}
