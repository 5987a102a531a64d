package httpapi_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

// TestChangeRecordAndDecisionsPaging: a global write across 1,234
// workspaces answers its change id, the counts of every decision and the
// first 1,000 decisions; the change reads back with its counts, and its
// decisions page by workspace id through the Link header, each once.
func TestChangeRecordAndDecisionsPaging(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, pg bool) {
		e := newEnv(t, testenv.Options{Postgres: pg})
		a := newAPI(t, e)
		all := append(bulkWorkspaces(t, e, 1234), e.Org.Platform.ID)
		slices.Sort(all)

		r := a.send(t, call{Method: "PUT", Path: "/v1/secrets/PAGED", Token: e.AdminToken, Body: []byte(`{"value":"v"}`)})
		require.Equal(t, 200, r.Status, "%s", r)
		res := decodeJSON[client.SecretWrite](t, r)
		require.NotEmpty(t, res.ChangeID)
		require.Equal(t, map[string]int{"stopped": 1234, "platform_root": 1}, res.Summary)
		require.Len(t, res.Decisions, 1000)
		require.True(t, res.DecisionsTruncated)

		r = a.send(t, call{Method: "GET", Path: "/v1/changes/" + res.ChangeID, Token: e.AdminToken})
		require.Equal(t, 200, r.Status, "%s", r)
		c := decodeJSON[client.Change](t, r)
		require.Equal(t, res.ChangeID, c.ID)
		require.Equal(t, "global", c.Scope)
		require.Equal(t, "set", c.Op)
		require.Equal(t, 1235, c.Total)
		require.Equal(t, res.Summary, c.Counts)
		require.Equal(t, "succeeded", c.State, "nothing to restart: done at once")
		require.Equal(t, client.ChangeRestarts{}, c.Restarts)
		require.NotNil(t, c.FinishedAt)

		var walked []string
		path := "/v1/changes/" + res.ChangeID + "/decisions?limit=500"
		for path != "" {
			r := a.send(t, call{Method: "GET", Path: path, Token: e.AdminToken})
			require.Equal(t, 200, r.Status, "%s", r)
			for _, d := range decodeJSON[[]client.Decision](t, r) {
				walked = append(walked, d.WorkspaceID)
				require.Equal(t, "skip", d.Action)
			}
			path = nextLink(t, r)
		}
		require.Equal(t, all, walked, "every decision once, by workspace id")

		for _, bad := range []string{"?limit=0", "?limit=1001", "?limit=x", "?after=nope", "?after=" + e.Org.Platform.ID, "?other=1"} {
			r := a.send(t, call{Method: "GET", Path: "/v1/changes/" + res.ChangeID + "/decisions" + bad, Token: e.AdminToken})
			require.Equal(t, 400, r.Status, "%s: %s", bad, r)
		}
		for _, p := range []string{"/v1/changes/c-missing", "/v1/changes/c-missing/decisions"} {
			r := a.send(t, call{Method: "GET", Path: p, Token: e.AdminToken})
			require.Equal(t, 404, r.Status, "%s: %s", p, r)
		}
		other, _ := e.NewOrg("other")
		r = a.send(t, call{Method: "GET", Path: "/v1/changes/" + res.ChangeID, Token: other.Secret})
		require.Equal(t, 404, r.Status, "another org's change: %s", r)
	})
}

// TestOrgRestartsPaging walks GET /v1/restarts newest first in pages:
// pending and finished jobs, each once, in order; a bad cursor is 400.
func TestOrgRestartsPaging(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, pg bool) {
		e := newEnv(t, testenv.Options{Postgres: pg})
		a := newAPI(t, e)
		ws := bulkWorkspaces(t, e, 120)
		base := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
		var js []store.RestartJob
		for i := range 250 {
			state := store.JobSucceeded
			if i%50 == 0 {
				state = store.JobPending
			}
			at := base.Add(time.Duration(i/2) * time.Second) // pairs tie on time
			js = append(js, store.RestartJob{ID: ids.New("j"), OrgID: e.Org.Org.ID, WorkspaceID: ws[i%len(ws)], State: state,
				Reason: "admin_restart", MaxAttempts: 1, RunAfter: at.Add(time.Hour), CreatedAt: at, UpdatedAt: at})
		}
		require.NoError(t, e.Store.InsertJobs(context.Background(), js))

		var walked []client.RestartJob
		path := "/v1/restarts?limit=100"
		for path != "" {
			r := a.send(t, call{Method: "GET", Path: path, Token: e.AdminToken})
			require.Equal(t, 200, r.Status, "%s", r)
			walked = append(walked, decodeJSON[[]client.RestartJob](t, r)...)
			path = nextLink(t, r)
		}
		seen := map[string]bool{}
		for i, j := range walked {
			require.False(t, seen[j.ID], "job %s twice", j.ID)
			seen[j.ID] = true
			if i > 0 {
				p := walked[i-1]
				require.True(t, p.CreatedAt.After(j.CreatedAt) || p.CreatedAt.Equal(j.CreatedAt) && p.ID > j.ID, "newest first")
			}
		}
		for _, j := range js {
			require.True(t, seen[j.ID], "job %s missing", j.ID)
		}
		// No limit: the 100 newest, no Link, as before paging.
		r := a.send(t, call{Method: "GET", Path: "/v1/restarts", Token: e.AdminToken})
		require.Equal(t, 200, r.Status)
		require.Empty(t, r.Header.Values("Link"))
		var first []json.RawMessage
		require.NoError(t, json.Unmarshal(r.Body, &first))
		require.Len(t, first, 100)
		for _, bad := range []string{"?after=x", "?after=cmVzdGFydHM6MS5qYWJj", "?limit=0"} {
			r := a.send(t, call{Method: "GET", Path: "/v1/restarts" + bad, Token: e.AdminToken})
			require.Equal(t, 400, r.Status, "%s: %s", bad, r)
		}
	})
}
