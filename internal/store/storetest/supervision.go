package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/store"
)

// testMaxOwnSecretBytes: the largest sum of one workspace's own secrets,
// computed by the database; globals and other orgs do not count.
func testMaxOwnSecretBytes(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	other, q := f.org("other")
	a, b := f.ws(p, "a"), f.ws(p, "b")
	k := f.dataKey(true)
	put := func(orgID, wsID, key string, ctLen int) {
		require.NoError(t, f.s.PutSecret(f.ctx, store.Secret{OrgID: orgID, WorkspaceID: wsID, Key: key, KeyID: k.ID,
			Ciphertext: make([]byte, ctLen), ValueMAC: "m", Version: 1, CreatedAt: t0, UpdatedAt: t0}))
	}
	n, err := f.s.MaxOwnSecretBytes(f.ctx, o.ID, 10, 28)
	require.NoError(t, err)
	require.Zero(t, n, "no secret")
	put(o.ID, "", "GLOBAL", 5000)   // not a workspace's own
	put(o.ID, a.ID, "AK", 128)      // 2 + 10 + 100
	put(o.ID, a.ID, "AK2", 10)      // 3 + 10 + 0 (shorter than the overhead)
	put(o.ID, b.ID, "BKEY", 100)    // 4 + 10 + 72
	put(other.ID, q.ID, "X", 10000) // another org's
	n, err = f.s.MaxOwnSecretBytes(f.ctx, o.ID, 10, 28)
	require.NoError(t, err)
	require.Equal(t, 2+10+100+3+10, n)
}

// testListUnsupervised: the active workspaces an owner holds no live
// lease on (none, lapsed, another's), with the lease; and the starts that
// never happened.
func testListUnsupervised(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	running := func(w *store.Workspace) { w.Status, w.Box = "running", `{"id":"box"}` }
	mine, lapsed, theirs, free := f.ws(p, "mine", running), f.ws(p, "lapsed", running), f.ws(p, "theirs", running), f.ws(p, "free", running)
	f.ws(p, "stopped", status("stopped"))
	f.ws(p, "no-box", status("running")) // nothing recorded to adopt
	claim := func(w store.Workspace, owner string, until time.Time) {
		ok, err := f.s.ClaimSupervision(f.ctx, w.ID, owner, 1, t0, until, true)
		require.NoError(t, err)
		require.True(t, ok)
	}
	claim(mine, "r1", t0.Add(time.Hour))
	claim(lapsed, "r1", t0.Add(-time.Minute))
	claim(theirs, "r2", t0.Add(time.Hour))
	got, err := f.s.ListUnsupervised(f.ctx, "r1", t0)
	require.NoError(t, err)
	byID := map[string]store.Supervision{}
	for _, b := range got {
		byID[b.Workspace.ID] = b.Lease
	}
	require.Equal(t, map[string]store.Supervision{
		lapsed.ID: {WorkspaceID: lapsed.ID, Owner: "r1", Generation: 1, Until: us(t0.Add(-time.Minute))},
		theirs.ID: {WorkspaceID: theirs.ID, Owner: "r2", Generation: 1, Until: us(t0.Add(time.Hour))},
		free.ID:   {},
	}, byID)

	stuck := f.ws(p, "stuck", func(w *store.Workspace) { w.Status, w.Box, w.UpdatedAt = "provisioning", "", t0.Add(-time.Hour) })
	f.ws(p, "starting", func(w *store.Workspace) { w.Status, w.Box, w.UpdatedAt = "provisioning", "", t0 })
	f.ws(p, "ext", func(w *store.Workspace) {
		w.Status, w.Box, w.Runtime, w.UpdatedAt = "provisioning", "", "external", t0.Add(-time.Hour)
	})
	list, err := f.s.ListStuckStarts(f.ctx, t0.Add(-time.Minute))
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, stuck.ID, list[0].ID)
}

// testSupervisionLiveness: a lease lives while its box row's until or its
// owner's liveness row does; one renewal keeps every lease of an owner,
// and a zero renewal hands them all over at once.
func testSupervisionLiveness(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	a, b := f.ws(p, "a"), f.ws(p, "b")
	claim := func(w store.Workspace, owner string, now time.Time) bool {
		t.Helper()
		ok, err := f.s.ClaimSupervision(f.ctx, w.ID, owner, 1, now, now.Add(time.Minute), false)
		require.NoError(t, err)
		return ok
	}
	require.True(t, claim(a, "r1", t0))
	require.True(t, claim(b, "r1", t0))
	require.NoError(t, f.s.RenewSupervision(f.ctx, "r1", t0.Add(time.Hour)))
	later := t0.Add(30 * time.Minute) // the boxes' own untils lapsed; r1's has not
	require.False(t, claim(a, "r2", later), "r1 is alive")
	got, err := f.s.ListSupervision(f.ctx)
	require.NoError(t, err)
	require.Equal(t, us(t0.Add(time.Hour)), got[b.ID].Until, "the later of the two")
	require.True(t, claim(a, "r2", t0.Add(2*time.Hour)), "r1's renewal lapsed too")
	require.NoError(t, f.s.RenewSupervision(f.ctx, "r1", time.Time{}))
	require.True(t, claim(b, "r2", t0), "handed over: free at once")
}
