package core_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
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
