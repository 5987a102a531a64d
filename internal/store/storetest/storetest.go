// Package storetest is the conformance suite of store.Store: one set of
// tests that every engine (SQLite, Postgres) must pass unchanged, so that the
// engines cannot drift apart and no fake store is ever needed.
//
// Use it from an engine's test:
//
//	func TestSQLite(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) (store.Store, string) {
//			u := "sqlite:" + filepath.Join(t.TempDir(), "orgplane.db")
//			s, err := store.Open(t.Context(), u)
//			require.NoError(t, err)
//			return s, u
//		})
//	}
package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/store"
)

// Opener opens a fresh, migrated, empty store for t and returns it with the
// URL it was opened from (what store.Open took). The suite reaches under the
// store through that URL only to prove what the schema itself enforces. Run
// closes the store when t ends; an opener may close it too.
type Opener func(t *testing.T) (store.Store, string)

// t0 carries nanoseconds on purpose: the store keeps microseconds.
var t0 = time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)

// Run runs the suite, one fresh store per subtest.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"Basics", testBasics},
		{"ProbeWrite", testProbeWrite},
		{"Orgs", testOrgs},
		{"Workspaces/RoundTrip", testWorkspaceRoundTrip},
		{"Workspaces/ScopedByOrg", testWorkspaceScopedByOrg},
		{"Workspaces/OnePlatformPerOrg", testOnePlatformPerOrg},
		{"Workspaces/SiblingNames", testSiblingNames},
		{"Workspaces/ParentReference", testParentReference},
		{"Workspaces/Checks", testWorkspaceChecks},
		{"Workspaces/List", testListWorkspaces},
		{"Workspaces/ListChildren", testListChildren},
		{"Workspaces/Update", testUpdateWorkspace},
		{"Workspaces/ForUpdateSerializes", testForUpdateSerializes},
		{"Workspaces/ListActive", testListActiveWorkspaces},
		{"Workspaces/States", testWorkspaceStates},
		{"Tokens", testTokens},
		{"Tokens/Checks", testTokenChecks},
		{"Tokens/RevokeBoxTokens", testRevokeBoxTokens},
		{"Audit", testAudit},
		{"Audit/AppendOnlyInSchema", testAuditAppendOnly},
		{"Meta", testMeta},
		{"DataKeys", testDataKeys},
		{"Secrets", testSecrets},
		{"Secrets/ByKeyIDPaging", testSecretsByKeyID},
		{"Secrets/Reencrypt", testReencryptSecret},
		{"Secrets/MACs", testSecretMACs},
		{"Jobs/RoundTrip", testJobRoundTrip},
		{"Jobs/InsertBatches", testInsertJobBatches},
		{"Jobs/OnePendingPerWorkspace", testOnePendingJob},
		{"Jobs/List", testListJobs},
		{"Jobs/Claim", testClaimJob},
		{"Jobs/ClaimMaxRunning", testClaimMaxRunning},
		{"Jobs/ClaimMaxRunningPerOrg", testClaimMaxRunningPerOrg},
		{"Jobs/ClaimOneRunningPerWorkspace", testClaimOneRunningPerWorkspace},
		{"Jobs/ClaimLeaseTakeover", testClaimLeaseTakeover},
		{"Jobs/CountRecentAutoRestarts", testCountRecentAutoRestarts},
		{"Jobs/CountByState", testCountJobsByState},
		{"Jobs/PropagationFacts", testPropagationFacts},
		{"Jobs/ExpireLeases", testExpireLeases},
		{"Jobs/ReleaseLeases", testReleaseLeases},
		{"Jobs/ListOpen", testListOpenJobs},
		{"Jobs/ClaimBoundedByOpenWork", testClaimBoundedByOpenWork},
		{"Jobs/MarkMerged", testMarkMerged},
		{"Jobs/ListBefore", testListJobsBefore},
		{"Changes", testChanges},
		{"Changes/RestartQueue", testRestartQueue},
		{"Changes/QueueHeldByPlan", testQueueHeldByPlan},
		{"Changes/DelayQueuedRestarts", testDelayQueuedRestarts},
		{"Secrets/MaxOwnBytes", testMaxOwnSecretBytes},
		{"Retention", testRetention},
		{"InTx/LockOrgSerializes", testLockOrg},
		{"InTx/RetriesDeadlock", testInTxRetriesDeadlock},
		{"Jobs/GetForUpdateSerializes", testJobForUpdateSerializes},
		{"Jobs/MergeHoldsPendingAgainstClaim", testMergeHoldsPending},
		{"Workspaces/ListChildrenForUpdate", testListChildrenForUpdate},
		{"LockServer", testLockServer},
		{"Supervision", testSupervision},
		{"Supervision/ListUnsupervised", testListUnsupervised},
		{"Supervision/Liveness", testSupervisionLiveness},
		{"Users", testUsers},
		{"Policy", testPolicy},
		{"LoginLinks", testLoginLinks},
		{"LoginLinks/OneUseUnderRace", testLoginLinkRace},
		{"Sessions", testSessions},
		{"Workspaces/MaxSpecLength", testMaxSpecLength},
		{"InTx/Commit", testInTxCommit},
		{"InTx/Rollback", testInTxRollback},
		{"InTx/Nested", testInTxNested},
		{"InTx/Isolation", testInTxIsolation},
		{"InTx/PanicReleases", testInTxPanic},
		{"Context", testContext},
		{"Concurrent/ClaimDistinct", testConcurrentClaims},
		{"Concurrent/ClaimCap", testConcurrentClaimCap},
		{"Concurrent/SiblingName", testConcurrentSiblingName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newFixture(t, open))
		})
	}
}

// ---- fixture

type fixture struct {
	t   *testing.T
	s   store.Store
	url string
	ctx context.Context
}

func newFixture(t *testing.T, open Opener) *fixture {
	t.Helper()
	s, u := open(t)
	require.NotNil(t, s, "opener returned no store")
	t.Cleanup(func() { _ = s.Close() })
	return &fixture{t: t, s: s, url: u, ctx: t.Context()}
}

var seq atomic.Int64

// id makes ids that sort in creation order, which makes paging checkable.
func id(prefix string) string { return fmt.Sprintf("%s%08d", prefix, seq.Add(1)) }

func (f *fixture) org(name string) (store.Org, store.Workspace) {
	f.t.Helper()
	o := store.Org{ID: id("o"), Name: name, CreatedAt: t0}
	require.NoError(f.t, f.s.CreateOrg(f.ctx, o))
	p := store.Workspace{
		ID: id("w"), OrgID: o.ID, Name: "platform", Kind: store.KindPlatform, Runtime: "process",
		Spec: "{}", Status: "running", RestartPolicy: "auto", CreatedAt: t0, UpdatedAt: t0,
	}
	require.NoError(f.t, f.s.InsertWorkspace(f.ctx, p))
	return o, p
}

func newWorkspace(parent store.Workspace, name string, mods ...func(*store.Workspace)) store.Workspace {
	w := store.Workspace{
		ID: id("w"), OrgID: parent.OrgID, ParentID: parent.ID, Name: name, Kind: store.KindWorkspace,
		Runtime: "process", Spec: "{}", Status: "running", RestartPolicy: "auto", CreatedAt: t0, UpdatedAt: t0,
	}
	for _, m := range mods {
		m(&w)
	}
	return w
}

func (f *fixture) ws(parent store.Workspace, name string, mods ...func(*store.Workspace)) store.Workspace {
	f.t.Helper()
	w := newWorkspace(parent, name, mods...)
	require.NoError(f.t, f.s.InsertWorkspace(f.ctx, w))
	return w
}

func status(s string) func(*store.Workspace) { return func(w *store.Workspace) { w.Status = s } }

func (f *fixture) dataKey(current bool) store.DataKey {
	f.t.Helper()
	k := store.DataKey{ID: id("k"), Wrapped: []byte("wrapped-" + fmt.Sprint(seq.Load())), Current: current, CreatedAt: t0}
	require.NoError(f.t, f.s.InsertDataKey(f.ctx, k))
	return k
}

func newJob(w store.Workspace, state string, mods ...func(*store.RestartJob)) store.RestartJob {
	j := store.RestartJob{
		ID: id("j"), OrgID: w.OrgID, WorkspaceID: w.ID, Automatic: true, State: state, Reason: "restart_queued",
		MaxAttempts: 3, RunAfter: t0, CreatedAt: t0, UpdatedAt: t0,
	}
	for _, m := range mods {
		m(&j)
	}
	return j
}

func (f *fixture) jobs(js ...store.RestartJob) {
	f.t.Helper()
	require.NoError(f.t, f.s.InsertJobs(f.ctx, js))
}

// raw opens a second connection pool to the same database, beside the store.
func (f *fixture) raw() *sql.DB {
	f.t.Helper()
	var db *sql.DB
	var err error
	if path, ok := strings.CutPrefix(f.url, "sqlite:"); ok {
		db, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)")
	} else {
		db, err = sql.Open("pgx", f.url)
	}
	require.NoError(f.t, err)
	f.t.Cleanup(func() { _ = db.Close() })
	return db
}

func us(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Microsecond).UTC()
}

// The stored form of a value: what a read returns.
func storedWS(w store.Workspace) store.Workspace {
	w.HealthyAt, w.HeartbeatAt, w.CreatedAt, w.UpdatedAt = us(w.HealthyAt), us(w.HeartbeatAt), us(w.CreatedAt), us(w.UpdatedAt)
	return w
}

func storedJob(j store.RestartJob) store.RestartJob {
	j.RunAfter, j.LeaseUntil, j.CreatedAt, j.UpdatedAt = us(j.RunAfter), us(j.LeaseUntil), us(j.CreatedAt), us(j.UpdatedAt)
	j.StartedAt, j.FinishedAt = us(j.StartedAt), us(j.FinishedAt)
	return j
}

func storedToken(k store.Token) store.Token {
	k.CreatedAt, k.ExpiresAt, k.RevokedAt, k.LastUsedAt = us(k.CreatedAt), us(k.ExpiresAt), us(k.RevokedAt), us(k.LastUsedAt)
	return k
}

func storedSecret(x store.Secret) store.Secret {
	x.CreatedAt, x.UpdatedAt = us(x.CreatedAt), us(x.UpdatedAt)
	return x
}

func wsIDs(ws []store.Workspace) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.ID
	}
	return out
}

func jobIDs(js []store.RestartJob) []string {
	out := make([]string, len(js))
	for i, j := range js {
		out[i] = j.ID
	}
	return out
}

func sorted(ids ...string) []string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	return out
}

// ---- basics

func testBasics(t *testing.T, f *fixture) {
	require.Contains(t, []string{store.SQLite, store.Postgres}, f.s.Dialect())
	require.True(t, strings.HasPrefix(f.url, f.s.Dialect()), "dialect %q for url %q", f.s.Dialect(), f.url)
	require.NoError(t, f.s.Ping(f.ctx))
	orgs, err := f.s.ListOrgs(f.ctx)
	require.NoError(t, err)
	require.Empty(t, orgs, "a fresh store has no org")
	keys, err := f.s.ListDataKeys(f.ctx)
	require.NoError(t, err)
	require.Empty(t, keys)
	active, err := f.s.ListActiveWorkspaces(f.ctx)
	require.NoError(t, err)
	require.Empty(t, active)
	counts, err := f.s.CountJobsByState(f.ctx)
	require.NoError(t, err)
	require.Empty(t, counts)

	// Opening an already migrated store again migrates nothing and works.
	s2, err := store.Open(f.ctx, f.url)
	require.NoError(t, err)
	require.NoError(t, s2.Ping(f.ctx))
	require.NoError(t, s2.Close())
}

// ---- orgs

func testOrgs(t *testing.T, f *fixture) {
	b := store.Org{ID: id("o"), Name: "bravo", CreatedAt: t0}
	a := store.Org{ID: id("o"), Name: "alpha", CreatedAt: t0.Add(time.Second)}
	require.NoError(t, f.s.CreateOrg(f.ctx, b))
	require.NoError(t, f.s.CreateOrg(f.ctx, a))

	got, err := f.s.GetOrg(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, store.Org{ID: b.ID, Name: "bravo", CreatedAt: us(t0)}, got)
	got, err = f.s.GetOrgByName(f.ctx, "alpha")
	require.NoError(t, err)
	require.Equal(t, a.ID, got.ID)

	_, err = f.s.GetOrg(f.ctx, "o-missing")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = f.s.GetOrgByName(f.ctx, "charlie")
	require.ErrorIs(t, err, store.ErrNotFound)

	err = f.s.CreateOrg(f.ctx, store.Org{ID: id("o"), Name: "alpha", CreatedAt: t0})
	require.ErrorIs(t, err, store.ErrConflict, "duplicate name")
	err = f.s.CreateOrg(f.ctx, store.Org{ID: a.ID, Name: "delta", CreatedAt: t0})
	require.ErrorIs(t, err, store.ErrConflict, "duplicate id")

	list, err := f.s.ListOrgs(f.ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, []string{"alpha", "bravo"}, []string{list[0].Name, list[1].Name}, "ordered by name")
	require.Equal(t, us(a.CreatedAt), list[0].CreatedAt)
}

// ---- workspaces

func testWorkspaceRoundTrip(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	gotP, err := f.s.GetPlatformWorkspace(f.ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, p.ID, gotP.ID)
	require.Equal(t, store.KindPlatform, gotP.Kind)
	require.Empty(t, gotP.ParentID)

	w := newWorkspace(p, "research", func(w *store.Workspace) {
		w.Runtime, w.Spec, w.Status, w.RestartPolicy, w.Protected = "docker", `{"image":"x"}`, "degraded", "manual", true
		w.Generation, w.Box, w.BoxFingerprint = 7, `{"pid":42}`, "fp-7"
		w.HealthyAt, w.HeartbeatAt = t0.Add(time.Minute), t0.Add(2*time.Minute+999*time.Nanosecond)
		w.Failures, w.LastError, w.LoopBroken, w.BoxTokenID = 2, "exit 1", true, "t-box"
		w.CreatedAt, w.UpdatedAt = t0, t0.Add(time.Hour)
	})
	require.NoError(t, f.s.InsertWorkspace(f.ctx, w))
	got, err := f.s.GetWorkspace(f.ctx, o.ID, w.ID)
	require.NoError(t, err)
	require.Equal(t, storedWS(w), got)
	got, err = f.s.GetWorkspaceForUpdate(f.ctx, o.ID, w.ID)
	require.NoError(t, err)
	require.Equal(t, storedWS(w), got)
	require.NoError(t, f.s.InTx(f.ctx, func(tx store.Store) error {
		got, err := tx.GetWorkspaceForUpdate(f.ctx, o.ID, w.ID)
		require.NoError(t, err)
		require.Equal(t, storedWS(w), got)
		return nil
	}))

	_, err = f.s.GetWorkspace(f.ctx, o.ID, "w-missing")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, f.s.InsertWorkspace(f.ctx, w), store.ErrConflict, "duplicate id")

	empty := store.Org{ID: id("o"), Name: "no-platform-yet", CreatedAt: t0}
	require.NoError(t, f.s.CreateOrg(f.ctx, empty))
	_, err = f.s.GetPlatformWorkspace(f.ctx, empty.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testWorkspaceScopedByOrg(t *testing.T, f *fixture) {
	a, pa := f.org("a")
	b, pb := f.org("b")
	wa := f.ws(pa, "x")
	wb := f.ws(pb, "x")

	_, err := f.s.GetWorkspace(f.ctx, a.ID, wb.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "another org's workspace")
	_, err = f.s.GetWorkspaceForUpdate(f.ctx, a.ID, wb.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = f.s.GetWorkspace(f.ctx, b.ID, pa.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	got, err := f.s.GetWorkspace(f.ctx, b.ID, wb.ID)
	require.NoError(t, err)
	require.Equal(t, wb.ID, got.ID)

	p, err := f.s.GetPlatformWorkspace(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, pb.ID, p.ID)

	list, err := f.s.ListWorkspaces(f.ctx, a.ID, true, store.ListParams{})
	require.NoError(t, err)
	require.Equal(t, sorted(pa.ID, wa.ID), wsIDs(list))
	kids, err := f.s.ListChildren(f.ctx, a.ID, pb.ID)
	require.NoError(t, err)
	require.Empty(t, kids, "children of another org's workspace")

	// Writing through another org's id changes nothing.
	moved := wb
	moved.OrgID, moved.Name = a.ID, "stolen"
	require.ErrorIs(t, f.s.UpdateWorkspace(f.ctx, moved), store.ErrNotFound)
	got, err = f.s.GetWorkspace(f.ctx, b.ID, wb.ID)
	require.NoError(t, err)
	require.Equal(t, "x", got.Name)
}

func testOnePlatformPerOrg(t *testing.T, f *fixture) {
	o, _ := f.org("acme")
	second := store.Workspace{
		ID: id("w"), OrgID: o.ID, Name: "platform-2", Kind: store.KindPlatform, Runtime: "process",
		Spec: "{}", Status: "running", RestartPolicy: "auto", CreatedAt: t0, UpdatedAt: t0,
	}
	require.ErrorIs(t, f.s.InsertWorkspace(f.ctx, second), store.ErrConflict)
	// Even a removed platform keeps its place: the index is not partial on status.
	second.Status = "removed"
	require.ErrorIs(t, f.s.InsertWorkspace(f.ctx, second), store.ErrConflict)
	// Another org has its own.
	f.org("other")
}

func testSiblingNames(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	a := f.ws(p, "team")
	b := f.ws(p, "other")

	dup := newWorkspace(p, "team")
	require.ErrorIs(t, f.s.InsertWorkspace(f.ctx, dup), store.ErrConflict, "sibling with the same name")
	// The same name under another parent is fine.
	f.ws(a, "team")
	f.ws(b, "team")

	// Renaming onto a sibling's name is refused as well.
	rename := b
	rename.Name = "team"
	require.ErrorIs(t, f.s.UpdateWorkspace(f.ctx, rename), store.ErrConflict)

	// A removed sibling frees its name, and removed siblings may share one.
	removed := a
	removed.Status = "removed"
	require.NoError(t, f.s.UpdateWorkspace(f.ctx, removed))
	require.NoError(t, f.s.InsertWorkspace(f.ctx, dup))
	again := dup
	again.Status = "removed"
	require.NoError(t, f.s.UpdateWorkspace(f.ctx, again))
	f.ws(p, "team", status("removed"))
	f.ws(p, "team")
}

func testParentReference(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	orphan := newWorkspace(p, "orphan", func(w *store.Workspace) { w.ParentID = "w-missing" })
	require.ErrorIs(t, f.s.InsertWorkspace(f.ctx, orphan), store.ErrConflict, "parent must exist")

	noOrg := newWorkspace(p, "x", func(w *store.Workspace) { w.OrgID = "o-missing" })
	require.ErrorIs(t, f.s.InsertWorkspace(f.ctx, noOrg), store.ErrConflict, "org must exist")

	w := f.ws(p, "child")
	w.ParentID = "w-missing"
	require.ErrorIs(t, f.s.UpdateWorkspace(f.ctx, w), store.ErrConflict, "re-parenting to a missing parent")

	list, err := f.s.ListWorkspaces(f.ctx, o.ID, true, store.ListParams{})
	require.NoError(t, err)
	require.Len(t, list, 2, "refused writes leave nothing behind")
}

func testWorkspaceChecks(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	child := f.ws(p, "child")
	cases := map[string]func(*store.Workspace){
		"workspace without parent":  func(w *store.Workspace) { w.ParentID = "" },
		"platform with a parent":    func(w *store.Workspace) { w.Kind = store.KindPlatform },
		"unknown kind":              func(w *store.Workspace) { w.Kind = "robot" },
		"unknown restart policy":    func(w *store.Workspace) { w.RestartPolicy = "sometimes" },
		"platform under a platform": func(w *store.Workspace) { w.Kind, w.ParentID = store.KindPlatform, p.ID },
	}
	for name, mod := range cases {
		w := newWorkspace(p, "bad-"+strings.ReplaceAll(name, " ", "-"), mod)
		require.ErrorIs(t, f.s.InsertWorkspace(f.ctx, w), store.ErrConflict, name)
	}
	// Only the platform may lose its parent by update too.
	child.ParentID = ""
	require.ErrorIs(t, f.s.UpdateWorkspace(f.ctx, child), store.ErrConflict)
	child.ParentID, child.RestartPolicy = p.ID, "never"
	require.ErrorIs(t, f.s.UpdateWorkspace(f.ctx, child), store.ErrConflict)
}

func testListWorkspaces(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	_, other := f.org("other")
	f.ws(other, "foreign")
	live := []string{p.ID}
	all := []string{p.ID}
	for i := range 23 {
		st := "running"
		if i%5 == 0 {
			st = "removed"
		}
		w := f.ws(p, fmt.Sprintf("w%02d", i), status(st))
		all = append(all, w.ID)
		if st != "removed" {
			live = append(live, w.ID)
		}
	}
	live, all = sorted(live...), sorted(all...)

	got, err := f.s.ListWorkspaces(f.ctx, o.ID, false, store.ListParams{})
	require.NoError(t, err)
	require.Equal(t, live, wsIDs(got), "live ones, by id")
	got, err = f.s.ListWorkspaces(f.ctx, o.ID, true, store.ListParams{})
	require.NoError(t, err)
	require.Equal(t, all, wsIDs(got), "removed ones too")

	for _, includeRemoved := range []bool{false, true} {
		want := live
		if includeRemoved {
			want = all
		}
		var pages [][]string
		var seen []string
		after := ""
		for {
			page, err := f.s.ListWorkspaces(f.ctx, o.ID, includeRemoved, store.ListParams{After: after, Limit: 7})
			require.NoError(t, err)
			require.LessOrEqual(t, len(page), 7)
			if len(page) == 0 {
				break
			}
			pages = append(pages, wsIDs(page))
			seen = append(seen, wsIDs(page)...)
			after = page[len(page)-1].ID
			require.Less(t, len(pages), 10, "paging does not end")
		}
		require.Equal(t, want, seen, "pages of 7, removed=%v", includeRemoved)
		require.Len(t, pages, (len(want)+6)/7)
	}

	// A page starts strictly after its cursor, which need not be a row
	// (it may have been removed since), and rows added before the cursor
	// never shift the pages after it.
	page, err := f.s.ListWorkspaces(f.ctx, o.ID, false, store.ListParams{After: live[3] + "0", Limit: 2})
	require.NoError(t, err)
	require.Equal(t, live[4:6], wsIDs(page))

	got, err = f.s.ListWorkspaces(f.ctx, o.ID, true, store.ListParams{After: all[len(all)-1]})
	require.NoError(t, err)
	require.NotNil(t, got, "an empty list is empty, not nil")
	require.Empty(t, got)
	got, err = f.s.ListWorkspaces(f.ctx, "o-missing", true, store.ListParams{})
	require.NoError(t, err)
	require.Empty(t, got)
}

func testListChildren(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	a := f.ws(p, "a")
	b := f.ws(p, "b")
	f.ws(p, "gone", status("removed"))
	a1 := f.ws(a, "a1", status("paused"))
	a2 := f.ws(a, "a2", status("failed"))
	f.ws(a1, "grandchild")

	kids, err := f.s.ListChildren(f.ctx, o.ID, p.ID)
	require.NoError(t, err)
	require.Equal(t, sorted(a.ID, b.ID), wsIDs(kids), "direct children, not removed, by id")
	kids, err = f.s.ListChildren(f.ctx, o.ID, a.ID)
	require.NoError(t, err)
	require.Equal(t, sorted(a1.ID, a2.ID), wsIDs(kids))
	kids, err = f.s.ListChildren(f.ctx, o.ID, b.ID)
	require.NoError(t, err)
	require.NotNil(t, kids)
	require.Empty(t, kids)
}

func testUpdateWorkspace(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	newParent := f.ws(p, "new-parent")
	w := f.ws(p, "before")

	u := w
	u.ParentID, u.Name, u.Runtime, u.Spec = newParent.ID, "after", "external", `{"a":1}`
	u.Status, u.RestartPolicy, u.Protected = "failed", "manual", true
	u.Generation, u.Box, u.BoxFingerprint = 12, `{"container":"c1"}`, "fp-12"
	u.HealthyAt = t0.Add(3*time.Hour + 1500*time.Nanosecond)
	u.HeartbeatAt = t0.Add(4*time.Hour + 1999*time.Nanosecond)
	u.Failures, u.LastError, u.LoopBroken, u.BoxTokenID = 5, "health check timed out", true, "t-123"
	u.UpdatedAt = t0.Add(5*time.Hour + 1*time.Nanosecond)
	// Kind and CreatedAt are not mutable: the update ignores them.
	ignored := u
	ignored.Kind, ignored.CreatedAt = store.KindWorkspace, t0.Add(-time.Hour)
	require.NoError(t, f.s.UpdateWorkspace(f.ctx, ignored))

	got, err := f.s.GetWorkspace(f.ctx, o.ID, w.ID)
	require.NoError(t, err)
	require.Equal(t, storedWS(u), got)
	require.Equal(t, us(t0), got.CreatedAt)
	require.Equal(t, time.Date(2031, 5, 6, 10, 8, 9, 123458000, time.UTC), got.HealthyAt, "microseconds, truncated, UTC")

	// And back to zero values.
	z := got
	z.ParentID, z.Spec, z.Protected, z.Generation, z.Box, z.BoxFingerprint = p.ID, "{}", false, 0, "", ""
	z.HealthyAt, z.HeartbeatAt, z.Failures, z.LastError, z.LoopBroken, z.BoxTokenID = time.Time{}, time.Time{}, 0, "", false, ""
	require.NoError(t, f.s.UpdateWorkspace(f.ctx, z))
	got, err = f.s.GetWorkspace(f.ctx, o.ID, w.ID)
	require.NoError(t, err)
	require.Equal(t, z, got)
	require.True(t, got.HealthyAt.IsZero())

	missing := w
	missing.ID = "w-missing"
	require.ErrorIs(t, f.s.UpdateWorkspace(f.ctx, missing), store.ErrNotFound)
}

// GetWorkspaceForUpdate inside InTx serializes read-modify-write: no update
// is lost however the transactions interleave.
func testForUpdateSerializes(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	w := f.ws(p, "counter")
	const n = 8
	inTxConcurrently(t, f, n, func(tx store.Store) error {
		cur, err := tx.GetWorkspaceForUpdate(f.ctx, o.ID, w.ID)
		if err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond) // widen the window a lost update needs
		cur.Generation++
		return tx.UpdateWorkspace(f.ctx, cur)
	})
	got, err := f.s.GetWorkspace(f.ctx, o.ID, w.ID)
	require.NoError(t, err)
	require.EqualValues(t, n, got.Generation)
}

func testListActiveWorkspaces(t *testing.T, f *fixture) {
	_, pa := f.org("a")
	_, pb := f.org("b")
	want := []string{pa.ID, pb.ID} // both platforms are running
	for _, st := range []string{"provisioning", "running", "degraded", "failed", "stopped", "paused", "removed"} {
		wa := f.ws(pa, st, status(st))
		wb := f.ws(pb, st, status(st))
		if st == "provisioning" || st == "running" || st == "degraded" {
			want = append(want, wa.ID, wb.ID)
		}
	}
	got, err := f.s.ListActiveWorkspaces(f.ctx)
	require.NoError(t, err)
	require.Equal(t, sorted(want...), wsIDs(got), "across orgs, by id")
}

// testWorkspaceStates: the watchers' sweep reads many workspaces by id,
// across orgs, in one call; ids it cannot find are left out.
func testWorkspaceStates(t *testing.T, f *fixture) {
	_, pa := f.org("a")
	_, pb := f.org("b")
	beat := t0.Add(time.Minute)
	wa := f.ws(pa, "wa", func(w *store.Workspace) { w.Generation, w.HeartbeatAt = 4, beat })
	wb := f.ws(pb, "wb", status("provisioning"), func(w *store.Workspace) { w.Generation = 2 })
	f.ws(pa, "unasked")

	got, err := f.s.WorkspaceStates(f.ctx, []string{wb.ID, "w-missing", wa.ID})
	require.NoError(t, err)
	require.ElementsMatch(t, []store.WorkspaceState{
		{ID: wa.ID, Generation: 4, Status: "running", HeartbeatAt: us(beat)},
		{ID: wb.ID, Generation: 2, Status: "provisioning"},
	}, got)

	// Many at once: the sweep asks for a batch of ids in one statement.
	var ids []string
	for i := range 1500 {
		ids = append(ids, fmt.Sprintf("w-missing-%d", i))
	}
	got, err = f.s.WorkspaceStates(f.ctx, append(ids, wa.ID))
	require.NoError(t, err)
	require.Len(t, got, 1)

	got, err = f.s.WorkspaceStates(f.ctx, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

// ---- tokens

func testTokens(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	other, _ := f.org("other")
	w := f.ws(p, "w")

	admin := store.Token{
		ID: id("t"), OrgID: o.ID, Kind: store.TokenAdmin, Name: "concierge", ActingWorkspaceID: p.ID,
		SecretHash: []byte{0, 1, 2, 0xff}, CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour),
	}
	box := store.Token{
		ID: id("t"), OrgID: o.ID, Kind: store.TokenWorkspace, Name: "box", WorkspaceID: w.ID,
		SecretHash: []byte("hash"), BoxGeneration: 3, CreatedAt: t0.Add(time.Second),
	}
	foreign := store.Token{ID: id("t"), OrgID: other.ID, Kind: store.TokenAdmin, Name: "x", SecretHash: []byte("h"), CreatedAt: t0}
	for _, k := range []store.Token{box, admin, foreign} {
		require.NoError(t, f.s.InsertToken(f.ctx, k))
	}
	require.ErrorIs(t, f.s.InsertToken(f.ctx, admin), store.ErrConflict, "duplicate id")

	got, err := f.s.GetToken(f.ctx, admin.ID)
	require.NoError(t, err)
	require.Equal(t, storedToken(admin), got)
	got, err = f.s.GetToken(f.ctx, box.ID)
	require.NoError(t, err)
	require.Equal(t, storedToken(box), got)
	_, err = f.s.GetToken(f.ctx, "t-missing")
	require.ErrorIs(t, err, store.ErrNotFound)

	list, err := f.s.ListTokens(f.ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, []store.Token{storedToken(admin), storedToken(box)}, list, "by creation, only the org's")
	list, err = f.s.ListTokens(f.ctx, "o-missing")
	require.NoError(t, err)
	require.NotNil(t, list)
	require.Empty(t, list)

	// Revoking twice keeps the first time; another org's id is not found.
	require.NoError(t, f.s.RevokeToken(f.ctx, o.ID, box.ID, t0.Add(time.Minute)))
	require.NoError(t, f.s.RevokeToken(f.ctx, o.ID, box.ID, t0.Add(time.Hour)))
	got, err = f.s.GetToken(f.ctx, box.ID)
	require.NoError(t, err)
	require.Equal(t, us(t0.Add(time.Minute)), got.RevokedAt)
	require.ErrorIs(t, f.s.RevokeToken(f.ctx, other.ID, admin.ID, t0), store.ErrNotFound)
	require.ErrorIs(t, f.s.RevokeToken(f.ctx, o.ID, "t-missing", t0), store.ErrNotFound)
	got, err = f.s.GetToken(f.ctx, admin.ID)
	require.NoError(t, err)
	require.True(t, got.RevokedAt.IsZero())

	require.NoError(t, f.s.TouchToken(f.ctx, admin.ID, t0.Add(2*time.Minute)))
	require.NoError(t, f.s.TouchToken(f.ctx, admin.ID, t0.Add(3*time.Minute)))
	got, err = f.s.GetToken(f.ctx, admin.ID)
	require.NoError(t, err)
	require.Equal(t, us(t0.Add(3*time.Minute)), got.LastUsedAt)
	require.NoError(t, f.s.TouchToken(f.ctx, "t-missing", t0), "touching a missing token is harmless")
}

// testRevokeBoxTokens: a box's first health revokes the tokens of the
// workspace's older boxes, and only those; the platform's management
// tokens are revoked on their own.
func testRevokeBoxTokens(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	other, otherP := f.org("other")
	w := f.ws(p, "w")
	sibling := f.ws(p, "sibling")
	boxTok := func(ws store.Workspace, gen int64) store.Token {
		return store.Token{ID: id("t"), OrgID: ws.OrgID, Kind: store.TokenWorkspace, Name: fmt.Sprint("box-g", gen),
			WorkspaceID: ws.ID, SecretHash: []byte("h"), BoxGeneration: gen, CreatedAt: t0}
	}
	mgmtTok := func(ws store.Workspace, gen int64) store.Token {
		return store.Token{ID: id("t"), OrgID: ws.OrgID, Kind: store.TokenAdmin, Name: fmt.Sprint("management-g", gen),
			ActingWorkspaceID: ws.ID, SecretHash: []byte("h"), BoxGeneration: gen, CreatedAt: t0}
	}
	w1, w2, w3 := boxTok(w, 1), boxTok(w, 2), boxTok(w, 3)
	sib1 := boxTok(sibling, 1)
	p1, p2, pBox1 := mgmtTok(p, 1), mgmtTok(p, 2), boxTok(p, 1)
	// Bound to the platform but minted by a person, not per provision.
	concierge := store.Token{ID: id("t"), OrgID: o.ID, Kind: store.TokenAdmin, Name: "concierge",
		ActingWorkspaceID: p.ID, SecretHash: []byte("h"), CreatedAt: t0}
	foreign := mgmtTok(otherP, 1)
	for _, k := range []store.Token{w1, w2, w3, sib1, p1, p2, pBox1, concierge, foreign} {
		require.NoError(t, f.s.InsertToken(f.ctx, k))
	}
	earlier, at := t0.Add(time.Minute), t0.Add(time.Hour)
	require.NoError(t, f.s.RevokeToken(f.ctx, o.ID, w1.ID, earlier))

	revokedAt := func() map[string]time.Time {
		t.Helper()
		out := map[string]time.Time{}
		for _, org := range []string{o.ID, other.ID} {
			list, err := f.s.ListTokens(f.ctx, org)
			require.NoError(t, err)
			for _, k := range list {
				out[k.ID] = k.RevokedAt
			}
		}
		return out
	}

	require.NoError(t, f.s.RevokeBoxTokens(f.ctx, o.ID, w.ID, 3, at))
	require.Equal(t, map[string]time.Time{
		w1.ID: us(earlier), // revoked already: the first time stays
		w2.ID: us(at),
		w3.ID: {}, sib1.ID: {}, p1.ID: {}, p2.ID: {}, pBox1.ID: {}, concierge.ID: {}, foreign.ID: {},
	}, revokedAt(), "box tokens of w before generation 3")

	require.NoError(t, f.s.RevokeBoxTokens(f.ctx, o.ID, p.ID, 2, at))
	require.NoError(t, f.s.RevokeManagementTokens(f.ctx, o.ID, p.ID, 2, at))
	require.NoError(t, f.s.RevokeManagementTokens(f.ctx, other.ID, p.ID, 3, at), "another org's: nothing")
	require.Equal(t, map[string]time.Time{
		w1.ID: us(earlier), w2.ID: us(at), w3.ID: {}, sib1.ID: {},
		p1.ID: us(at), pBox1.ID: us(at),
		p2.ID: {}, concierge.ID: {}, foreign.ID: {},
	}, revokedAt(), "the platform's box and management tokens before generation 2")
}

func testTokenChecks(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	base := store.Token{ID: id("t"), OrgID: o.ID, Kind: store.TokenAdmin, Name: "x", SecretHash: []byte("h"), CreatedAt: t0}
	cases := map[string]func(*store.Token){
		"workspace token without workspace": func(k *store.Token) { k.Kind = store.TokenWorkspace },
		"admin token with a workspace":      func(k *store.Token) { k.WorkspaceID = p.ID },
		"workspace token acting":            func(k *store.Token) { k.Kind, k.WorkspaceID, k.ActingWorkspaceID = store.TokenWorkspace, p.ID, p.ID },
		"unknown kind":                      func(k *store.Token) { k.Kind = "root" },
		"missing workspace":                 func(k *store.Token) { k.Kind, k.WorkspaceID = store.TokenWorkspace, "w-missing" },
		"missing acting workspace":          func(k *store.Token) { k.ActingWorkspaceID = "w-missing" },
		"missing org":                       func(k *store.Token) { k.OrgID = "o-missing" },
	}
	for name, mod := range cases {
		k := base
		k.ID = id("t")
		mod(&k)
		require.ErrorIs(t, f.s.InsertToken(f.ctx, k), store.ErrConflict, name)
	}
	list, err := f.s.ListTokens(f.ctx, o.ID)
	require.NoError(t, err)
	require.Empty(t, list)
}

// ---- audit

func testAudit(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	other, _ := f.org("other")
	w := f.ws(p, "w")

	first := store.AuditEntry{
		OrgID: o.ID, At: t0, TokenID: "t1", PrincipalKind: "admin", ActingWorkspaceID: p.ID, Action: "secret.put",
		TargetKind: "secret", TargetID: "API_KEY", WorkspaceID: w.ID, Outcome: "ok", RequestID: "r1", Detail: `{"version":2}`,
	}
	var ids []int64
	var last int64
	for i := range 12 {
		e := first
		e.At = t0.Add(time.Duration(i) * time.Second)
		e.Action = fmt.Sprintf("act%02d", i)
		if i%3 == 0 {
			e.WorkspaceID = ""
			e.Detail = "" // stored as "{}"
		}
		id, err := f.s.AppendAudit(f.ctx, e)
		require.NoError(t, err)
		require.Greater(t, id, last, "ids increase")
		last = id
		ids = append(ids, id)
		// Interleave another org's entries.
		_, err = f.s.AppendAudit(f.ctx, store.AuditEntry{OrgID: other.ID, At: t0, PrincipalKind: "admin", Action: "x", Outcome: "ok", WorkspaceID: w.ID})
		require.NoError(t, err)
	}

	all, err := f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{})
	require.NoError(t, err)
	require.Len(t, all, 12, "only the org's")
	for i, e := range all {
		require.Equal(t, ids[len(ids)-1-i], e.ID, "newest first")
	}
	want := first
	want.ID, want.At = ids[1], us(t0.Add(time.Second))
	want.Action = "act01"
	require.Equal(t, want, all[10], "round trip")
	require.Equal(t, "{}", all[11].Detail, "empty detail is an empty object")
	require.Empty(t, all[11].WorkspaceID)

	page, err := f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{Limit: 5})
	require.NoError(t, err)
	require.Len(t, page, 5)
	require.Equal(t, ids[11], page[0].ID)
	page, err = f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{Before: page[4].ID, Limit: 5})
	require.NoError(t, err)
	require.Len(t, page, 5)
	require.Equal(t, ids[6], page[0].ID, "strictly before the cursor")
	page, err = f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{Before: ids[2], Limit: 5})
	require.NoError(t, err)
	require.Equal(t, []int64{ids[1], ids[0]}, []int64{page[0].ID, page[1].ID})

	byWS, err := f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{WorkspaceID: w.ID})
	require.NoError(t, err)
	require.Len(t, byWS, 8)
	for _, e := range byWS {
		require.Equal(t, w.ID, e.WorkspaceID)
		require.Equal(t, o.ID, e.OrgID)
	}
	byWS, err = f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{WorkspaceID: w.ID, Before: ids[5], Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []int64{ids[4], ids[2]}, []int64{byWS[0].ID, byWS[1].ID})

	// Action, caller and outcome select exactly, with the rest.
	byAction, err := f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{Action: "act04"})
	require.NoError(t, err)
	require.Len(t, byAction, 1)
	require.Equal(t, ids[4], byAction[0].ID)
	byToken, err := f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{TokenID: "t1", WorkspaceID: w.ID, Limit: 3})
	require.NoError(t, err)
	require.Equal(t, []int64{ids[11], ids[10], ids[8]}, []int64{byToken[0].ID, byToken[1].ID, byToken[2].ID})
	byOutcome, err := f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{Outcome: "denied"})
	require.NoError(t, err)
	require.Empty(t, byOutcome)
	byOutcome, err = f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{Outcome: "ok", Action: "act03"})
	require.NoError(t, err)
	require.Len(t, byOutcome, 1)

	none, err := f.s.ListAudit(f.ctx, "o-missing", store.AuditFilter{})
	require.NoError(t, err)
	require.NotNil(t, none)
	require.Empty(t, none)

	// The default page is 100 entries.
	for range 105 {
		_, err := f.s.AppendAudit(f.ctx, store.AuditEntry{OrgID: o.ID, At: t0, PrincipalKind: "admin", Action: "bulk", Outcome: "ok"})
		require.NoError(t, err)
	}
	page, err = f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{})
	require.NoError(t, err)
	require.Len(t, page, 100)

	// At most a page of 1000 and one more (which tells the API whether
	// another page follows).
	require.NoError(t, f.s.InTx(f.ctx, func(tx store.Store) error {
		for range 1000 {
			if _, err := tx.AppendAudit(f.ctx, store.AuditEntry{OrgID: o.ID, At: t0, PrincipalKind: "admin", Action: "bulk", Outcome: "ok"}); err != nil {
				return err
			}
		}
		return nil
	}))
	page, err = f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{Limit: 1001})
	require.NoError(t, err)
	require.Len(t, page, 1001)
	page, err = f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{Limit: 5000})
	require.NoError(t, err)
	require.Len(t, page, 1001)
}

// The audit log is append-only in the schema, whatever code runs against it.
func testAuditAppendOnly(t *testing.T, f *fixture) {
	o, _ := f.org("acme")
	id, err := f.s.AppendAudit(f.ctx, store.AuditEntry{OrgID: o.ID, At: t0, PrincipalKind: "admin", Action: "a", Outcome: "ok"})
	require.NoError(t, err)

	db := f.raw()
	_, err = db.ExecContext(f.ctx, `UPDATE audit SET outcome = 'forged' WHERE id = $1`, id)
	require.Error(t, err, "UPDATE on audit")
	require.Contains(t, err.Error(), "append-only")
	_, err = db.ExecContext(f.ctx, `DELETE FROM audit WHERE id = $1`, id)
	require.Error(t, err, "DELETE on audit")
	require.Contains(t, err.Error(), "append-only")
	_, err = db.ExecContext(f.ctx, `DELETE FROM audit`)
	require.Error(t, err, "DELETE of everything")
	if f.s.Dialect() == store.Postgres {
		_, err = db.ExecContext(f.ctx, `TRUNCATE audit`)
		require.Error(t, err, "TRUNCATE on audit")
	}
	// Inserting still works beside it.
	_, err = db.ExecContext(f.ctx, `INSERT INTO audit (org_id, at, principal_kind, action, outcome) VALUES ($1, 1, 'admin', 'raw', 'ok')`, o.ID)
	require.NoError(t, err)

	got, err := f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, id, got[1].ID)
	require.Equal(t, "ok", got[1].Outcome)
}

// ---- meta and data keys

func testMeta(t *testing.T, f *fixture) {
	_, err := f.s.GetMeta(f.ctx, "master_check")
	require.ErrorIs(t, err, store.ErrNotFound)
	v := []byte{0, 1, 2, 0xfe, 0xff}
	require.NoError(t, f.s.PutMeta(f.ctx, "master_check", v))
	got, err := f.s.GetMeta(f.ctx, "master_check")
	require.NoError(t, err)
	require.Equal(t, v, got)
	require.NoError(t, f.s.PutMeta(f.ctx, "master_check", []byte("second")))
	got, err = f.s.GetMeta(f.ctx, "master_check")
	require.NoError(t, err)
	require.Equal(t, []byte("second"), got)
	require.NoError(t, f.s.PutMeta(f.ctx, "other", []byte("x")))
	got, err = f.s.GetMeta(f.ctx, "master_check")
	require.NoError(t, err)
	require.Equal(t, []byte("second"), got)
}

func currentKeys(t *testing.T, f *fixture) []string {
	t.Helper()
	keys, err := f.s.ListDataKeys(f.ctx)
	require.NoError(t, err)
	var cur []string
	for _, k := range keys {
		if k.Current {
			cur = append(cur, k.ID)
		}
	}
	return cur
}

func testDataKeys(t *testing.T, f *fixture) {
	k1 := f.dataKey(true)
	require.Equal(t, []string{k1.ID}, currentKeys(t, f))
	k2 := store.DataKey{ID: id("k"), Wrapped: []byte("w2"), CreatedAt: t0.Add(time.Second)}
	require.NoError(t, f.s.InsertDataKey(f.ctx, k2))
	require.Equal(t, []string{k1.ID}, currentKeys(t, f), "a new key is not current unless asked")
	require.ErrorIs(t, f.s.InsertDataKey(f.ctx, k2), store.ErrConflict)

	keys, err := f.s.ListDataKeys(f.ctx)
	require.NoError(t, err)
	require.Equal(t, []store.DataKey{
		{ID: k1.ID, Wrapped: k1.Wrapped, Current: true, CreatedAt: us(t0)},
		{ID: k2.ID, Wrapped: []byte("w2"), CreatedAt: us(t0.Add(time.Second))},
	}, keys, "by creation")

	require.NoError(t, f.s.SetCurrentDataKey(f.ctx, k2.ID))
	require.Equal(t, []string{k2.ID}, currentKeys(t, f), "swapped")
	require.NoError(t, f.s.SetCurrentDataKey(f.ctx, k2.ID), "idempotent")
	require.Equal(t, []string{k2.ID}, currentKeys(t, f))

	require.ErrorIs(t, f.s.SetCurrentDataKey(f.ctx, "k-missing"), store.ErrNotFound)
	require.Equal(t, []string{k2.ID}, currentKeys(t, f), "a failed swap leaves the current key")

	require.ErrorIs(t, f.s.RetireDataKey(f.ctx, k2.ID, t0), store.ErrNotFound, "the current key cannot retire")
	require.NoError(t, f.s.RetireDataKey(f.ctx, k1.ID, t0.Add(time.Hour)))
	require.ErrorIs(t, f.s.RetireDataKey(f.ctx, k1.ID, t0.Add(2*time.Hour)), store.ErrNotFound, "retired once")
	require.ErrorIs(t, f.s.RetireDataKey(f.ctx, "k-missing", t0), store.ErrNotFound)
	keys, err = f.s.ListDataKeys(f.ctx)
	require.NoError(t, err)
	require.Equal(t, us(t0.Add(time.Hour)), keys[0].RetiredAt)
	require.True(t, keys[1].RetiredAt.IsZero())

	require.ErrorIs(t, f.s.SetCurrentDataKey(f.ctx, k1.ID), store.ErrNotFound, "a retired key cannot be current")
	require.Equal(t, []string{k2.ID}, currentKeys(t, f))

	// Inserting a current key demotes the previous one.
	k3 := f.dataKey(true)
	require.Equal(t, []string{k3.ID}, currentKeys(t, f))

	// The schema itself refuses two current keys.
	_, err = f.raw().ExecContext(f.ctx, `UPDATE data_keys SET is_current = 1 WHERE id = $1`, k2.ID)
	require.Error(t, err)
	require.Equal(t, []string{k3.ID}, currentKeys(t, f))
}

// ---- secrets

func testSecrets(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	other, _ := f.org("other")
	w := f.ws(p, "w")
	k := f.dataKey(true)

	glob := store.Secret{OrgID: o.ID, Key: "API_KEY", KeyID: k.ID, Ciphertext: []byte{1, 2, 3, 0}, ValueMAC: "mac-g",
		Version: 1, CreatedAt: t0, UpdatedAt: t0}
	own := store.Secret{OrgID: o.ID, WorkspaceID: w.ID, Key: "API_KEY", KeyID: k.ID, Ciphertext: []byte("ws"), ValueMAC: "mac-w",
		Version: 1, CreatedAt: t0, UpdatedAt: t0}
	b := store.Secret{OrgID: o.ID, Key: "B_TOKEN", KeyID: k.ID, Ciphertext: []byte("b"), ValueMAC: "mac-b",
		Version: 4, CreatedAt: t0, UpdatedAt: t0}
	foreign := store.Secret{OrgID: other.ID, Key: "API_KEY", KeyID: k.ID, Ciphertext: []byte("o"), ValueMAC: "m", Version: 1, CreatedAt: t0, UpdatedAt: t0}
	for _, x := range []store.Secret{b, glob, own, foreign} {
		require.NoError(t, f.s.PutSecret(f.ctx, x))
	}
	require.Equal(t, store.ScopeGlobal, glob.Scope())
	require.Equal(t, store.ScopeWorkspace, own.Scope())

	got, err := f.s.GetSecret(f.ctx, o.ID, "", "API_KEY")
	require.NoError(t, err)
	require.Equal(t, storedSecret(glob), got)
	got, err = f.s.GetSecret(f.ctx, o.ID, w.ID, "API_KEY")
	require.NoError(t, err)
	require.Equal(t, storedSecret(own), got)
	_, err = f.s.GetSecret(f.ctx, o.ID, w.ID, "B_TOKEN")
	require.ErrorIs(t, err, store.ErrNotFound, "scopes do not fall back in the store")
	_, err = f.s.GetSecret(f.ctx, other.ID, w.ID, "API_KEY")
	require.ErrorIs(t, err, store.ErrNotFound)

	list, err := f.s.ListSecrets(f.ctx, o.ID, "")
	require.NoError(t, err)
	require.Equal(t, []store.Secret{storedSecret(glob), storedSecret(b)}, list, "global scope, by key")
	list, err = f.s.ListSecrets(f.ctx, o.ID, w.ID)
	require.NoError(t, err)
	require.Equal(t, []store.Secret{storedSecret(own)}, list)
	list, err = f.s.ListSecrets(f.ctx, o.ID, p.ID)
	require.NoError(t, err)
	require.NotNil(t, list)
	require.Empty(t, list)

	// Upsert: what the caller sets replaces the row; created_at stays.
	k2 := f.dataKey(false)
	up := glob
	up.KeyID, up.Ciphertext, up.ValueMAC, up.Version = k2.ID, []byte("new"), "mac-g2", 7
	up.CreatedAt, up.UpdatedAt = t0.Add(time.Hour), t0.Add(time.Hour)
	require.NoError(t, f.s.PutSecret(f.ctx, up))
	got, err = f.s.GetSecret(f.ctx, o.ID, "", "API_KEY")
	require.NoError(t, err)
	want := storedSecret(up)
	want.CreatedAt = us(t0)
	require.Equal(t, want, got)
	got, err = f.s.GetSecret(f.ctx, o.ID, w.ID, "API_KEY")
	require.NoError(t, err)
	require.EqualValues(t, 1, got.Version, "the other scope is untouched")

	bad := glob
	bad.Key, bad.KeyID = "NO_KEY", "k-missing"
	require.ErrorIs(t, f.s.PutSecret(f.ctx, bad), store.ErrConflict, "data key must exist")
	bad.KeyID, bad.OrgID = k.ID, "o-missing"
	require.ErrorIs(t, f.s.PutSecret(f.ctx, bad), store.ErrConflict, "org must exist")

	require.NoError(t, f.s.DeleteSecret(f.ctx, o.ID, "", "API_KEY"))
	_, err = f.s.GetSecret(f.ctx, o.ID, "", "API_KEY")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, f.s.DeleteSecret(f.ctx, o.ID, "", "API_KEY"), store.ErrNotFound)
	require.ErrorIs(t, f.s.DeleteSecret(f.ctx, other.ID, w.ID, "API_KEY"), store.ErrNotFound)
	_, err = f.s.GetSecret(f.ctx, o.ID, w.ID, "API_KEY")
	require.NoError(t, err, "deleting the global leaves the override")
	_, err = f.s.GetSecret(f.ctx, other.ID, "", "API_KEY")
	require.NoError(t, err, "and the other org's")
}

func testSecretsByKeyID(t *testing.T, f *fixture) {
	k1 := f.dataKey(false)
	k2 := f.dataKey(true)
	var want []store.Secret
	for _, name := range []string{"a", "b"} {
		o, p := f.org(name)
		w := f.ws(p, "w")
		for i, scope := range []string{"", w.ID, p.ID} {
			for j := range 4 {
				kid := k1.ID
				if (i+j)%3 == 0 {
					kid = k2.ID
				}
				x := store.Secret{OrgID: o.ID, WorkspaceID: scope, Key: fmt.Sprintf("K%d", j), KeyID: kid,
					Ciphertext: []byte{byte(i), byte(j)}, ValueMAC: "m", Version: 1, CreatedAt: t0, UpdatedAt: t0}
				require.NoError(t, f.s.PutSecret(f.ctx, x))
				if kid == k1.ID {
					want = append(want, storedSecret(x))
				}
			}
		}
	}
	sort.Slice(want, func(i, j int) bool {
		a, b := want[i], want[j]
		if a.OrgID != b.OrgID {
			return a.OrgID < b.OrgID
		}
		if a.WorkspaceID != b.WorkspaceID {
			return a.WorkspaceID < b.WorkspaceID
		}
		return a.Key < b.Key
	})

	var got []store.Secret
	var cur store.SecretCursor
	for range 20 {
		page, err := f.s.SecretsByKeyID(f.ctx, k1.ID, cur, 5)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 5)
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		last := page[len(page)-1]
		cur = store.SecretCursor{OrgID: last.OrgID, WorkspaceID: last.WorkspaceID, Key: last.Key}
	}
	require.Equal(t, want, got, "every secret under the key, any org, in cursor order, once")

	n, err := f.s.CountSecretsByKeyID(f.ctx, k1.ID)
	require.NoError(t, err)
	require.EqualValues(t, len(want), n)
	n, err = f.s.CountSecretsByKeyID(f.ctx, k2.ID)
	require.NoError(t, err)
	require.EqualValues(t, 24-len(want), n)
	n, err = f.s.CountSecretsByKeyID(f.ctx, "k-missing")
	require.NoError(t, err)
	require.Zero(t, n)
	page, err := f.s.SecretsByKeyID(f.ctx, "k-missing", store.SecretCursor{}, 5)
	require.NoError(t, err)
	require.Empty(t, page)
}

func testReencryptSecret(t *testing.T, f *fixture) {
	o, _ := f.org("acme")
	k1 := f.dataKey(false)
	k2 := f.dataKey(true)
	x := store.Secret{OrgID: o.ID, Key: "A", KeyID: k1.ID, Ciphertext: []byte("old"), ValueMAC: "mac", Version: 3,
		CreatedAt: t0, UpdatedAt: t0.Add(time.Minute)}
	require.NoError(t, f.s.PutSecret(f.ctx, x))

	// A re-encryption of an older version (the value was rewritten since
	// it was read) changes nothing.
	stale := x
	stale.KeyID, stale.Ciphertext, stale.Version = k2.ID, []byte("stale"), 2
	ok, err := f.s.ReencryptSecret(f.ctx, stale, k1.ID)
	require.NoError(t, err)
	require.False(t, ok)

	re := x
	re.KeyID, re.Ciphertext = k2.ID, []byte("new")
	re.ValueMAC, re.UpdatedAt = "other-mac", t0.Add(time.Hour) // ignored
	ok, err = f.s.ReencryptSecret(f.ctx, re, k1.ID)
	require.NoError(t, err)
	require.True(t, ok)
	got, err := f.s.GetSecret(f.ctx, o.ID, "", "A")
	require.NoError(t, err)
	want := storedSecret(x)
	want.KeyID, want.Ciphertext = k2.ID, []byte("new")
	require.Equal(t, want, got, "only key id and ciphertext change")

	// A second pass (or a concurrent rewrite) finds it no longer under k1.
	again := re
	again.Ciphertext = []byte("newer")
	ok, err = f.s.ReencryptSecret(f.ctx, again, k1.ID)
	require.NoError(t, err)
	require.False(t, ok)
	got, err = f.s.GetSecret(f.ctx, o.ID, "", "A")
	require.NoError(t, err)
	require.Equal(t, []byte("new"), got.Ciphertext)

	gone := re
	gone.Key = "DELETED"
	ok, err = f.s.ReencryptSecret(f.ctx, gone, k1.ID)
	require.NoError(t, err)
	require.False(t, ok)

	bad := x
	bad.KeyID = "k-missing"
	_, err = f.s.ReencryptSecret(f.ctx, bad, k2.ID)
	require.ErrorIs(t, err, store.ErrConflict, "the new key must exist")

	// The batch form: rewrites exactly the rows still at their version and
	// under the old key.
	var batch []store.Secret
	for i, v := range []int64{1, 1, 1} {
		y := store.Secret{OrgID: o.ID, Key: fmt.Sprintf("B%d", i), KeyID: k1.ID, Ciphertext: []byte("old"), ValueMAC: "m",
			Version: v, CreatedAt: t0, UpdatedAt: t0}
		require.NoError(t, f.s.PutSecret(f.ctx, y))
		y.KeyID, y.Ciphertext = k2.ID, []byte("new")
		batch = append(batch, y)
	}
	batch[1].Version = 7 // read before a write that the row no longer matches
	n, err := f.s.ReencryptSecrets(f.ctx, batch, k1.ID)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	for i, want := range []string{k2.ID, k1.ID, k2.ID} {
		got, err := f.s.GetSecret(f.ctx, o.ID, "", fmt.Sprintf("B%d", i))
		require.NoError(t, err)
		require.Equal(t, want, got.KeyID)
	}
}

func testProbeWrite(t *testing.T, f *fixture) {
	require.NoError(t, f.s.ProbeWrite(f.ctx, t0))
	require.NoError(t, f.s.ProbeWrite(f.ctx, t0.Add(time.Second)), "the probe row is updated in place, any number of times")
	require.NoError(t, f.s.InTx(f.ctx, func(tx store.Store) error { return tx.ProbeWrite(f.ctx, t0) }))
}

func testSecretMACs(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	other, _ := f.org("other")
	w := f.ws(p, "w")
	k := f.dataKey(true)
	put := func(orgID, wsID, key string) store.Secret {
		x := store.Secret{OrgID: orgID, WorkspaceID: wsID, Key: key, KeyID: k.ID, Ciphertext: []byte("secret-bytes"),
			ValueMAC: "mac-" + wsID + key, Version: 2, CreatedAt: t0, UpdatedAt: t0.Add(time.Second)}
		require.NoError(t, f.s.PutSecret(f.ctx, x))
		x.Ciphertext, x.CiphertextLen = nil, len(x.Ciphertext)
		return storedSecret(x)
	}
	gb := put(o.ID, "", "B")
	ga := put(o.ID, "", "A")
	wa := put(o.ID, w.ID, "A")
	put(other.ID, "", "A")

	got, err := f.s.ListSecretMACs(f.ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, []store.Secret{ga, gb, wa}, got, "both scopes, by scope then key, no ciphertext but its length")
	for _, x := range got {
		require.Nil(t, x.Ciphertext)
	}
	got, err = f.s.ListSecretMACs(f.ctx, "o-missing")
	require.NoError(t, err)
	require.NotNil(t, got)
	require.Empty(t, got)

	// A page of workspaces by id: the globals and the secrets of the
	// workspaces in (after, through], no others.
	ws := sorted(w.ID, f.ws(p, "x").ID, f.ws(p, "y").ID)
	own := map[string]store.Secret{}
	for _, id := range ws {
		if id != w.ID {
			own[id] = put(o.ID, id, "Z")
		} else {
			own[id] = wa
		}
		put(other.ID, id, "Q") // another org's, with the same ids: never listed
	}
	got, err = f.s.ListSecretMACsOf(f.ctx, o.ID, "", ws[0])
	require.NoError(t, err)
	require.Equal(t, []store.Secret{ga, gb, own[ws[0]]}, got)
	got, err = f.s.ListSecretMACsOf(f.ctx, o.ID, ws[0], ws[2])
	require.NoError(t, err)
	require.Equal(t, []store.Secret{ga, gb, own[ws[1]], own[ws[2]]}, got)
	got, err = f.s.ListSecretMACsOf(f.ctx, o.ID, ws[2], ws[2]+"z")
	require.NoError(t, err)
	require.Equal(t, []store.Secret{ga, gb}, got, "globals even for a page without secrets of its own")
}

// ---- restart jobs

func testJobRoundTrip(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	other, _ := f.org("other")
	w := f.ws(p, "w")
	j := newJob(w, store.JobFailed, func(j *store.RestartJob) {
		j.Automatic, j.Reason, j.Note, j.ChangeID, j.CallerWorkspaceID, j.RequestedBy = false, "unhealthy", "by hand", "c1", p.ID, "t1"
		j.Attempts, j.MaxAttempts, j.Generation = 3, 5, 9
		j.RunAfter, j.LeaseOwner, j.LeaseUntil, j.Error = t0.Add(time.Second), "r1", t0.Add(time.Minute), "boom"
		j.StartedAt, j.FinishedAt = t0.Add(2*time.Second+1), t0.Add(3*time.Second+999)
	})
	f.jobs(j)
	got, err := f.s.GetJob(f.ctx, o.ID, j.ID)
	require.NoError(t, err)
	require.Equal(t, storedJob(j), got)
	require.True(t, got.Finished())
	_, err = f.s.GetJob(f.ctx, other.ID, j.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "another org's job")
	_, err = f.s.GetJob(f.ctx, o.ID, "j-missing")
	require.ErrorIs(t, err, store.ErrNotFound)

	// UpdateJob writes the mutable columns.
	u := got
	u.State, u.Reason, u.Note, u.Attempts, u.Generation = store.JobRunning, "retrying", "n2", 4, 10
	u.RunAfter, u.LeaseOwner, u.LeaseUntil, u.Error = t0.Add(time.Hour), "r2", t0.Add(2*time.Hour), ""
	u.UpdatedAt, u.StartedAt, u.FinishedAt = t0.Add(3*time.Hour+7), t0.Add(4*time.Hour), time.Time{}
	require.NoError(t, f.s.UpdateJob(f.ctx, u))
	got, err = f.s.GetJob(f.ctx, o.ID, j.ID)
	require.NoError(t, err)
	require.Equal(t, storedJob(u), got)
	require.False(t, got.Finished())

	missing := u
	missing.ID = "j-missing"
	require.ErrorIs(t, f.s.UpdateJob(f.ctx, missing), store.ErrNotFound)
	foreign := u
	foreign.OrgID = other.ID
	require.ErrorIs(t, f.s.UpdateJob(f.ctx, foreign), store.ErrNotFound)
	badState := u
	badState.State = "exploded"
	require.ErrorIs(t, f.s.UpdateJob(f.ctx, badState), store.ErrConflict)

	// restart_jobs has no foreign keys on purpose (fan-out speed): the
	// service writes jobs only for workspaces it has just read.
	require.NoError(t, f.s.InsertJobs(f.ctx, nil), "nothing to insert")
}

func testInsertJobBatches(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	ws := []store.Workspace{f.ws(p, "a"), f.ws(p, "b"), f.ws(p, "c")}
	const n = 451 // three multi-row statements, the last one short
	var js []store.RestartJob
	for i := range n {
		js = append(js, newJob(ws[i%3], store.JobSucceeded, func(j *store.RestartJob) {
			j.CreatedAt = t0.Add(time.Duration(i) * time.Millisecond)
			j.Generation = int64(i)
			j.ChangeID = "bulk"
		}))
	}
	f.jobs(js...)
	got, err := f.s.ListJobsByChange(f.ctx, o.ID, "bulk")
	require.NoError(t, err)
	require.Len(t, got, n)
	want := make([]store.RestartJob, n)
	for i, j := range js {
		want[i] = storedJob(j)
	}
	require.Equal(t, want, got, "every row and column of every batch, by id")
	counts, err := f.s.CountJobsByState(f.ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{store.JobSucceeded: n}, counts)

	// In a transaction, a conflict in the last batch takes the earlier batches back.
	var more []store.RestartJob
	for i := range 420 {
		more = append(more, newJob(ws[i%3], store.JobSkipped, func(j *store.RestartJob) { j.ChangeID = "tx" }))
	}
	more[419].ID = js[0].ID
	err = f.s.InTx(f.ctx, func(tx store.Store) error { return tx.InsertJobs(f.ctx, more) })
	require.ErrorIs(t, err, store.ErrConflict)
	got, err = f.s.ListJobsByChange(f.ctx, o.ID, "tx")
	require.NoError(t, err)
	require.Empty(t, got)
}

func testOnePendingJob(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	a := f.ws(p, "a")
	b := f.ws(p, "b")
	pa := newJob(a, store.JobPending)
	f.jobs(pa, newJob(a, store.JobSucceeded), newJob(a, store.JobSkipped), newJob(b, store.JobPending))

	require.ErrorIs(t, f.s.InsertJobs(f.ctx, []store.RestartJob{newJob(a, store.JobPending)}), store.ErrConflict)
	require.ErrorIs(t, f.s.InsertJobs(f.ctx, []store.RestartJob{newJob(p, store.JobPending), newJob(p, store.JobPending)}),
		store.ErrConflict, "two in one call")
	_, err := f.s.GetPendingJob(f.ctx, p.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "a refused statement inserts none of its rows")

	got, err := f.s.GetPendingJob(f.ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, storedJob(pa), got)

	// Once it is no longer pending another may queue; at most one running too.
	pa.State = store.JobRunning
	require.NoError(t, f.s.UpdateJob(f.ctx, pa))
	_, err = f.s.GetPendingJob(f.ctx, a.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	next := newJob(a, store.JobPending)
	f.jobs(next)
	next.State = store.JobRunning
	require.ErrorIs(t, f.s.UpdateJob(f.ctx, next), store.ErrConflict, "two running jobs for one workspace")
	require.ErrorIs(t, f.s.InsertJobs(f.ctx, []store.RestartJob{newJob(a, store.JobRunning)}), store.ErrConflict)

	list, err := f.s.ListJobs(f.ctx, o.ID, a.ID, 0)
	require.NoError(t, err)
	require.Len(t, list, 4)
}

func testListJobs(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	other, po := f.org("other")
	a := f.ws(p, "a")
	b := f.ws(p, "b")
	var all, ofA []string
	for i := range 10 {
		w := a
		if i%2 == 1 {
			w = b
		}
		j := newJob(w, store.JobSucceeded, func(j *store.RestartJob) {
			j.CreatedAt = t0.Add(time.Duration(i%5) * time.Second) // ties broken by id
			j.ChangeID = fmt.Sprintf("c%d", i%3)
		})
		f.jobs(j)
		all = append(all, j.ID)
		if w.ID == a.ID {
			ofA = append(ofA, j.ID)
		}
	}
	f.jobs(newJob(f.ws(po, "x"), store.JobSucceeded))
	newestFirst := func(ids []string, byCreated map[string]time.Time) []string {
		out := append([]string(nil), ids...)
		sort.Slice(out, func(i, j int) bool {
			ci, cj := byCreated[out[i]], byCreated[out[j]]
			if !ci.Equal(cj) {
				return ci.After(cj)
			}
			return out[i] > out[j]
		})
		return out
	}
	jobs, err := f.s.ListJobs(f.ctx, o.ID, "", 100)
	require.NoError(t, err)
	created := map[string]time.Time{}
	for _, j := range jobs {
		created[j.ID] = j.CreatedAt
	}
	require.ElementsMatch(t, all, jobIDs(jobs))
	require.Equal(t, newestFirst(all, created), jobIDs(jobs), "newest first, then by id descending")

	jobs, err = f.s.ListJobs(f.ctx, o.ID, a.ID, 0)
	require.NoError(t, err)
	require.Equal(t, newestFirst(ofA, created), jobIDs(jobs))
	jobs, err = f.s.ListJobs(f.ctx, o.ID, "", 3)
	require.NoError(t, err)
	require.Equal(t, newestFirst(all, created)[:3], jobIDs(jobs))
	jobs, err = f.s.ListJobs(f.ctx, other.ID, a.ID, 0)
	require.NoError(t, err)
	require.NotNil(t, jobs)
	require.Empty(t, jobs, "another org's workspace")

	jobs, err = f.s.ListJobsByChange(f.ctx, o.ID, "c1")
	require.NoError(t, err)
	require.Equal(t, sorted(all[1], all[4], all[7]), jobIDs(jobs))
	jobs, err = f.s.ListJobsByChange(f.ctx, other.ID, "c1")
	require.NoError(t, err)
	require.Empty(t, jobs)
}

var noLimits = store.ClaimLimits{}

func testClaimJob(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	w1, w2, w3 := f.ws(p, "w1"), f.ws(p, "w2"), f.ws(p, "w3")
	j1 := newJob(w1, store.JobPending, func(j *store.RestartJob) { j.RunAfter = t0 })
	j2 := newJob(w2, store.JobPending, func(j *store.RestartJob) { j.RunAfter = t0.Add(time.Second) })
	j3 := newJob(w3, store.JobPending, func(j *store.RestartJob) { j.RunAfter = t0.Add(time.Hour) })
	// Newer id but due first: run_after orders the queue.
	f.jobs(j3, j2, j1)
	f.jobs(newJob(w1, store.JobSucceeded), newJob(w2, store.JobFailed), newJob(w3, store.JobSkipped))

	_, err := f.s.ClaimJob(f.ctx, "r1", t0.Add(-time.Second), t0.Add(time.Minute), noLimits)
	require.ErrorIs(t, err, store.ErrNotFound, "nothing due yet")

	now := t0.Add(2*time.Second + 500*time.Nanosecond)
	lease := now.Add(30 * time.Second)
	got, err := f.s.ClaimJob(f.ctx, "r1", now, lease, noLimits)
	require.NoError(t, err)
	require.Equal(t, j1.ID, got.ID, "the earliest due")
	want := j1
	want.State, want.LeaseOwner, want.LeaseUntil, want.Attempts, want.StartedAt, want.UpdatedAt = store.JobRunning, "r1", lease, 1, now, now
	require.Equal(t, storedJob(want), storedJob(got))
	stored, err := f.s.GetJob(f.ctx, o.ID, j1.ID)
	require.NoError(t, err)
	require.Equal(t, storedJob(want), stored, "the claim is durable")

	got, err = f.s.ClaimJob(f.ctx, "r2", now, lease, noLimits)
	require.NoError(t, err)
	require.Equal(t, j2.ID, got.ID)
	require.Equal(t, "r2", got.LeaseOwner)
	_, err = f.s.ClaimJob(f.ctx, "r1", now, lease, noLimits)
	require.ErrorIs(t, err, store.ErrNotFound, "j3 is not due, the others are taken")

	later := t0.Add(2 * time.Hour)
	got, err = f.s.ClaimJob(f.ctx, "r1", later, later.Add(time.Minute), noLimits)
	require.NoError(t, err)
	// j1 and j2's leases have expired by now too: whichever comes first is
	// fine, but each workspace has one running job and every claim is one.
	seen := map[string]bool{got.ID: true}
	for {
		got, err = f.s.ClaimJob(f.ctx, "r1", later, later.Add(time.Minute), noLimits)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		require.NoError(t, err)
		require.False(t, seen[got.ID], "claimed twice under a live lease: %s", got.ID)
		seen[got.ID] = true
	}
	require.Equal(t, map[string]bool{j1.ID: true, j2.ID: true, j3.ID: true}, seen)

	require.NoError(t, f.s.RenewLease(f.ctx, j3.ID, "r1", later.Add(time.Hour)))
	require.ErrorIs(t, f.s.RenewLease(f.ctx, j3.ID, "r2", later.Add(time.Hour)), store.ErrNotFound, "not the owner")
	require.ErrorIs(t, f.s.RenewLease(f.ctx, "j-missing", "r1", later), store.ErrNotFound)
	got, err = f.s.GetJob(f.ctx, o.ID, j3.ID)
	require.NoError(t, err)
	require.Equal(t, us(later.Add(time.Hour)), got.LeaseUntil)

	got.State, got.FinishedAt = store.JobSucceeded, later
	require.NoError(t, f.s.UpdateJob(f.ctx, got))
	require.ErrorIs(t, f.s.RenewLease(f.ctx, j3.ID, "r1", later.Add(2*time.Hour)), store.ErrNotFound, "no lease on a finished job")
}

func (f *fixture) pendingJobs(parent store.Workspace, n int, runAfter time.Time) []store.RestartJob {
	f.t.Helper()
	var js []store.RestartJob
	for i := range n {
		w := f.ws(parent, fmt.Sprintf("q%03d", i))
		js = append(js, newJob(w, store.JobPending, func(j *store.RestartJob) { j.RunAfter = runAfter }))
	}
	f.jobs(js...)
	return js
}

func testClaimMaxRunning(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	_, q := f.org("other")
	f.pendingJobs(p, 3, t0)
	f.pendingJobs(q, 1, t0)
	now := t0.Add(time.Second)
	lim := store.ClaimLimits{MaxRunning: 2}
	a, err := f.s.ClaimJob(f.ctx, "r", now, now.Add(time.Minute), lim)
	require.NoError(t, err)
	_, err = f.s.ClaimJob(f.ctx, "r", now, now.Add(time.Minute), lim)
	require.NoError(t, err)
	_, err = f.s.ClaimJob(f.ctx, "r", now, now.Add(time.Minute), lim)
	require.ErrorIs(t, err, store.ErrNotFound, "cap of 2 running, across orgs")

	a.State, a.FinishedAt = store.JobSucceeded, now
	require.NoError(t, f.s.UpdateJob(f.ctx, a))
	_, err = f.s.ClaimJob(f.ctx, "r", now, now.Add(time.Minute), lim)
	require.NoError(t, err, "room again")
	_, err = f.s.ClaimJob(f.ctx, "r", now, now.Add(time.Minute), lim)
	require.ErrorIs(t, err, store.ErrNotFound)

	// Running jobs whose leases expired do not hold a slot.
	after := now.Add(2 * time.Minute)
	_, err = f.s.ClaimJob(f.ctx, "r", after, after.Add(time.Minute), lim)
	require.NoError(t, err)
}

func testClaimMaxRunningPerOrg(t *testing.T, f *fixture) {
	a, pa := f.org("a")
	b, pb := f.org("b")
	f.pendingJobs(pa, 3, t0)                  // due first
	f.pendingJobs(pb, 2, t0.Add(time.Second)) // due later
	now := t0.Add(time.Minute)
	lim := store.ClaimLimits{MaxRunningPerOrg: 1}
	got, err := f.s.ClaimJob(f.ctx, "r", now, now.Add(time.Minute), lim)
	require.NoError(t, err)
	require.Equal(t, a.ID, got.OrgID)
	got, err = f.s.ClaimJob(f.ctx, "r", now, now.Add(time.Minute), lim)
	require.NoError(t, err)
	require.Equal(t, b.ID, got.OrgID, "org a is at its cap: b's job goes ahead")
	_, err = f.s.ClaimJob(f.ctx, "r", now, now.Add(time.Minute), lim)
	require.ErrorIs(t, err, store.ErrNotFound)

	lim.MaxRunningPerOrg, lim.MaxRunning = 2, 3
	got, err = f.s.ClaimJob(f.ctx, "r", now, now.Add(time.Minute), lim)
	require.NoError(t, err)
	require.Equal(t, a.ID, got.OrgID)
	_, err = f.s.ClaimJob(f.ctx, "r", now, now.Add(time.Minute), lim)
	require.ErrorIs(t, err, store.ErrNotFound, "the global cap binds first")
}

func testClaimOneRunningPerWorkspace(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	w := f.ws(p, "w")
	running := newJob(w, store.JobRunning, func(j *store.RestartJob) {
		j.LeaseOwner, j.LeaseUntil, j.StartedAt, j.Attempts = "r0", t0.Add(time.Hour), t0, 1
	})
	pending := newJob(w, store.JobPending, func(j *store.RestartJob) { j.RunAfter = t0.Add(-time.Hour) })
	f.jobs(running, pending)
	now := t0.Add(time.Minute)
	_, err := f.s.ClaimJob(f.ctx, "r1", now, now.Add(time.Minute), noLimits)
	require.ErrorIs(t, err, store.ErrNotFound, "its workspace is already restarting")

	// Even when the running job's lease has expired, the pending one waits:
	// the expired job is taken over first.
	late := t0.Add(2 * time.Hour)
	got, err := f.s.ClaimJob(f.ctx, "r1", late, late.Add(time.Minute), noLimits)
	require.NoError(t, err)
	require.Equal(t, running.ID, got.ID)
	_, err = f.s.ClaimJob(f.ctx, "r1", late, late.Add(time.Minute), noLimits)
	require.ErrorIs(t, err, store.ErrNotFound)

	got.State, got.FinishedAt = store.JobSucceeded, late
	require.NoError(t, f.s.UpdateJob(f.ctx, got))
	got, err = f.s.ClaimJob(f.ctx, "r1", late, late.Add(time.Minute), noLimits)
	require.NoError(t, err)
	require.Equal(t, pending.ID, got.ID)
	counts, err := f.s.CountJobsByState(f.ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{store.JobRunning: 1, store.JobSucceeded: 1}, counts)
}

func testClaimLeaseTakeover(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	w := f.ws(p, "w")
	j := newJob(w, store.JobRunning, func(j *store.RestartJob) {
		j.LeaseOwner, j.LeaseUntil, j.StartedAt, j.Attempts, j.Generation = "dead", t0.Add(10*time.Second), t0, 1, 4
	})
	f.jobs(j)

	_, err := f.s.ClaimJob(f.ctx, "alive", t0.Add(5*time.Second), t0.Add(time.Minute), noLimits)
	require.ErrorIs(t, err, store.ErrNotFound, "the lease still holds")
	require.ErrorIs(t, f.s.RenewLease(f.ctx, j.ID, "alive", t0.Add(time.Minute)), store.ErrNotFound, "another owner cannot renew")
	require.NoError(t, f.s.RenewLease(f.ctx, j.ID, "dead", t0.Add(20*time.Second)))
	_, err = f.s.ClaimJob(f.ctx, "alive", t0.Add(15*time.Second), t0.Add(time.Minute), noLimits)
	require.ErrorIs(t, err, store.ErrNotFound, "renewed")

	now := t0.Add(25 * time.Second)
	got, err := f.s.ClaimJob(f.ctx, "alive", now, now.Add(time.Minute), noLimits)
	require.NoError(t, err)
	require.Equal(t, j.ID, got.ID)
	require.Equal(t, "alive", got.LeaseOwner)
	require.Equal(t, 2, got.Attempts)
	require.Equal(t, us(t0), got.StartedAt, "the first start is kept")
	require.EqualValues(t, 4, got.Generation)
	require.ErrorIs(t, f.s.RenewLease(f.ctx, j.ID, "dead", now.Add(time.Hour)), store.ErrNotFound, "the old owner lost it")
	require.NoError(t, f.s.RenewLease(f.ctx, j.ID, "alive", now.Add(time.Hour)))
	stored, err := f.s.GetJob(f.ctx, o.ID, j.ID)
	require.NoError(t, err)
	require.Equal(t, "alive", stored.LeaseOwner)
	require.Equal(t, us(now.Add(time.Hour)), stored.LeaseUntil)
}

func testCountRecentAutoRestarts(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	w := f.ws(p, "w")
	other := f.ws(p, "other")
	since := t0
	started := func(d time.Duration) func(*store.RestartJob) {
		return func(j *store.RestartJob) { j.StartedAt = t0.Add(d) }
	}
	manual := func(j *store.RestartJob) { j.Automatic = false }
	f.jobs(
		newJob(w, store.JobSucceeded, started(time.Minute)),                 // counts
		newJob(w, store.JobFailed, started(0)),                              // counts: since is inclusive
		newJob(w, store.JobRunning, started(2*time.Minute)),                 // counts
		newJob(w, store.JobSucceeded, started(-time.Second)),                // too old
		newJob(w, store.JobSucceeded, started(time.Minute), manual),         // an admin's
		newJob(w, store.JobSkipped, started(time.Minute)),                   // not a restart
		newJob(w, store.JobSuperseded, started(time.Minute)),                // not a restart
		newJob(w, store.JobPending),                                         // not started
		newJob(other, store.JobSucceeded, started(time.Minute)),             // another workspace
		newJob(other, store.JobFailed, started(time.Minute), manual),        // another workspace
		newJob(other, store.JobSucceeded, started(time.Minute+time.Second)), // another workspace
	)
	n, err := f.s.CountRecentAutoRestarts(f.ctx, w.ID, since)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	n, err = f.s.CountRecentAutoRestarts(f.ctx, other.ID, since)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = f.s.CountRecentAutoRestarts(f.ctx, w.ID, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Zero(t, n)
}

func testCountJobsByState(t *testing.T, f *fixture) {
	_, p := f.org("a")
	_, q := f.org("b")
	a, b, c := f.ws(p, "a"), f.ws(p, "b"), f.ws(q, "c")
	f.jobs(newJob(a, store.JobPending), newJob(b, store.JobPending), newJob(c, store.JobPending),
		newJob(a, store.JobRunning), newJob(a, store.JobFailed), newJob(b, store.JobFailed),
		newJob(c, store.JobSkipped), newJob(c, store.JobSuperseded), newJob(c, store.JobSucceeded))
	counts, err := f.s.CountJobsByState(f.ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{
		store.JobPending: 3, store.JobRunning: 1, store.JobFailed: 2,
		store.JobSkipped: 1, store.JobSuperseded: 1, store.JobSucceeded: 1,
	}, counts, "across orgs")
}

func testPropagationFacts(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	other, po := f.org("other")
	k := f.dataKey(true)
	a := f.ws(p, "a")
	b := f.ws(p, "b", func(w *store.Workspace) { w.RestartPolicy = "manual" })
	c := f.ws(p, "c", status("removed"))
	d := f.ws(a, "d", func(w *store.Workspace) {
		w.Protected, w.LoopBroken, w.Runtime, w.Status = true, true, "external", "paused"
	})
	x := f.ws(po, "x")

	secret := func(orgID, wsID, key string) {
		require.NoError(t, f.s.PutSecret(f.ctx, store.Secret{OrgID: orgID, WorkspaceID: wsID, Key: key, KeyID: k.ID,
			Ciphertext: []byte("c"), ValueMAC: "m", Version: 1, CreatedAt: t0, UpdatedAt: t0}))
	}
	secret(o.ID, "", "KEY")     // the global itself overrides nobody
	secret(o.ID, a.ID, "KEY")   // a overrides it
	secret(o.ID, b.ID, "OTHER") // b has another key
	secret(o.ID, p.ID, "KEY")
	secret(other.ID, x.ID, "KEY")

	pending := newJob(b, store.JobPending)
	started := func(d time.Duration) func(*store.RestartJob) {
		return func(j *store.RestartJob) { j.StartedAt = t0.Add(d) }
	}
	f.jobs(pending,
		newJob(a, store.JobSucceeded, started(time.Minute)),
		newJob(a, store.JobRunning, started(2*time.Minute), func(j *store.RestartJob) { j.CreatedAt = t0.Add(time.Minute) }),
		newJob(a, store.JobFailed, started(-time.Hour)),
		newJob(a, store.JobSucceeded, started(time.Minute), func(j *store.RestartJob) { j.Automatic = false }),
		newJob(b, store.JobSucceeded, started(time.Minute)),
		newJob(x, store.JobPending),
	)

	want := map[string]store.PropagationFacts{
		a.ID: {WorkspaceID: a.ID, Kind: store.KindWorkspace, Runtime: "process", Status: "running", RestartPolicy: "auto",
			OverridesKey: true, RecentAutoRestarts: 2, LastAutoRestart: us(t0.Add(time.Minute))},
		b.ID: {WorkspaceID: b.ID, Kind: store.KindWorkspace, Runtime: "process", Status: "running", RestartPolicy: "manual",
			PendingJobID: pending.ID, RecentAutoRestarts: 1, LastAutoRestart: us(t0)},
		d.ID: {WorkspaceID: d.ID, Kind: store.KindWorkspace, Runtime: "external", Status: "paused", RestartPolicy: "auto",
			Protected: true, LoopBroken: true},
	}
	facts, err := f.s.ListPropagationFacts(f.ctx, o.ID, "KEY", t0)
	require.NoError(t, err)
	require.ElementsMatch(t, []store.PropagationFacts{want[a.ID], want[b.ID], want[d.ID]}, facts,
		"live workspaces of the org but the platform, in no particular order")

	// Inside a transaction too (the planner runs there).
	require.NoError(t, f.s.InTx(f.ctx, func(tx store.Store) error {
		facts, err := tx.ListPropagationFacts(f.ctx, o.ID, "OTHER", t0)
		require.NoError(t, err)
		require.Len(t, facts, 3)
		overrides := map[string]bool{}
		for _, f := range facts {
			overrides[f.WorkspaceID] = f.OverridesKey
		}
		require.False(t, overrides[a.ID])
		require.True(t, overrides[b.ID])
		return nil
	}))

	for _, w := range []store.Workspace{a, b, d} {
		got, err := f.s.GetPropagationFacts(f.ctx, o.ID, w.ID, "KEY", t0)
		require.NoError(t, err)
		require.Equal(t, want[w.ID], got)
	}
	got, err := f.s.GetPropagationFacts(f.ctx, o.ID, p.ID, "KEY", t0)
	require.NoError(t, err)
	require.Equal(t, store.PropagationFacts{WorkspaceID: p.ID, Kind: store.KindPlatform, Runtime: "process", Status: "running",
		RestartPolicy: "auto", OverridesKey: true}, got, "one workspace's facts, platform included")
	got, err = f.s.GetPropagationFacts(f.ctx, o.ID, c.ID, "KEY", t0)
	require.NoError(t, err)
	require.Equal(t, "removed", got.Status)
	_, err = f.s.GetPropagationFacts(f.ctx, o.ID, x.ID, "KEY", t0)
	require.ErrorIs(t, err, store.ErrNotFound, "another org's workspace")
	_, err = f.s.GetPropagationFacts(f.ctx, o.ID, "w-missing", "KEY", t0)
	require.ErrorIs(t, err, store.ErrNotFound)

	got, err = f.s.GetPropagationFacts(f.ctx, o.ID, a.ID, "KEY", t0.Add(90*time.Second))
	require.NoError(t, err)
	require.Equal(t, 1, got.RecentAutoRestarts, "since bounds the window")

	facts, err = f.s.ListPropagationFacts(f.ctx, "o-missing", "KEY", t0)
	require.NoError(t, err)
	require.Empty(t, facts)
}

func testExpireLeases(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	a, b, c := f.ws(p, "a"), f.ws(p, "b"), f.ws(p, "c")
	running := func(owner string) func(*store.RestartJob) {
		return func(j *store.RestartJob) {
			j.LeaseOwner, j.LeaseUntil, j.StartedAt, j.Attempts = owner, t0.Add(time.Hour), t0, 1
		}
	}
	ja, jb := newJob(a, store.JobRunning, running("old-1")), newJob(b, store.JobRunning, running("old-2"))
	f.jobs(ja, jb, newJob(c, store.JobPending, func(j *store.RestartJob) { j.RunAfter = t0.Add(time.Hour) }),
		newJob(c, store.JobSucceeded))
	_, err := f.s.ClaimJob(f.ctx, "new", t0, t0.Add(time.Minute), noLimits)
	require.ErrorIs(t, err, store.ErrNotFound, "the leases hold")

	n, err := f.s.ExpireLeases(f.ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n, "running jobs only")
	got, err := f.s.GetJob(f.ctx, o.ID, ja.ID)
	require.NoError(t, err)
	require.Equal(t, store.JobRunning, got.State)
	require.True(t, got.LeaseUntil.IsZero())

	claimed := claimAll(t, f, 1, t0, noLimits)
	require.Equal(t, map[string]string{ja.ID: "replica-0", jb.ID: "replica-0"}, claimed, "taken over at once")
	require.ErrorIs(t, f.s.RenewLease(f.ctx, ja.ID, "old-1", t0.Add(time.Hour)), store.ErrNotFound)
}

func testReleaseLeases(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	a, b := f.ws(p, "a"), f.ws(p, "b")
	mine := newJob(a, store.JobRunning, func(j *store.RestartJob) { j.LeaseOwner, j.LeaseUntil = "r1", t0.Add(time.Hour) })
	theirs := newJob(b, store.JobRunning, func(j *store.RestartJob) { j.LeaseOwner, j.LeaseUntil = "r2", t0.Add(time.Hour) })
	f.jobs(mine, theirs)
	n, err := f.s.ReleaseLeases(f.ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	got, err := f.s.ClaimJob(f.ctx, "r3", t0, t0.Add(time.Minute), noLimits)
	require.NoError(t, err)
	require.Equal(t, mine.ID, got.ID, "released: taken over at once")
	still, err := f.s.GetJob(f.ctx, o.ID, theirs.ID)
	require.NoError(t, err)
	require.Equal(t, "r2", still.LeaseOwner)
}

// LockOrg inside InTx serializes an org's planners: a plain read after it
// sees what the previous holder committed, so no update is lost.
func testLockOrg(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	w := f.ws(p, "counter")
	require.NoError(t, f.s.LockOrg(f.ctx, o.ID), "outside a transaction it does nothing")
	const n = 8
	inTxConcurrently(t, f, n, func(tx store.Store) error {
		if err := tx.LockOrg(f.ctx, o.ID); err != nil {
			return err
		}
		cur, err := tx.GetWorkspace(f.ctx, o.ID, w.ID)
		if err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
		cur.Generation++
		return tx.UpdateWorkspace(f.ctx, cur)
	})
	got, err := f.s.GetWorkspace(f.ctx, o.ID, w.ID)
	require.NoError(t, err)
	require.EqualValues(t, n, got.Generation)
}

// ---- transactions

var errBoom = errors.New("boom")

func testInTxCommit(t *testing.T, f *fixture) {
	o := store.Org{ID: id("o"), Name: "acme", CreatedAt: t0}
	var p store.Workspace
	require.NoError(t, f.s.InTx(f.ctx, func(tx store.Store) error {
		require.Equal(t, f.s.Dialect(), tx.Dialect())
		if err := tx.CreateOrg(f.ctx, o); err != nil {
			return err
		}
		p = store.Workspace{ID: id("w"), OrgID: o.ID, Name: "platform", Kind: store.KindPlatform, Runtime: "process",
			Spec: "{}", Status: "running", RestartPolicy: "auto", CreatedAt: t0, UpdatedAt: t0}
		if err := tx.InsertWorkspace(f.ctx, p); err != nil {
			return err
		}
		_, err := tx.AppendAudit(f.ctx, store.AuditEntry{OrgID: o.ID, At: t0, PrincipalKind: "admin", Action: "org.create", Outcome: "ok"})
		return err
	}))
	_, err := f.s.GetOrg(f.ctx, o.ID)
	require.NoError(t, err)
	_, err = f.s.GetPlatformWorkspace(f.ctx, o.ID)
	require.NoError(t, err)
	audit, err := f.s.ListAudit(f.ctx, o.ID, store.AuditFilter{})
	require.NoError(t, err)
	require.Len(t, audit, 1)
}

func testInTxRollback(t *testing.T, f *fixture) {
	existing, ep := f.org("existing")
	k := f.dataKey(true)
	o := store.Org{ID: id("o"), Name: "acme", CreatedAt: t0}
	var w store.Workspace
	err := f.s.InTx(f.ctx, func(tx store.Store) error {
		require.NoError(t, tx.CreateOrg(f.ctx, o))
		w = newWorkspace(ep, "new")
		require.NoError(t, tx.InsertWorkspace(f.ctx, w))
		require.NoError(t, tx.PutSecret(f.ctx, store.Secret{OrgID: existing.ID, Key: "K", KeyID: k.ID, Ciphertext: []byte("c"),
			ValueMAC: "m", Version: 1, CreatedAt: t0, UpdatedAt: t0}))
		require.NoError(t, tx.InsertJobs(f.ctx, []store.RestartJob{newJob(w, store.JobPending)}))
		_, err := tx.AppendAudit(f.ctx, store.AuditEntry{OrgID: existing.ID, At: t0, PrincipalKind: "admin", Action: "x", Outcome: "ok"})
		require.NoError(t, err)
		got, err := tx.GetOrg(f.ctx, o.ID)
		require.NoError(t, err, "the transaction sees its own writes")
		require.Equal(t, "acme", got.Name)
		return fmt.Errorf("wrapped: %w", errBoom)
	})
	require.ErrorIs(t, err, errBoom, "fn's error comes back")

	_, err = f.s.GetOrg(f.ctx, o.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "nothing written")
	_, err = f.s.GetWorkspace(f.ctx, existing.ID, w.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	secrets, err := f.s.ListSecretMACs(f.ctx, existing.ID)
	require.NoError(t, err)
	require.Empty(t, secrets)
	counts, err := f.s.CountJobsByState(f.ctx)
	require.NoError(t, err)
	require.Empty(t, counts)
	audit, err := f.s.ListAudit(f.ctx, existing.ID, store.AuditFilter{})
	require.NoError(t, err)
	require.Empty(t, audit)

	// A store error inside also rolls back what came before it.
	err = f.s.InTx(f.ctx, func(tx store.Store) error {
		require.NoError(t, tx.CreateOrg(f.ctx, o))
		return tx.CreateOrg(f.ctx, store.Org{ID: id("o"), Name: "existing", CreatedAt: t0})
	})
	require.ErrorIs(t, err, store.ErrConflict)
	_, err = f.s.GetOrg(f.ctx, o.ID)
	require.ErrorIs(t, err, store.ErrNotFound)

	// The store is usable afterwards.
	require.NoError(t, f.s.InTx(f.ctx, func(tx store.Store) error { return tx.CreateOrg(f.ctx, o) }))
	_, err = f.s.GetOrg(f.ctx, o.ID)
	require.NoError(t, err)
}

func testInTxNested(t *testing.T, f *fixture) {
	a := store.Org{ID: id("o"), Name: "a", CreatedAt: t0}
	b := store.Org{ID: id("o"), Name: "b", CreatedAt: t0}
	err := f.s.InTx(f.ctx, func(tx store.Store) error {
		require.NoError(t, tx.CreateOrg(f.ctx, a))
		require.NoError(t, tx.InTx(f.ctx, func(inner store.Store) error {
			_, err := inner.GetOrg(f.ctx, a.ID)
			require.NoError(t, err, "the inner transaction is the outer one")
			return inner.CreateOrg(f.ctx, b)
		}))
		require.Error(t, tx.Close(), "no closing the store from inside a transaction")
		return errBoom
	})
	require.ErrorIs(t, err, errBoom)
	orgs, err := f.s.ListOrgs(f.ctx)
	require.NoError(t, err)
	require.Empty(t, orgs, "the outer rollback takes the inner writes back")

	require.NoError(t, f.s.InTx(f.ctx, func(tx store.Store) error {
		if err := tx.CreateOrg(f.ctx, a); err != nil {
			return err
		}
		return tx.InTx(f.ctx, func(inner store.Store) error { return inner.CreateOrg(f.ctx, b) })
	}))
	orgs, err = f.s.ListOrgs(f.ctx)
	require.NoError(t, err)
	require.Len(t, orgs, 2)
}

func testInTxIsolation(t *testing.T, f *fixture) {
	o := store.Org{ID: id("o"), Name: "acme", CreatedAt: t0}
	require.NoError(t, f.s.InTx(f.ctx, func(tx store.Store) error {
		require.NoError(t, tx.CreateOrg(f.ctx, o))
		_, err := f.s.GetOrg(f.ctx, o.ID)
		require.ErrorIs(t, err, store.ErrNotFound, "uncommitted writes are invisible outside")
		orgs, err := f.s.ListOrgs(f.ctx)
		require.NoError(t, err)
		require.Empty(t, orgs)
		return nil
	}))
	_, err := f.s.GetOrg(f.ctx, o.ID)
	require.NoError(t, err)
}

// A panic inside fn must not leave the transaction open: on SQLite it would
// hold the only writer connection forever, on Postgres its row locks.
func testInTxPanic(t *testing.T, f *fixture) {
	o := store.Org{ID: id("o"), Name: "acme", CreatedAt: t0}
	func() {
		defer func() { require.Equal(t, errBoom, recover()) }()
		_ = f.s.InTx(context.Background(), func(tx store.Store) error {
			require.NoError(t, tx.CreateOrg(f.ctx, o))
			panic(errBoom)
		})
	}()
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, f.s.InTx(ctx, func(tx store.Store) error { return tx.CreateOrg(ctx, o) }),
		"the panicked transaction was rolled back and released")
}

func testContext(t *testing.T, f *fixture) {
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	_, err := f.s.ListOrgs(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, store.ErrUnavailable, "the caller gave up: not the store's fault")
	err = f.s.InTx(ctx, func(store.Store) error { return nil })
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, store.ErrUnavailable)
	require.NoError(t, f.s.Ping(f.ctx))
}

// ---- concurrency

func claimAll(t *testing.T, f *fixture, workers int, now time.Time, lim store.ClaimLimits) map[string]string {
	t.Helper()
	var mu sync.Mutex
	claimed := map[string]string{} // job id -> owner
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		owner := fmt.Sprintf("replica-%d", i)
		wg.Go(func() {
			for {
				j, err := f.s.ClaimJob(f.ctx, owner, now, now.Add(time.Minute), lim)
				if errors.Is(err, store.ErrNotFound) {
					return
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", owner, err)
					return
				}
				mu.Lock()
				if prev, dup := claimed[j.ID]; dup {
					errs <- fmt.Errorf("job %s claimed by %s and %s", j.ID, prev, owner)
				}
				claimed[j.ID] = owner
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return claimed
}

func testConcurrentClaims(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	js := f.pendingJobs(p, 50, t0)
	claimed := claimAll(t, f, 8, t0.Add(time.Second), store.ClaimLimits{MaxRunning: 0})
	require.Len(t, claimed, 50, "every job claimed exactly once")
	for _, j := range js {
		require.Contains(t, claimed, j.ID)
	}
	counts, err := f.s.CountJobsByState(f.ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{store.JobRunning: 50}, counts)
}

func testConcurrentClaimCap(t *testing.T, f *fixture) {
	_, p := f.org("a")
	_, q := f.org("b")
	f.pendingJobs(p, 20, t0)
	f.pendingJobs(q, 20, t0)
	claimed := claimAll(t, f, 8, t0.Add(time.Second), store.ClaimLimits{MaxRunning: 5, MaxRunningPerOrg: 3})
	require.Len(t, claimed, 5, "the global cap holds under concurrent claims")
	counts, err := f.s.CountJobsByState(f.ctx)
	require.NoError(t, err)
	require.Equal(t, 5, counts[store.JobRunning])
	// And per org: 3 + 2 (or 2 + 3).
	perOrg := map[string]int{}
	for _, w := range []store.Workspace{p, q} {
		list, err := f.s.ListJobs(f.ctx, w.OrgID, "", 100)
		require.NoError(t, err)
		for _, j := range list {
			if j.State == store.JobRunning {
				perOrg[w.OrgID]++
			}
		}
	}
	for org, n := range perOrg {
		require.LessOrEqual(t, n, 3, "org %s", org)
	}
}

func testConcurrentSiblingName(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	const n = 8
	var wg sync.WaitGroup
	results := make(chan error, n)
	for range n {
		wg.Go(func() {
			results <- f.s.InTx(f.ctx, func(tx store.Store) error {
				if _, err := tx.GetPlatformWorkspace(f.ctx, o.ID); err != nil {
					return err
				}
				return tx.InsertWorkspace(f.ctx, newWorkspace(p, "same"))
			})
		})
	}
	wg.Wait()
	close(results)
	var ok int
	for err := range results {
		if err == nil {
			ok++
			continue
		}
		require.ErrorIs(t, err, store.ErrConflict)
	}
	require.Equal(t, 1, ok, "exactly one of the racing creates wins")
	kids, err := f.s.ListChildren(f.ctx, o.ID, p.ID)
	require.NoError(t, err)
	require.Len(t, kids, 1)
}

// ---- issue 8: compare-and-set and row locks

func testJobForUpdateSerializes(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	w := f.ws(p, "w")
	j := newJob(w, store.JobRunning)
	f.jobs(j)
	const n = 8
	inTxConcurrently(t, f, n, func(tx store.Store) error {
		cur, err := tx.GetJobForUpdate(f.ctx, o.ID, j.ID)
		if err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond) // widen the window a lost update needs
		cur.Attempts++
		return tx.UpdateJob(f.ctx, cur)
	})
	got, err := f.s.GetJob(f.ctx, o.ID, j.ID)
	require.NoError(t, err)
	require.Equal(t, n, got.Attempts)

	pend := newJob(w, store.JobPending)
	f.jobs(pend)
	err = f.s.InTx(f.ctx, func(tx store.Store) error {
		got, err := tx.GetPendingJobForUpdate(f.ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, pend.ID, got.ID)
		return nil
	})
	require.NoError(t, err)
	_, err = f.s.GetPendingJobForUpdate(f.ctx, p.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testMergeHoldsPending: a change merged into a pending job holds it, so a
// concurrent claim either waits for the merge to commit or leaves the job
// alone; it never takes the job as it was before the merge. A job claimed
// first is no longer pending to the merge.
func testMergeHoldsPending(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	w := f.ws(p, "w")
	pend := newJob(w, store.JobPending, func(j *store.RestartJob) { j.RunAfter = t0.Add(-time.Hour) })
	f.jobs(pend)

	locked := make(chan struct{})
	claimed := make(chan error, 1)
	var got store.RestartJob
	err := f.s.InTx(f.ctx, func(tx store.Store) error {
		held, err := tx.LockPendingJobs(f.ctx, []string{pend.ID, "j-unknown"})
		if err != nil {
			return err
		}
		require.Equal(t, map[string]bool{pend.ID: true}, held)
		cur, err := tx.GetJob(f.ctx, o.ID, pend.ID)
		if err != nil {
			return err
		}
		cur.Note = "merged"
		if err := tx.UpdateJob(f.ctx, cur); err != nil {
			return err
		}
		close(locked)
		go func() {
			var err error
			got, err = f.s.ClaimJob(f.ctx, "r1", t0, t0.Add(time.Minute), noLimits)
			claimed <- err
		}()
		if f.s.Dialect() == store.Postgres {
			// SKIP LOCKED: the claim passes the held job by, at once.
			require.ErrorIs(t, <-claimed, store.ErrNotFound)
		}
		return nil
	})
	require.NoError(t, err)
	<-locked
	if f.s.Dialect() != store.Postgres {
		// SQLite: the claim waited for the writer; it sees the merge.
		require.NoError(t, <-claimed)
		require.Equal(t, "merged", got.Note)
	} else {
		got, err = f.s.ClaimJob(f.ctx, "r1", t0, t0.Add(time.Minute), noLimits)
		require.NoError(t, err)
		require.Equal(t, "merged", got.Note)
	}

	// Claimed (running): a merge no longer finds it pending.
	err = f.s.InTx(f.ctx, func(tx store.Store) error {
		held, err := tx.LockPendingJobs(f.ctx, []string{pend.ID})
		require.NoError(t, err)
		if f.s.Dialect() == store.Postgres {
			require.Empty(t, held)
		}
		return nil
	})
	require.NoError(t, err)
	held, err := f.s.LockPendingJobs(f.ctx, []string{pend.ID})
	require.NoError(t, err)
	require.Empty(t, held, "outside a transaction it reads")
}

func testListChildrenForUpdate(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	a := f.ws(p, "a")
	f.ws(p, "b")
	f.ws(p, "gone", status("removed"))
	kids, err := f.s.ListChildrenForUpdate(f.ctx, o.ID, p.ID)
	require.NoError(t, err)
	require.Len(t, kids, 2)
	const n = 8
	inTxConcurrently(t, f, n, func(tx store.Store) error {
		kids, err := tx.ListChildrenForUpdate(f.ctx, o.ID, p.ID)
		if err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
		for _, k := range kids {
			k.Generation++
			if err := tx.UpdateWorkspace(f.ctx, k); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := f.s.GetWorkspace(f.ctx, o.ID, a.ID)
	require.NoError(t, err)
	require.EqualValues(t, n, got.Generation)
}

// testInTxRetriesDeadlock: two transactions lock two rows in opposite
// orders. On Postgres one of them loses a deadlock; InTx runs it again and
// both commit. (SQLite has one writer: no deadlock to lose.)
func testInTxRetriesDeadlock(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	a := f.ws(p, "a")
	b := f.ws(p, "b")
	pg := f.s.Dialect() == store.Postgres
	var firstLocks sync.WaitGroup
	firstLocks.Add(2)
	var runs atomic.Int32
	bump := func(first, second store.Workspace) error {
		attempt := 0
		return f.s.InTx(f.ctx, func(tx store.Store) error {
			attempt++
			runs.Add(1)
			for i, id := range []string{first.ID, second.ID} {
				w, err := tx.GetWorkspaceForUpdate(f.ctx, o.ID, id)
				if err != nil {
					return err
				}
				w.Generation++
				if err := tx.UpdateWorkspace(f.ctx, w); err != nil {
					return err
				}
				if i == 0 && pg && attempt == 1 {
					firstLocks.Done()
					firstLocks.Wait() // both hold their first row: a deadlock follows
				}
			}
			return nil
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() { errs <- bump(a, b) })
	wg.Go(func() { errs <- bump(b, a) })
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for _, w := range []store.Workspace{a, b} {
		got, err := f.s.GetWorkspace(f.ctx, o.ID, w.ID)
		require.NoError(t, err)
		require.EqualValues(t, 2, got.Generation, "each transaction counted once")
	}
	if pg {
		require.EqualValues(t, 3, runs.Load(), "the loser ran again")
	}
}

func testLockServer(t *testing.T, f *fixture) {
	release, err := f.s.LockServer()
	require.NoError(t, err)
	other, err := store.Open(f.ctx, f.url)
	require.NoError(t, err)
	defer other.Close()
	if f.s.Dialect() == store.SQLite {
		_, err = other.LockServer()
		require.ErrorIs(t, err, store.ErrLocked)
		require.Contains(t, err.Error(), "one server at a time")
		release()
		again, err := other.LockServer()
		require.NoError(t, err, "free once released")
		again()
		return
	}
	again, err := other.LockServer()
	require.NoError(t, err, "replicas share a Postgres store")
	again()
	release()
}

func testSupervision(t *testing.T, f *fixture) {
	_, p := f.org("acme")
	w := f.ws(p, "w")
	claim := func(owner string, now time.Time, force bool) bool {
		t.Helper()
		ok, err := f.s.ClaimSupervision(f.ctx, w.ID, owner, 3, now, now.Add(time.Minute), force)
		require.NoError(t, err)
		return ok
	}
	require.True(t, claim("r1", t0, false), "free")
	require.True(t, claim("r1", t0.Add(time.Second), false), "its own")
	require.False(t, claim("r2", t0.Add(30*time.Second), false), "r1's lease is live")
	require.True(t, claim("r2", t0.Add(2*time.Minute), false), "r1's lease expired")
	require.True(t, claim("r1", t0.Add(2*time.Minute), true), "forced")

	require.NoError(t, f.s.RenewSupervision(f.ctx, "r1", t0.Add(time.Hour)))
	got, err := f.s.ListSupervision(f.ctx)
	require.NoError(t, err)
	require.Equal(t, store.Supervision{WorkspaceID: w.ID, Owner: "r1", Generation: 3, Until: us(t0.Add(time.Hour))}, got[w.ID])

	require.NoError(t, f.s.ReleaseSupervision(f.ctx, w.ID, "r2"), "not r2's: nothing")
	got, err = f.s.ListSupervision(f.ctx)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.NoError(t, f.s.ReleaseSupervision(f.ctx, w.ID, "r1"))
	got, err = f.s.ListSupervision(f.ctx)
	require.NoError(t, err)
	require.Empty(t, got)

	require.True(t, claim("r3", t0, false))
	require.NoError(t, f.s.ClearSupervision(f.ctx))
	got, err = f.s.ListSupervision(f.ctx)
	require.NoError(t, err)
	require.Empty(t, got)
}

func testListOpenJobs(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	w, other := f.ws(p, "w"), f.ws(p, "other")
	running := newJob(w, store.JobRunning, func(j *store.RestartJob) { j.CreatedAt = t0 })
	pending := newJob(w, store.JobPending, func(j *store.RestartJob) { j.CreatedAt = t0.Add(time.Second) })
	var decisions []store.RestartJob
	for i := range 20 { // many decisions recorded since: they do not hide the open jobs
		decisions = append(decisions, newJob(w, store.JobSkipped, func(j *store.RestartJob) { j.CreatedAt = t0.Add(time.Duration(2+i) * time.Second) }))
	}
	f.jobs(append([]store.RestartJob{running, pending, newJob(other, store.JobPending)}, decisions...)...)
	got, err := f.s.ListOpenJobs(f.ctx, o.ID, w.ID)
	require.NoError(t, err)
	require.Equal(t, []string{pending.ID, running.ID}, jobIDs(got))
}

func testUsers(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	other, _ := f.org("other")
	owner := store.User{ID: id("u"), OrgID: o.ID, Name: "owner", Role: store.RoleOwner, CreatedAt: t0}
	ann := store.User{ID: id("u"), OrgID: o.ID, Name: "ann", Role: store.RoleViewer, CreatedAt: t0}
	require.NoError(t, f.s.InsertUser(f.ctx, owner))
	require.NoError(t, f.s.InsertUser(f.ctx, ann))
	dup := store.User{ID: id("u"), OrgID: o.ID, Name: "ann", Role: store.RoleAdmin, CreatedAt: t0}
	require.ErrorIs(t, f.s.InsertUser(f.ctx, dup), store.ErrConflict, "live names are unique per org")
	require.NoError(t, f.s.InsertUser(f.ctx, store.User{ID: id("u"), OrgID: other.ID, Name: "ann", Role: store.RoleOwner, CreatedAt: t0}))
	require.ErrorIs(t, f.s.InsertUser(f.ctx, store.User{ID: id("u"), OrgID: o.ID, Name: "bad", Role: "god", CreatedAt: t0}),
		store.ErrConflict, "the schema knows the roles")

	got, err := f.s.GetUserByName(f.ctx, o.ID, "ann")
	require.NoError(t, err)
	require.Equal(t, ann.ID, got.ID)
	_, err = f.s.GetUser(f.ctx, other.ID, ann.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "scoped by org")
	list, err := f.s.ListUsers(f.ctx, o.ID)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "ann", list[0].Name)

	tok := store.Token{ID: id("t"), OrgID: o.ID, Kind: store.TokenUser, Name: "laptop", UserID: ann.ID, SecretHash: []byte("h"), CreatedAt: t0}
	require.NoError(t, f.s.InsertToken(f.ctx, tok))
	back, err := f.s.GetToken(f.ctx, tok.ID)
	require.NoError(t, err)
	require.Equal(t, ann.ID, back.UserID)
	require.ErrorIs(t, f.s.InsertToken(f.ctx, store.Token{ID: id("t"), OrgID: o.ID, Kind: store.TokenUser, Name: "x", SecretHash: []byte("h"), CreatedAt: t0}),
		store.ErrConflict, "a user token names its person")
	require.ErrorIs(t, f.s.InsertToken(f.ctx, store.Token{ID: id("t"), OrgID: o.ID, Kind: store.TokenAdmin, Name: "x", UserID: ann.ID, SecretHash: []byte("h"), CreatedAt: t0}),
		store.ErrConflict, "only user tokens name a person")

	require.NoError(t, f.s.RemoveUser(f.ctx, o.ID, ann.ID, t0.Add(time.Hour)))
	require.ErrorIs(t, f.s.RemoveUser(f.ctx, o.ID, ann.ID, t0.Add(2*time.Hour)), store.ErrNotFound, "once")
	back, err = f.s.GetToken(f.ctx, tok.ID)
	require.NoError(t, err)
	require.Equal(t, us(t0.Add(time.Hour)), back.RevokedAt, "their tokens are revoked")
	gone, err := f.s.GetUser(f.ctx, o.ID, ann.ID)
	require.NoError(t, err)
	require.False(t, gone.RemovedAt.IsZero())
	_, err = f.s.GetUserByName(f.ctx, o.ID, "ann")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.NoError(t, f.s.InsertUser(f.ctx, dup), "the name is free again")
	_ = p
}

func testMaxSpecLength(t *testing.T, f *fixture) {
	o, p := f.org("acme")
	n, err := f.s.MaxSpecLength(f.ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, 2, n, "the platform's {}")
	const big = `{"env":{"A":"é"}}` // one more byte than characters
	f.ws(p, "big", func(w *store.Workspace) { w.Spec = big })
	f.ws(p, "gone", func(w *store.Workspace) {
		w.Spec = `{"env":{"A":"` + strings.Repeat("x", 100) + `"}}`
		w.Status = "removed"
	})
	n, err = f.s.MaxSpecLength(f.ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, len(big), n, "bytes, live workspaces only")
}

func testPolicy(t *testing.T, f *fixture) {
	o, _ := f.org("acme")
	other, _ := f.org("other")
	_, err := f.s.GetPolicy(f.ctx, o.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "never set")
	p := store.StoredPolicy{OrgID: o.ID, Body: `{"quorum":2}`, UpdatedAt: t0, UpdatedBy: "t1"}
	require.NoError(t, f.s.PutPolicy(f.ctx, p))
	p.Body, p.UpdatedAt = `{"quorum":3}`, t0.Add(time.Minute)
	require.NoError(t, f.s.PutPolicy(f.ctx, p), "replaced")
	got, err := f.s.GetPolicy(f.ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, store.StoredPolicy{OrgID: o.ID, Body: `{"quorum":3}`, UpdatedAt: us(t0.Add(time.Minute)), UpdatedBy: "t1"}, got)
	_, err = f.s.GetPolicy(f.ctx, other.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "per org")
}

// inTxConcurrently runs fn in n transactions at once and requires that all
// of them commit.
func inTxConcurrently(t *testing.T, f *fixture, n int, fn func(tx store.Store) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- f.s.InTx(f.ctx, fn) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}
