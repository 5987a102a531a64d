package propagation_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// TestCrashMidFanOut kills the control plane (kill -9) in the middle of a
// global secret rotation across 200 reference-agent boxes, starts it again
// on the same data dir, and checks, from /proc, that every workspace ends
// with exactly one box running the new env, restarted exactly once for the
// change, with nothing left in the queue. The outbox and the job's recorded
// generation are what make this hold.
func TestCrashMidFanOut(t *testing.T) {
	if testing.Short() {
		t.Skip("200 agent processes and a kill -9: not in -short")
	}
	t.Parallel()
	const n = 200
	p := up(t, "--max-concurrent-restarts", "4", "--max-concurrent-restarts-per-org", "4")
	P := p.platformID
	p.waitWS(P, 30*time.Second, "platform running", func(w client.Workspace) bool { return w.Status == "running" })
	start := time.Now()
	ids := p.createAgents("agent", n, 25)
	t.Logf("%d agents running in %s", n, time.Since(start).Round(time.Millisecond))

	before := scanBoxes(p.url)
	platformPID := before[P][0].pid
	var fp0 string
	for _, id := range ids {
		require.Len(t, before[id], 1, "workspace %s: one box before", id)
		require.EqualValues(t, 1, before[id][0].gen())
		if fp0 == "" {
			fp0 = before[id][0].fingerprint()
		}
		require.Equal(t, fp0, before[id][0].fingerprint(), "same effective env everywhere before")
	}

	value := randomValue(t)
	res, err := p.admin.SetSecret(bg, "", "ROTATED_API_KEY", value, false)
	require.NoError(t, err)
	ds := decisionsByWS(res)
	require.Len(t, ds, n+1)
	require.Equal(t, "platform_root", ds[P].Reason)
	for _, id := range ids {
		require.Equal(t, "restart_queued", ds[id].Reason)
	}
	written := time.Now()

	// Kill -9 once some, but not all, restarts have succeeded.
	var succeeded float64
	eventually(t, 90*time.Second, func() bool {
		v, err := scrape(p.url, "orgplane_restarts_total", `outcome="succeeded"`)
		succeeded = v
		return err == nil && v >= 30
	}, func() string { return fmt.Sprintf("only %v restarts succeeded", succeeded) })
	p.proc.Kill()
	t.Logf("killed after %v restarts succeeded, %s after the write", succeeded, time.Since(written).Round(time.Millisecond))
	require.Less(t, succeeded, float64(n), "the fan-out finished before the kill; kill earlier")
	// The boxes outlive the control plane.
	require.True(t, e2etest.ProcessAlive(platformPID))

	firstOutput := p.proc.Output()
	p.start()
	restarted := time.Now()
	defer func() {
		if !t.Failed() {
			return
		}
		// What happened to the workspaces restarted more than once.
		for _, w := range p.snapshot(ids) {
			if w.Generation == 2 {
				continue
			}
			t.Logf("workspace %s: status %s generation %d stale %v", w.ID, w.Status, w.Generation, w.Stale)
			for _, j := range p.restarts(w.ID) {
				t.Logf("  job %s automatic=%v state=%s reason=%s attempts=%d generation=%d error=%q started=%v finished=%v",
					j.ID, j.Automatic, j.State, j.Reason, j.Attempts, j.Generation, j.Error, j.StartedAt, j.FinishedAt)
			}
			for _, e := range p.audit(w.ID) {
				t.Logf("  audit %s %s %s %s", e.At.Format(time.RFC3339Nano), e.Action, e.Outcome, e.Detail)
			}
			for _, out := range []string{firstOutput, p.proc.Output()} {
				for _, line := range strings.Split(out, "\n") {
					if strings.Contains(line, w.ID) {
						t.Logf("  log %s", line)
					}
				}
				t.Logf("  --- (server restarted)")
			}
		}
	}()
	// The crash really was mid-way: some jobs done, some not.
	done, open := 0, 0
	for _, id := range ids {
		for _, j := range p.restarts(id) {
			if !j.Automatic {
				continue
			}
			switch j.State {
			case "succeeded":
				done++
			case "pending", "running":
				open++
			}
		}
	}
	t.Logf("after the restart: %d restarts done, %d pending or running", done, open)
	require.Positive(t, done)
	require.Positive(t, open)

	// A crashed replica's running jobs are taken over when their lease
	// (60s) runs out, so allow for that.
	final := p.waitAll(ids, 4*time.Minute, "restarted with the new env", func(w client.Workspace) bool {
		return w.Status == "running" && w.Generation >= 2 && !w.Stale
	})
	t.Logf("fan-out finished %s after the restart", time.Since(restarted).Round(time.Millisecond))
	for _, id := range ids {
		require.EqualValues(t, 2, final[id].Generation, "workspace %s restarted exactly once", id)
	}

	// What runs, from /proc: one box per workspace, generation 2, the new
	// fingerprint and the new value.
	after := scanBoxes(p.url)
	var fp1 string
	for _, id := range ids {
		require.Len(t, after[id], 1, "workspace %s: exactly one box process", id)
		b := after[id][0]
		require.EqualValues(t, 2, b.gen(), "workspace %s", id)
		require.True(t, b.env["ROTATED_API_KEY"] == value, "workspace %s runs the new value", id) // never print it
		if fp1 == "" {
			fp1 = b.fingerprint()
		}
		require.Equal(t, fp1, b.fingerprint(), "workspace %s", id)
	}
	require.NotEqual(t, fp0, fp1)

	// Exactly one succeeded job per workspace, for the one change, and
	// nothing left in the queue. A job that was running when the server
	// died stays "running" until its lease (60s) runs out and a worker
	// takes it over, even when its box became healthy meanwhile: wait.
	eventually(t, 2*time.Minute, func() bool {
		for _, id := range ids {
			for _, j := range p.restarts(id) {
				if j.State == "pending" || j.State == "running" {
					return false
				}
			}
		}
		return true
	}, func() string { return "restart jobs still pending or running" })
	var change string
	for _, id := range ids {
		ok := 0
		for _, j := range p.restarts(id) {
			require.NotContains(t, []string{"pending", "running"}, j.State, "workspace %s: job %s left %s", id, j.ID, j.State)
			if j.State == "succeeded" {
				ok++
				require.True(t, j.Automatic, "workspace %s: the only restart is the rotation's: %+v", id, j)
				if change == "" {
					change = j.ChangeID
				}
				require.Equal(t, change, j.ChangeID)
			}
		}
		require.Equal(t, 1, ok, "workspace %s: one succeeded restart", id)
	}
	// The platform: skipped, same process, generation 1, stale.
	require.Equal(t, []int{platformPID}, []int{after[P][0].pid})
	w := p.get(P)
	require.EqualValues(t, 1, w.Generation)
	require.True(t, w.Stale)
}
