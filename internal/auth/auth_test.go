package auth

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{KindAdmin, KindWorkspace} {
		tok, hash := NewSecret(kind, "tabc")
		require.True(t, strings.HasPrefix(tok, "op_"+kind+"_tabc_"))
		k, id, secret, err := Parse(tok)
		require.NoError(t, err)
		require.Equal(t, kind, k)
		require.Equal(t, "tabc", id)
		require.True(t, Verify(secret, hash))
		require.False(t, Verify(secret+"x", hash))
		require.False(t, Verify(strings.ToUpper(secret), hash))
	}
	tok1, _ := NewSecret(KindAdmin, "t1")
	tok2, _ := NewSecret(KindAdmin, "t1")
	require.NotEqual(t, tok1, tok2)
}

func TestParseRejectsMalformed(t *testing.T) {
	t.Parallel()
	good, _ := NewSecret(KindAdmin, "tabc")
	secret := good[strings.LastIndex(good, "_")+1:]
	for _, s := range []string{"", "op", "op_admin_tabc", "xx_admin_tabc_" + secret, "op_root_tabc_" + secret,
		"op_admin__" + secret, "op_admin_tabc_short", "op_admin_t_a_" + secret, "Bearer " + good} {
		_, _, _, err := Parse(s)
		require.ErrorIs(t, err, ErrMalformed, s)
	}
}

func TestCallerWorkspace(t *testing.T) {
	t.Parallel()
	require.Equal(t, "w1", Principal{Kind: KindWorkspace, WorkspaceID: "w1"}.CallerWorkspace())
	require.Equal(t, "wp", Principal{Kind: KindAdmin, ActingWorkspaceID: "wp"}.CallerWorkspace())
	require.Equal(t, "", Principal{Kind: KindAdmin}.CallerWorkspace())
	// A workspace token's identity is its own workspace, never an acting one.
	require.Equal(t, "w1", Principal{Kind: KindWorkspace, WorkspaceID: "w1", ActingWorkspaceID: "wp"}.CallerWorkspace())
}
