package cli

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
)

func TestUsersLoginLink(t *testing.T) {
	t.Parallel()
	link := client.LoginLink{URL: "http://127.0.0.1:8080/login?code=op_login_x_y", ExpiresAt: testTime.Add(10 * 60e9), UserID: "u_1"}
	f := newFakeAPI(t)
	f.handle("POST /v1/users/{id}/login-links", 201, link)

	r := f.run("", "users", "login-link", "alice")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "POST", req.Method)
	require.Equal(t, "/v1/users/alice/login-links", req.Path)
	require.Equal(t, "Sign-in link for alice (works once, until 2025-03-01T12:10:00Z):\n"+link.URL+"\n", r.stdout)

	r = f.run("", "users", "login-link", "alice", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, link), r.stdout)

	r = f.run("", "users", "login-link")
	require.NotEqual(t, 0, r.code, "a person is required")
}
