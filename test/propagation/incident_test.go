package propagation_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// TestIncidentPlatformNeverTornDown replays issue 5's incident against the
// real binary: the org's concierge lives in the platform workspace (a real
// reference agent process) and writes secrets through the management API —
// with the admin token (no acting workspace), with a global key, and with a
// management token bound to the platform workspace. Its box is never
// touched: same process, same generation; the workspace shows stale while
// its env differs. Only an explicit admin restart replaces it, audited.
func TestIncidentPlatformNeverTornDown(t *testing.T) {
	t.Parallel()
	p := up(t)
	P := p.platformID
	p.waitWS(P, 30*time.Second, "platform running", func(w client.Workspace) bool { return w.Status == "running" })
	agent := oneBox(t, p.url, P)
	require.EqualValues(t, 1, agent.gen())
	fp0 := agent.fingerprint()
	require.NotEmpty(t, fp0)

	untouched := func(step string) {
		t.Helper()
		bs := scanBoxes(p.url)[P]
		require.Len(t, bs, 1, "%s: the platform has one box process", step)
		require.Equal(t, agent.pid, bs[0].pid, "%s: the platform's agent process was replaced", step)
		require.True(t, e2etest.ProcessAlive(agent.pid), "%s: the platform's agent process died", step)
		require.EqualValues(t, 1, bs[0].gen(), step)
		require.Equal(t, fp0, bs[0].fingerprint(), step)
		w := p.get(P)
		require.EqualValues(t, 1, w.Generation, "%s: platform generation", step)
		require.Equal(t, "running", w.Status, step)
	}
	onlyPlatformRoot := func(step string, res client.SecretWrite, others ...string) {
		t.Helper()
		got := decisionsByWS(res)
		require.Equal(t, client.Decision{WorkspaceID: P, Action: "skip", Reason: "platform_root"}, got[P], step)
		require.Len(t, got, 1+len(others), "%s: decisions %+v", step, res.Decisions)
		for _, id := range others {
			require.Equal(t, "restart", got[id].Action, "%s: %s", step, id)
		}
	}

	concierge, err := p.admin.CreateToken(bg, client.CreateToken{Kind: "admin", Name: "concierge", ActingWorkspaceID: P})
	require.NoError(t, err)
	mgmt := client.New(p.url, concierge.Secret)
	me, err := mgmt.Whoami(bg)
	require.NoError(t, err)
	require.Equal(t, P, me.ActingWorkspaceID)

	for i, c := range []struct {
		name string
		c    *client.Client
	}{{"admin token, no acting workspace", p.admin}, {"management token bound to the platform", mgmt}} {
		// A normal workspace beside it, to show that the same writes do
		// restart what may be restarted (and to know when the window has
		// passed). One per caller, so that the loop breaker stays out of it.
		W := p.createAgents(fmt.Sprint("worker", i, "-"), 1, 1)[0]
		wantGenW := int64(1)
		// The platform's own secret: written, then deleted.
		res, err := c.c.SetSecret(bg, P, "CONCIERGE_API_KEY", randomValue(t), false)
		require.NoError(t, err, c.name)
		onlyPlatformRoot(c.name+": platform secret set", res)
		untouched(c.name + ": after the platform secret set")
		require.True(t, p.get(P).Stale, "%s: the platform runs an old env: stale", c.name)
		res, err = c.c.DeleteSecret(bg, P, "CONCIERGE_API_KEY", false)
		require.NoError(t, err, c.name)
		onlyPlatformRoot(c.name+": platform secret delete", res)
		require.False(t, p.get(P).Stale, "%s: env back to what the box runs", c.name)

		// A global key: every workspace's env changes.
		res, err = c.c.SetSecret(bg, "", "ORG_WIDE_KEY", randomValue(t), false)
		require.NoError(t, err, c.name)
		onlyPlatformRoot(c.name+": global set", res, W)
		require.True(t, p.get(P).Stale, c.name)
		wantGenW++
		// W's restart is done: the coalesce window (2s) has passed, and any
		// job for the platform would have run by now.
		p.waitWS(W, 30*time.Second, "worker restarted", func(w client.Workspace) bool {
			return w.Status == "running" && w.Generation == wantGenW && !w.Stale
		})
		untouched(c.name + ": after the global set")
		res, err = c.c.DeleteSecret(bg, "", "ORG_WIDE_KEY", false)
		require.NoError(t, err, c.name)
		onlyPlatformRoot(c.name+": global delete", res, W)
		wantGenW++
		p.waitWS(W, 30*time.Second, "worker restarted", func(w client.Workspace) bool {
			return w.Status == "running" && w.Generation == wantGenW && !w.Stale
		})
		untouched(c.name + ": after the global delete")
		_, err = p.admin.DeleteWorkspace(bg, W, false)
		require.NoError(t, err)
	}
	// The history shows every decision, none executed.
	for _, j := range p.restarts(P) {
		assert.Equal(t, "skipped", j.State, "platform job %+v", j)
		assert.Equal(t, "platform_root", j.Reason)
		assert.True(t, j.Automatic)
	}
	require.Len(t, p.restarts(P), 8)

	// Stale until restarted: a global write the platform skipped.
	_, err = p.admin.SetSecret(bg, "", "ROTATED", randomValue(t), false)
	require.NoError(t, err)
	require.True(t, p.get(P).Stale)

	// An explicit admin restart is the one way to replace the platform box.
	job, err := p.admin.RestartWorkspace(bg, P, "apply the rotated keys to the concierge")
	require.NoError(t, err)
	w := p.waitWS(P, 30*time.Second, "platform restarted", func(w client.Workspace) bool {
		return w.Status == "running" && w.Generation == 2
	})
	require.False(t, w.Stale)
	nb := oneBox(t, p.url, P)
	require.NotEqual(t, agent.pid, nb.pid, "a new agent process")
	require.False(t, e2etest.ProcessAlive(agent.pid), "the old agent process is gone")
	require.EqualValues(t, 2, nb.gen())
	require.NotEqual(t, fp0, nb.fingerprint())
	var done client.RestartJob
	for _, j := range p.restarts(P) {
		if j.ID == job.ID {
			done = j
		}
	}
	require.Equal(t, "succeeded", done.State)
	require.Equal(t, "admin_restart", done.Reason)
	require.False(t, done.Automatic)
	require.Equal(t, "apply the rotated keys to the concierge", done.RequestedReason)
	audited := false
	for _, e := range p.audit(P) {
		if e.Action != "workspace.restart" {
			continue
		}
		var d struct {
			Reason string `json:"reason"`
			JobID  string `json:"job_id"`
		}
		require.NoError(t, json.Unmarshal(e.Detail, &d))
		audited = audited || (d.Reason == "apply the rotated keys to the concierge" && d.JobID == job.ID && e.Outcome == "ok")
	}
	require.True(t, audited, "the explicit restart is audited with its reason")
	require.Equal(t, 1, countAction(p.audit(P), "restart.succeeded"))
}
