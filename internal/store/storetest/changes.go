package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/store"
)

func testChanges(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	// 1,300 decisions: three parts, given out of order.
	var ds []store.ChangeDecision
	for i := 1299; i >= 0; i-- {
		reason := "restart_queued"
		if i%3 == 0 {
			reason = "overridden"
		}
		ds = append(ds, store.ChangeDecision{WorkspaceID: fmt.Sprintf("w%05d", i), Reason: reason})
	}
	c := store.Change{ID: "c1", OrgID: o.ID, Key: "K", Op: "set", CallerWorkspaceID: p.ID, RequestedBy: "t1",
		CreatedAt: us(t0), Total: len(ds), Restarts: 866, Counts: map[string]int{"restart_queued": 866, "overridden": 434}}
	require.NoError(t, f.s.InsertChange(f.ctx, c, ds))
	got, err := f.s.GetChange(f.ctx, o.ID, "c1")
	require.NoError(t, err)
	require.Equal(t, c, got)
	_, err = f.s.GetChange(f.ctx, "o-other", "c1")
	require.ErrorIs(t, err, store.ErrNotFound, "another org's change")

	// Paged by workspace id: every decision once, in order.
	var all []store.ChangeDecision
	after := ""
	for {
		page, err := f.s.ListChangeDecisions(f.ctx, o.ID, "c1", after, 500)
		require.NoError(t, err)
		all = append(all, page...)
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].WorkspaceID
	}
	require.Len(t, all, 1300)
	for i, d := range all {
		require.Equal(t, fmt.Sprintf("w%05d", i), d.WorkspaceID)
	}
	require.Equal(t, "overridden", all[3].Reason)
	require.Equal(t, "restart_queued", all[4].Reason)
	page, err := f.s.ListChangeDecisions(f.ctx, o.ID, "c1", "w01298", 10)
	require.NoError(t, err)
	require.Equal(t, []store.ChangeDecision{{WorkspaceID: "w01299", Reason: "overridden"}}, page)
	_, err = f.s.ListChangeDecisions(f.ctx, "o-other", "c1", "", 10)
	require.ErrorIs(t, err, store.ErrNotFound)

	// One workspace's decisions across changes, newest first: a global
	// change names it, another workspace's change does not, and changes
	// from before since are not read.
	require.NoError(t, f.s.InsertChange(f.ctx, store.Change{ID: "c2", OrgID: o.ID, WorkspaceID: "w00007", Key: "K", Op: "delete",
		CreatedAt: t0.Add(time.Minute), Total: 1, Counts: map[string]int{"self_write": 1}},
		[]store.ChangeDecision{{WorkspaceID: "w00007", Reason: "self_write"}}))
	require.NoError(t, f.s.InsertChange(f.ctx, store.Change{ID: "c3", OrgID: o.ID, WorkspaceID: "w00008", Key: "K", Op: "set",
		CreatedAt: t0.Add(2 * time.Minute), Total: 1, Counts: map[string]int{"restart_queued": 1}},
		[]store.ChangeDecision{{WorkspaceID: "w00008", Reason: "restart_queued"}}))
	wd, err := f.s.ListWorkspaceDecisions(f.ctx, o.ID, "w00007", t0.Add(-time.Hour), 10)
	require.NoError(t, err)
	require.Len(t, wd, 2)
	require.Equal(t, "c2", wd[0].Change.ID)
	require.Equal(t, "self_write", wd[0].Reason)
	require.Equal(t, "c1", wd[1].Change.ID)
	require.Equal(t, "restart_queued", wd[1].Reason)
	wd, err = f.s.ListWorkspaceDecisions(f.ctx, o.ID, "w00007", t0.Add(time.Second), 10)
	require.NoError(t, err)
	require.Len(t, wd, 1, "since leaves the older change out")
	wd, err = f.s.ListWorkspaceDecisions(f.ctx, o.ID, "w00007", t0.Add(-time.Hour), 1)
	require.NoError(t, err)
	require.Len(t, wd, 1, "limit")
	wd, err = f.s.ListWorkspaceDecisions(f.ctx, o.ID, "w99999", t0.Add(-time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, wd, "named by no change")
	// A prefix of another id is not that id.
	wd, err = f.s.ListWorkspaceDecisions(f.ctx, o.ID, "w0000", t0.Add(-time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, wd)

	// Progress: the last outcome finishes the change.
	small := store.Change{ID: "c4", OrgID: o.ID, Key: "K", Op: "set", CreatedAt: t0, Total: 3, Restarts: 3,
		Counts: map[string]int{"restart_queued": 3}}
	require.NoError(t, f.s.InsertChange(f.ctx, small, []store.ChangeDecision{
		{WorkspaceID: "w1", Reason: "restart_queued"}, {WorkspaceID: "w2", Reason: "restart_queued"}, {WorkspaceID: "w3", Reason: "restart_queued"}}))
	require.NoError(t, f.s.RecordChangeOutcome(f.ctx, o.ID, "c4", store.JobSucceeded, t0.Add(time.Second)))
	require.NoError(t, f.s.RecordChangeOutcome(f.ctx, o.ID, "c4", store.JobFailed, t0.Add(2*time.Second)))
	got, err = f.s.GetChange(f.ctx, o.ID, "c4")
	require.NoError(t, err)
	require.Equal(t, []int{1, 1, 0}, []int{got.Succeeded, got.Failed, got.Cancelled})
	require.True(t, got.FinishedAt.IsZero(), "one restart still open")
	require.NoError(t, f.s.RecordChangeOutcome(f.ctx, o.ID, "c4", store.JobSuperseded, t0.Add(3*time.Second)))
	got, err = f.s.GetChange(f.ctx, o.ID, "c4")
	require.NoError(t, err)
	require.Equal(t, 1, got.Cancelled)
	require.Equal(t, us(t0.Add(3*time.Second)), got.FinishedAt)
	require.NoError(t, f.s.RecordChangeOutcome(f.ctx, o.ID, "c-from-an-older-version", store.JobSucceeded, t0),
		"a job without a change record counts nowhere")
}

func testMarkMerged(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	js := f.pendingJobs(p, 3, t0)
	require.NoError(t, f.s.MarkMerged(f.ctx, []string{js[0].ID, js[2].ID, "j-missing"}))
	require.NoError(t, f.s.MarkMerged(f.ctx, nil))
	for i, want := range []bool{true, false, true} {
		got, err := f.s.GetJob(f.ctx, js[i].OrgID, js[i].ID)
		require.NoError(t, err)
		require.Equal(t, want, got.Merged, js[i].ID)
	}
}

// testClaimBoundedByOpenWork: the claim steps over a pending job whose
// workspace is restarting, takes an expired lease before pending work, and
// an org at its cap does not keep another org's work waiting — whatever
// the history holds.
func testClaimBoundedByOpenWork(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	_, q := f.org("other")
	// A long history: finished jobs never slow or change a claim.
	var hist []store.RestartJob
	for i := range 300 {
		w := f.ws(p, fmt.Sprintf("h%03d", i))
		hist = append(hist, newJob(w, store.JobSucceeded))
	}
	f.jobs(hist...)
	busy := f.ws(p, "busy")
	running := newJob(busy, store.JobRunning, func(j *store.RestartJob) { j.LeaseOwner, j.LeaseUntil = "r0", t0.Add(time.Hour) })
	queuedBehind := newJob(busy, store.JobPending, func(j *store.RestartJob) { j.RunAfter = t0.Add(-time.Hour) })
	f.jobs(running, queuedBehind)
	ps := f.pendingJobs(p, 2, t0)
	qs := f.pendingJobs(q, 1, t0.Add(time.Second))
	now := t0.Add(time.Minute)
	lim := store.ClaimLimits{MaxRunningPerOrg: 2}
	lease := t0.Add(3 * time.Hour)
	a, err := f.s.ClaimJob(f.ctx, "r1", now, lease, lim)
	require.NoError(t, err)
	require.Equal(t, ps[0].ID, a.ID, "the job behind a running restart of its workspace is stepped over")
	// acme is at its cap (busy + a): other's job is next.
	b, err := f.s.ClaimJob(f.ctx, "r1", now, lease, lim)
	require.NoError(t, err)
	require.Equal(t, qs[0].ID, b.ID)
	_, err = f.s.ClaimJob(f.ctx, "r1", now, lease, lim)
	require.ErrorIs(t, err, store.ErrNotFound, "acme at its cap, other empty")
	// busy's lease lapses: taken over first, before acme's pending job.
	later := t0.Add(2 * time.Hour)
	c, err := f.s.ClaimJob(f.ctx, "r2", later, later.Add(time.Minute), store.ClaimLimits{MaxRunningPerOrg: 3})
	require.NoError(t, err)
	require.Equal(t, running.ID, c.ID, "an expired lease first")
	require.Equal(t, "r2", c.LeaseOwner)
}

// testListJobsBefore walks a workspace's and an org's jobs newest first in
// pages: pending and finished ones merged, each once, in order.
func testListJobsBefore(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	a := f.ws(p, "a")
	b := f.ws(p, "b")
	var js []store.RestartJob
	for i := range 25 {
		w := a
		if i%2 == 1 {
			w = b
		}
		state := store.JobSucceeded
		if i == 7 || i == 20 {
			state = store.JobPending
		}
		at := t0.Add(time.Duration(i/3) * time.Second) // ties broken by id
		js = append(js, newJob(w, state, func(j *store.RestartJob) { j.CreatedAt = at }))
	}
	// One pending job per workspace: 7 is b's, 20 is a's.
	f.jobs(js...)
	walk := func(ws string) []string {
		var out []string
		var cur store.JobCursor
		for {
			page, err := f.s.ListJobsBefore(f.ctx, p.OrgID, ws, cur, 4)
			require.NoError(t, err)
			for _, j := range page {
				out = append(out, j.ID)
			}
			if len(page) < 4 {
				return out
			}
			last := page[len(page)-1]
			cur = store.JobCursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
	}
	want := func(ws string) []string {
		all, err := f.s.ListJobs(f.ctx, p.OrgID, ws, 1000)
		require.NoError(t, err)
		var ids []string
		for i, j := range all {
			ids = append(ids, j.ID)
			if i > 0 {
				prev := all[i-1]
				require.True(t, prev.CreatedAt.After(j.CreatedAt) || prev.CreatedAt.Equal(j.CreatedAt) && prev.ID > j.ID, "newest first")
			}
		}
		return ids
	}
	org := walk("")
	require.Len(t, org, 25)
	require.Equal(t, want(""), org)
	require.Len(t, walk(a.ID), 13)
	require.Equal(t, want(a.ID), walk(a.ID))
	require.Equal(t, want(b.ID), walk(b.ID))
}
