package core_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/testenv"
)

// runningWorkspaces creates n running workspaces of plain boxes.
func runningWorkspaces(t *testing.T, e *testenv.Env, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for i := range n {
		w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "w" + string(rune('a'+i)), Spec: plainSpec})
		require.NoError(t, err)
		ids = append(ids, w.ID)
	}
	for _, id := range ids {
		e.Eventually(20*time.Second, func() bool {
			x, err := e.Admin.GetWorkspace(ctx, id)
			return err == nil && x.Status == "running"
		}, "%s running", id)
	}
	return ids
}

// eventsUntil collects the org's events until one satisfies last.
func eventsUntil(t *testing.T, ch <-chan core.Event, last func(core.Event) bool) []core.Event {
	t.Helper()
	var got []core.Event
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-ch:
			got = append(got, ev)
			if last(ev) {
				return got
			}
		case <-timeout:
			t.Fatalf("no final event; got %+v", got)
		}
	}
}

func TestRestartEventsNameTheirChangeAndItsEnd(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime()})
	ws := runningWorkspaces(t, e, 2)
	ch, stop := e.Service.Events().Subscribe(e.Org.Org.ID)
	defer stop()

	res, err := e.Admin.SetSecret(context.Background(), "", "API_KEY", "v1", false)
	require.NoError(t, err)
	require.NotEmpty(t, res.ChangeID)
	evs := eventsUntil(t, ch, func(ev core.Event) bool { return ev.Type == core.EventChangeFinished })
	fin := evs[len(evs)-1]
	require.Equal(t, res.ChangeID, fin.TargetID)
	require.Equal(t, res.ChangeID, fin.ChangeID)
	require.Equal(t, core.ChangeSucceeded, fin.Status)
	require.Empty(t, fin.WorkspaceID, "a global change")
	seen := map[string]map[string]bool{} // type -> workspaces
	for _, ev := range evs {
		if ev.Type == "restart.running" || ev.Type == "restart.succeeded" {
			require.Equal(t, res.ChangeID, ev.ChangeID, "%+v", ev)
			if seen[ev.Type] == nil {
				seen[ev.Type] = map[string]bool{}
			}
			seen[ev.Type][ev.WorkspaceID] = true
		}
	}
	for _, id := range ws {
		require.True(t, seen["restart.running"][id], "restart.running of %s", id)
		require.True(t, seen["restart.succeeded"][id], "restart.succeeded of %s", id)
	}
	// The change reads finished as soon as the event is out.
	c, err := e.Admin.GetChange(context.Background(), res.ChangeID)
	require.NoError(t, err)
	require.Equal(t, core.ChangeSucceeded, c.State)
	require.Equal(t, 2, c.Restarts.Succeeded)
}

func TestChangeFinishedFailedWhenARestartFails(t *testing.T) {
	t.Parallel()
	rt := fastRuntime()
	rt.MaxProvisionRetries = 1
	e := testenv.New(t, testenv.Options{Runtime: rt})
	ws := runningWorkspaces(t, e, 1)
	ch, stop := e.Service.Events().Subscribe(e.Org.Org.ID)
	defer stop()

	e.Fake.FailNextStart(errors.New("no capacity"))
	res, err := e.Admin.SetSecret(context.Background(), ws[0], "API_KEY", "v1", false)
	require.NoError(t, err)
	evs := eventsUntil(t, ch, func(ev core.Event) bool { return ev.Type == core.EventChangeFinished })
	fin := evs[len(evs)-1]
	require.Equal(t, core.ChangeFailed, fin.Status)
	require.Equal(t, ws[0], fin.WorkspaceID, "a workspace's change: its token sees the event")
	var failed bool
	for _, ev := range evs {
		failed = failed || (ev.Type == "restart.failed" && ev.ChangeID == res.ChangeID)
	}
	require.True(t, failed, "restart.failed names the change: %+v", evs)
}
