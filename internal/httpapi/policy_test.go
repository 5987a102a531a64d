package httpapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// The policy (issue 10): defaults until an owner sets one; owners only
// write it, whole, within bounds; agents (the platform's management token,
// any admin token) never can; every change is audited with before and after.
func TestPolicy(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	ctx := context.Background()
	def, err := e.Admin.GetPolicy(ctx)
	require.NoError(t, err)
	require.Equal(t, client.PolicyGates{PlatformRestart: true, GlobalSecret: true, WorkspaceDelete: true, AdminToken: true, WorkspaceProtection: true}, def.Gates)
	require.Equal(t, 10, def.RestartThreshold)
	require.Equal(t, 1, def.Quorum)
	require.Equal(t, 86400, def.DefaultTTLSeconds)
	require.Equal(t, 7*86400, def.MaxTTLSeconds)
	require.Nil(t, def.UpdatedAt)

	concierge, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "concierge", ActingWorkspaceID: e.Org.Platform.ID})
	require.NoError(t, err)
	body := mustJSON(t, defaultPutPolicy())
	for _, tok := range []string{e.AdminToken, concierge.Secret} {
		r := a.send(t, call{Method: "PUT", Path: "/v1/policy", Token: tok, Body: body})
		require.Equal(t, 403, r.Status, "agents and automation never change the policy: %s", r)
	}
	for _, c := range []struct{ body, code string }{
		{`{"quorum":2}`, "missing_field"},
		{strings.Replace(string(body), `"quorum":1`, `"quorum":0`, 1), "invalid_policy"},
		{strings.Replace(string(body), `"max_ttl_seconds":604800`, `"max_ttl_seconds":604801`, 1), "invalid_policy"},
		{strings.Replace(string(body), `"default_ttl_seconds":86400`, `"default_ttl_seconds":700000`, 1), "invalid_policy"},
		{strings.Replace(string(body), `"admin_token":true`, `"admin_token":true,"sneaky":true`, 1), "unknown_field"},
	} {
		r := a.send(t, call{Method: "PUT", Path: "/v1/policy", Token: e.OwnerToken, Body: []byte(c.body)})
		require.Equal(t, 400, r.Status, "%s: %s", c.body, r)
		require.Contains(t, string(r.Body), `"`+c.code+`"`)
	}
	same, err := e.Admin.GetPolicy(ctx)
	require.NoError(t, err)
	require.Equal(t, def, same, "nothing changed")

	in := defaultPutPolicy()
	off, two := false, 2
	in.Gates.AdminToken, in.Quorum = &off, &two
	got, err := e.Owner.SetPolicy(ctx, in)
	require.NoError(t, err)
	require.False(t, got.Gates.AdminToken)
	require.Equal(t, 2, got.Quorum)
	require.NotNil(t, got.UpdatedAt)
	read, err := e.Client(concierge.Secret).GetPolicy(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, read.Quorum, "agents read it")

	page, err := e.Admin.ListAudit(ctx, "", 100, 0)
	require.NoError(t, err)
	var set, denied int
	for _, en := range page.Entries {
		if en.Action == "policy.set" {
			switch en.Outcome {
			case "ok":
				set++
				require.Contains(t, string(en.Detail), `"before"`)
				require.Contains(t, string(en.Detail), `"quorum":2`)
			case "denied":
				denied++
			}
		}
	}
	require.Equal(t, 1, set)
	require.Equal(t, 2, denied, "the agents' attempts are audited")
}
