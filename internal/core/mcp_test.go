package core_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

// EnterMCP lets agents' tokens in as agents (Via = mcp) and refuses
// people's credentials, auditing the refusal.
func TestEnterMCP(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	authn := func(tok string) auth.Principal {
		p, err := e.Service.AuthenticateRequest(ctx, core.Credentials{Authorization: []string{"Bearer " + tok}})
		require.NoError(t, err)
		return p
	}

	admin := authn(e.AdminToken)
	require.False(t, admin.IsAgent(), "a plain admin token is not an agent on the API")
	p, err := e.Service.EnterMCP(ctx, admin)
	require.NoError(t, err)
	require.Equal(t, auth.ViaMCP, p.Via)
	require.True(t, p.IsAgent())
	require.Equal(t, admin.TokenID, p.TokenID)

	for name, who := range map[string]auth.Principal{
		"user token": authn(e.OwnerToken),
		"session":    func() auth.Principal { s := admin; s.Via = auth.ViaSession; return s }(),
		"system":     {Kind: auth.KindSystem, OrgID: admin.OrgID},
	} {
		_, err := e.Service.EnterMCP(ctx, who)
		require.Error(t, err, name)
		require.Equal(t, "not_an_agent", core.AsError(err).Code, name)
	}
	entries, err := e.Store.ListAudit(ctx, e.Org.Org.ID, store.AuditFilter{Limit: 10})
	require.NoError(t, err)
	refused := 0
	for _, en := range entries {
		if en.Action == "mcp.refused" {
			refused++
			require.Equal(t, "denied", en.Outcome)
		}
	}
	require.Equal(t, 3, refused)
}
