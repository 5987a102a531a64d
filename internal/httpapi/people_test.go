package httpapi_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// People (issue 10): owners manage them; a person mints and revokes only
// their own user tokens; a viewer reads only; a removed person's tokens
// stop working; the last owner stays.
func TestPeopleAndUserTokens(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	ctx := context.Background()

	me, err := e.Owner.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, "user", me.Kind)
	require.Equal(t, "owner", me.Role)

	// Bad input changes nothing.
	before, err := e.Owner.ListUsers(ctx)
	require.NoError(t, err)
	for _, c := range []struct {
		body string
		code string
		st   int
	}{
		{`{"name":"bob","role":"god"}`, "invalid_role", 400},
		{`{"name":"not a name","role":"viewer"}`, "invalid_name", 400},
		{`{"name":"owner","role":"viewer"}`, "conflict", 409},
	} {
		r := a.send(t, call{Method: "POST", Path: "/v1/users", Token: e.OwnerToken, Body: []byte(c.body)})
		require.Equal(t, c.st, r.Status, r.String())
		require.Contains(t, string(r.Body), `"`+c.code+`"`)
	}
	after, err := e.Owner.ListUsers(ctx)
	require.NoError(t, err)
	require.Equal(t, before, after)

	bob, err := e.Owner.CreateUser(ctx, client.CreateUser{Name: "bob", Role: "viewer"})
	require.NoError(t, err)
	bobTok := e.UserToken(e.Org.Org.ID, bob.ID, "first")
	bobc := e.Client(bobTok)

	// A person mints their own user tokens, a viewer too; no other token can.
	own, err := bobc.CreateToken(ctx, client.CreateToken{Kind: "user", Name: "laptop"})
	require.NoError(t, err)
	require.Equal(t, bob.ID, own.Token.UserID)
	r := a.send(t, call{Method: "POST", Path: "/v1/tokens", Token: e.AdminToken, Body: mustJSON(t, client.CreateToken{Kind: "user", Name: "forged"})})
	require.Equal(t, 403, r.Status, "an admin token cannot mint a person's token: %s", r)
	r = a.send(t, call{Method: "POST", Path: "/v1/tokens", Token: bobTok, Body: mustJSON(t, client.CreateToken{Kind: "admin", Name: "escalate"})})
	require.Equal(t, 403, r.Status, "a viewer mints no admin token: %s", r)
	r = a.send(t, call{Method: "POST", Path: "/v1/tokens", Token: bobTok, Body: mustJSON(t, map[string]any{"kind": "user", "name": "x", "workspace_id": e.Org.Platform.ID})})
	require.Equal(t, 400, r.Status, r.String())

	// A viewer reads and writes nothing.
	_, err = bobc.ListWorkspaces(ctx)
	require.NoError(t, err)
	r = a.send(t, call{Method: "PUT", Path: "/v1/secrets/K", Token: bobTok, Body: []byte(`{"value":"v"}`)})
	require.Equal(t, 403, r.Status, r.String())
	r = a.send(t, call{Method: "PUT", Path: "/v1/workspaces/" + e.Org.Platform.ID + "/secrets/K", Token: bobTok, Body: []byte(`{"value":"v"}`)})
	require.Equal(t, 403, r.Status, r.String())
	secrets, err := e.Admin.ListSecrets(ctx, e.Org.Platform.ID)
	require.NoError(t, err)
	require.Empty(t, secrets, "nothing was written")

	// Bob revokes his own token; not the owner's.
	require.NoError(t, bobc.RevokeToken(ctx, own.Token.ID))
	ownerMe, err := e.Owner.Whoami(ctx)
	require.NoError(t, err)
	r = a.send(t, call{Method: "DELETE", Path: "/v1/tokens/" + ownerMe.TokenID, Token: bobTok})
	require.Equal(t, 403, r.Status, r.String())

	// The last owner cannot be removed; a removed person's tokens stop.
	r = a.send(t, call{Method: "DELETE", Path: "/v1/users/owner", Token: e.OwnerToken})
	require.Equal(t, 422, r.Status, r.String())
	require.Contains(t, string(r.Body), `"last_owner"`)
	require.NoError(t, e.Owner.DeleteUser(ctx, "bob"))
	r = a.send(t, call{Method: "GET", Path: "/v1/whoami", Token: bobTok})
	require.Equal(t, 401, r.Status, r.String())
	r = a.send(t, call{Method: "DELETE", Path: "/v1/users/bob", Token: e.OwnerToken})
	require.Equal(t, 404, r.Status, "once: %s", r)
}
