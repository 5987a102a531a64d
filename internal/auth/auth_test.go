package auth

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/ids"
)

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{KindAdmin, KindWorkspace} {
		tid := ids.New("t")
		tok, hash := NewSecret(kind, tid)
		require.True(t, strings.HasPrefix(tok, "op_"+kind+"_"+tid+"_"))
		k, id, secret, err := Parse(tok)
		require.NoError(t, err)
		require.Equal(t, kind, k)
		require.Equal(t, tid, id)
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
	tid := ids.New("t")
	good, _ := NewSecret(KindAdmin, tid)
	secret := good[strings.LastIndex(good, "_")+1:]
	// The last base32 character carries 4 spare bits: "a" and "b" there
	// decode to the same bytes, but only one is what NewSecret writes.
	last := secret[len(secret)-1]
	sibling := secret[:len(secret)-1] + string(last^1)
	for _, s := range []string{"", "op", "op_admin_" + tid, "xx_admin_" + tid + "_" + secret, "op_root_" + tid + "_" + secret,
		"op_admin__" + secret, "op_admin_" + tid + "_short", "op_admin_t_a_" + secret, "Bearer " + good,
		"op_admin_tabc_" + secret, "op_admin_w" + tid[1:] + "_" + secret, "op_admin_" + tid + "_" + strings.ToUpper(secret),
		"op_admin_" + tid + "_" + secret[:51] + "1", "op_admin_" + tid + "_" + sibling, "op_Admin_" + tid + "_" + secret,
		good + "\n", " " + good} {
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

func TestBearerToken(t *testing.T) {
	t.Parallel()
	good, _ := NewSecret(KindAdmin, ids.New("t"))
	for _, c := range []struct {
		values []string
		want   string
		err    error
	}{
		{[]string{"Bearer " + good}, good, nil},
		{[]string{"bearer " + good}, good, nil},
		{[]string{"BEARER " + good}, good, nil},
		{nil, "", ErrNoCredentials},
		{[]string{"Bearer " + good, "Bearer " + good}, "", ErrAmbiguousCredentials},
		{[]string{"Bearer " + good, "Bearer other"}, "", ErrAmbiguousCredentials},
		{[]string{""}, "", ErrMalformedAuthorization},
		{[]string{"Bearer"}, "", ErrMalformedAuthorization},
		{[]string{"Bearer "}, "", ErrMalformedAuthorization},
		{[]string{"Bearer  " + good}, "", ErrMalformedAuthorization},
		{[]string{"Bearer " + good + " "}, "", ErrMalformedAuthorization},
		{[]string{"Bearer " + good + ", Bearer " + good}, "", ErrMalformedAuthorization},
		{[]string{"Bearer " + good + "\t"}, "", ErrMalformedAuthorization},
		{[]string{"Basic " + good}, "", ErrMalformedAuthorization},
		{[]string{"Token " + good}, "", ErrMalformedAuthorization},
		{[]string{good}, "", ErrMalformedAuthorization},
	} {
		got, err := BearerToken(c.values)
		if c.err != nil {
			require.ErrorIs(t, err, c.err, "%q", c.values)
			require.Empty(t, got)
			continue
		}
		require.NoError(t, err, "%q", c.values)
		require.Equal(t, c.want, got)
	}
}

// FuzzParseToken: Parse accepts only strings NewSecret could have made.
// Whatever it accepts is rebuilt, byte for byte, from the parts it returns;
// the id is one ids.New makes and the secret decodes to 32 bytes.
func FuzzParseToken(f *testing.F) {
	for _, kind := range []string{KindAdmin, KindWorkspace} {
		tok, _ := NewSecret(kind, ids.New("t"))
		f.Add(tok)
		f.Add(strings.ToUpper(tok))
		f.Add(tok[:len(tok)-1])
		f.Add(tok + "_")
	}
	f.Add("")
	f.Add("op_admin_tabc_")
	f.Add("op_system_taaaaaaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Fuzz(func(t *testing.T, s string) {
		kind, id, secret, err := Parse(s)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
			require.Empty(t, kind+id+secret, "a refusal returns no parts")
			return
		}
		require.Contains(t, []string{KindAdmin, KindWorkspace}, kind)
		require.Equal(t, s, "op_"+kind+"_"+id+"_"+secret, "accepted a string it would not produce")
		require.True(t, ids.Valid("t", id), "id %q", id)
		b, err := enc.DecodeString(secret)
		require.NoError(t, err)
		require.Len(t, b, 32)
		require.Equal(t, secret, enc.EncodeToString(b))
	})
}

// FuzzBearerToken: a token comes out only of exactly one header of the
// form "Bearer <token>", and it is that header's tail, unchanged.
func FuzzBearerToken(f *testing.F) {
	good, _ := NewSecret(KindAdmin, ids.New("t"))
	f.Add("Bearer "+good, "")
	f.Add("Bearer "+good, "Bearer "+good)
	f.Add("bearer x", "")
	f.Add("Bearer  x", "")
	f.Add("Basic dXNlcjpwYXNz", "")
	f.Fuzz(func(t *testing.T, h1, h2 string) {
		values := []string{h1}
		if h2 != "" {
			values = append(values, h2)
		}
		tok, err := BearerToken(values)
		if err != nil {
			require.Empty(t, tok)
			return
		}
		require.Len(t, values, 1)
		require.True(t, strings.EqualFold(h1[:7], "bearer "), "%q", h1)
		require.Equal(t, h1[7:], tok)
		require.NotEmpty(t, tok)
		require.False(t, strings.ContainsAny(tok, " \t\r\n,"))
	})
}

func TestIsAgent(t *testing.T) {
	cases := []struct {
		name string
		p    Principal
		want bool
	}{
		{"workspace token", Principal{Kind: KindWorkspace, WorkspaceID: "w1"}, true},
		{"admin token bound to a workspace (management token)", Principal{Kind: KindAdmin, ActingWorkspaceID: "w1"}, true},
		{"plain admin token", Principal{Kind: KindAdmin}, false},
		{"plain admin token over MCP", Principal{Kind: KindAdmin, Via: ViaMCP}, true},
		{"person's user token", Principal{Kind: KindUser, UserID: "u1", Role: RoleOwner}, false},
		{"person's session", Principal{Kind: KindUser, UserID: "u1", Role: RoleOwner, Via: ViaSession}, false},
		{"person's token over MCP", Principal{Kind: KindUser, UserID: "u1", Role: RoleOwner, Via: ViaMCP}, true},
		{"orgplane itself", Principal{Kind: KindSystem}, false},
	}
	for _, c := range cases {
		if got := c.p.IsAgent(); got != c.want {
			t.Errorf("%s: IsAgent() = %v, want %v", c.name, got, c.want)
		}
	}
}

// Sign-in codes and session cookies share the token format, each with its
// own kind: none is taken for another, nor for a token.
func TestParseAs(t *testing.T) {
	code, _ := NewSecret(KindLoginCode, ids.New("l"))
	cookie, _ := NewSecret(KindSession, ids.New("s"))
	tok, _ := NewSecret(KindUser, ids.New("t"))
	id, secret, err := ParseAs(KindLoginCode, code)
	require.NoError(t, err)
	require.Equal(t, code, "op_login_"+id+"_"+secret)
	id, secret, err = ParseAs(KindSession, cookie)
	require.NoError(t, err)
	require.Equal(t, cookie, "op_session_"+id+"_"+secret)
	for _, c := range []struct{ kind, s string }{
		{KindSession, code}, {KindLoginCode, cookie}, {KindSession, tok},
		{KindUser, tok}, {KindSession, cookie + "a"}, {KindSession, ""},
		{KindSession, strings.Replace(cookie, "_s", "_t", 1)},
	} {
		_, _, err := ParseAs(c.kind, c.s)
		require.ErrorIs(t, err, ErrMalformed, "%s as %s", c.s, c.kind)
	}
	_, _, _, err = Parse(cookie)
	require.ErrorIs(t, err, ErrMalformed, "a session cookie is no token")
	_, _, _, err = Parse(code)
	require.ErrorIs(t, err, ErrMalformed, "a sign-in code is no token")
}
