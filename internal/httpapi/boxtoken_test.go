package httpapi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// boxToken is the ORGPLANE_TOKEN the fake provisioner started generation
// gen of the workspace's box with.
func boxToken(t *testing.T, e *testenv.Env, wsID string, gen int64) string {
	t.Helper()
	return boxEnv(t, e, wsID, gen)["ORGPLANE_TOKEN"]
}

// boxEnv waits for the box of generation gen to be started and returns its
// env: the generation is recorded (and seen through the API) just before
// its box starts.
func boxEnv(t *testing.T, e *testenv.Env, wsID string, gen int64) map[string]string {
	t.Helper()
	var env map[string]string
	e.Eventually(10*time.Second, func() bool {
		var ok bool
		env, ok = e.Fake.StartedEnv(wsID, gen)
		return ok
	}, "no box of workspace %s generation %d was started", wsID, gen)
	return env
}

// Issue 8, finding 12: any token of a workspace could heartbeat for its box,
// so an admin-minted workspace token made a hung box look running (and its
// restart succeed).
func TestHeartbeatOnlyFromTheCurrentBoxToken(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	ctx := context.Background()
	// An agent box (no command): healthy only by heartbeat, which the fake
	// never sends.
	ws, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("agent")})
	require.NoError(t, err)
	waitStatus(t, e.Admin, ws.ID, "provisioning", 1)
	beat := func(token string, gen int64) result {
		return a.send(t, call{Method: "POST", Path: "/v1/workspaces/" + ws.ID + "/heartbeat", Token: token,
			Body: mustJSON(t, map[string]any{"generation": gen})})
	}

	minted := mintWorkspaceToken(t, e.Admin, ws.ID)
	r := beat(minted.Secret, 1)
	require.Equal(t, 403, r.Status, r.String())
	require.Contains(t, string(r.Body), "own token")
	got, err := e.Admin.GetWorkspace(ctx, ws.ID)
	require.NoError(t, err)
	require.Equal(t, "provisioning", got.Status, "a minted token does not make the box running")

	r = beat(boxToken(t, e, ws.ID, 1), 1)
	require.Equal(t, 200, r.Status, r.String())
	waitStatus(t, e.Admin, ws.ID, "running", 1)

	// After a restart, the old box's token no longer speaks for the new box.
	_, err = e.Admin.RestartWorkspace(ctx, ws.ID, "")
	require.NoError(t, err)
	waitStatus(t, e.Admin, ws.ID, "provisioning", 2)
	r = beat(boxToken(t, e, ws.ID, 1), 2)
	require.Contains(t, []int{401, 403}, r.Status, r.String())
	r = beat(boxToken(t, e, ws.ID, 2), 2)
	require.Equal(t, 200, r.Status, r.String())
	waitStatus(t, e.Admin, ws.ID, "running", 2)
}

// Issue 8, finding 3: revoking the platform's current box token made its
// agent exit on 401s and the recovery provision a new generation: a restart
// of the org root by another path. A live box's current token cannot be
// revoked; a restart rotates it.
func TestRevokingALiveBoxTokenIsRefused(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	ctx := context.Background()
	pw := e.Org.Platform.ID
	tok := boxToken(t, e, pw, 1)
	var tokenID string
	list, err := e.Admin.ListTokens(ctx)
	require.NoError(t, err)
	for _, x := range list {
		if x.WorkspaceID == pw && x.Name == "box-g1" {
			tokenID = x.ID
		}
	}
	require.NotEmpty(t, tokenID, "the platform's box token is listed")
	before, err := e.Admin.ListRestarts(ctx, pw)
	require.NoError(t, err)

	r := a.send(t, call{Method: "DELETE", Path: "/v1/tokens/" + tokenID, Token: e.AdminToken})
	require.Equal(t, 422, r.Status, r.String())
	require.Contains(t, string(r.Body), `"box_token_in_use"`)
	require.Contains(t, string(r.Body), "restart")

	// Nothing changed: the token still works, no job was queued, the
	// platform is on generation 1, and the refusal is audited.
	require.Equal(t, 200, a.send(t, call{Method: "GET", Path: "/v1/whoami", Token: tok}).Status)
	after, err := e.Admin.ListRestarts(ctx, pw)
	require.NoError(t, err)
	require.Len(t, after, len(before))
	got, err := e.Admin.GetWorkspace(ctx, pw)
	require.NoError(t, err)
	require.EqualValues(t, 1, got.Generation)
	page, err := e.Admin.ListAudit(ctx, pw, 50, 0)
	require.NoError(t, err)
	found := false
	for _, en := range page.Entries {
		found = found || (en.Action == "token.revoke" && en.Outcome == "error:box_token_in_use")
	}
	require.True(t, found, "the refused revoke is audited: %s", fmt.Sprint(page.Entries))

	// A token of a box that was replaced can be revoked.
	mint := mintWorkspaceToken(t, e.Admin, pw)
	require.NoError(t, e.Admin.RevokeToken(ctx, mint.Token.ID))
}

// The platform's box gets ORGPLANE_MANAGEMENT_TOKEN: an admin token bound
// to the platform workspace, fresh per provision, refused for revocation
// while its box lives, revoked once the next box is healthy. Other boxes
// get none.
func TestPlatformBoxGetsAManagementToken(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	ctx := context.Background()
	pw := e.Org.Platform.ID
	mgmt := func(wsID string, gen int64) string { return boxEnv(t, e, wsID, gen)["ORGPLANE_MANAGEMENT_TOKEN"] }
	m1 := mgmt(pw, 1)
	require.NotEmpty(t, m1)
	me, err := e.Client(m1).Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, "admin", me.Kind)
	require.Equal(t, pw, me.ActingWorkspaceID, "bound to the platform workspace: an agent principal")

	ws, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("plain"), Spec: boxSpec})
	require.NoError(t, err)
	waitStatus(t, e.Admin, ws.ID, "running", 1)
	require.Empty(t, mgmt(ws.ID, 1), "only the platform's box gets one")

	r := a.send(t, call{Method: "DELETE", Path: "/v1/tokens/" + me.TokenID, Token: e.AdminToken})
	require.Equal(t, 422, r.Status, r.String())
	require.Contains(t, string(r.Body), `"box_token_in_use"`)

	// An explicit restart: generation 2 gets a new one; the old one works
	// until the new box is healthy, then no more.
	_, err = e.Admin.RestartWorkspace(ctx, pw, "rotate")
	require.NoError(t, err)
	waitStatus(t, e.Admin, pw, "provisioning", 2)
	m2 := mgmt(pw, 2)
	require.NotEmpty(t, m2)
	require.NotEqual(t, m1, m2)
	r = a.send(t, call{Method: "POST", Path: "/v1/workspaces/" + pw + "/heartbeat", Token: boxToken(t, e, pw, 2),
		Body: mustJSON(t, map[string]any{"generation": 2})})
	require.Equal(t, 200, r.Status, r.String())
	waitStatus(t, e.Admin, pw, "running", 2)
	require.Equal(t, 401, a.send(t, call{Method: "GET", Path: "/v1/whoami", Token: m1}).Status, "replaced: revoked")
	require.Equal(t, 200, a.send(t, call{Method: "GET", Path: "/v1/whoami", Token: m2}).Status)
}
