package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

var linkRE = regexp.MustCompile(`^<(/v1/[^>]+)>; rel="next"$`)

// nextLink returns the path of the next page from the Link header, "" when
// there is none.
func nextLink(t testing.TB, r result) string {
	t.Helper()
	l := r.Header.Values("Link")
	if len(l) == 0 {
		return ""
	}
	require.Len(t, l, 1)
	m := linkRE.FindStringSubmatch(l[0])
	require.NotNil(t, m, "Link header %q", l[0])
	return m[1]
}

// bulkWorkspaces inserts n stopped workspaces under the platform straight
// into the store (the API would take minutes under -race) and returns
// their ids.
func bulkWorkspaces(t testing.TB, e *testenv.Env, n int) []string {
	t.Helper()
	now := time.Now().UTC()
	var out []string
	for start := 0; start < n; start += 500 {
		require.NoError(t, e.Store.InTx(context.Background(), func(tx store.Store) error {
			for j := start; j < start+500 && j < n; j++ {
				w := store.Workspace{ID: ids.New("w"), OrgID: e.Org.Org.ID, ParentID: e.Org.Platform.ID,
					Name: fmt.Sprintf("bulk%05d", j), Kind: store.KindWorkspace, Runtime: "process", Spec: "{}",
					Status: "stopped", RestartPolicy: "auto", CreatedAt: now, UpdatedAt: now}
				if err := tx.InsertWorkspace(context.Background(), w); err != nil {
					return err
				}
				out = append(out, w.ID)
			}
			return nil
		}))
	}
	return out
}

func engines(t *testing.T, fn func(t *testing.T, pg bool)) {
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			t.Parallel()
			fn(t, pg)
		})
	}
}

// Walking 1,234 workspaces in pages of 100 while others are created: every
// workspace that was there all along is seen exactly once, in id order,
// and nothing is seen twice.
func TestListWorkspacesPagingStableCursor(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, pg bool) {
		e := newEnv(t, testenv.Options{Postgres: pg})
		a := newAPI(t, e)
		before := append(bulkWorkspaces(t, e, 1233), e.Org.Platform.ID)
		slices.Sort(before)

		// A writer creates workspaces for as long as the walk lasts; the
		// walk waits for one more creation after each page, so the two
		// truly interleave.
		created := make(chan string, 1000)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(created)
			start := false
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				w, err := e.Admin.CreateWorkspace(context.Background(), client.CreateWorkspace{Name: fmt.Sprintf("late%04d", i), Start: &start})
				if err != nil {
					t.Errorf("create during the walk: %v", err)
					return
				}
				created <- w.ID
			}
		}()
		var createdIDs []string
		drain := func(atLeastOne bool) {
			if atLeastOne {
				select {
				case id, ok := <-created:
					require.True(t, ok, "the writer stopped")
					createdIDs = append(createdIDs, id)
				case <-time.After(30 * time.Second):
					t.Fatal("no workspace created within 30s")
				}
			}
			for {
				select {
				case id, ok := <-created:
					if !ok {
						return
					}
					createdIDs = append(createdIDs, id)
				default:
					return
				}
			}
		}

		var seen []string
		pages := 0
		for path := "/v1/workspaces?limit=100"; path != ""; pages++ {
			require.Less(t, pages, 40, "the walk does not end")
			r := a.send(t, call{Method: "GET", Path: path, Token: e.AdminToken})
			require.Equal(t, 200, r.Status, "%s: %s", path, r)
			page := decodeJSON[[]client.Workspace](t, r)
			require.LessOrEqual(t, len(page), 100)
			for _, w := range page {
				seen = append(seen, w.ID)
			}
			path = nextLink(t, r)
			if path != "" {
				require.Len(t, page, 100, "only a full page has a next one")
				require.Contains(t, path, "limit=100", "the limit is kept")
			}
			drain(true)
		}
		close(stop)
		wg.Wait()
		drain(false)

		require.True(t, slices.IsSorted(seen), "pages follow in id order")
		require.Len(t, slices.Compact(slices.Clone(seen)), len(seen), "no workspace twice")
		seenSet := map[string]bool{}
		for _, id := range seen {
			seenSet[id] = true
		}
		for _, id := range before {
			require.True(t, seenSet[id], "workspace %s, there all along, was skipped", id)
		}
		late := map[string]bool{}
		for _, id := range createdIDs {
			late[id] = true
		}
		for _, id := range seen {
			require.True(t, late[id] || slices.Contains(before, id), "%s is neither old nor new", id)
		}
		require.GreaterOrEqual(t, pages, 13)
		require.GreaterOrEqual(t, len(createdIDs), pages, "one creation at least between pages")
		t.Logf("%d pages, %d workspaces seen, %d created during the walk", pages, len(seen), len(createdIDs))

		// Everything is there at the end, by id, without a limit.
		r := a.send(t, call{Method: "GET", Path: "/v1/workspaces", Token: e.AdminToken})
		all := decodeJSON[[]client.Workspace](t, r)
		require.Len(t, all, len(before)+len(createdIDs))
	})
}

// A client that sends no limit gets the whole list, as before paging: the
// same array, no Link header, and the bytes encoding/json writes.
func TestListWorkspacesWithoutLimitUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	bulkWorkspaces(t, e, 1100)
	_, err := e.Admin.CreateWorkspace(context.Background(), client.CreateWorkspace{Name: "odd",
		Spec: json.RawMessage(`{ "command": ["sh", "-c", "a && b < c > d"], "env": {"X": "é ☃"} }`), Start: new(bool)})
	require.NoError(t, err)

	r := a.send(t, call{Method: "GET", Path: "/v1/workspaces", Token: e.AdminToken})
	require.Equal(t, 200, r.Status)
	require.Empty(t, r.Header.Values("Link"))
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	all := decodeJSON[[]client.Workspace](t, r)
	require.Len(t, all, 1102, "more than a page: no limit is no limit")
	require.True(t, slices.IsSortedFunc(all, func(x, y client.Workspace) int { return strings.Compare(x.ID, y.ID) }))
	want, err := json.Marshal(all)
	require.NoError(t, err)
	require.Equal(t, string(want)+"\n", string(r.Body), "byte for byte what encoding/json writes")
	require.Contains(t, string(r.Body), `"command":["sh","-c","a \u0026\u0026 b \u003c c \u003e d"]`)

	// A page holds the same objects.
	r = a.send(t, call{Method: "GET", Path: "/v1/workspaces?limit=1000", Token: e.AdminToken})
	require.Equal(t, 200, r.Status)
	require.Equal(t, all[:1000], decodeJSON[[]client.Workspace](t, r))
	next := nextLink(t, r)
	r = a.send(t, call{Method: "GET", Path: next, Token: e.AdminToken})
	require.Equal(t, all[1000:], decodeJSON[[]client.Workspace](t, r))
	require.Empty(t, nextLink(t, r), "the last page has no next")

	// after alone: the rest of the list.
	cur, err := url.Parse(next)
	require.NoError(t, err)
	r = a.send(t, call{Method: "GET", Path: "/v1/workspaces?after=" + cur.Query().Get("after"), Token: e.AdminToken})
	require.Equal(t, all[1000:], decodeJSON[[]client.Workspace](t, r))
	require.Empty(t, nextLink(t, r))
}

// A workspace token sees only its own workspace, on one page.
func TestListWorkspacesPagingWorkspaceToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	w, err := e.Admin.CreateWorkspace(context.Background(), client.CreateWorkspace{Name: "own", Start: new(bool)})
	require.NoError(t, err)
	tok := mintWorkspaceToken(t, e.Admin, w.ID)
	r := a.send(t, call{Method: "GET", Path: "/v1/workspaces?limit=1", Token: tok.Secret})
	require.Equal(t, 200, r.Status, "%s", r)
	require.Equal(t, []string{w.ID}, wsIDsOf(decodeJSON[[]client.Workspace](t, r)))
	require.Empty(t, nextLink(t, r))

	// Its own id as a cursor: nothing after it.
	r = a.send(t, call{Method: "GET", Path: "/v1/workspaces?limit=1", Token: e.AdminToken})
	first := decodeJSON[[]client.Workspace](t, r)[0].ID
	next := nextLink(t, r)
	require.NotEmpty(t, next)
	r = a.send(t, call{Method: "GET", Path: next, Token: tok.Secret})
	require.Equal(t, 200, r.Status)
	got := wsIDsOf(decodeJSON[[]client.Workspace](t, r))
	if first < w.ID {
		require.Equal(t, []string{w.ID}, got)
	} else {
		require.Empty(t, got)
	}
}

func wsIDsOf(list []client.Workspace) []string {
	out := []string{}
	for _, w := range list {
		out = append(out, w.ID)
	}
	return out
}

// The audit log pages newest first, by Link or by next_before, keeping its
// filter; both ways give the entries the unpaged list gives.
func TestListAuditPaging(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, pg bool) {
		e := newEnv(t, testenv.Options{Postgres: pg})
		a := newAPI(t, e)
		ctx := context.Background()
		w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "audited", Start: new(bool)})
		require.NoError(t, err)
		for i := range 11 {
			name := fmt.Sprintf("audited-%d", i)
			_, err := e.Admin.PatchWorkspace(ctx, w.ID, client.PatchWorkspace{Name: &name})
			require.NoError(t, err)
			_, err = e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("other-%d", i), Start: new(bool)})
			require.NoError(t, err)
		}
		// Nothing is written to the log from here on but what the reads
		// below write (none: reads are not audited).
		full := decodeJSON[client.AuditPage](t, a.send(t, call{Method: "GET", Path: "/v1/audit?limit=1000", Token: e.AdminToken}))
		require.GreaterOrEqual(t, len(full.Entries), 25)
		require.Zero(t, full.NextBefore)
		require.True(t, slices.IsSortedFunc(full.Entries, func(x, y client.AuditEntry) int { return int(y.ID - x.ID) }), "newest first")

		walk := func(first string) (entries []client.AuditEntry, links []string) {
			for path := first; path != ""; {
				require.Less(t, len(links), 100)
				r := a.send(t, call{Method: "GET", Path: path, Token: e.AdminToken})
				require.Equal(t, 200, r.Status, "%s: %s", path, r)
				page := decodeJSON[client.AuditPage](t, r)
				entries = append(entries, page.Entries...)
				path = nextLink(t, r)
				if path != "" {
					links = append(links, path)
					require.Equal(t, page.Entries[len(page.Entries)-1].ID, page.NextBefore, "next_before names the same page")
				} else {
					require.Zero(t, page.NextBefore, "no next_before on the last page")
				}
			}
			return entries, links
		}
		got, links := walk("/v1/audit?limit=4")
		require.Equal(t, full.Entries, got)
		require.Len(t, links, (len(full.Entries)-1)/4)

		// The filter is kept in the Link header, and a before of the first
		// request gives way to after.
		mine := []client.AuditEntry{}
		for _, x := range full.Entries {
			if x.WorkspaceID == w.ID {
				mine = append(mine, x)
			}
		}
		require.GreaterOrEqual(t, len(mine), 12)
		got, links = walk(fmt.Sprintf("/v1/audit?workspace_id=%s&limit=3&before=%d", w.ID, mine[0].ID+1))
		require.Equal(t, mine, got)
		for _, l := range links {
			u, err := url.Parse(l)
			require.NoError(t, err)
			require.Equal(t, "/v1/audit", u.Path)
			require.Equal(t, w.ID, u.Query().Get("workspace_id"))
			require.Equal(t, "3", u.Query().Get("limit"))
			require.False(t, u.Query().Has("before"))
		}

		// next_before still pages, as before.
		var byBefore []client.AuditEntry
		for before := int64(0); ; {
			p, err := e.Admin.ListAudit(ctx, w.ID, 5, before)
			require.NoError(t, err)
			byBefore = append(byBefore, p.Entries...)
			if p.NextBefore == 0 {
				break
			}
			before = p.NextBefore
		}
		require.Equal(t, mine, byBefore)

		// No limit: a page of 100, as before.
		r := a.send(t, call{Method: "GET", Path: "/v1/audit", Token: e.AdminToken})
		page := decodeJSON[client.AuditPage](t, r)
		require.Equal(t, full.Entries[:min(100, len(full.Entries))], page.Entries)
	})
}

// Bad paging input is a 400 that names the problem, and changes nothing.
func TestListPagingBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	r := a.send(t, call{Method: "GET", Path: "/v1/workspaces?limit=1", Token: e.AdminToken})
	wsCursor := nextLink(t, r)
	require.Empty(t, wsCursor, "one workspace: no next page")
	_, err := e.Admin.CreateWorkspace(context.Background(), client.CreateWorkspace{Name: "second", Start: new(bool)})
	require.NoError(t, err)
	r = a.send(t, call{Method: "GET", Path: "/v1/workspaces?limit=1", Token: e.AdminToken})
	u, err := url.Parse(nextLink(t, r))
	require.NoError(t, err)
	wsAfter := u.Query().Get("after")
	r = a.send(t, call{Method: "GET", Path: "/v1/audit?limit=1", Token: e.AdminToken})
	u, err = url.Parse(nextLink(t, r))
	require.NoError(t, err)
	auditAfter := u.Query().Get("after")

	list := func() []client.Workspace {
		l, err := e.Admin.ListWorkspaces(context.Background())
		require.NoError(t, err)
		return l
	}
	was := list()
	for _, c := range []struct{ path, code string }{
		{"/v1/workspaces?limit=0", "invalid_limit"},
		{"/v1/workspaces?limit=1001", "invalid_limit"},
		{"/v1/workspaces?limit=-1", "invalid_query"},
		{"/v1/workspaces?limit=abc", "invalid_query"},
		{"/v1/workspaces?limit=", "invalid_query"},
		{"/v1/workspaces?limit=1&limit=2", "repeated_query_param"},
		{"/v1/workspaces?after=", "invalid_after"},
		{"/v1/workspaces?after=nope", "invalid_after"},
		{"/v1/workspaces?after=" + e.Org.Platform.ID, "invalid_after"},
		{"/v1/workspaces?after=" + auditAfter, "invalid_after"},
		{"/v1/workspaces?after=" + wsAfter + "&after=" + wsAfter, "repeated_query_param"},
		{"/v1/workspaces?before=1", "unknown_query_param"},
		{"/v1/workspaces?Limit=5", "unknown_query_param"},
		{"/v1/audit?limit=0", "invalid_limit"},
		{"/v1/audit?limit=1001", "invalid_limit"},
		{"/v1/audit?limit=x", "invalid_query"},
		{"/v1/audit?after=12", "invalid_after"},
		{"/v1/audit?after=" + wsAfter, "invalid_after"},
		{"/v1/audit?after=" + auditAfter + "&before=5", "invalid_query"},
		{"/v1/audit?afterr=" + auditAfter, "unknown_query_param"},
	} {
		r := a.send(t, call{Method: "GET", Path: c.path, Token: e.AdminToken})
		code, msg := requireErrorShape(t, r, 400)
		require.Equal(t, c.code, code, "%s: %s", c.path, msg)
		require.Empty(t, r.Header.Values("Link"))
	}
	require.Equal(t, was, list(), "nothing changed")
	// The good cursors still work.
	for _, p := range []string{"/v1/workspaces?after=" + wsAfter, "/v1/audit?after=" + auditAfter} {
		r := a.send(t, call{Method: "GET", Path: p, Token: e.AdminToken})
		require.Equal(t, 200, r.Status, "%s: %s", p, r)
	}
}

// A page computes stale from its own workspaces' secrets (and the
// globals) only; it must say what the whole list says.
func TestListWorkspacesPagesStaleAsTheWholeList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	ctx := context.Background()
	var wsIDs []string
	for i := range 4 {
		w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("box%d", i), Spec: boxSpec, RestartPolicy: "manual"})
		require.NoError(t, err)
		wsIDs = append(wsIDs, w.ID)
	}
	for _, id := range wsIDs {
		waitStatus(t, e.Admin, id, "running", 1)
	}
	slices.Sort(wsIDs)
	// Manual workspaces are not restarted: their boxes go stale.
	for _, id := range []string{wsIDs[1], wsIDs[3]} {
		_, err := e.Admin.SetSecret(ctx, id, "OWN_KEY", "v-"+id, false)
		require.NoError(t, err)
	}
	whole, err := e.Admin.ListWorkspaces(ctx)
	require.NoError(t, err)
	stale := map[string]bool{}
	for _, w := range whole {
		stale[w.ID] = w.Stale
	}
	require.Equal(t, map[string]bool{wsIDs[0]: false, wsIDs[1]: true, wsIDs[2]: false, wsIDs[3]: true},
		map[string]bool{wsIDs[0]: stale[wsIDs[0]], wsIDs[1]: stale[wsIDs[1]], wsIDs[2]: stale[wsIDs[2]], wsIDs[3]: stale[wsIDs[3]]})
	var paged []client.Workspace
	for after := ""; ; {
		page, next, err := e.Admin.ListWorkspacesPage(ctx, 1, after)
		require.NoError(t, err)
		paged = append(paged, page...)
		if next == "" {
			break
		}
		after = next
	}
	require.Equal(t, whole, paged)

	// A workspace's own token: the same answer about itself.
	tok := mintWorkspaceToken(t, e.Admin, wsIDs[1])
	own, _, err := client.New(e.URL, tok.Secret).ListWorkspacesPage(ctx, 10, "")
	require.NoError(t, err)
	require.Len(t, own, 1)
	require.True(t, own[0].Stale)
}
