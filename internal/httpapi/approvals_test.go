package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/testenv"
)

// Approvals and requests (issue 10): agents ask, people decide, the
// control plane executes. Each refusal is a row: its status, its code, and
// nothing changed.

type apFixture struct {
	e     *testenv.Env
	a     *api
	clock *testenv.ShiftClock
	// mgmt is an admin token bound to the platform workspace: the
	// concierge's management token, an agent.
	mgmt string
	// plain is an admin token bound to nothing (automation).
	plain string
	// people by role; admin2 is a second admin person (quorum, races).
	owner, admin, admin2, viewer       string
	ownerID, adminID, admin2ID, viewID string
	ws                                 client.Workspace // a running workspace
	wsToken                            string           // its own token
	wsToken2                           string           // another token of it
}

func newAPFixture(t *testing.T, pg bool) *apFixture {
	t.Helper()
	ctx := context.Background()
	clock := &testenv.ShiftClock{}
	e := newEnv(t, testenv.Options{Postgres: pg, Clock: clock, Runtime: fastRuntime()})
	f := &apFixture{e: e, a: newAPI(t, e), clock: clock, owner: e.OwnerToken}
	mgmt, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "concierge", ActingWorkspaceID: e.Org.Platform.ID})
	require.NoError(t, err)
	f.mgmt = mgmt.Secret
	plain, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "automation"})
	require.NoError(t, err)
	f.plain = plain.Secret
	me, err := e.Owner.Whoami(ctx)
	require.NoError(t, err)
	f.ownerID = me.UserID
	person := func(name, role string) (string, string) {
		u, err := e.Owner.CreateUser(ctx, client.CreateUser{Name: name, Role: role})
		require.NoError(t, err)
		return e.UserToken(e.Org.Org.ID, u.ID, name), u.ID
	}
	f.admin, f.adminID = person("ada", "admin")
	f.admin2, f.admin2ID = person("grace", "admin")
	f.viewer, f.viewID = person("vic", "viewer")
	f.ws = f.workspace(t, "worker", "auto")
	f.wsToken = mintWorkspaceToken(t, e.Admin, f.ws.ID).Secret
	f.wsToken2 = mintWorkspaceToken(t, e.Admin, f.ws.ID).Secret
	return f
}

func (f *apFixture) workspace(t *testing.T, name, policy string) client.Workspace {
	t.Helper()
	w, err := f.e.Admin.CreateWorkspace(context.Background(), client.CreateWorkspace{Name: uniq(name), Spec: boxSpec, RestartPolicy: policy})
	require.NoError(t, err)
	return waitStatus(t, f.e.Admin, w.ID, "running", 1)
}

func (f *apFixture) do(t *testing.T, tok, method, path string, body any) result {
	t.Helper()
	c := call{Method: method, Path: path, Token: tok}
	if body != nil {
		c.Body = mustJSON(t, body)
	}
	return f.a.send(t, c)
}

// gated asserts a 202 {"approval": pending} and returns the approval.
func (f *apFixture) gated(t *testing.T, r result) client.Approval {
	t.Helper()
	require.Equal(t, http.StatusAccepted, r.Status, "%s", r)
	ar := decodeJSON[client.ApprovalRequired](t, r)
	require.Equal(t, "pending", ar.Approval.State, "%s", r)
	require.NotEmpty(t, ar.Approval.ID)
	return ar.Approval
}

func (f *apFixture) get(t *testing.T, tok, id string) client.Approval {
	t.Helper()
	r := f.do(t, tok, "GET", "/v1/approvals/"+id, nil)
	require.Equal(t, 200, r.Status, "%s", r)
	return decodeJSON[client.Approval](t, r)
}

func (f *apFixture) decide(t *testing.T, tok, id, verdict string) result {
	t.Helper()
	return f.do(t, tok, "POST", "/v1/approvals/"+id+"/decision", map[string]string{"decision": verdict, "note": "checked"})
}

// ask creates an approval directly (POST /v1/approvals).
func (f *apFixture) ask(t *testing.T, tok string, body map[string]any) client.Approval {
	t.Helper()
	r := f.do(t, tok, "POST", "/v1/approvals", body)
	require.Equal(t, 201, r.Status, "%s", r)
	return decodeJSON[client.Approval](t, r)
}

func (f *apFixture) setPolicy(t *testing.T, threshold, quorum int) {
	t.Helper()
	in := defaultPutPolicy()
	in.RestartThreshold, in.Quorum = &threshold, &quorum
	_, err := f.e.Owner.SetPolicy(context.Background(), in)
	require.NoError(t, err)
}

func restartJobs(t *testing.T, c *client.Client, ws string) int {
	t.Helper()
	jobs, err := c.ListRestarts(context.Background(), ws)
	require.NoError(t, err)
	n := 0
	for _, j := range jobs {
		if j.Reason == "admin_restart" {
			n++
		}
	}
	return n
}

// Every gated action of the default policy, made by the management token,
// answers 202 with a pending approval and changes nothing; the same call by
// a person or a plain admin token goes through; ungated agent writes go
// through too.
func TestGatedAgentWrites(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	ctx := context.Background()
	plat := f.e.Org.Platform.ID
	f.setPolicy(t, 1, 1)
	f.workspace(t, "second", "auto") // two auto workspaces: a global write restarts 2 > 1

	platBefore, err := f.e.Admin.GetWorkspace(ctx, plat)
	require.NoError(t, err)
	restartsBefore := restartJobs(t, f.e.Admin, plat)

	cases := []struct {
		name, method, path string
		body               any
		action             string
	}{
		{"platform restart", "POST", "/v1/workspaces/" + plat + "/restart", map[string]any{"reason": "stuck"}, "workspace.restart"},
		{"global secret over the threshold", "PUT", "/v1/secrets/API_KEY", map[string]any{"value": "gated-value-1"}, "secret.set"},
		{"workspace delete", "DELETE", "/v1/workspaces/" + f.ws.ID, nil, "workspace.delete"},
		{"admin token", "POST", "/v1/tokens", map[string]any{"kind": "admin", "name": "more-power"}, "token.create"},
		{"protected", "PATCH", "/v1/workspaces/" + f.ws.ID, map[string]any{"protected": true}, "workspace.update"},
		{"restart policy", "PATCH", "/v1/workspaces/" + f.ws.ID, map[string]any{"restart_policy": "manual"}, "workspace.update"},
	}
	for _, c := range cases {
		ap := f.gated(t, f.do(t, f.mgmt, c.method, c.path, c.body))
		require.Equal(t, c.action, ap.Action.Type, c.name)
		require.Equal(t, "admin", ap.Requester.Kind)
		require.Equal(t, plat, ap.Requester.WorkspaceID, "the management token acts from the platform workspace")
		require.NotContains(t, string(mustJSON(t, ap)), "gated-value-1", "%s: a value is never shown", c.name)
	}
	// Nothing changed.
	platAfter, err := f.e.Admin.GetWorkspace(ctx, plat)
	require.NoError(t, err)
	require.Equal(t, platBefore.Generation, platAfter.Generation)
	require.Equal(t, restartsBefore, restartJobs(t, f.e.Admin, plat))
	globals, err := f.e.Admin.ListSecrets(ctx, "")
	require.NoError(t, err)
	require.Empty(t, globals)
	w, err := f.e.Admin.GetWorkspace(ctx, f.ws.ID)
	require.NoError(t, err)
	require.Equal(t, "running", w.Status)
	require.False(t, w.Protected)
	require.Equal(t, "auto", w.RestartPolicy)
	toks, err := f.e.Admin.ListTokens(ctx)
	require.NoError(t, err)
	for _, tk := range toks {
		require.NotEqual(t, "more-power", tk.Name)
	}

	// A workspace token writing its own workspace's secret is not gated;
	// a dry run of a gated write answers its plan.
	r := f.do(t, f.wsToken, "PUT", "/v1/workspaces/"+f.ws.ID+"/secrets/OWN", map[string]any{"value": "x"})
	require.Equal(t, 200, r.Status, "%s", r)
	r = f.do(t, f.mgmt, "PUT", "/v1/secrets/API_KEY?dry_run=true", map[string]any{"value": "v"})
	require.Equal(t, 200, r.Status, "%s", r)
	// Under the threshold a global write goes through.
	f.setPolicy(t, 10, 1)
	r = f.do(t, f.mgmt, "PUT", "/v1/secrets/SMALL", map[string]any{"value": "v"})
	require.Equal(t, 200, r.Status, "%s", r)
	// People and automation are not gated.
	r = f.do(t, f.plain, "PATCH", "/v1/workspaces/"+f.ws.ID, map[string]any{"protected": true})
	require.Equal(t, 200, r.Status, "%s", r)
	r = f.do(t, f.admin, "PATCH", "/v1/workspaces/"+f.ws.ID, map[string]any{"protected": false})
	require.Equal(t, 200, r.Status, "%s", r)

	list := f.do(t, f.owner, "GET", "/v1/approvals?state=pending", nil)
	require.Equal(t, 200, list.Status)
	require.Len(t, decodeJSON[[]client.Approval](t, list), len(cases))
}

// The platform restart asked by the agent runs once, when a person
// approves; the answer to the decision shows it executed.
func TestApprovedPlatformRestartRunsOnce(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	ctx := context.Background()
	plat := f.e.Org.Platform.ID
	before, err := f.e.Admin.GetWorkspace(ctx, plat)
	require.NoError(t, err)
	ap := f.gated(t, f.do(t, f.mgmt, "POST", "/v1/workspaces/"+plat+"/restart", map[string]any{"reason": "upgrade"}))
	require.NotNil(t, ap.Plan)
	require.Equal(t, 1, ap.Plan.Restarts)
	require.Equal(t, []client.Decision{{WorkspaceID: plat, Action: "restart", Reason: "admin_restart"}}, ap.Plan.Decisions)

	r := f.decide(t, f.owner, ap.ID, "approve")
	require.Equal(t, 200, r.Status, "%s", r)
	got := decodeJSON[client.Approval](t, r)
	require.Equal(t, "succeeded", got.State, "%s", r)
	require.NotNil(t, got.Result)
	require.NotEmpty(t, got.Result.JobID)
	require.Len(t, got.Decisions, 1)
	require.Equal(t, f.ownerID, got.Decisions[0].UserID)
	require.Equal(t, "token", got.Decisions[0].Via)
	require.Equal(t, "null", string(got.Action.Params), "parameters are wiped at the end")
	require.Equal(t, 1, restartJobs(t, f.e.Admin, plat))
	waitStatus(t, f.e.Admin, plat, "provisioning", before.Generation+1)

	// Deciding again changes nothing: the approval is no longer pending.
	r = f.decide(t, f.admin, ap.ID, "approve")
	require.Equal(t, 409, r.Status, "%s", r)
	require.Contains(t, string(r.Body), `"not_pending"`)
	require.Equal(t, 1, restartJobs(t, f.e.Admin, plat))

	// The audit log has the request, the decision and the execution; the
	// restart itself is the requester's, naming the approval.
	page, err := f.e.Admin.ListAudit(ctx, "", 200, 0)
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, en := range page.Entries {
		seen[en.Action] = true
		if en.Action == "workspace.restart" {
			require.Contains(t, string(en.Detail), ap.ID)
		}
	}
	for _, a := range []string{"approval.requested", "approval.decision", "approval.succeeded", "workspace.restart"} {
		require.True(t, seen[a], "audit has %s", a)
	}
}

// Who may decide, and when: every refusal changes nothing.
func TestApprovalDecisionRefusals(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	plat := f.e.Org.Platform.ID
	gatedRestart := func() client.Approval {
		return f.gated(t, f.do(t, f.mgmt, "POST", "/v1/workspaces/"+plat+"/restart", map[string]any{}))
	}
	// A workspace's own request, and a person's own free-form one.
	wsAsk := f.ask(t, f.wsToken, map[string]any{"title": "may I deploy?"})
	personAsk := f.ask(t, f.admin, map[string]any{"title": "budget for GPUs"})
	mgmtAsk := gatedRestart()

	rows := []struct {
		name   string
		tok    string
		id     string
		status int
		code   string
	}{
		{"the requester's own token (an agent)", f.wsToken, wsAsk.ID, 403, "not_a_person"},
		{"another token of the requester's workspace", f.wsToken2, wsAsk.ID, 403, "not_a_person"},
		{"the management token deciding its own", f.mgmt, mgmtAsk.ID, 403, "not_a_person"},
		{"a plain admin token", f.plain, mgmtAsk.ID, 403, "not_a_person"},
		{"the org's first admin token", f.e.AdminToken, mgmtAsk.ID, 403, "not_a_person"},
		{"a viewer", f.viewer, mgmtAsk.ID, 403, "forbidden"},
		{"a person deciding their own", f.admin, personAsk.ID, 403, "own_request"},
		{"another org's admin", "", mgmtAsk.ID, 404, "not_found"},
		{"an unknown approval", f.owner, "apaaaaaaaaaaaaaaaa", 404, "not_found"},
	}
	other, _ := f.e.NewOrg("other")
	for _, row := range rows {
		tok := row.tok
		if tok == "" {
			tok = other.Secret
		}
		r := f.decide(t, tok, row.id, "approve")
		require.Equal(t, row.status, r.Status, "%s: %s", row.name, r)
		require.Contains(t, string(r.Body), `"`+row.code+`"`, row.name)
	}
	for _, id := range []string{wsAsk.ID, personAsk.ID, mgmtAsk.ID} {
		a := f.get(t, f.owner, id)
		require.Equal(t, "pending", a.State, "nothing changed")
		require.Empty(t, a.Decisions, "no vote recorded")
	}
	require.Equal(t, 0, restartJobs(t, f.e.Admin, plat))

	// Bad decisions.
	r := f.do(t, f.owner, "POST", "/v1/approvals/"+mgmtAsk.ID+"/decision", map[string]string{"decision": "maybe"})
	require.Equal(t, 400, r.Status, "%s", r)
	r = f.do(t, f.owner, "POST", "/v1/approvals/"+mgmtAsk.ID+"/decision", map[string]any{"decision": "approve", "decided_by": "mallory"})
	require.Equal(t, 400, r.Status, "who decides comes from the credential, never the body: %s", r)
	r = f.do(t, f.owner, "POST", "/v1/approvals/"+mgmtAsk.ID+"/decision", map[string]any{"decision": "deny", "note": strings.Repeat("n", 1001)})
	require.Equal(t, 400, r.Status, "%s", r)
	require.Equal(t, "pending", f.get(t, f.owner, mgmtAsk.ID).State)

	// Denied is final: one deny ends it.
	r = f.decide(t, f.owner, mgmtAsk.ID, "deny")
	require.Equal(t, 200, r.Status, "%s", r)
	require.Equal(t, "denied", decodeJSON[client.Approval](t, r).State)
	r = f.decide(t, f.admin, mgmtAsk.ID, "approve")
	require.Equal(t, 409, r.Status, "%s", r)
	require.Contains(t, string(r.Body), `"not_pending"`)

	// Cancelled: only by its requester (the same workspace's other token
	// may: it is the same agent), then it cannot be decided.
	c := gatedRestart()
	r = f.do(t, f.owner, "POST", "/v1/approvals/"+c.ID+"/cancel", nil)
	require.Equal(t, 403, r.Status, "%s", r)
	require.Contains(t, string(r.Body), `"not_requester"`)
	r = f.do(t, f.mgmt, "POST", "/v1/approvals/"+c.ID+"/cancel", nil)
	require.Equal(t, 200, r.Status, "%s", r)
	require.Equal(t, "cancelled", decodeJSON[client.Approval](t, r).State)
	r = f.decide(t, f.owner, c.ID, "approve")
	require.Equal(t, 409, r.Status, "%s", r)

	// Expired: past its time it cannot be decided, even before the
	// sweeper has written it; the sweeper then does.
	x := gatedRestart()
	f.clock.Advance(25 * time.Hour)
	r = f.decide(t, f.owner, x.ID, "approve")
	require.Equal(t, 409, r.Status, "%s", r)
	require.Contains(t, string(r.Body), `"expired"`)
	require.NoError(t, f.e.Service.Sweep(context.Background()))
	require.Equal(t, "expired", f.get(t, f.owner, x.ID).State)
	require.Equal(t, 0, restartJobs(t, f.e.Admin, plat))
}

// Bad approvals: unknown actions and parameters, TTLs out of range, no
// title; each a 400 with nothing stored.
func TestApprovalBadInput(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	rows := []struct {
		name string
		body string
		code string
	}{
		{"no title", `{"detail":"x"}`, "missing_field"},
		{"unknown action", `{"title":"t","action":{"type":"org.destroy","params":{}}}`, "unknown_action"},
		{"unknown parameter", `{"title":"t","action":{"type":"workspace.restart","params":{"workspace_id":"` + f.ws.ID + `","force":true}}}`, "unknown_param"},
		{"missing parameter", `{"title":"t","action":{"type":"secret.set","params":{"key":"A"}}}`, "missing_param"},
		{"wrong type", `{"title":"t","action":{"type":"workspace.delete","params":{"workspace_id":"` + f.ws.ID + `","cascade":"yes"}}}`, "invalid_params"},
		{"params without a type", `{"title":"t","action":{"params":{}}}`, "missing_field"},
		{"ttl too short", `{"title":"t","ttl_seconds":5}`, "invalid_ttl"},
		{"ttl over the maximum", `{"title":"t","ttl_seconds":604801}`, "invalid_ttl"},
		{"unknown field", `{"title":"t","decided_by":"me"}`, "unknown_field"},
		{"title too long", `{"title":"` + strings.Repeat("t", 201) + `"}`, "too_long"},
		{"reserved secret key", `{"title":"t","action":{"type":"secret.set","params":{"key":"ORGPLANE_TOKEN","value":"v"}}}`, ""},
	}
	for _, row := range rows {
		r := f.a.send(t, call{Method: "POST", Path: "/v1/approvals", Token: f.mgmt, Body: []byte(row.body)})
		require.Equal(t, 400, r.Status, "%s: %s", row.name, r)
		if row.code != "" {
			require.Contains(t, string(r.Body), `"`+row.code+`"`, row.name)
		}
	}
	// An action the requester could not do itself is refused at once.
	r := f.do(t, f.wsToken, "POST", "/v1/approvals", map[string]any{"title": "t",
		"action": map[string]any{"type": "workspace.restart", "params": map[string]any{"workspace_id": f.e.Org.Platform.ID}}})
	require.Contains(t, []int{403, 404}, r.Status, "%s", r)
	r = f.do(t, f.viewer, "POST", "/v1/approvals", map[string]any{"title": "t"})
	require.Equal(t, 403, r.Status, "a viewer reads only: %s", r)

	list := f.do(t, f.owner, "GET", "/v1/approvals", nil)
	require.Equal(t, 200, list.Status)
	require.Empty(t, decodeJSON[[]client.Approval](t, list), "nothing stored")
	for _, q := range []string{"?state=bogus", "?limit=0", "?limit=1001", "?before=nope", "?sort=asc"} {
		r := f.do(t, f.owner, "GET", "/v1/approvals"+q, nil)
		require.Equal(t, 400, r.Status, "%s: %s", q, r)
	}
}

// Two people approving a quorum-1 approval at once: exactly one execution.
// On SQLite and on the real Postgres.
func TestConcurrentApprovalsExecuteOnce(t *testing.T) {
	t.Parallel()
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			t.Parallel()
			f := newAPFixture(t, pg)
			plat := f.e.Org.Platform.ID
			for round := 0; round < 3; round++ {
				ap := f.gated(t, f.do(t, f.mgmt, "POST", "/v1/workspaces/"+plat+"/restart", map[string]any{}))
				var wg sync.WaitGroup
				statuses := make([]int, 3)
				for i, tok := range []string{f.owner, f.admin, f.admin2} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						statuses[i] = f.decide(t, tok, ap.ID, "approve").Status
					}()
				}
				wg.Wait()
				ok := 0
				for _, s := range statuses {
					require.Contains(t, []int{200, 409}, s)
					if s == 200 {
						ok++
					}
				}
				require.Equal(t, 1, ok, "one decision completes the quorum: %v", statuses)
				a := f.get(t, f.owner, ap.ID)
				require.Equal(t, "succeeded", a.State)
				require.Len(t, a.Decisions, 1)
				require.Equal(t, round+1, restartJobs(t, f.e.Admin, plat), "exactly one execution")
			}
		})
	}
}

// A quorum of two distinct people; the same person twice is refused.
func TestApprovalQuorum(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	f.setPolicy(t, 10, 2)
	plat := f.e.Org.Platform.ID
	ap := f.gated(t, f.do(t, f.mgmt, "POST", "/v1/workspaces/"+plat+"/restart", map[string]any{}))
	require.Equal(t, 2, ap.Quorum)
	r := f.decide(t, f.owner, ap.ID, "approve")
	require.Equal(t, 200, r.Status, "%s", r)
	require.Equal(t, "pending", decodeJSON[client.Approval](t, r).State)
	r = f.decide(t, f.owner, ap.ID, "approve")
	require.Equal(t, 409, r.Status, "%s", r)
	require.Contains(t, string(r.Body), `"already_decided"`)
	require.Equal(t, 0, restartJobs(t, f.e.Admin, plat))
	r = f.decide(t, f.admin, ap.ID, "approve")
	require.Equal(t, 200, r.Status, "%s", r)
	got := decodeJSON[client.Approval](t, r)
	require.Equal(t, "succeeded", got.State)
	require.Len(t, got.Decisions, 2)
	require.Equal(t, 1, restartJobs(t, f.e.Admin, plat))
}

// The world changed between asking and approving: the secret the agent
// meant to overwrite has a new version. The execution refuses it.
func TestApprovalStalePrecondition(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	ctx := context.Background()
	f.setPolicy(t, 0, 1) // any global write that restarts a box is gated
	ap := f.gated(t, f.do(t, f.mgmt, "PUT", "/v1/secrets/DB_PASSWORD", map[string]any{"value": "agent-value-7"}))
	require.True(t, ap.Action.HasValue)
	require.JSONEq(t, `{"secret_version":0}`, string(ap.Preconditions))
	_, err := f.e.Admin.SetSecret(ctx, "", "DB_PASSWORD", "person-value", false)
	require.NoError(t, err)
	r := f.decide(t, f.owner, ap.ID, "approve")
	require.Equal(t, 200, r.Status, "%s", r)
	got := decodeJSON[client.Approval](t, r)
	require.Equal(t, "failed", got.State, "%s", r)
	require.Equal(t, "stale_precondition", got.Error.Code)
	require.False(t, got.Action.HasValue, "the sealed value is wiped")
	globals, err := f.e.Admin.ListSecrets(ctx, "")
	require.NoError(t, err)
	require.Len(t, globals, 1)
	require.EqualValues(t, 1, globals[0].Version, "the person's write stands")
	require.NotContains(t, string(r.Body), "agent-value-7")
}

// The requester's token was revoked before the approval: the execution
// refuses to act for it.
func TestApprovalRequesterRevoked(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	ctx := context.Background()
	tok, err := f.e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "agent", ActingWorkspaceID: f.ws.ID})
	require.NoError(t, err)
	ap := f.gated(t, f.do(t, tok.Secret, "DELETE", "/v1/workspaces/"+f.ws.ID, nil))
	require.NoError(t, f.e.Admin.RevokeToken(ctx, tok.Token.ID))
	r := f.decide(t, f.owner, ap.ID, "approve")
	require.Equal(t, 200, r.Status, "%s", r)
	got := decodeJSON[client.Approval](t, r)
	require.Equal(t, "failed", got.State)
	require.Equal(t, "requester_revoked", got.Error.Code)
	w, err := f.e.Admin.GetWorkspace(ctx, f.ws.ID)
	require.NoError(t, err)
	require.Equal(t, "running", w.Status, "nothing was deleted")
}

// An approval left approved but not executed (the server died between the
// decision and the execution) is executed by the sweeper, once.
func TestSweeperExecutesLeftOverApprovals(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	ctx := context.Background()
	plat := f.e.Org.Platform.ID
	ap := f.gated(t, f.do(t, f.mgmt, "POST", "/v1/workspaces/"+plat+"/restart", map[string]any{}))
	row, err := f.e.Store.GetApproval(ctx, f.e.Org.Org.ID, ap.ID)
	require.NoError(t, err)
	row.State = "approved"
	require.NoError(t, f.e.Store.UpdateApproval(ctx, row, "pending"))
	require.NoError(t, f.e.Service.Sweep(ctx))
	require.Equal(t, "succeeded", f.get(t, f.owner, ap.ID).State)
	require.NoError(t, f.e.Service.Sweep(ctx))
	require.Equal(t, 1, restartJobs(t, f.e.Admin, plat))
}

// Minting an admin token on approval: the secret goes to the requester
// once, never to anyone else, never twice.
func TestApprovedAdminTokenGoesToRequesterOnce(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	ap := f.gated(t, f.do(t, f.mgmt, "POST", "/v1/tokens", map[string]any{"kind": "admin", "name": "deploy-bot"}))
	r := f.decide(t, f.owner, ap.ID, "approve")
	require.Equal(t, 200, r.Status, "%s", r)
	got := decodeJSON[client.Approval](t, r)
	require.Equal(t, "succeeded", got.State)
	require.Empty(t, got.Secret, "the decider never sees it")
	require.NotEmpty(t, got.Result.TokenID)
	require.Empty(t, f.get(t, f.owner, ap.ID).Secret)
	first := f.get(t, f.mgmt, ap.ID)
	require.True(t, strings.HasPrefix(first.Secret, "op_admin_"), "the requester gets it: %q", first.Secret)
	require.Empty(t, f.get(t, f.mgmt, ap.ID).Secret, "once")
	who, err := f.e.Client(first.Secret).Whoami(context.Background())
	require.NoError(t, err)
	require.Equal(t, got.Result.TokenID, who.TokenID)
}

// Requests: a secret asked by a workspace, answered by a person, is
// written for that workspace without restarting it (self_write); the value
// is never in the request. Text requests, declines and cancels.
func TestRequests(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	ctx := context.Background()
	before, err := f.e.Admin.GetWorkspace(ctx, f.ws.ID)
	require.NoError(t, err)

	r := f.do(t, f.wsToken, "POST", "/v1/requests", map[string]any{"title": "need the Stripe key", "ask": "secret", "key": "STRIPE_KEY"})
	require.Equal(t, 201, r.Status, "%s", r)
	req := decodeJSON[client.Request](t, r)
	require.Equal(t, f.ws.ID, req.WorkspaceID, "a workspace asks for itself by default")
	require.Equal(t, "pending", req.State)

	// Refusals, each changing nothing.
	for _, row := range []struct {
		name, tok string
		body      any
		status    int
		code      string
	}{
		{"the asking agent answering", f.wsToken, map[string]any{"value": "v"}, 403, "not_a_person"},
		{"a viewer", f.viewer, map[string]any{"value": "v"}, 403, "forbidden"},
		{"text for a secret", f.owner, map[string]any{"text": "v"}, 400, "invalid_answer"},
		{"no value", f.owner, map[string]any{}, 400, "invalid_answer"},
		{"a NUL in the value", f.owner, map[string]any{"value": "a\x00b"}, 400, "invalid_value"},
	} {
		r := f.do(t, row.tok, "POST", "/v1/requests/"+req.ID+"/answer", row.body)
		require.Equal(t, row.status, r.Status, "%s: %s", row.name, r)
		require.Contains(t, string(r.Body), `"`+row.code+`"`, row.name)
	}
	secrets, err := f.e.Admin.ListSecrets(ctx, f.ws.ID)
	require.NoError(t, err)
	require.Empty(t, secrets)

	const value = "sk_live_request_answer_1234"
	r = f.do(t, f.owner, "POST", "/v1/requests/"+req.ID+"/answer", map[string]any{"value": value})
	require.Equal(t, 200, r.Status, "%s", r)
	answered := decodeJSON[client.Request](t, r)
	require.Equal(t, "answered", answered.State)
	require.EqualValues(t, 1, answered.SecretVersion)
	require.Equal(t, f.ownerID, answered.Responder.UserID)
	require.NotContains(t, string(r.Body), value)
	// The asking box reads it; it was not restarted.
	vals := f.do(t, f.wsToken, "GET", "/v1/workspaces/"+f.ws.ID+"/secrets/values", nil)
	require.Equal(t, 200, vals.Status)
	require.Contains(t, string(vals.Body), value)
	jobs, err := f.e.Admin.ListRestarts(ctx, f.ws.ID)
	require.NoError(t, err)
	require.NotEmpty(t, jobs)
	require.Equal(t, "self_write", jobs[0].Reason, "the asking workspace is the caller: %+v", jobs[0])
	after, err := f.e.Admin.GetWorkspace(ctx, f.ws.ID)
	require.NoError(t, err)
	require.Equal(t, before.Generation, after.Generation)
	// Answered is final.
	r = f.do(t, f.admin, "POST", "/v1/requests/"+req.ID+"/decline", map[string]any{"note": "late"})
	require.Equal(t, 409, r.Status, "%s", r)

	// A text request, declined with a note; another cancelled by its
	// requester only; one expired by the sweeper.
	mk := func(title string) client.Request {
		r := f.do(t, f.mgmt, "POST", "/v1/requests", map[string]any{"title": title, "ask": "text"})
		require.Equal(t, 201, r.Status, "%s", r)
		return decodeJSON[client.Request](t, r)
	}
	d := mk("which region?")
	r = f.do(t, f.admin, "POST", "/v1/requests/"+d.ID+"/decline", map[string]any{"note": "ask ops"})
	require.Equal(t, 200, r.Status, "%s", r)
	require.Equal(t, "declined", decodeJSON[client.Request](t, r).State)
	c := mk("still needed?")
	r = f.do(t, f.owner, "POST", "/v1/requests/"+c.ID+"/cancel", nil)
	require.Equal(t, 403, r.Status, "%s", r)
	r = f.do(t, f.mgmt, "POST", "/v1/requests/"+c.ID+"/cancel", nil)
	require.Equal(t, 200, r.Status, "%s", r)
	tx := mk("what's the budget?")
	r = f.do(t, f.owner, "POST", "/v1/requests/"+tx.ID+"/answer", map[string]any{"text": "10k"})
	require.Equal(t, 200, r.Status, "%s", r)
	require.Equal(t, "10k", decodeJSON[client.Request](t, r).Answer)
	x := mk("anyone?")
	f.clock.Advance(25 * time.Hour)
	require.NoError(t, f.e.Service.Sweep(ctx))
	r = f.do(t, f.mgmt, "GET", "/v1/requests/"+x.ID, nil)
	require.Equal(t, "expired", decodeJSON[client.Request](t, r).State)

	// Bad requests.
	for _, body := range []string{
		`{"title":"t","ask":"password"}`,
		`{"title":"t","ask":"secret"}`,
		`{"title":"t","ask":"secret","key":"ORGPLANE_TOKEN"}`,
		`{"title":"t","ask":"text","key":"A"}`,
		`{"title":"t","ask":"text","ttl_seconds":1}`,
	} {
		r := f.a.send(t, call{Method: "POST", Path: "/v1/requests", Token: f.wsToken, Body: []byte(body)})
		require.Equal(t, 400, r.Status, "%s: %s", body, r)
	}
	// A workspace token sees its own workspace's requests only.
	own := f.do(t, f.wsToken, "GET", "/v1/requests", nil)
	require.Equal(t, 200, own.Status)
	for _, q := range decodeJSON[[]client.Request](t, own) {
		require.Equal(t, f.ws.ID, q.Requester.WorkspaceID)
	}
	all := f.do(t, f.viewer, "GET", "/v1/requests", nil)
	require.Len(t, decodeJSON[[]client.Request](t, all), 5)

	// The value is nowhere but in the box's /values.
	page, err := f.e.Admin.ListAudit(ctx, "", 1000, 0)
	require.NoError(t, err)
	require.NotContains(t, string(mustJSON(t, page)), value)
	require.NotContains(t, string(all.Body), value)
}

// Events: every transition reaches the org's stream and the requester's
// workspace token.
func TestApprovalEvents(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	sub, cancel := f.e.Service.Events().Subscribe(f.e.Org.Org.ID)
	defer cancel()
	ap := f.ask(t, f.wsToken, map[string]any{"title": "go?"})
	r := f.decide(t, f.owner, ap.ID, "approve")
	require.Equal(t, 200, r.Status, "%s", r)
	want := []string{"approval.requested", "approval.decision", "approval.approved"}
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case ev := <-sub:
			if strings.HasPrefix(ev.Type, "approval.") {
				require.Equal(t, f.ws.ID, ev.WorkspaceID, "the requester's workspace sees its own: %+v", ev)
				got = append(got, ev.Type)
			}
		case <-deadline:
			t.Fatalf("events: got %v, want %v", got, want)
		}
	}
	require.Equal(t, want, got)
}

// A key rotation while an approval holds a sealed value: the old key
// cannot be retired until the approval has ended, and the approval still
// executes with it.
func TestKeyRetirementWaitsForOpenApprovals(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	ctx := context.Background()
	f.setPolicy(t, 0, 1)
	ap := f.gated(t, f.do(t, f.mgmt, "PUT", "/v1/secrets/ROTATED", map[string]any{"value": "sealed-before-rotation"}))
	keys, err := core.ListKeys(ctx, f.e.Store)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	old := keys[0].ID
	_, err = f.e.Service.Keyring().RotateKeys(ctx, f.e.Store, core.RotateOptions{BatchSize: 10, Settle: time.Millisecond})
	require.NoError(t, err)
	require.ErrorContains(t, core.RetireKey(ctx, f.e.Store, old), "open approvals")
	r := f.decide(t, f.owner, ap.ID, "approve")
	require.Equal(t, 200, r.Status, "%s", r)
	require.Equal(t, "succeeded", decodeJSON[client.Approval](t, r).State, "%s", r)
	require.NoError(t, core.RetireKey(ctx, f.e.Store, old))
}

// A long poll on an approval returns when it ends, and on time when it
// does not.
func TestWaitApproval(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	ap := f.ask(t, f.wsToken, map[string]any{"title": "go?"})
	p, err := f.e.Service.Authenticate(context.Background(), f.wsToken)
	require.NoError(t, err)
	ctx := auth.WithPrincipal(context.Background(), p)
	start := time.Now()
	got, err := f.e.Service.WaitApproval(ctx, ap.ID, 300*time.Millisecond, nil)
	require.NoError(t, err)
	require.Equal(t, "pending", got.State)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	var seen []string
	done := make(chan core.Approval, 1)
	go func() {
		a, err := f.e.Service.WaitApproval(ctx, ap.ID, time.Minute, func(s string) { seen = append(seen, s) })
		require.NoError(t, err)
		done <- a
	}()
	r := f.decide(t, f.owner, ap.ID, "approve")
	require.Equal(t, 200, r.Status, "%s", r)
	select {
	case a := <-done:
		require.Equal(t, "approved", a.State)
		require.Equal(t, "approved", seen[len(seen)-1])
	case <-time.After(30 * time.Second):
		t.Fatal("the wait did not end with the approval")
	}
}

// A person asking from the canvas: their session is their credential.
// Decisions made through a session record it; a requester who signed out
// before the approval has their action refused, like a revoked token.
func TestApprovalsFromSessions(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	ada := signIn(t, f.e, f.a, f.owner, "ada")     // an admin person
	grace := signIn(t, f.e, f.a, f.owner, "grace") // another
	origin := f.e.URL
	send := func(s session, method, path string, body any) result {
		t.Helper()
		c := call{Method: method, Path: path, Header: s.header(origin)}
		if body != nil {
			c.Body = mustJSON(t, body)
		}
		return f.a.send(t, c)
	}
	ask := func() client.Approval {
		r := send(ada, "POST", "/v1/approvals", map[string]any{"title": "restart the worker",
			"action": map[string]any{"type": "workspace.restart", "params": map[string]any{"workspace_id": f.ws.ID}}})
		require.Equal(t, 201, r.Status, "%s", r)
		a := decodeJSON[client.Approval](t, r)
		require.Equal(t, "session", a.Requester.Via)
		require.Equal(t, f.adminID, a.Requester.UserID)
		return a
	}
	a := ask()
	r := send(ada, "POST", "/v1/approvals/"+a.ID+"/decision", map[string]any{"decision": "approve"})
	require.Equal(t, 403, r.Status, "%s", r)
	require.Contains(t, string(r.Body), `"own_request"`)
	r = send(grace, "POST", "/v1/approvals/"+a.ID+"/decision", map[string]any{"decision": "approve"})
	require.Equal(t, 200, r.Status, "%s", r)
	got := decodeJSON[client.Approval](t, r)
	require.Equal(t, "succeeded", got.State, "%s", r)
	require.Equal(t, "session", got.Decisions[0].Via)

	b := ask()
	r = send(ada, "DELETE", "/v1/session", nil)
	require.Less(t, r.Status, 300, "%s", r)
	r = send(grace, "POST", "/v1/approvals/"+b.ID+"/decision", map[string]any{"decision": "approve"})
	require.Equal(t, 200, r.Status, "%s", r)
	got = decodeJSON[client.Approval](t, r)
	require.Equal(t, "failed", got.State)
	require.Equal(t, "requester_revoked", got.Error.Code)
	require.Equal(t, 1, restartJobs(t, f.e.Admin, f.ws.ID))
}

// The inboxes' counts: what the caller sees, pending only.
func TestPendingCounts(t *testing.T) {
	t.Parallel()
	f := newAPFixture(t, false)
	as := func(tok string) context.Context {
		p, err := f.e.Service.Authenticate(context.Background(), tok)
		require.NoError(t, err)
		return auth.WithPrincipal(context.Background(), p)
	}
	f.ask(t, f.wsToken, map[string]any{"title": "one"})
	done := f.ask(t, f.wsToken, map[string]any{"title": "two"})
	f.ask(t, f.mgmt, map[string]any{"title": "three"})
	r := f.do(t, f.wsToken, "POST", "/v1/approvals/"+done.ID+"/cancel", nil)
	require.Equal(t, 200, r.Status, "%s", r)
	r = f.do(t, f.wsToken, "POST", "/v1/requests", map[string]any{"title": "q", "ask": "text"})
	require.Equal(t, 201, r.Status, "%s", r)
	a, rq, err := f.e.Service.PendingCounts(as(f.viewer))
	require.NoError(t, err)
	require.Equal(t, [2]int{2, 1}, [2]int{a, rq}, "a person sees the org's")
	a, rq, err = f.e.Service.PendingCounts(as(f.wsToken))
	require.NoError(t, err)
	require.Equal(t, [2]int{1, 1}, [2]int{a, rq}, "a workspace sees its own")
}
