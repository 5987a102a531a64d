package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/store"
)

// TestPostgresNotifications: what one connection writes reaches a listener
// on another, from the writing transaction and only once it commits: a
// pending job, a workspace's status or generation (not a heartbeat alone),
// and Notify's own payloads.
func TestPostgresNotifications(t *testing.T) {
	s := open(t, pgURL(t))
	ctx, cancel := context.WithCancel(context.Background())
	n, ok := store.NotifierOf(s)
	require.True(t, ok)
	got := make(chan store.Notification, 64)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- n.Listen(ctx, func() { close(ready) }, func(x store.Notification) { got <- x }) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	<-ready
	next := func() store.Notification {
		t.Helper()
		select {
		case x := <-got:
			return x
		case <-time.After(10 * time.Second):
			t.Fatal("no notification")
			return store.Notification{}
		}
	}
	o, p := benchOrg(t, s)
	now := time.Now()

	// Rolled back: nothing. Committed: the marker after it comes alone.
	require.Error(t, s.InTx(ctx, func(tx store.Store) error {
		require.NoError(t, tx.(store.Notifier).Notify(ctx, store.ChannelEvents, "rolled back"))
		return store.ErrConflict
	}))
	p.HeartbeatAt = now
	require.NoError(t, s.UpdateWorkspace(ctx, p))
	require.NoError(t, n.Notify(ctx, store.ChannelEvents, "marker"))
	require.Equal(t, store.Notification{Channel: store.ChannelEvents, Payload: "marker"}, next(),
		"neither the rolled-back notification nor a heartbeat alone is sent")

	p.Status = "degraded"
	require.NoError(t, s.UpdateWorkspace(ctx, p))
	require.Equal(t, store.Notification{Channel: store.ChannelWorkspaces, Payload: p.ID}, next())
	p.Generation++
	require.NoError(t, s.UpdateWorkspace(ctx, p))
	require.Equal(t, store.Notification{Channel: store.ChannelWorkspaces, Payload: p.ID}, next())

	// Many pending jobs in one transaction: one notification.
	var jobs []store.RestartJob
	for i, w := range []store.Workspace{benchWorkspace(p, 1), benchWorkspace(p, 2)} {
		require.NoError(t, s.InsertWorkspace(ctx, w))
		jobs = append(jobs, store.RestartJob{ID: "j" + w.ID, OrgID: o.ID, WorkspaceID: w.ID, State: store.JobPending,
			Reason: "restart_queued", MaxAttempts: 1, RunAfter: now, CreatedAt: now.Add(time.Duration(i)), UpdatedAt: now})
	}
	require.NoError(t, s.InTx(ctx, func(tx store.Store) error { return tx.InsertJobs(ctx, jobs) }))
	require.Equal(t, store.Notification{Channel: store.ChannelJobs}, next())
	require.NoError(t, n.Notify(ctx, store.ChannelEvents, "marker"))
	require.Equal(t, "marker", next().Payload, "one notification for the transaction's jobs")

	require.Error(t, n.Notify(ctx, store.ChannelEvents, string(make([]byte, store.MaxNotifyPayload+1))))
}
