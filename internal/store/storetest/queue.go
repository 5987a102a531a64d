package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/store"
)

// testRestartQueue: a change's restarts wait in its queue, without jobs,
// until a claim takes them in order (due first first); a job is made then:
// running when the workspace is free, pending when it is restarting, and
// superseded (merged) when it has a pending job. The queue counts as
// pending, shows which workspaces are queued, and goes with its change.
func testRestartQueue(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	var ws []store.Workspace
	for i := range 5 {
		ws = append(ws, f.ws(p, fmt.Sprintf("q%d", i)))
	}
	busy, held := ws[3], ws[4]
	f.jobs(newJob(busy, store.JobRunning, func(j *store.RestartJob) { j.LeaseOwner, j.LeaseUntil = "r0", t0.Add(time.Hour) }))
	pend := newJob(held, store.JobPending, func(j *store.RestartJob) { j.RunAfter = t0.Add(time.Hour) })
	f.jobs(pend)
	c := store.Change{ID: "c1", OrgID: o.ID, Key: "K", Op: "set", CallerWorkspaceID: p.ID, RequestedBy: "t1",
		CreatedAt: us(t0), Total: 5, Restarts: 5, Counts: map[string]int{"restart_queued": 5}}
	require.NoError(t, f.s.InsertChange(f.ctx, c, nil))
	ids := func(ws ...store.Workspace) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.ID)
		}
		return out
	}
	// Two batches: the later-due one holds the busy and held workspaces.
	require.NoError(t, f.s.InsertRestartQueue(f.ctx, o.ID, c.ID, []store.QueuedBatch{
		{RunAfter: t0.Add(2 * time.Second), IDs: ids(busy, held)},
		{RunAfter: t0.Add(time.Second), IDs: ids(ws[0], ws[1], ws[2])},
	}))
	require.Error(t, f.s.InsertRestartQueue(f.ctx, o.ID, "c-empty", []store.QueuedBatch{{RunAfter: t0}}), "an empty batch")

	queued, err := f.s.QueuedRestarts(f.ctx, o.ID)
	require.NoError(t, err)
	require.Len(t, queued, 5)
	require.Equal(t, "c1", queued[ws[2].ID])
	counts, err := f.s.CountJobsByState(f.ctx)
	require.NoError(t, err)
	require.Equal(t, 5+1, counts[store.JobPending], "the queued restarts and the pending job")
	of, err := f.s.QueuedChangesOf(f.ctx, o.ID, ws[1].ID)
	require.NoError(t, err)
	require.Equal(t, []string{"c1"}, of)

	lim := store.ClaimLimits{MaxRunning: 10, MaxRunningPerOrg: 10, QueuedReason: "restart_queued", MaxAttempts: 3}
	_, err = f.s.ClaimJob(f.ctx, "r1", t0, t0.Add(time.Minute), lim)
	require.ErrorIs(t, err, store.ErrNotFound, "nothing due yet")
	_, err = f.s.ClaimJob(f.ctx, "r1", t0.Add(time.Hour), t0.Add(2*time.Hour), store.ClaimLimits{MaxRunning: 10, SkipQueued: true,
		QueuedReason: "restart_queued"})
	require.NoError(t, err, "the pending job, due now")
	// That job is running now: put it back, pending, for the merge below.
	got, err := f.s.GetJob(f.ctx, o.ID, pend.ID)
	require.NoError(t, err)
	got.State, got.LeaseOwner, got.LeaseUntil, got.RunAfter = store.JobPending, "", time.Time{}, t0.Add(time.Hour)
	require.NoError(t, f.s.UpdateJob(f.ctx, got))
	_, err = f.s.ClaimJob(f.ctx, "r1", t0.Add(time.Minute), t0.Add(time.Hour), store.ClaimLimits{SkipQueued: true})
	require.ErrorIs(t, err, store.ErrNotFound, "the queue is held")

	now := us(t0.Add(time.Minute))
	var taken []store.RestartJob
	for range 3 {
		j, err := f.s.ClaimJob(f.ctx, "r1", now, us(now.Add(time.Minute)), lim)
		require.NoError(t, err)
		taken = append(taken, j)
	}
	for i, j := range taken {
		require.Equal(t, ws[i].ID, j.WorkspaceID, "the batch due first, in order")
		require.Equal(t, store.JobRunning, j.State)
		require.Equal(t, "restart_queued", j.Reason)
		require.True(t, j.Automatic)
		require.Equal(t, "c1", j.ChangeID)
		require.Equal(t, p.ID, j.CallerWorkspaceID)
		require.Equal(t, "t1", j.RequestedBy)
		require.Equal(t, 3, j.MaxAttempts)
		require.Equal(t, 1, j.Attempts)
		require.Equal(t, us(t0), j.CreatedAt, "the change's time")
		require.Equal(t, "r1", j.LeaseOwner)
		stored, err := f.s.GetJob(f.ctx, o.ID, j.ID)
		require.NoError(t, err)
		require.Equal(t, j, stored)
	}
	// The next batch: busy is restarting (its job waits, pending), held has
	// a pending job (merged into it): neither runs, and nothing else is due.
	_, err = f.s.ClaimJob(f.ctx, "r1", now, now.Add(time.Minute), lim)
	require.ErrorIs(t, err, store.ErrNotFound)
	queued, err = f.s.QueuedRestarts(f.ctx, o.ID)
	require.NoError(t, err)
	require.Empty(t, queued, "all taken")
	open, err := f.s.ListOpenJobs(f.ctx, o.ID, busy.ID)
	require.NoError(t, err)
	require.Len(t, open, 2)
	var behind store.RestartJob
	for _, j := range open {
		if j.State == store.JobPending {
			behind = j
		}
	}
	require.Equal(t, "c1", behind.ChangeID, "pending behind the running restart")
	hist, err := f.s.ListJobs(f.ctx, o.ID, held.ID, 10)
	require.NoError(t, err)
	var merged store.RestartJob
	for _, j := range hist {
		if j.ChangeID == "c1" {
			merged = j
		}
	}
	require.Equal(t, store.JobSuperseded, merged.State)
	require.Equal(t, "merged into pending job "+pend.ID, merged.Note)
	got, err = f.s.GetJob(f.ctx, o.ID, pend.ID)
	require.NoError(t, err)
	require.True(t, got.Merged)
	ch, err := f.s.GetChange(f.ctx, o.ID, "c1")
	require.NoError(t, err)
	require.Equal(t, 1, ch.Cancelled, "the merged one ended for its change")
	counts, err = f.s.CountJobsByState(f.ctx)
	require.NoError(t, err)
	require.Equal(t, 2, counts[store.JobPending], "the two pending jobs, nothing queued")
	of, err = f.s.QueuedChangesOf(f.ctx, o.ID, ws[1].ID)
	require.NoError(t, err)
	require.Empty(t, of)
}

// testQueueHeldByPlan: a plan that read the queue (to coalesce into it)
// holds the org's claims until it commits, so a claim sees what the plan
// wrote; it never takes a queued restart as it was before.
func testQueueHeldByPlan(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	w := f.ws(p, "w")
	require.NoError(t, f.s.InsertChange(f.ctx, store.Change{ID: "c1", OrgID: o.ID, Key: "K", Op: "set", CreatedAt: us(t0),
		Total: 1, Restarts: 1, Counts: map[string]int{"restart_queued": 1}}, nil))
	require.NoError(t, f.s.InsertRestartQueue(f.ctx, o.ID, "c1", []store.QueuedBatch{{RunAfter: t0, IDs: []string{w.ID}}}))
	lim := store.ClaimLimits{QueuedReason: "restart_queued", MaxAttempts: 1}
	claimed := make(chan error, 1)
	var got store.RestartJob
	err := f.s.InTx(f.ctx, func(tx store.Store) error {
		q, err := tx.QueuedRestarts(f.ctx, o.ID)
		if err != nil {
			return err
		}
		require.Equal(t, map[string]string{w.ID: "c1"}, q)
		go func() {
			var err error
			got, err = f.s.ClaimJob(f.ctx, "r1", t0, t0.Add(time.Minute), lim)
			claimed <- err
		}()
		// What the plan writes: here, a pending job of the workspace.
		return tx.InsertJobs(f.ctx, []store.RestartJob{newJob(w, store.JobPending, func(j *store.RestartJob) {
			j.RunAfter = t0.Add(time.Hour)
		})})
	})
	require.NoError(t, err)
	require.ErrorIs(t, <-claimed, store.ErrNotFound, "the claim waited, then merged the queued restart: nothing runs")
	require.Empty(t, got.ID)
	jobs, err := f.s.ListJobs(f.ctx, o.ID, w.ID, 10)
	require.NoError(t, err)
	var merged int
	for _, j := range jobs {
		if j.ChangeID == "c1" && j.State == store.JobSuperseded {
			merged++
		}
	}
	require.Equal(t, 1, merged)
}

// testDelayQueuedRestarts: a burst's restart not due yet waits a window
// from the latest change, within a bound of its own change's time; one
// already due, or without the workspaces named, is left alone.
func testDelayQueuedRestarts(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	a, b, c := f.ws(p, "a"), f.ws(p, "b"), f.ws(p, "c")
	require.NoError(t, f.s.InsertChange(f.ctx, store.Change{ID: "c1", OrgID: o.ID, Key: "K", Op: "set", CreatedAt: us(t0),
		Total: 3, Restarts: 3, Counts: map[string]int{"restart_queued": 3}}, nil))
	require.NoError(t, f.s.InsertRestartQueue(f.ctx, o.ID, "c1", []store.QueuedBatch{
		{RunAfter: t0.Add(2 * time.Second), IDs: []string{a.ID}},
		{RunAfter: t0.Add(2 * time.Second), IDs: []string{b.ID}},
		{RunAfter: t0.Add(-time.Second), IDs: []string{c.ID}}, // due already
	}))
	window, bound := 2*time.Second, 5*time.Second
	require.NoError(t, f.s.DelayQueuedRestarts(f.ctx, "c1", []string{a.ID, c.ID}, t0.Add(time.Second), window, bound))
	lim := store.ClaimLimits{QueuedReason: "restart_queued", MaxAttempts: 1}
	claimAt := func(at time.Time) string {
		t.Helper()
		j, err := f.s.ClaimJob(f.ctx, "r1", at, at.Add(time.Minute), lim)
		if errors.Is(err, store.ErrNotFound) {
			return ""
		}
		require.NoError(t, err)
		return j.WorkspaceID
	}
	require.Equal(t, c.ID, claimAt(t0), "already due: left alone")
	require.Equal(t, "", claimAt(t0.Add(time.Second)))
	require.Equal(t, b.ID, claimAt(t0.Add(2*time.Second)), "not named: left alone")
	require.Equal(t, "", claimAt(t0.Add(2*time.Second+time.Millisecond)), "a waits a window from the latest change")
	// The burst goes on: a is pushed again, but not past the bound.
	require.NoError(t, f.s.DelayQueuedRestarts(f.ctx, "c1", []string{a.ID}, t0.Add(2500*time.Millisecond), window, bound))
	require.NoError(t, f.s.DelayQueuedRestarts(f.ctx, "c1", []string{a.ID}, t0.Add(4*time.Second), window, bound))
	require.Equal(t, "", claimAt(t0.Add(5*time.Second-time.Millisecond)))
	require.Equal(t, a.ID, claimAt(t0.Add(5*time.Second)), "due at the change's time plus the bound")
}
