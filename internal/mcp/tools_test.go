package mcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/mcp"
	"github.com/orgplane/orgplane/internal/testenv"
)

// TestToolsListGolden pins tools/list of each mode (names, descriptions,
// schemas, annotations): any change is a reviewed diff.
func TestToolsListGolden(t *testing.T) {
	for _, mode := range []mcp.Mode{mcp.Management, mcp.Workspace} {
		t.Run(string(mode), func(t *testing.T) {
			b, err := json.MarshalIndent(mcp.Tools(mode), "", "  ")
			require.NoError(t, err)
			golden(t, "tools_"+string(mode)+".golden", append(b, '\n'))
		})
	}
}

// TestToolDefinitions checks what every tool must have: a snake_case name,
// a description on every argument, annotations with open world false.
func TestToolDefinitions(t *testing.T) {
	for _, tool := range mcp.Tools(mcp.Management) {
		require.Regexp(t, `^[a-z]+(_[a-z]+)*$`, tool.Name)
		require.NotEmpty(t, tool.Description, tool.Name)
		require.NotNil(t, tool.Annotations, tool.Name)
		require.NotNil(t, tool.Annotations.OpenWorldHint, tool.Name)
		require.False(t, *tool.Annotations.OpenWorldHint, tool.Name)
		require.NotNil(t, tool.Annotations.DestructiveHint, tool.Name)
		require.NotNil(t, tool.OutputSchema, tool.Name)
		b, _ := json.Marshal(tool.InputSchema)
		var in struct {
			Properties map[string]struct {
				Description string `json:"description"`
			} `json:"properties"`
		}
		require.NoError(t, json.Unmarshal(b, &in))
		for name, p := range in.Properties {
			require.NotEmpty(t, p.Description, "%s.%s has no description", tool.Name, name)
		}
	}
}

func names(tools []*sdk.Tool) []string {
	var out []string
	for _, t := range tools {
		out = append(out, t.Name)
	}
	return out
}

// fixture is an org with one running workspace and a second org.
type fixture struct {
	e        *testenv.Env
	research client.Workspace
	other    client.Workspace // of another org
	wsToken  string           // research's workspace token
}

func newFixture(t *testing.T, opts testenv.Options) *fixture {
	t.Helper()
	if opts.Runtime.PollInterval == 0 {
		opts.Runtime = fastRuntime()
	}
	e := testenv.New(t, opts)
	ctx := context.Background()
	f := &fixture{e: e}
	var err error
	f.research, err = e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "research", Spec: boxSpec})
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() bool {
		w, err := e.Admin.GetWorkspace(ctx, f.research.ID)
		return err == nil && w.Status == "running"
	}, "research running")
	tok, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "workspace", Name: "research-agent", WorkspaceID: f.research.ID})
	require.NoError(t, err)
	f.wsToken = tok.Secret
	_, otherAdmin := e.NewOrg("globex")
	f.other, err = otherAdmin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "theirs", Spec: boxSpec})
	require.NoError(t, err)
	return f
}

// decide has the org's owner decide an approval over HTTP.
func (f *fixture) decide(t testing.TB, id, verdict string) {
	t.Helper()
	require.NoError(t, f.e.Owner.Do(context.Background(), http.MethodPost, "/v1/approvals/"+id+"/decision",
		client.Decide{Decision: verdict}, nil))
}

func (f *fixture) approval(t testing.TB, id string) client.Approval {
	t.Helper()
	var a client.Approval
	require.NoError(t, f.e.Admin.Do(context.Background(), http.MethodGet, "/v1/approvals/"+id, nil, &a))
	return a
}

func (f *fixture) request(t testing.TB, id string) client.Request {
	t.Helper()
	var r client.Request
	require.NoError(t, f.e.Admin.Do(context.Background(), http.MethodGet, "/v1/requests/"+id, nil, &r))
	return r
}

// requireMalformed checks that a call with arguments that do not fit the
// tool is a protocol error, not a tool result.
func requireMalformed(t testing.TB, s *session, name string, args any) {
	t.Helper()
	res, err := s.callRaw(name, args)
	require.Error(t, err, "%s with %v: want a protocol error, got %+v", name, args, res)
	require.NotContains(t, err.Error(), "sk-never-shown")
}

// requireToolError checks a tool error and its API code.
func requireToolError(t testing.TB, r result, code string) {
	t.Helper()
	require.True(t, r.IsError, "want a tool error %s, got %s", code, r.Text)
	if code != AnyCode {
		require.Equal(t, code, r.Err.Code, r.Text)
	}
}

func TestManagementTools(t *testing.T) {
	for _, tr := range []transport{inMemory, overHTTP, overStdio} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, testenv.Options{})
			s := connect(t, f.e, tr, f.e.AdminToken)
			runManagement(t, f, s)
		})
	}
}

func runManagement(t *testing.T, f *fixture, s *session) {
	ctx := context.Background()
	e := f.e
	admin := e.Admin

	lt, err := s.ListTools(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, names(mcp.Tools(mcp.Management)), names(lt.Tools))

	// Every tool refuses arguments it does not take, as a protocol error.
	for _, tool := range lt.Tools {
		requireMalformed(t, s, tool.Name, map[string]any{"bogus": 1})
	}
	requireMalformed(t, s, "get_workspace", map[string]any{})                                           // missing
	requireMalformed(t, s, "get_workspace", map[string]any{"workspace_id": 7})                          // wrong type
	requireMalformed(t, s, "set_secret", map[string]any{"key": "K", "value": 12345})                    // wrong type
	requireMalformed(t, s, "set_secret", map[string]any{"key": "K", "value": "sk-never-shown", "x": 1}) // unknown
	_, err = s.callRaw("no_such_tool", map[string]any{})
	require.Error(t, err)

	// whoami: the API's view of the same token.
	var who struct{ Principal client.Principal }
	s.call(t, "whoami", map[string]any{}, &who)
	want, err := admin.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, want, who.Principal)

	// Workspaces.
	var list struct{ Workspaces []client.Workspace }
	s.call(t, "list_workspaces", nil, &list)
	apiList, err := admin.ListWorkspaces(ctx)
	require.NoError(t, err)
	require.Equal(t, ids(apiList), ids(list.Workspaces))

	var got client.Workspace
	s.call(t, "get_workspace", map[string]any{"workspace_id": f.research.ID}, &got)
	apiW, err := admin.GetWorkspace(ctx, f.research.ID)
	require.NoError(t, err)
	require.Equal(t, apiW.ID, got.ID)
	require.Equal(t, apiW.Name, got.Name)
	require.Equal(t, apiW.Spec, got.Spec)
	requireToolError(t, s.call(t, "get_workspace", map[string]any{"workspace_id": f.other.ID}, nil), "not_found")

	var made client.Workspace
	s.call(t, "create_workspace", map[string]any{"name": "made-by-mcp", "spec": map[string]any{"command": []string{"box"}, "ready_after_seconds": 0}}, &made)
	apiW, err = admin.GetWorkspace(ctx, made.ID)
	require.NoError(t, err)
	require.Equal(t, "made-by-mcp", apiW.Name)
	requireToolError(t, s.call(t, "create_workspace", map[string]any{"name": "x", "runtime": "nonsense"}, nil), AnyCode)

	var upd outcome[client.Workspace]
	s.call(t, "update_workspace", map[string]any{"workspace_id": made.ID, "name": "renamed"}, &upd)
	require.Equal(t, "done", upd.Status)
	apiW, _ = admin.GetWorkspace(ctx, made.ID)
	require.Equal(t, "renamed", apiW.Name)
	requireToolError(t, s.call(t, "update_workspace", map[string]any{"workspace_id": f.other.ID, "name": "x"}, nil), "not_found")

	// Protection is gated for agents: an approval, nothing changed.
	var prot outcome[client.Workspace]
	s.call(t, "update_workspace", map[string]any{"workspace_id": made.ID, "protected": true}, &prot)
	require.Equal(t, "approval_required", prot.Status)
	require.Nil(t, prot.Result)
	require.Equal(t, "pending", f.approval(t, prot.Approval.ID).State)
	apiW, _ = admin.GetWorkspace(ctx, made.ID)
	require.False(t, apiW.Protected)

	// Restart, pause, resume.
	var rs outcome[client.RestartJob]
	s.call(t, "restart_workspace", map[string]any{"workspace_id": f.research.ID, "reason": "mcp test"}, &rs)
	require.Equal(t, "done", rs.Status)
	var restarts struct{ Restarts []client.RestartJob }
	s.call(t, "list_restarts", map[string]any{"workspace_id": f.research.ID}, &restarts)
	apiJobs, err := admin.ListRestarts(ctx, f.research.ID)
	require.NoError(t, err)
	require.Equal(t, jobIDs(apiJobs), jobIDs(restarts.Restarts))
	require.Contains(t, jobIDs(apiJobs), rs.Result.ID)
	requireToolError(t, s.call(t, "restart_workspace", map[string]any{"workspace_id": f.other.ID}, nil), "not_found")
	requireToolError(t, s.call(t, "list_restarts", map[string]any{"workspace_id": f.other.ID}, nil), "not_found")
	// The platform workspace's restart is gated.
	var platRestart outcome[client.RestartJob]
	s.call(t, "restart_workspace", map[string]any{"workspace_id": e.Org.Platform.ID}, &platRestart)
	require.Equal(t, "approval_required", platRestart.Status)

	s.call(t, "pause_workspace", map[string]any{"workspace_id": made.ID}, &got)
	apiW, _ = admin.GetWorkspace(ctx, made.ID)
	require.Equal(t, "paused", apiW.Status)
	requireToolError(t, s.call(t, "pause_workspace", map[string]any{"workspace_id": e.Org.Platform.ID}, nil), AnyCode)
	s.call(t, "resume_workspace", map[string]any{"workspace_id": made.ID}, &got)
	apiW, _ = admin.GetWorkspace(ctx, made.ID)
	require.NotEqual(t, "paused", apiW.Status)
	requireToolError(t, s.call(t, "resume_workspace", map[string]any{"workspace_id": f.other.ID}, nil), "not_found")

	// Secrets: the value never comes back.
	const value = "sk-never-shown-0123456789"
	var sw outcome[client.SecretWrite]
	r := s.call(t, "set_secret", map[string]any{"workspace_id": f.research.ID, "key": "API_KEY", "value": value, "dry_run": true}, &sw)
	require.NotContains(t, r.Text, value)
	require.True(t, sw.Result.DryRun)
	r = s.call(t, "set_secret", map[string]any{"workspace_id": f.research.ID, "key": "API_KEY", "value": value}, &sw)
	require.NotContains(t, r.Text, value)
	require.Equal(t, "done", sw.Status)
	require.Len(t, sw.Result.Decisions, 1)
	require.Equal(t, "restart_queued", sw.Result.Decisions[0].Reason)
	// Its change, as the API shows it.
	var ch client.Change
	s.call(t, "get_change", map[string]any{"change_id": sw.Result.ChangeID}, &ch)
	require.Equal(t, sw.Result.ChangeID, ch.ID)
	require.Equal(t, map[string]int{"restart_queued": 1}, ch.Counts)
	require.Equal(t, 1, ch.Restarts.Queued)
	requireToolError(t, s.call(t, "get_change", map[string]any{"change_id": "c_nope"}, nil), "not_found")
	var secrets struct{ Secrets []client.SecretMeta }
	r = s.call(t, "list_secrets", map[string]any{"workspace_id": f.research.ID}, &secrets)
	require.NotContains(t, r.Text, value)
	apiSecrets, err := admin.ListSecrets(ctx, f.research.ID)
	require.NoError(t, err)
	require.Equal(t, apiSecrets, secrets.Secrets)
	r = s.call(t, "set_secret", map[string]any{"key": "lower case", "value": value}, nil)
	requireToolError(t, r, AnyCode)
	require.NotContains(t, r.Text, value)
	requireToolError(t, s.call(t, "list_secrets", map[string]any{"workspace_id": f.other.ID}, nil), "not_found")
	s.call(t, "set_secret", map[string]any{"key": "GLOBAL_ONE", "value": value}, &sw)
	require.Equal(t, "done", sw.Status)
	var globals struct{ Secrets []client.SecretMeta }
	s.call(t, "list_secrets", map[string]any{}, &globals)
	apiSecrets, _ = admin.ListSecrets(ctx, "")
	require.Equal(t, apiSecrets, globals.Secrets)
	s.call(t, "delete_secret", map[string]any{"workspace_id": f.research.ID, "key": "API_KEY"}, &sw)
	require.Equal(t, "done", sw.Status)
	apiSecrets, _ = admin.ListSecrets(ctx, f.research.ID)
	for _, m := range apiSecrets {
		require.False(t, m.Key == "API_KEY" && m.Scope == "workspace", "API_KEY still set")
	}
	requireToolError(t, s.call(t, "delete_secret", map[string]any{"workspace_id": f.research.ID, "key": "NEVER_SET"}, nil), AnyCode)

	// The audit log, as the API shows it; nowhere the value.
	var page client.AuditPage
	r = s.call(t, "list_audit", map[string]any{"limit": 20}, &page)
	require.NotContains(t, r.Text, value)
	// The API's page that starts where the tool's did (background work,
	// such as a restart finishing, may append entries meanwhile).
	require.NotEmpty(t, page.Entries)
	apiPage, err := admin.ListAudit(ctx, "", 20, page.Entries[0].ID+1)
	require.NoError(t, err)
	require.Equal(t, auditIDs(apiPage), auditIDs(page))
	requireToolError(t, s.call(t, "list_audit", map[string]any{"limit": 100000}, nil), AnyCode)

	// Deleting a workspace is gated for agents.
	var del outcome[client.DeleteWorkspaceResult]
	s.call(t, "delete_workspace", map[string]any{"workspace_id": made.ID}, &del)
	require.Equal(t, "approval_required", del.Status)
	apiW, err = admin.GetWorkspace(ctx, made.ID)
	require.NoError(t, err)
	require.NotEqual(t, "removed", apiW.Status)
	requireToolError(t, s.call(t, "delete_workspace", map[string]any{"workspace_id": f.other.ID}, nil), "not_found")

	// Approvals.
	var aps struct{ Approvals []client.Approval }
	s.call(t, "list_approvals", map[string]any{"state": "pending"}, &aps)
	var apiAps []client.Approval
	require.NoError(t, admin.Do(ctx, http.MethodGet, "/v1/approvals?state=pending", nil, &apiAps))
	require.Equal(t, approvalIDs(apiAps), approvalIDs(aps.Approvals))
	require.Contains(t, approvalIDs(aps.Approvals), del.Approval.ID)
	requireToolError(t, s.call(t, "list_approvals", map[string]any{"state": "bogus"}, nil), "invalid_state")

	var ap client.Approval
	s.call(t, "get_approval", map[string]any{"approval_id": del.Approval.ID}, &ap)
	require.Equal(t, f.approval(t, del.Approval.ID).State, ap.State)
	require.Equal(t, "mcp", ap.Requester.Via)
	requireToolError(t, s.call(t, "get_approval", map[string]any{"approval_id": "ap_nope"}, nil), "not_found")

	s.call(t, "cancel_approval", map[string]any{"approval_id": del.Approval.ID}, &ap)
	require.Equal(t, "cancelled", f.approval(t, del.Approval.ID).State)
	requireToolError(t, s.call(t, "cancel_approval", map[string]any{"approval_id": del.Approval.ID}, nil), "not_pending")

	var free client.Approval
	s.call(t, "create_approval", map[string]any{"title": "May I?", "detail": "a question"}, &free)
	require.Equal(t, "pending", f.approval(t, free.ID).State)
	requireToolError(t, s.call(t, "create_approval", map[string]any{"title": ""}, nil), "missing_field")
	r = s.call(t, "create_approval", map[string]any{"title": "set it", "action": map[string]any{"type": "secret.set",
		"params": map[string]any{"key": "GATED", "value": value}}}, &ap)
	require.NotContains(t, r.Text, value)
	require.True(t, ap.Action.HasValue)

	// wait_approval: a person approves over HTTP while the agent waits.
	go func() {
		waitFor(10*time.Second, func() bool { return len(s.progressSeen()) > 0 })
		_ = e.Owner.Do(context.Background(), http.MethodPost, "/v1/approvals/"+free.ID+"/decision", client.Decide{Decision: "approve"}, nil)
	}()
	var waited struct {
		Done     bool
		Approval client.Approval
	}
	res, err := s.CallTool(ctx, progressParams("wait_approval", map[string]any{"approval_id": free.ID, "timeout_seconds": 30}))
	require.NoError(t, err)
	decodeResult(t, "wait_approval", res, &waited)
	require.True(t, waited.Done)
	require.Equal(t, "approved", waited.Approval.State)
	require.Contains(t, s.progressSeen(), "pending")
	requireToolError(t, s.call(t, "wait_approval", map[string]any{"approval_id": f.approvalOfOtherOrg(t)}, nil), "not_found")

	// Requests.
	var rq client.Request
	s.call(t, "create_request", map[string]any{"title": "Which region?", "ask": "text"}, &rq)
	require.Equal(t, "pending", f.request(t, rq.ID).State)
	requireToolError(t, s.call(t, "create_request", map[string]any{"title": "x", "ask": "nonsense"}, nil), AnyCode)
	var rqs struct{ Requests []client.Request }
	s.call(t, "list_requests", map[string]any{}, &rqs)
	var apiRqs []client.Request
	require.NoError(t, admin.Do(ctx, http.MethodGet, "/v1/requests", nil, &apiRqs))
	require.Equal(t, len(apiRqs), len(rqs.Requests))
	requireToolError(t, s.call(t, "list_requests", map[string]any{"limit": 5000}, nil), AnyCode)
	var gotRq client.Request
	s.call(t, "get_request", map[string]any{"request_id": rq.ID}, &gotRq)
	require.Equal(t, f.request(t, rq.ID), gotRq)
	requireToolError(t, s.call(t, "get_request", map[string]any{"request_id": "rq_nope"}, nil), "not_found")
	go func() {
		waitFor(10*time.Second, func() bool { return len(s.progressSeen()) > 1 })
		answer := "eu-west"
		_ = e.Owner.Do(context.Background(), http.MethodPost, "/v1/requests/"+rq.ID+"/answer", client.Answer{Text: &answer}, nil)
	}()
	var waitedRq struct {
		Done    bool
		Request client.Request
	}
	res, err = s.CallTool(ctx, progressParams("wait_request", map[string]any{"request_id": rq.ID, "timeout_seconds": 30}))
	require.NoError(t, err)
	decodeResult(t, "wait_request", res, &waitedRq)
	require.True(t, waitedRq.Done)
	require.Equal(t, "eu-west", waitedRq.Request.Answer)
	requireToolError(t, s.call(t, "wait_request", map[string]any{"request_id": "rq_nope"}, nil), "not_found")

	var rq2 client.Request
	s.call(t, "create_request", map[string]any{"title": "never mind", "ask": "text"}, &rq2)
	s.call(t, "cancel_request", map[string]any{"request_id": rq2.ID}, &gotRq)
	require.Equal(t, "cancelled", f.request(t, rq2.ID).State)
	requireToolError(t, s.call(t, "cancel_request", map[string]any{"request_id": rq.ID}, nil), "not_pending")
}

// waitFor polls cond until it holds or timeout passes (for goroutines,
// which must not fail the test themselves).
func waitFor(timeout time.Duration, cond func() bool) {
	for deadline := time.Now().Add(timeout); !cond() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}

// AnyCode accepts any error code.
const AnyCode = "*"

func progressParams(name string, args any) *sdk.CallToolParams {
	p := &sdk.CallToolParams{Name: name, Arguments: args}
	p.SetProgressToken("wait-" + name)
	return p
}

// approvalOfOtherOrg is an approval id of another org.
func (f *fixture) approvalOfOtherOrg(t testing.TB) string {
	t.Helper()
	n, other := f.e.NewOrg("initech-" + strings.ToLower(t.Name()[len(t.Name())-3:]))
	_ = n
	var a client.Approval
	require.NoError(t, other.Do(context.Background(), http.MethodPost, "/v1/approvals", client.CreateApproval{Title: "theirs"}, &a))
	return a.ID
}

func ids(list []client.Workspace) []string {
	var out []string
	for _, w := range list {
		out = append(out, w.ID)
	}
	return out
}

func jobIDs(list []client.RestartJob) []string {
	var out []string
	for _, j := range list {
		out = append(out, j.ID)
	}
	return out
}

func approvalIDs(list []client.Approval) []string {
	var out []string
	for _, a := range list {
		out = append(out, a.ID)
	}
	return out
}

func auditIDs(p client.AuditPage) []int64 {
	var out []int64
	for _, e := range p.Entries {
		out = append(out, e.ID)
	}
	return out
}
