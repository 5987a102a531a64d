package core_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/testenv"
)

func fastRuntime() core.RuntimeConfig {
	return core.RuntimeConfig{CoalesceWindow: 50 * time.Millisecond, Jitter: time.Millisecond,
		PollInterval: 20 * time.Millisecond, RetryBackoff: 20 * time.Millisecond, ProvisionTimeout: 2 * time.Second}
}

var plainSpec = json.RawMessage(`{"command":["box"],"ready_after_seconds":0}`)

func TestSecretChangeRestartsAffectedBox(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime()})
	ctx := context.Background()
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "w1", Spec: plainSpec})
	require.NoError(t, err)
	e.Eventually(5*time.Second, func() bool {
		x, err := e.Admin.GetWorkspace(ctx, w.ID)
		return err == nil && x.Status == "running"
	}, "w1 running")
	res, err := e.Admin.SetSecret(ctx, "", "API_KEY", "v1", false)
	require.NoError(t, err)
	reasons := map[string]string{}
	for _, d := range res.Decisions {
		reasons[d.WorkspaceID] = d.Reason
	}
	require.Equal(t, "restart_queued", reasons[w.ID])
	require.Equal(t, "platform_root", reasons[e.Org.Platform.ID])
	e.Eventually(5*time.Second, func() bool {
		x, err := e.Admin.GetWorkspace(ctx, w.ID)
		return err == nil && x.Status == "running" && x.Generation == 2 && !x.Stale
	}, "w1 restarted to generation 2")
	// The platform box was never stopped.
	for _, h := range e.Fake.Stops() {
		require.NotEqual(t, e.Org.Platform.ID, h.WorkspaceID)
	}
}

// TestFailureOutputIsRedacted: a box that prints its secrets and dies
// leaves its last lines in last_error and the audit log, masked.
func TestFailureOutputIsRedacted(t *testing.T) {
	t.Parallel()
	// The failure's last_error lasts only until its recovery is healthy;
	// with the usual 20ms backoff a poll on a loaded machine missed it. The
	// recovery waits here, so the failure stays to be read.
	rt := fastRuntime()
	rt.RetryBackoff = time.Hour
	e := testenv.New(t, testenv.Options{Runtime: rt})
	ctx := context.Background()
	const value = "leaky-secret-value-1234"
	_, err := e.Admin.SetSecret(ctx, "", "LEAKY", value, false)
	require.NoError(t, err)
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "talker", Spec: plainSpec})
	require.NoError(t, err)
	var h provision.Handle
	e.Eventually(5*time.Second, func() bool {
		var ok bool
		h, ok = e.Fake.Running(w.ID)
		x, err := e.Admin.GetWorkspace(ctx, w.ID)
		return ok && err == nil && x.Status == "running"
	}, "box running")
	e.Fake.SetLogs(w.ID, []byte("starting\nLEAKY="+value+"\nbye\n"))
	require.NoError(t, e.Fake.Exit(h, 3))
	var got client.Workspace
	e.Eventually(5*time.Second, func() bool {
		got, err = e.Admin.GetWorkspace(ctx, w.ID)
		return err == nil && got.LastError != ""
	}, "failure recorded")
	require.Contains(t, got.LastError, "exited with code 3")
	require.Contains(t, got.LastError, "LEAKY=[REDACTED]")
	require.NotContains(t, got.LastError, value)
	page, err := e.Admin.ListAudit(ctx, w.ID, 100, 0)
	require.NoError(t, err)
	for _, a := range page.Entries {
		require.NotContains(t, string(a.Detail), value)
	}
}

func TestLogsAreRedacted(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime()})
	ctx := context.Background()
	const value = "printed-secret-5678"
	start := false
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "printer", Spec: plainSpec, Start: &start})
	require.NoError(t, err)
	_, err = e.Admin.SetSecret(ctx, w.ID, "PRINTED", value, false)
	require.NoError(t, err)
	e.Fake.SetLogs(w.ID, []byte("PRINTED="+value+"\n"))
	b, err := e.Admin.Logs(ctx, w.ID, 10)
	require.NoError(t, err)
	require.Equal(t, "PRINTED=[REDACTED]\n", string(b))
}

// TestFlappingBoxIsBounded: a box that becomes healthy and dies soon after,
// again and again, is recovered a bounded number of times, then stays
// failed with box.gave_up.
func TestFlappingBoxIsBounded(t *testing.T) {
	t.Parallel()
	rt := fastRuntime()
	rt.MaxProvisionRetries = 2
	rt.StableAfter = time.Hour
	e := testenv.New(t, testenv.Options{Runtime: rt})
	ctx := context.Background()
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "flapper", Spec: plainSpec})
	require.NoError(t, err)
	for gen := int64(1); gen <= 3; gen++ {
		var h provision.Handle
		e.Eventually(5*time.Second, func() bool {
			x, err := e.Admin.GetWorkspace(ctx, w.ID)
			var ok bool
			h, ok = e.Fake.Running(w.ID)
			return err == nil && ok && x.Status == "running" && x.Generation == gen && h.Generation == gen
		}, "generation %d healthy", gen)
		require.NoError(t, e.Fake.Exit(h, 4))
	}
	e.Eventually(5*time.Second, func() bool {
		page, err := e.Admin.ListAudit(ctx, w.ID, 100, 0)
		if err != nil {
			return false
		}
		for _, a := range page.Entries {
			if a.Action == "box.gave_up" {
				return true
			}
		}
		return false
	}, "gave up")
	time.Sleep(300 * time.Millisecond)
	x, err := e.Admin.GetWorkspace(ctx, w.ID)
	require.NoError(t, err)
	require.Equal(t, "failed", x.Status)
	require.EqualValues(t, 3, x.Generation, "no fourth box")
}
