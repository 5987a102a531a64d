package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

// The platform workspace is the org root (DESIGN "Concepts"): exactly one
// per org, never deleted, paused or re-parented; the tree has no cycles;
// deleting a subtree takes cascade=true. Checked on both store engines.
func TestPlatformInvariants(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, testenv.Options{Postgres: engine == "postgres"})
			require.Equal(t, engine, e.Store.Dialect())
			t.Run("root-is-fixed", func(t *testing.T) { platformRootIsFixed(t, e) })
			t.Run("no-cycles", func(t *testing.T) { noCycles(t, e) })
			t.Run("cascade-delete", func(t *testing.T) { cascadeDelete(t, e) })
			t.Run("one-platform-per-org", func(t *testing.T) { onePlatformPerOrg(t, e) })
			t.Run("concurrent-create-org", func(t *testing.T) { concurrentCreateOrg(t, e) })
		})
	}
}

func platformRootIsFixed(t *testing.T, e *testenv.Env) {
	ctx := context.Background()
	a := newAPI(t, e)
	p := e.Org.Platform.ID
	x, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("x"), Start: new(false)})
	require.NoError(t, err)
	before, err := e.Admin.GetWorkspace(ctx, p)
	require.NoError(t, err)
	require.Equal(t, "platform", before.Kind)
	require.Nil(t, before.ParentID, "the platform workspace is the root")

	// An admin bound to the platform workspace (the concierge) is refused
	// the same: the rule is about the workspace, not the caller.
	acting, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: uniq("concierge"), ActingWorkspaceID: p})
	require.NoError(t, err)
	for _, tok := range []struct{ name, secret string }{{"admin", e.AdminToken}, {"acting-admin", acting.Secret}} {
		for _, c := range []struct {
			name, method, path, body, code string
		}{
			{"delete", "DELETE", "/v1/workspaces/" + p, "", "platform_workspace"},
			{"delete-cascade", "DELETE", "/v1/workspaces/" + p + "?cascade=true", "", "platform_workspace"},
			{"pause", "POST", "/v1/workspaces/" + p + "/pause", "", "platform_workspace"},
			{"reparent", "PATCH", "/v1/workspaces/" + p, `{"parent_id":"` + x.ID + `"}`, "platform_workspace"},
			{"reparent-to-empty", "PATCH", "/v1/workspaces/" + p, `{"parent_id":""}`, "platform_workspace"},
			{"reparent-to-self", "PATCH", "/v1/workspaces/" + p, `{"parent_id":"` + p + `"}`, "platform_workspace"},
			{"reparent-with-other-changes", "PATCH", "/v1/workspaces/" + p, `{"protected":true,"parent_id":"` + x.ID + `"}`, "platform_workspace"},
		} {
			t.Run(tok.name+"/"+c.name, func(t *testing.T) {
				req := call{Method: c.method, Path: c.path, Token: tok.secret}
				if c.body != "" {
					req.Body = []byte(c.body)
				}
				code, _ := requireErrorShape(t, a.send(t, req), http.StatusUnprocessableEntity)
				require.Equal(t, c.code, code)
				after, err := e.Admin.GetWorkspace(ctx, p)
				require.NoError(t, err)
				require.Equal(t, before, after, "a refused change touched the platform workspace")
			})
		}
	}
	// The root cannot be given a sibling root either: a workspace always
	// has a parent.
	r := a.send(t, call{Method: "PATCH", Path: "/v1/workspaces/" + x.ID, Token: e.AdminToken, Body: []byte(`{"parent_id":""}`)})
	requireErrorShape(t, r, http.StatusUnprocessableEntity)
}

func noCycles(t *testing.T, e *testenv.Env) {
	ctx := context.Background()
	a := newAPI(t, e)
	// x <- y <- z, and a sibling s of x.
	x, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("x"), Start: new(false)})
	require.NoError(t, err)
	y, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "y", ParentID: x.ID, Start: new(false)})
	require.NoError(t, err)
	z, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "z", ParentID: y.ID, Start: new(false)})
	require.NoError(t, err)
	s, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("s"), Start: new(false)})
	require.NoError(t, err)

	for _, c := range []struct{ name, id, parent string }{
		{"under-grandchild", x.ID, z.ID},
		{"under-child", x.ID, y.ID},
		{"under-itself", x.ID, x.ID},
		{"middle-under-its-child", y.ID, z.ID},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, err := e.Admin.GetWorkspace(ctx, c.id)
			require.NoError(t, err)
			r := a.send(t, call{Method: "PATCH", Path: "/v1/workspaces/" + c.id, Token: e.AdminToken,
				Body: mustJSON(t, map[string]string{"parent_id": c.parent})})
			code, _ := requireErrorShape(t, r, http.StatusUnprocessableEntity)
			require.Equal(t, "cycle", code)
			after, err := e.Admin.GetWorkspace(ctx, c.id)
			require.NoError(t, err)
			require.Equal(t, before, after)
		})
	}
	// Moving a subtree elsewhere (not into itself) is fine.
	moved, err := e.Admin.PatchWorkspace(ctx, y.ID, client.PatchWorkspace{ParentID: &s.ID})
	require.NoError(t, err)
	require.Equal(t, s.ID, *moved.ParentID)
	// ... and then x under z is no cycle any more.
	moved, err = e.Admin.PatchWorkspace(ctx, x.ID, client.PatchWorkspace{ParentID: &z.ID})
	require.NoError(t, err)
	require.Equal(t, z.ID, *moved.ParentID)
	// s <- y <- z <- x now: s under x would close the loop.
	r := a.send(t, call{Method: "PATCH", Path: "/v1/workspaces/" + s.ID, Token: e.AdminToken,
		Body: mustJSON(t, map[string]string{"parent_id": x.ID})})
	code, _ := requireErrorShape(t, r, http.StatusUnprocessableEntity)
	require.Equal(t, "cycle", code)
}

func cascadeDelete(t *testing.T, e *testenv.Env) {
	ctx := context.Background()
	a := newAPI(t, e)
	// x <- y (with a running box) <- z, and x <- w; a sibling s of x.
	x, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("x"), Start: new(false)})
	require.NoError(t, err)
	y, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "y", ParentID: x.ID, Spec: boxSpec})
	require.NoError(t, err)
	z, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "z", ParentID: y.ID, Start: new(false)})
	require.NoError(t, err)
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "w", ParentID: x.ID, Start: new(false)})
	require.NoError(t, err)
	s, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("s"), Start: new(false)})
	require.NoError(t, err)
	waitStatus(t, e.Admin, y.ID, "running", 1)
	subtree := []string{x.ID, y.ID, z.ID, w.ID}

	for _, path := range []string{"/v1/workspaces/" + x.ID, "/v1/workspaces/" + x.ID + "?cascade=false", "/v1/workspaces/" + y.ID} {
		code, msg := requireErrorShape(t, a.send(t, call{Method: "DELETE", Path: path, Token: e.AdminToken}), http.StatusConflict)
		require.Equal(t, "conflict", code)
		require.Contains(t, msg, "cascade")
	}
	for _, id := range subtree {
		got, err := e.Admin.GetWorkspace(ctx, id)
		require.NoError(t, err)
		require.NotEqual(t, "removed", got.Status, "a refused delete removed %s", id)
	}

	// A leaf needs no cascade.
	res, err := e.Admin.DeleteWorkspace(ctx, z.ID, false)
	require.NoError(t, err)
	require.Equal(t, []string{z.ID}, res.Removed)

	res, err = e.Admin.DeleteWorkspace(ctx, x.ID, true)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{x.ID, y.ID, w.ID}, res.Removed)
	require.Equal(t, x.ID, res.Removed[len(res.Removed)-1], "children are removed before their parent")
	for _, id := range subtree {
		got, err := e.Admin.GetWorkspace(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "removed", got.Status, "%s", id)
	}
	list, err := e.Admin.ListWorkspaces(ctx)
	require.NoError(t, err)
	var live []string
	for _, l := range list {
		live = append(live, l.ID)
	}
	require.Subset(t, live, []string{e.Org.Platform.ID, s.ID})
	for _, id := range subtree {
		require.NotContains(t, live, id)
	}
	// y's box was stopped.
	eventually(t, 5*time.Second, func() bool {
		for _, h := range e.Fake.Stops() {
			if h.WorkspaceID == y.ID {
				return true
			}
		}
		return false
	}, "the removed workspace's box stopped")

	// Removed is gone for good: no second delete, no children under it.
	requireErrorShape(t, a.send(t, call{Method: "DELETE", Path: "/v1/workspaces/" + x.ID + "?cascade=true", Token: e.AdminToken}), http.StatusNotFound)
	requireErrorShape(t, a.send(t, call{Method: "POST", Path: "/v1/workspaces", Token: e.AdminToken,
		Body: mustJSON(t, map[string]any{"name": "late", "parent_id": x.ID, "start": false})}), http.StatusNotFound)
}

func onePlatformPerOrg(t *testing.T, e *testenv.Env) {
	ctx := context.Background()
	list, err := e.Admin.ListWorkspaces(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, countPlatforms(list))

	// The schema itself refuses a second platform workspace.
	now := time.Now()
	second := store.Workspace{ID: ids.New("w"), OrgID: e.Org.Org.ID, Name: "platform-2", Kind: store.KindPlatform,
		Runtime: core.RuntimeProcess, Spec: "{}", Status: core.StatusStopped, RestartPolicy: core.PolicyAuto,
		CreatedAt: now, UpdatedAt: now}
	err = e.Store.InsertWorkspace(ctx, second)
	require.Error(t, err)
	require.True(t, errors.Is(err, store.ErrConflict), "want ErrConflict, got %v", err)
	// Inside a transaction too (how the service writes).
	second.ID = ids.New("w")
	err = e.Store.InTx(ctx, func(tx store.Store) error { return tx.InsertWorkspace(ctx, second) })
	require.True(t, errors.Is(err, store.ErrConflict), "want ErrConflict, got %v", err)
	// Nor may a platform workspace hang under another workspace.
	second.ID, second.ParentID = ids.New("w"), e.Org.Platform.ID
	err = e.Store.InsertWorkspace(ctx, second)
	require.True(t, errors.Is(err, store.ErrConflict), "want ErrConflict, got %v", err)

	pw, err := e.Store.GetPlatformWorkspace(ctx, e.Org.Org.ID)
	require.NoError(t, err)
	require.Equal(t, e.Org.Platform.ID, pw.ID)
	all, err := e.Store.ListWorkspaces(ctx, e.Org.Org.ID, true, store.ListParams{})
	require.NoError(t, err)
	n := 0
	for _, w := range all {
		if w.Kind == store.KindPlatform {
			n++
		}
	}
	require.Equal(t, 1, n)
}

func countPlatforms(list []client.Workspace) int {
	n := 0
	for _, w := range list {
		if w.Kind == "platform" {
			n++
		}
	}
	return n
}

// concurrentCreateOrg: CreateOrg 20× at once with distinct names gives 20
// orgs, each with exactly one platform workspace and a working admin; the
// same name raced gives exactly one org.
func concurrentCreateOrg(t *testing.T, e *testenv.Env) {
	ctx := context.Background()
	const n = 20
	prefix := uniq("org")
	orgs := make([]core.NewOrg, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			orgs[i], errs[i] = e.Service.CreateOrg(ctx, fmt.Sprintf("%s-%d", prefix, i))
		})
	}
	close(start)
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		require.NoError(t, errs[i], "CreateOrg %d", i)
		o := orgs[i]
		require.False(t, seen[o.Org.ID])
		seen[o.Org.ID] = true
		all, err := e.Store.ListWorkspaces(ctx, o.Org.ID, true, store.ListParams{})
		require.NoError(t, err)
		require.Len(t, all, 1)
		require.Equal(t, store.KindPlatform, all[0].Kind)
		require.Equal(t, o.Platform.ID, all[0].ID)
		require.Empty(t, all[0].ParentID)
		// Its admin sees exactly its platform, and nothing of the others.
		list, err := e.Client(o.Secret).ListWorkspaces(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, o.Platform.ID, list[0].ID)
	}

	// The same name, raced: one wins, the rest are conflicts.
	name := uniq("contested")
	var mu sync.Mutex
	wins, conflicts := 0, 0
	start = make(chan struct{})
	for range 5 {
		wg.Go(func() {
			<-start
			_, err := e.Service.CreateOrg(ctx, name)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if ce, ok := err.(*core.Error); ok && ce.Status == http.StatusConflict {
				conflicts++
			} else {
				t.Errorf("CreateOrg %q: %v", name, err)
			}
		})
	}
	close(start)
	wg.Wait()
	require.Equal(t, 1, wins)
	require.Equal(t, 4, conflicts)
	o, err := e.Service.OrgByName(ctx, name)
	require.NoError(t, err)
	all, err := e.Store.ListWorkspaces(ctx, o.ID, true, store.ListParams{})
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, store.KindPlatform, all[0].Kind)
}
