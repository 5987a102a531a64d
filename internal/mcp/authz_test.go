package mcp_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/mcp"
	"github.com/orgplane/orgplane/internal/testenv"
)

// A workspace token gets the workspace tools only; the management tools
// are neither listed nor callable by name. Its own things are there; other
// workspaces' and other orgs' are not found.
func TestWorkspaceTools(t *testing.T) {
	for _, tr := range []transport{inMemory, overHTTP, overStdio} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, testenv.Options{})
			s := connect(t, f.e, tr, f.wsToken)
			ctx := context.Background()
			lt, err := s.ListTools(ctx, nil)
			require.NoError(t, err)
			require.Equal(t, names(mcp.Tools(mcp.Workspace)), names(lt.Tools))
			for _, name := range []string{"list_workspaces", "set_secret", "delete_workspace", "list_audit", "restart_workspace"} {
				require.NotContains(t, names(lt.Tools), name)
				_, err := s.callRaw(name, map[string]any{})
				require.Error(t, err, "%s must not be callable with a workspace token", name)
			}

			var who struct{ Principal client.Principal }
			s.call(t, "whoami", nil, &who)
			require.Equal(t, "workspace", who.Principal.Kind)
			require.Equal(t, f.research.ID, who.Principal.WorkspaceID)

			var w client.Workspace
			s.call(t, "get_workspace", map[string]any{"workspace_id": f.research.ID}, &w)
			require.Equal(t, f.research.ID, w.ID)
			r := s.call(t, "get_workspace", map[string]any{"workspace_id": f.e.Org.Platform.ID}, nil)
			require.True(t, r.IsError)
			requireToolError(t, s.call(t, "get_workspace", map[string]any{"workspace_id": f.other.ID}, nil), "not_found")

			var secrets struct{ Secrets []client.SecretMeta }
			s.call(t, "list_secrets", map[string]any{"workspace_id": f.research.ID}, &secrets)
			require.True(t, s.call(t, "list_secrets", map[string]any{}, nil).IsError, "global secrets are not a workspace's")
			var restarts struct{ Restarts []client.RestartJob }
			s.call(t, "list_restarts", map[string]any{"workspace_id": f.research.ID}, &restarts)

			// The changes of its own secrets; not the org's global ones.
			own, err := f.e.Client(f.wsToken).SetSecret(ctx, f.research.ID, "OWN_KEY", "v", false)
			require.NoError(t, err)
			var ch client.Change
			s.call(t, "get_change", map[string]any{"change_id": own.ChangeID}, &ch)
			require.Equal(t, own.ChangeID, ch.ID)
			require.Equal(t, f.research.ID, ch.WorkspaceID)
			global, err := f.e.Admin.SetSecret(ctx, "", "GLOBAL_KEY", "v", false)
			require.NoError(t, err)
			requireToolError(t, s.call(t, "get_change", map[string]any{"change_id": global.ChangeID}, nil), "not_found")

			// A secret asked for: the person's value goes to the store,
			// never through the agent.
			const value = "sk-from-a-person-0123456789"
			var rq client.Request
			s.call(t, "create_request", map[string]any{"title": "Need the key", "ask": "secret", "key": "VENDOR_KEY"}, &rq)
			require.Equal(t, f.research.ID, rq.WorkspaceID)
			go func() {
				waitFor(10*time.Second, func() bool { return len(s.progressSeen()) > 0 })
				v := value
				_ = f.e.Owner.Do(context.Background(), http.MethodPost, "/v1/requests/"+rq.ID+"/answer", client.Answer{Value: &v}, nil)
			}()
			res, err := s.CallTool(ctx, progressParams("wait_request", map[string]any{"request_id": rq.ID, "timeout_seconds": 30}))
			require.NoError(t, err)
			var waited struct {
				Done    bool
				Request client.Request
			}
			r = decodeResult(t, "wait_request", res, &waited)
			require.True(t, waited.Done)
			require.Equal(t, "answered", waited.Request.State)
			require.NotContains(t, r.Text, value)
			r = s.call(t, "get_request", map[string]any{"request_id": rq.ID}, nil)
			require.NotContains(t, r.Text, value)
			r = s.call(t, "list_secrets", map[string]any{"workspace_id": f.research.ID}, nil)
			require.Contains(t, r.Text, "VENDOR_KEY")
			require.NotContains(t, r.Text, value)

			// Its approvals: ask, see, cancel.
			var ap client.Approval
			// An action it may not do itself is refused; a question is not.
			requireToolError(t, s.call(t, "create_approval", map[string]any{"title": "restart me", "action": map[string]any{"type": "workspace.restart",
				"params": map[string]any{"workspace_id": f.research.ID}}}, nil), "forbidden")
			s.call(t, "create_approval", map[string]any{"title": "may I restart?"}, &ap)
			var aps struct{ Approvals []client.Approval }
			s.call(t, "list_approvals", nil, &aps)
			require.Equal(t, []string{ap.ID}, approvalIDs(aps.Approvals))
			s.call(t, "get_approval", map[string]any{"approval_id": ap.ID}, &ap)
			s.call(t, "cancel_approval", map[string]any{"approval_id": ap.ID}, &ap)
			require.Equal(t, "cancelled", f.approval(t, ap.ID).State)
			var wa struct {
				Done     bool
				Approval client.Approval
			}
			s.call(t, "wait_approval", map[string]any{"approval_id": ap.ID, "timeout_seconds": 1}, &wa)
			require.True(t, wa.Done)
			var rqs struct{ Requests []client.Request }
			s.call(t, "list_requests", nil, &rqs)
			require.Len(t, rqs.Requests, 1)
			s.call(t, "create_request", map[string]any{"title": "q", "ask": "text"}, &rq)
			s.call(t, "cancel_request", map[string]any{"request_id": rq.ID}, &rq)
			require.Equal(t, "cancelled", rq.State)
		})
	}
}

// A token revoked mid-session is refused at its next call: every request
// is authenticated on its own.
func TestRevokedMidSession(t *testing.T) {
	for _, tr := range []transport{overHTTP, overStdio} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, testenv.Options{})
			ctx := context.Background()
			tok, err := f.e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "agent"})
			require.NoError(t, err)
			s := connect(t, f.e, tr, tok.Secret)
			s.call(t, "whoami", nil, nil)
			require.NoError(t, f.e.Admin.RevokeToken(ctx, tok.Token.ID))
			res, err := s.callRaw("list_workspaces", nil)
			if err == nil {
				// Relayed over stdio, the API's 401 is the tool's error.
				require.True(t, res.IsError)
				r := decodeResult(t, "list_workspaces", res, nil)
				require.Equal(t, "unauthorized", r.Err.Code)
				return
			}
			require.Contains(t, err.Error(), "Unauthorized")
		})
	}
}

// /mcp takes bearer tokens of agents only: no token or a bad one is a 401
// with WWW-Authenticate; a person's token is refused, on /mcp and when a
// relayed call says it comes through MCP.
func TestMCPEndpointAuthentication(t *testing.T) {
	f := newFixture(t, testenv.Options{})
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`
	post := func(token string) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodPost, f.e.URL+"/mcp", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, tok := range []string{"", "op_admin_nonsense", f.e.AdminToken + "x"} {
		resp, _ := post(tok)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Equal(t, `Bearer realm="orgplane"`, resp.Header.Get("WWW-Authenticate"))
	}
	resp, b := post(f.e.OwnerToken)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, b, "not_an_agent")

	resp, b = post(f.e.AdminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode, b)
	require.Contains(t, b, "list_workspaces")

	// The relay header: a person's token is refused; an unknown value too.
	_, err := f.e.Owner.ViaMCP().ListWorkspaces(context.Background())
	require.ErrorContains(t, err, "not_an_agent")
	req, _ := http.NewRequest(http.MethodGet, f.e.URL+"/v1/whoami", bytes.NewReader(nil))
	req.Header.Set("Authorization", "Bearer "+f.e.AdminToken)
	req.Header.Set(client.ViaHeader, "human")
	r, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusBadRequest, r.StatusCode)

	// Through the relay header a plain admin token is an agent: the
	// policy's gates apply, as on /mcp.
	var w client.Workspace
	require.NoError(t, f.e.Admin.Do(context.Background(), http.MethodPost, "/v1/workspaces", client.CreateWorkspace{Name: "tmp", Spec: boxSpec}, &w))
	status, raw, err := f.e.Admin.ViaMCP().Send(context.Background(), http.MethodDelete, "/v1/workspaces/"+w.ID, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, status, string(raw))
	require.Contains(t, string(raw), `"approval"`)
	status, _, err = f.e.Admin.Send(context.Background(), http.MethodDelete, "/v1/workspaces/"+w.ID, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "without the header, the admin token is not an agent")
}
