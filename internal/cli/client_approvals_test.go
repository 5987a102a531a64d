package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
)

const testApprovalID = "ap2b3c4d5e6f7g2h3i"

// requireGolden compares got with testdata/name (rewritten with -update).
func requireGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *updateGolden {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test ./internal/cli -update to create it")
	require.Equal(t, string(want), got, "run go test ./internal/cli -update to refresh it")
}

// pendingApproval is what an agent's global secret write looks like when
// the policy holds it: a plan at request time and, shown now, the current
// one (a workspace was added meanwhile).
func pendingApproval() client.Approval {
	ds := []client.Decision{
		{WorkspaceID: "ws_plat", Action: "skip", Reason: "platform_root"},
		{WorkspaceID: "ws_a", Action: "restart", Reason: "restart_queued"},
		{WorkspaceID: "ws_b", Action: "restart", Reason: "restart_queued"},
		{WorkspaceID: "ws_c", Action: "skip", Reason: "manual_policy"},
	}
	now := append(append([]client.Decision(nil), ds...), client.Decision{WorkspaceID: "ws_d", Action: "restart", Reason: "restart_queued"})
	return client.Approval{
		ID: testApprovalID, OrgID: "org_1", State: "pending", Title: "Set the global secret API_KEY",
		Action:     &client.ApprovalAction{Type: "secret.set", Params: json.RawMessage(`{"key": "API_KEY"}`), HasValue: true},
		ParamsHash: "h", Quorum: 1,
		Requester: client.Requester{Kind: "admin", TokenID: "tok_mgmt", WorkspaceID: "ws_plat", Via: "token"},
		Plan:      &client.Plan{Decisions: ds, Counts: map[string]int{"platform_root": 1, "restart_queued": 2, "manual_policy": 1}, Restarts: 2},
		CurrentPlan: &client.Plan{Decisions: now, Counts: map[string]int{"platform_root": 1, "restart_queued": 3, "manual_policy": 1},
			Restarts: 3, Truncated: true},
		Decisions: []client.Vote{},
		ExpiresAt: testTime.Add(24 * time.Hour), CreatedAt: testTime, UpdatedAt: testTime,
	}
}

func succeededApproval() client.Approval {
	a := pendingApproval()
	ended := testTime.Add(time.Minute)
	a.State, a.CurrentPlan, a.EndedAt, a.UpdatedAt = "succeeded", nil, &ended, ended
	a.Action.Params = json.RawMessage("null")
	a.Decisions = []client.Vote{{UserID: "usr_owner", TokenID: "tok_owner", Via: "token", Verdict: "approve", Note: "rotation\tplanned", At: ended}}
	a.Result = &client.Plan{Decisions: a.Plan.Decisions, Counts: a.Plan.Counts, Restarts: 2, Version: 4}
	return a
}

func TestApprovalsLs(t *testing.T) {
	t.Parallel()
	free := client.Approval{ID: "ap7777777777777777", State: "approved", Title: "Order more GPUs", Quorum: 2,
		Requester: client.Requester{Kind: "workspace", TokenID: "tok_w", WorkspaceID: "ws_a", Via: "mcp"},
		Decisions: []client.Vote{{UserID: "usr_1", Verdict: "approve"}, {UserID: "usr_2", Verdict: "approve"}},
		CreatedAt: testTime, ExpiresAt: testTime.Add(time.Hour)}
	list := []client.Approval{pendingApproval(), free}
	f := newFakeAPI(t)
	f.handle("GET /v1/approvals", 200, list)

	r := f.run("", "approvals", "ls", "--state", "pending", "--limit", "2")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "/v1/approvals", req.Path)
	require.Equal(t, "limit=2&state=pending", req.Query)
	require.Equal(t, ""+
		"ID                  STATE     ACTION      TITLE                          REQUESTER                       APPROVALS  CREATED               EXPIRES\n"+
		"ap2b3c4d5e6f7g2h3i  pending   secret.set  Set the global secret API_KEY  admin@ws_plat (tok_mgmt)        0/1        2025-03-01T12:00:00Z  2025-03-02T12:00:00Z\n"+
		"ap7777777777777777  approved  free-form   Order more GPUs                workspace@ws_a (tok_w) via mcp  2/2        2025-03-01T12:00:00Z  2025-03-01T13:00:00Z\n", r.stdout)
	require.Equal(t, "maybe more: orgplane approvals ls --state pending --limit 2 --before ap7777777777777777\n", r.stderr)

	r = f.run("", "approvals", "ls", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, f.requests()[1].Query)
	require.Empty(t, r.stderr, "a short page has no more")
	require.JSONEq(t, mustJSON(t, list), r.stdout)
}

func TestApprovalsLsEmpty(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/approvals", 200, nil)
	r := f.run("", "approvals", "ls", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "[]\n", r.stdout)
}

func TestApprovalsShowPending(t *testing.T) {
	t.Parallel()
	a := pendingApproval()
	f := newFakeAPI(t)
	f.handle("GET /v1/approvals/{id}", 200, a)

	r := f.run("", "approvals", "show", testApprovalID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "/v1/approvals/"+testApprovalID, f.only().Path)
	requireGolden(t, "approval_show_pending.golden", r.stdout)

	r = f.run("", "approvals", "show", testApprovalID, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, a), r.stdout)
}

func TestApprovalsShowEnded(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	failed := pendingApproval()
	ended := testTime.Add(time.Minute)
	failed.State, failed.CurrentPlan, failed.EndedAt = "failed", nil, &ended
	failed.Error = &client.ErrorDetail{Code: "stale_precondition", Message: "the secret API_KEY changed since the approval was asked for"}
	f.handle("GET /v1/approvals/ap2b3c4d5e6f7g2h3i", 200, succeededApproval())
	f.handle("GET /v1/approvals/ap3333333333333333", 200, failed)

	r := f.run("", "approvals", "show", testApprovalID)
	require.Equal(t, 0, r.code, r.stderr)
	requireGolden(t, "approval_show_succeeded.golden", r.stdout)

	r = f.run("", "approvals", "show", "ap3333333333333333")
	require.Equal(t, 0, r.code, r.stderr, "showing a failed approval is not an error")
	require.Contains(t, r.stdout, "error:        the secret API_KEY changed since the approval was asked for (stale_precondition)\n")
	require.NotContains(t, r.stdout, "decide:")
}

// A token minted by an approved action is handed to its requester once:
// show prints it with a warning.
func TestApprovalsShowMintedSecret(t *testing.T) {
	t.Parallel()
	a := client.Approval{ID: testApprovalID, State: "succeeded", Title: "Mint an admin token",
		Action:    &client.ApprovalAction{Type: "token.create", Params: json.RawMessage("null")},
		Requester: client.Requester{Kind: "workspace", TokenID: "tok_w", WorkspaceID: "ws_a"}, Quorum: 1,
		Result: &client.Plan{TokenID: "tok_new"}, Secret: "adm_tok_new_S3cret"}
	f := newFakeAPI(t)
	f.handle("GET /v1/approvals/{id}", 200, a)
	r := f.run("", "approvals", "show", testApprovalID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "result: token tok_new\n")
	require.Contains(t, r.stdout, "(shown once; store it now):\n\n    adm_tok_new_S3cret\n")
}

func TestApprovalsApprove(t *testing.T) {
	t.Parallel()
	a := succeededApproval()
	f := newFakeAPI(t)
	f.handle("POST /v1/approvals/{id}/decision", 200, a)

	r := f.run("", "approvals", "approve", testApprovalID, "--note", "rotation planned")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "POST", req.Method)
	require.Equal(t, "/v1/approvals/"+testApprovalID+"/decision", req.Path)
	require.JSONEq(t, `{"decision":"approve","note":"rotation planned"}`, string(req.Body))
	require.Equal(t, ""+
		"approved ap2b3c4d5e6f7g2h3i (Set the global secret API_KEY): now succeeded\n"+
		"done: restarts 2 of 4 workspaces affected; secret version 4\n", r.stdout)

	r = f.run("", "approvals", "approve", testApprovalID, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"decision":"approve"}`, string(f.requests()[1].Body))
	require.JSONEq(t, mustJSON(t, a), r.stdout)
}

// With a quorum of two, the first approval leaves it pending.
func TestApprovalsApproveQuorum(t *testing.T) {
	t.Parallel()
	a := pendingApproval()
	a.Quorum = 2
	a.Decisions = []client.Vote{{UserID: "usr_owner", Verdict: "approve", At: testTime}}
	f := newFakeAPI(t)
	f.handle("POST /v1/approvals/{id}/decision", 200, a)
	r := f.run("", "approvals", "approve", testApprovalID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, ""+
		"approved ap2b3c4d5e6f7g2h3i (Set the global secret API_KEY): now pending\n"+
		"1 of 2 approvals so far; it waits for more people\n", r.stdout)
}

// An approved action that failed (the world changed) is a failed
// command: the decision stands, the action did not happen.
func TestApprovalsApproveExecutionFailed(t *testing.T) {
	t.Parallel()
	a := pendingApproval()
	a.State, a.CurrentPlan = "failed", nil
	a.Error = &client.ErrorDetail{Code: "stale_precondition", Message: "the secret API_KEY changed since"}
	f := newFakeAPI(t)
	f.handle("POST /v1/approvals/{id}/decision", 200, a)

	r := f.run("", "approvals", "approve", testApprovalID)
	require.Equal(t, 1, r.code)
	require.Equal(t, ""+
		"approved ap2b3c4d5e6f7g2h3i (Set the global secret API_KEY): now failed\n"+
		"its action failed: the secret API_KEY changed since (stale_precondition)\n", r.stdout)
	require.Equal(t, "error: approval ap2b3c4d5e6f7g2h3i was approved but its action failed: the secret API_KEY changed since (stale_precondition)\n", r.stderr)

	r = f.run("", "approvals", "approve", testApprovalID, "--json")
	require.Equal(t, 1, r.code)
	require.JSONEq(t, mustJSON(t, a), r.stdout)
	require.Contains(t, r.stderr, "stale_precondition")
}

func TestApprovalsDeny(t *testing.T) {
	t.Parallel()
	a := pendingApproval()
	a.State, a.CurrentPlan = "denied", nil
	a.Decisions = []client.Vote{{UserID: "usr_owner", Verdict: "deny", Note: "not now", At: testTime}}
	f := newFakeAPI(t)
	f.handle("POST /v1/approvals/{id}/decision", 200, a)
	r := f.run("", "approvals", "deny", testApprovalID, "--note", "not now")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"decision":"deny","note":"not now"}`, string(f.only().Body))
	require.Equal(t, "denied ap2b3c4d5e6f7g2h3i (Set the global secret API_KEY): now denied\n", r.stdout)
}

func TestApprovalsCancel(t *testing.T) {
	t.Parallel()
	a := pendingApproval()
	a.State = "cancelled"
	f := newFakeAPI(t)
	f.handle("POST /v1/approvals/{id}/cancel", 200, a)
	r := f.run("", "approvals", "cancel", testApprovalID)
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "/v1/approvals/"+testApprovalID+"/cancel", req.Path)
	require.Empty(t, req.Body, "the server takes no body")
	require.Equal(t, "cancelled ap2b3c4d5e6f7g2h3i (Set the global secret API_KEY): now cancelled\n", r.stdout)

	r = f.run("", "approvals", "cancel", testApprovalID, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, a), r.stdout)
}

// The server's refusals of a decision, each one clear line with what to do.
func TestApprovalsDecideRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		body   client.ErrorBody
		want   string
	}{
		{"own request", []string{"approve", testApprovalID}, 403, errBody("own_request", "the requester cannot decide their own approval"),
			"error: the requester cannot decide their own approval (403 own_request): someone other than the requester must decide it\n"},
		{"an agent", []string{"deny", testApprovalID}, 403, errBody("not_a_person", "only people decide approvals"),
			"error: only people decide approvals (403 not_a_person): only a person (owner or admin) decides; use your own user token, not an agent's or an admin token\n"},
		{"a viewer", []string{"approve", testApprovalID}, 403, errBody("forbidden", "a viewer reads only"),
			"error: a viewer reads only (403 forbidden)\n"},
		{"not pending", []string{"approve", testApprovalID}, 409, errBody("not_pending", "the approval is no longer pending (it is denied)"),
			"error: the approval is no longer pending (it is denied) (409 not_pending): see orgplane approvals show ap2b3c4d5e6f7g2h3i\n"},
		{"unknown id", []string{"approve", "apnope"}, 404, errBody("not_found", `approval "apnope" not found`),
			"error: approval \"apnope\" not found (404 not_found)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.handle("POST /v1/approvals/{id}/decision", tc.status, tc.body)
			r := f.run("", append([]string{"approvals"}, tc.args...)...)
			require.Equal(t, 1, r.code)
			require.Empty(t, r.stdout)
			require.Equal(t, tc.want, r.stderr)
			require.Len(t, f.requests(), 1)
		})
	}
}

func TestApprovalsUnknownID(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/approvals/{id}", 404, errBody("not_found", `approval "apzzzzzzzzzzzzzzzz" not found`))
	f.handle("POST /v1/approvals/{id}/cancel", 404, errBody("not_found", `approval "apzzzzzzzzzzzzzzzz" not found`))
	for _, args := range [][]string{{"show", "apzzzzzzzzzzzzzzzz"}, {"cancel", "apzzzzzzzzzzzzzzzz"}, {"show", "apzzzzzzzzzzzzzzzz", "--json"}} {
		r := f.run("", append([]string{"approvals"}, args...)...)
		require.Equal(t, 1, r.code, args)
		require.Empty(t, r.stdout, args)
		require.Equal(t, "error: approval \"apzzzzzzzzzzzzzzzz\" not found (404 not_found)\n", r.stderr, args)
	}
}

// Every command whose write an agent's policy may hold says so, with the
// approval and how to decide it, and exits ExitApprovalRequired (not 0:
// nothing happened; not 1: nothing failed), with --json too.
func TestGatedWritesExitWithTheApproval(t *testing.T) {
	t.Parallel()
	a := pendingApproval()
	held := client.ApprovalRequired{Approval: a}
	for _, tc := range []struct {
		name, pattern, stdin string
		args                 []string
	}{
		{"secrets set", "PUT /v1/secrets/{key}", plantedSecret, []string{"secrets", "set", "API_KEY"}},
		{"secrets rm", "DELETE /v1/secrets/{key}", "", []string{"secrets", "rm", "API_KEY"}},
		{"workspace secret set", "PUT /v1/workspaces/{id}/secrets/{key}", plantedSecret, []string{"secrets", "set", "API_KEY", "--workspace", "ws_a"}},
		{"workspaces restart", "POST /v1/workspaces/{id}/restart", "", []string{"workspaces", "restart", "ws_plat"}},
		{"workspaces rm", "DELETE /v1/workspaces/{id}", "", []string{"workspaces", "rm", "ws_a"}},
		{"workspaces update", "PATCH /v1/workspaces/{id}", "", []string{"workspaces", "update", "ws_a", "--protected=false"}},
		{"tokens create", "POST /v1/tokens", "", []string{"tokens", "create", "--kind", "admin", "--name", "ci"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.handle(tc.pattern, 202, held)

			r := f.run(tc.stdin, tc.args...)
			require.Equal(t, ExitApprovalRequired, r.code, r.stderr)
			require.Empty(t, r.stdout)
			require.Equal(t, ""+
				"approval required: ap2b3c4d5e6f7g2h3i waits for a person's approval; nothing has changed yet\n"+
				"  Set the global secret API_KEY\n"+
				"  plan: restarts 2 of 4 workspaces affected\n"+
				"  expires 2025-03-02T12:00:00Z\n"+
				"a person (owner or admin) other than the requester decides it:\n"+
				"  orgplane approvals show ap2b3c4d5e6f7g2h3i\n"+
				"  orgplane approvals approve ap2b3c4d5e6f7g2h3i\n"+
				"  orgplane approvals deny ap2b3c4d5e6f7g2h3i\n", r.stderr)
			requireNoValue(t, r)

			r = f.run(tc.stdin, append(tc.args, "--json")...)
			require.Equal(t, ExitApprovalRequired, r.code, r.stderr)
			require.Empty(t, r.stderr)
			require.JSONEq(t, mustJSON(t, held), r.stdout)
			requireNoValue(t, r)
			require.Len(t, f.requests(), 2)
		})
	}
}

// Bad input to the approvals and requests commands is refused before
// anything is sent.
func TestApprovalsRequestsBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"ls negative limit", []string{"approvals", "ls", "--limit", "-1"}, "--limit must be a positive number; got -1"},
		{"ls bad limit", []string{"approvals", "ls", "--limit", "ten"}, `invalid argument "ten"`},
		{"ls args", []string{"approvals", "ls", "pending"}, `unknown command "pending" for "orgplane approvals ls"`},
		{"show no id", []string{"approvals", "show"}, "accepts 1 arg(s), received 0"},
		{"approve no id", []string{"approvals", "approve"}, "accepts 1 arg(s), received 0"},
		{"approve two ids", []string{"approvals", "approve", "a", "b"}, "accepts 1 arg(s), received 2"},
		{"deny no id", []string{"approvals", "deny"}, "accepts 1 arg(s), received 0"},
		{"cancel no id", []string{"approvals", "cancel"}, "accepts 1 arg(s), received 0"},
		{"unknown verb", []string{"approvals", "accept", "x"}, `unknown command "accept" for "orgplane approvals"`},
		{"requests negative limit", []string{"requests", "ls", "--limit", "-5"}, "--limit must be a positive number; got -5"},
		{"answer no id", []string{"requests", "answer"}, "accepts 1 arg(s), received 0"},
		{"answer value flag", []string{"requests", "answer", "rq1", "--value", "x"}, "unknown flag: --value (a secret's value is never taken from an argument: pipe it on stdin or type it at the prompt)"},
		{"answer secret flag", []string{"requests", "answer", "rq1", "--secret=x"}, "unknown flag: --secret (a secret's value is never taken"},
		{"decline no id", []string{"requests", "decline"}, "accepts 1 arg(s), received 0"},
		{"cancel request no id", []string{"requests", "cancel"}, "accepts 1 arg(s), received 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			r := f.run("", tc.args...)
			require.Equal(t, 1, r.code, "stdout: %s", r.stdout)
			require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
			require.True(t, strings.HasPrefix(r.stderr, "error: "), r.stderr)
			require.Contains(t, r.stderr, tc.want)
			require.Empty(t, f.requests(), "nothing is sent")
		})
	}
}

func TestApprovalsHelpGolden(t *testing.T) {
	t.Setenv("ORGPLANE_SERVER", "")
	t.Setenv("ORGPLANE_TOKEN", "")
	t.Setenv("ORGPLANE_DATA_DIR", "")
	for _, args := range [][]string{
		{"approvals"},
		{"approvals", "ls"},
		{"approvals", "show"},
		{"approvals", "approve"},
		{"approvals", "deny"},
		{"approvals", "cancel"},
		{"requests"},
		{"requests", "ls"},
		{"requests", "show"},
		{"requests", "answer"},
		{"requests", "decline"},
		{"requests", "cancel"},
	} {
		name := strings.Join(args, "_")
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, "", append(args, "--help")...)
			require.Equal(t, 0, r.code, r.stderr)
			require.Empty(t, r.stderr)
			requireGolden(t, name+".golden", r.stdout)
		})
	}
	r := runCLI(t, "", "requests", "answer", "--help")
	require.NotContains(t, r.stdout, "--value", "no flag takes a secret's value")
}
