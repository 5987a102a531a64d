package core_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/fake"
	"github.com/orgplane/orgplane/internal/testenv"
)

// Tests of the platform supervisor (issue 8: the org root always comes
// back). Under the fake provisioner no box heartbeats by itself: a test
// heartbeats with the box's own token to play its agent.

// boxTokenOf is the token of a box of the workspace, once started: the
// generation is recorded before the provisioner is called, so a test that
// saw it may be a moment ahead of the box.
func boxTokenOf(t *testing.T, f *fake.Provisioner, wsID string, gen int64) string {
	t.Helper()
	var env map[string]string
	require.Eventually(t, func() bool {
		var ok bool
		env, ok = f.StartedEnv(wsID, gen)
		return ok
	}, 30*time.Second, 5*time.Millisecond, "no box of %s generation %d was started", wsID, gen)
	return env[core.EnvToken]
}

// beat heartbeats generation gen of a workspace with its box's token.
func beat(t *testing.T, e *testenv.Env, f *fake.Provisioner, wsID string, gen int64) error {
	t.Helper()
	c := client.New(e.URL, boxTokenOf(t, f, wsID, gen))
	return c.Do(context.Background(), http.MethodPost, "/v1/workspaces/"+wsID+"/heartbeat", map[string]any{"generation": gen}, nil)
}

func auditActions(t *testing.T, e *testenv.Env, wsID string) []string {
	t.Helper()
	page, err := e.Admin.ListAudit(context.Background(), wsID, 1000, 0)
	require.NoError(t, err)
	var out []string
	for _, en := range page.Entries {
		out = append(out, en.Action+":"+en.Outcome)
	}
	return out
}

func fakeStops(f *fake.Provisioner, wsID string) []provision.Handle {
	var out []provision.Handle
	for _, h := range f.Kills() {
		if h.WorkspaceID == wsID {
			out = append(out, h)
		}
	}
	return out
}

// replica starts another control plane on e's store (a successor after a
// crash, or a second replica on Postgres), acting as e's admin.
func replica(t *testing.T, e *testenv.Env, rt core.RuntimeConfig, provs map[string]provision.Provisioner) *testenv.Env {
	t.Helper()
	r := testenv.New(t, testenv.Options{Runtime: rt, Provisioners: provs, DBURL: e.DBURL, MasterKey: e.MasterKey})
	r.Admin = client.New(r.URL, e.AdminToken)
	return r
}

// stop ends an Env's server and service early (a control-plane crash, as
// far as its boxes are concerned: they keep running in the fake).
func stop(e *testenv.Env) {
	e.Server.CloseClientConnections()
	e.Server.Close()
	e.Service.Close()
	_ = e.Store.Close()
}

// Finding 1: a transient adopt error at startup marked the live platform
// failed for good. Unknown is not dead: degraded with the reason, checked
// again, and adopted when the check answers; no new box, no stop.
func TestPlatformAdoptErrorIsNotDeath(t *testing.T) {
	t.Parallel()
	f := fake.New()
	provs := map[string]provision.Provisioner{provision.RuntimeProcess: f}
	rt := fastRuntime()
	e1 := testenv.New(t, testenv.Options{Runtime: rt, Provisioners: provs})
	pw := e1.Org.Platform.ID
	waitWS(t, e1, pw, "platform provisioning", func(w client.Workspace) bool { return w.Generation == 1 })
	require.NoError(t, beat(t, e1, f, pw, 1))
	waitWS(t, e1, pw, "platform running", func(w client.Workspace) bool { return w.Status == "running" })
	stop(e1)

	f.FailNextAdopts(syscall.EMFILE, 3)
	e2 := replica(t, e1, rt, provs)
	got := waitWS(t, e2, pw, "platform degraded with the reason", func(w client.Workspace) bool {
		return w.Status == "degraded" && strings.Contains(w.LastError, "cannot check")
	})
	require.EqualValues(t, 1, got.Generation)
	// The check answers again: the box is watched, and its heartbeat makes it running.
	e2.Eventually(20*time.Second, func() bool { return beat(t, e2, f, pw, 1) == nil }, "heartbeat accepted")
	got = waitWS(t, e2, pw, "platform running again", func(w client.Workspace) bool { return w.Status == "running" })
	require.EqualValues(t, 1, got.Generation, "the same box: nothing was re-provisioned")
	require.Empty(t, fakeStops(f, pw), "the platform box was never stopped")
	require.NotContains(t, strings.Join(auditActions(t, e2, pw), " "), "box.failed")
}

// Finding 2: an admin restart of the platform whose new box is slow to
// heartbeat hit the provision timeout: failed, retries re-adopted the hung
// box, late heartbeats got 409 and the agent exited. Late is not dead: the
// box is kept (degraded), the job ends failed without a retry, and a late
// heartbeat makes it running.
func TestPlatformLateFirstHeartbeatIsKept(t *testing.T) {
	t.Parallel()
	rt := fastRuntime()
	rt.ProvisionTimeout = 500 * time.Millisecond
	e := testenv.New(t, testenv.Options{Runtime: rt})
	ctx := context.Background()
	pw := e.Org.Platform.ID
	// The bootstrap box is late too: kept, degraded.
	waitWS(t, e, pw, "bootstrap box kept degraded", func(w client.Workspace) bool { return w.Status == "degraded" && w.Generation == 1 })
	require.NoError(t, beat(t, e, e.Fake, pw, 1))
	waitWS(t, e, pw, "running", func(w client.Workspace) bool { return w.Status == "running" })

	job, err := e.Admin.RestartWorkspace(ctx, pw, "rotate")
	require.NoError(t, err)
	got := waitWS(t, e, pw, "generation 2 kept degraded", func(w client.Workspace) bool {
		return w.Generation == 2 && w.Status == "degraded"
	})
	require.Contains(t, got.LastError, "never stopped automatically")
	var j client.RestartJob
	e.Eventually(10*time.Second, func() bool {
		js, err := e.Admin.ListRestarts(ctx, pw)
		for _, x := range js {
			if x.ID == job.ID {
				j = x
			}
		}
		return err == nil && j.State == "failed"
	}, "the admin restart ended")
	require.Equal(t, 1, j.Attempts, "no retry: a retry would stop the live platform box")
	require.Contains(t, j.Error, "kept running")

	require.NoError(t, beat(t, e, e.Fake, pw, 2), "a late heartbeat is accepted")
	got = waitWS(t, e, pw, "running", func(w client.Workspace) bool { return w.Status == "running" })
	require.EqualValues(t, 2, got.Generation)
	for _, h := range fakeStops(e.Fake, pw) {
		require.EqualValues(t, 1, h.Generation, "only the explicit restart stopped a platform box (generation 1)")
	}
	actions := strings.Join(auditActions(t, e, pw), " ")
	require.NotContains(t, actions, "box.failed")
	require.Contains(t, actions, "box.degraded:ok")
}

// Finding 4: the platform's recovery budget was any box's: a few crashes
// in a row ended in box.gave_up and the root stayed down. It has no
// give-up: every crash is followed by a new box, with capped backoff.
func TestPlatformAlwaysComesBack(t *testing.T) {
	t.Parallel()
	rt := fastRuntime()
	rt.MaxProvisionRetries = 1
	rt.PlatformMaxBackoff = 100 * time.Millisecond
	rt.ProvisionTimeout = time.Minute // the crashes, not timeouts, are under test
	e := testenv.New(t, testenv.Options{Runtime: rt})
	pw := e.Org.Platform.ID
	const crashes = 5
	for gen := int64(1); gen <= crashes; gen++ {
		var h provision.Handle
		e.Eventually(20*time.Second, func() bool {
			var ok bool
			h, ok = e.Fake.Running(pw)
			return ok && h.Generation == gen
		}, "platform box generation %d running", gen)
		if gen%2 == 0 {
			require.NoError(t, beat(t, e, e.Fake, pw, gen)) // some crash healthy, some during provision
			waitWS(t, e, pw, "running", func(w client.Workspace) bool { return w.Status == "running" && w.Generation == gen })
		}
		require.NoError(t, e.Fake.Exit(h, 1))
	}
	got := waitWS(t, e, pw, "brought back after every crash", func(w client.Workspace) bool {
		return w.Generation == crashes+1 && w.Status == "provisioning"
	})
	require.Equal(t, "provisioning", got.Status)
	require.Empty(t, fakeStops(e.Fake, pw))
	actions := strings.Join(auditActions(t, e, pw), " ")
	require.NotContains(t, actions, "box.gave_up")
	require.Contains(t, actions, "platform.recovery_scheduled:ok")
}

// Finding 11: a job's retry re-adopted the box its failed attempt left
// (the generation persisted across attempts) and failed at once. A retry
// provisions a new box.
func TestRetryProvisionsANewBox(t *testing.T) {
	t.Parallel()
	rt := fastRuntime()
	rt.ProvisionTimeout = 300 * time.Millisecond
	rt.MaxProvisionRetries = 3
	e := testenv.New(t, testenv.Options{Runtime: rt})
	ctx := context.Background()
	// An agent box: healthy only by heartbeat, which nobody sends. Its
	// recoveries run out first (box.gave_up), so the restart below is the
	// only job.
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "slow"})
	require.NoError(t, err)
	e.Eventually(30*time.Second, func() bool {
		return strings.Contains(strings.Join(auditActions(t, e, w.ID), " "), "box.gave_up")
	}, "the recoveries ran out")
	before := len(e.Fake.Starts())
	// The failed attempt's box will not stop: it stays alive.
	e.Fake.FailNextStop(errors.New("engine busy"))
	_, err = e.Admin.RestartWorkspace(ctx, w.ID, "")
	require.NoError(t, err)
	e.Eventually(20*time.Second, func() bool {
		gens := map[int64]bool{}
		for _, sp := range e.Fake.Starts()[before:] {
			if sp.WorkspaceID == w.ID {
				gens[sp.Generation] = true
			}
		}
		return len(gens) >= 2
	}, "each attempt started a box of its own")
}

// Finding 13: a replica that cannot see a box (a process box on another
// host) marked it missing and re-provisioned it, doubling it. A box
// recorded on another node is never declared dead, adopted or stopped.
func TestBoxesOfAnotherNodeAreNotDeclaredDead(t *testing.T) {
	t.Parallel()
	rt := fastRuntime()
	onA := fake.New(fake.WithNode("host-a"))
	e1 := testenv.New(t, testenv.Options{Runtime: rt, Provisioners: map[string]provision.Provisioner{provision.RuntimeProcess: onA}})
	ctx := context.Background()
	w, err := e1.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "worker", Spec: plainSpec})
	require.NoError(t, err)
	waitWS(t, e1, w.ID, "running on host-a", func(x client.Workspace) bool { return x.Status == "running" })
	pw := e1.Org.Platform.ID
	require.NoError(t, beat(t, e1, onA, pw, 1))
	waitWS(t, e1, pw, "platform running on host-a", func(x client.Workspace) bool { return x.Status == "running" })
	stop(e1)

	// A control plane on host-b, whose process table has none of them.
	onB := fake.New(fake.WithNode("host-b"))
	e2 := replica(t, e1, rt, map[string]provision.Provisioner{provision.RuntimeProcess: onB})
	// Start adopted (or left) the boxes before it returned.
	for _, id := range []string{w.ID, pw} {
		got, err := e2.Admin.GetWorkspace(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "running", got.Status, "%s: not declared dead from another node: %s", id, got.LastError)
		require.EqualValues(t, 1, got.Generation)
	}
	require.Empty(t, onB.Starts(), "nothing re-provisioned on host-b")
	require.Empty(t, onB.Stops())
}

// Finding 9: provisioner calls had no deadline: a hung engine held a
// restart slot and the workspace forever. A hung start ends in a failure
// with the reason, and the box is provisioned again.
func TestHungProvisionerStartEndsInAFailure(t *testing.T) {
	t.Parallel()
	rt := fastRuntime()
	rt.ProvisionTimeout = 500 * time.Millisecond
	e := testenv.New(t, testenv.Options{Runtime: rt})
	ctx := context.Background()
	e.Eventually(20*time.Second, func() bool { _, ok := e.Fake.Running(e.Org.Platform.ID); return ok }, "the platform's box started")
	e.Fake.HangNextStarts(1)
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "hung", Spec: plainSpec})
	require.NoError(t, err)
	e.Eventually(20*time.Second, func() bool {
		return strings.Contains(strings.Join(auditActions(t, e, w.ID), " "), "box.failed:failed")
	}, "the hung start recorded as a failure")
	page, err := e.Admin.ListAudit(ctx, w.ID, 100, 0)
	require.NoError(t, err)
	found := false
	for _, en := range page.Entries {
		found = found || (en.Action == "box.failed" && strings.Contains(string(en.Detail), "deadline"))
	}
	require.True(t, found, "the failure says the start timed out")
	waitWS(t, e, w.ID, "provisioned again and running", func(x client.Workspace) bool { return x.Status == "running" && x.Generation >= 2 })
}

// Finding 13: watchers lived in one replica's memory and reconcile ran only
// at start, so a dead replica's boxes went unsupervised. Its leases lapse
// and a replica that can see the boxes takes them over: a box that dies
// afterwards is noticed and brought back.
func TestBoxesOfADeadReplicaAreTakenOver(t *testing.T) {
	t.Parallel()
	rt := fastRuntime()
	rt.SupervisionLease = 300 * time.Millisecond
	f := fake.New(fake.WithNode("host-a"))
	provs := map[string]provision.Provisioner{provision.RuntimeProcess: f}
	a := testenv.New(t, testenv.Options{Runtime: rt, Postgres: true, Provisioners: provs})
	ctx := context.Background()
	w, err := a.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "worker", Spec: plainSpec})
	require.NoError(t, err)
	waitWS(t, a, w.ID, "running", func(x client.Workspace) bool { return x.Status == "running" })
	// Replica b starts while a watches the box: b leaves it to a.
	b := replica(t, a, rt, provs)
	stop(a) // a is gone
	h, ok := f.Running(w.ID)
	require.True(t, ok)
	require.NoError(t, f.Exit(h, 7))
	got := waitWS(t, b, w.ID, "replica b noticed the exit and brought the box back", func(x client.Workspace) bool {
		return x.Generation == 2 && x.Status == "running"
	})
	require.EqualValues(t, 2, got.Generation)
	acts := strings.Join(auditActions(t, b, w.ID), " ")
	require.Contains(t, acts, "box.failed:failed")
}

// A box that dies while a secret change's restart is queued: the queued
// restart would find the workspace failed and skip it, and the recovery
// deferred to it, so nobody brought the box back (seen in the replicas
// stress test). The recovery brings the box back with the change applied,
// and the queued restart, taken afterwards, finds nothing left to do.
func TestBoxDyingWithAPendingRestartIsRecoveredWithTheChange(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime(), HoldQueue: true})
	ctx := context.Background()
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "worker", Spec: plainSpec})
	require.NoError(t, err)
	waitWS(t, e, w.ID, "running", func(x client.Workspace) bool { return x.Status == "running" })
	res, err := e.Admin.SetSecret(ctx, "", "API_KEY", "v2", false)
	require.NoError(t, err)
	var queued string
	for _, d := range res.Decisions {
		if d.WorkspaceID == w.ID {
			queued = d.Reason
		}
	}
	require.Equal(t, "restart_queued", queued)
	h, ok := e.Fake.Running(w.ID)
	require.True(t, ok)
	require.NoError(t, e.Fake.Exit(h, 9))
	got := waitWS(t, e, w.ID, "recovered with the new env", func(x client.Workspace) bool {
		return x.Status == "running" && x.Generation == 2 && !x.Stale
	})
	require.EqualValues(t, 2, got.Generation)
	e.ReleaseQueue()
	var change client.RestartJob
	e.Eventually(30*time.Second, func() bool {
		jobs, err := e.Admin.ListRestarts(ctx, w.ID)
		require.NoError(t, err)
		for _, j := range jobs {
			if j.ChangeID == res.ChangeID {
				change = j
			}
		}
		return change.ID != "" && change.State != "pending" && change.State != "running"
	}, "the change's restart ended (%+v)", &change)
	require.Equal(t, "skipped", change.State, "the recovery applied the change already")
	require.Equal(t, "unchanged", change.Reason)
	got, err = e.Admin.GetWorkspace(ctx, w.ID)
	require.NoError(t, err)
	require.EqualValues(t, 2, got.Generation, "not restarted a second time")
}

// Unknown is not dead for every box: a plain box that could not be checked
// after a control-plane restart is degraded, and running again once the
// check answers (it sends no heartbeat to say so itself).
func TestPlainBoxAdoptErrorIsNotDeath(t *testing.T) {
	t.Parallel()
	f := fake.New()
	provs := map[string]provision.Provisioner{provision.RuntimeProcess: f}
	rt := fastRuntime()
	e1 := testenv.New(t, testenv.Options{Runtime: rt, Provisioners: provs})
	ctx := context.Background()
	w, err := e1.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "plain", Spec: plainSpec})
	require.NoError(t, err)
	waitWS(t, e1, w.ID, "running", func(x client.Workspace) bool { return x.Status == "running" })
	// The platform's box goes first in the adoption order or not: fail
	// enough adopts for both.
	stop(e1)
	f.FailNextAdopts(syscall.EMFILE, 4)
	e2 := replica(t, e1, rt, provs)
	got := waitWS(t, e2, w.ID, "running again after the check answered", func(x client.Workspace) bool {
		return x.Status == "running"
	})
	require.EqualValues(t, 1, got.Generation, "the same box")
	acts := strings.Join(auditActions(t, e2, w.ID), " ")
	require.Contains(t, acts, "box.degraded:ok", "it was degraded while unknown")
	require.NotContains(t, acts, "box.failed")
	require.Empty(t, fakeStops(f, w.ID))
}
