package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/store"
)

// testRetention: finished jobs and finished changes older than the cutoff
// go, oldest first, in batches of about the limit; open ones and newer
// ones stay, and a change goes with all of its parts.
func testRetention(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	cutoff := t0.Add(24 * time.Hour)
	finished := func(state string, at time.Time) store.RestartJob {
		w := f.ws(p, "w-"+state+fmt.Sprint(at.Unix()))
		return newJob(w, state, func(j *store.RestartJob) { j.FinishedAt, j.UpdatedAt = at, at })
	}
	old := []store.RestartJob{
		finished(store.JobSucceeded, t0), finished(store.JobFailed, t0.Add(time.Minute)),
		finished(store.JobSkipped, t0.Add(2*time.Minute)), finished(store.JobSuperseded, t0.Add(3*time.Minute)),
	}
	// Open jobs stay whatever their age, and so do jobs that ended later.
	pending := newJob(f.ws(p, "pending"), store.JobPending, func(j *store.RestartJob) { j.CreatedAt = t0.Add(-time.Hour) })
	running := newJob(f.ws(p, "running"), store.JobRunning, func(j *store.RestartJob) {
		j.LeaseOwner, j.LeaseUntil, j.StartedAt = "r1", t0.Add(time.Hour), t0
	})
	recent := finished(store.JobSucceeded, cutoff.Add(time.Second))
	f.jobs(append(old, pending, running, recent)...)

	n, err := f.s.PruneJobs(f.ctx, cutoff, 3)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	_, err = f.s.GetJob(f.ctx, o.ID, old[0].ID)
	require.ErrorIs(t, err, store.ErrNotFound, "the oldest goes first")
	_, err = f.s.GetJob(f.ctx, o.ID, old[3].ID)
	require.NoError(t, err, "the newest of the old is left for the next batch")
	n, err = f.s.PruneJobs(f.ctx, cutoff, 3)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = f.s.PruneJobs(f.ctx, cutoff, 3)
	require.NoError(t, err)
	require.Zero(t, n, "nothing left to prune: idempotent")
	for _, j := range []store.RestartJob{pending, running, recent} {
		_, err := f.s.GetJob(f.ctx, o.ID, j.ID)
		require.NoError(t, err, "%s stays", j.State)
	}

	// Changes: one small and one of three parts that ended long ago, one
	// whose restarts are still open, one that ended after the cutoff.
	decisions := func(n int) []store.ChangeDecision {
		ds := make([]store.ChangeDecision, n)
		for i := range ds {
			ds[i] = store.ChangeDecision{WorkspaceID: fmt.Sprintf("w%05d", i), Reason: "overridden"}
		}
		return ds
	}
	change := func(id string, total, restarts int, finishedAt time.Time) {
		require.NoError(t, f.s.InsertChange(f.ctx, store.Change{ID: id, OrgID: o.ID, Key: "K", Op: "set", CreatedAt: t0,
			Total: total, Restarts: restarts, Counts: map[string]int{"overridden": total}, FinishedAt: finishedAt},
			decisions(total)))
	}
	change("c-small", 1, 0, t0)
	change("c-big", 1300, 0, t0.Add(time.Second))
	change("c-open", 10, 2, time.Time{})
	change("c-new", 10, 0, cutoff.Add(time.Second))
	parts := func(id string) int {
		var n int
		require.NoError(t, f.raw().QueryRowContext(f.ctx, `SELECT COUNT(*) FROM change_parts WHERE change_id = $1`, id).Scan(&n))
		return n
	}
	require.Equal(t, 3, parts("c-big"))

	prune := func(limit int) int {
		var n int
		require.NoError(t, f.s.InTx(f.ctx, func(tx store.Store) error {
			var err error
			n, err = tx.PruneChanges(f.ctx, cutoff, limit)
			return err
		}))
		return n
	}
	require.Equal(t, 2, prune(2), "the oldest change and its one part; the next would pass the limit")
	_, err = f.s.GetChange(f.ctx, o.ID, "c-small")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Zero(t, parts("c-small"))
	require.Equal(t, 4, prune(2), "a change larger than the limit goes alone, whole")
	_, err = f.s.ListChangeDecisions(f.ctx, o.ID, "c-big", "", 10)
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Zero(t, parts("c-big"))
	require.Zero(t, prune(500))
	for _, id := range []string{"c-open", "c-new"} {
		_, err := f.s.GetChange(f.ctx, o.ID, id)
		require.NoError(t, err, "%s stays", id)
		require.Equal(t, 1, parts(id))
	}
}
