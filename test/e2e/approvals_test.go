package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/cli"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// ownerToken reads the person owner's token that `orgplane up` keeps.
func (s *server) ownerToken() string {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "orgplane-data", "owner.token"))
	require.NoError(s.t, err)
	return strings.TrimSpace(string(b))
}

// cliAs runs a client command in the server's dir with token (an agent's,
// say) instead of the owner's, and stdin.
func (s *server) cliAs(token, stdin string, args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	return e2etest.CLIStdin(s.t, s.dir, []string{"ORGPLANE_TOKEN=" + token}, stdin, args...)
}

// boxState is what the machine (not the control plane) says of a
// workspace's box, and the control plane's generation of it.
type boxState struct {
	pid int
	gen int64
}

func (s *server) boxStates(ids []string) map[string]boxState {
	s.t.Helper()
	out := map[string]boxState{}
	for _, id := range ids {
		out[id] = boxState{pid: boxPID(s.t, id), gen: s.get(id).Generation}
	}
	return out
}

// requireUntouched checks that each box is the same process with the same
// generation as before.
func (s *server) requireUntouched(step string, before map[string]boxState) {
	s.t.Helper()
	for id, b := range before {
		require.True(s.t, e2etest.ProcessAlive(b.pid), "%s: the box of %s died", step, id)
		require.Equal(s.t, []int{b.pid}, e2etest.BoxPIDs(id), "%s: the box of %s was replaced", step, id)
		w := s.get(id)
		require.Equal(s.t, b.gen, w.Generation, "%s: generation of %s", step, id)
		require.Equal(s.t, "running", w.Status, "%s: status of %s", step, id)
	}
}

func gatedApproval(t *testing.T, err error) client.Approval {
	t.Helper()
	var gated *client.ApprovalRequiredError
	require.True(t, errors.As(err, &gated), "want approval_required, got %v", err)
	require.Equal(t, "pending", gated.Approval.State)
	return gated.Approval
}

func decisionsOf(p *client.Plan) map[string]client.Decision {
	out := map[string]client.Decision{}
	for _, d := range p.Decisions {
		out[d.WorkspaceID] = d
	}
	return out
}

// TestApprovalSeedScenario: the org's concierge, in the platform box, uses
// its ORGPLANE_MANAGEMENT_TOKEN to rotate a global secret that would
// restart more workspaces than the policy's threshold: the write is held
// (202, an approval) and nothing restarts. The owner approves it with the
// CLI; the control plane runs it: the twelve workspaces restart, the
// platform box never does. The concierge then asks for its own restart:
// held again, approved, and the platform restarts exactly once.
func TestApprovalSeedScenario(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	P := s.platformID
	s.waitStatus(P, "running", 1, 30*time.Second)
	platformPID := boxPID(t, P)
	mgmtToken := procEnv(t, platformPID)["ORGPLANE_MANAGEMENT_TOKEN"]
	require.NotEmpty(t, mgmtToken, "the platform box has its management token")
	mgmt := client.New(s.url, mgmtToken)
	me, err := mgmt.Whoami(bg)
	require.NoError(t, err)
	require.Equal(t, "admin", me.Kind)
	require.Equal(t, P, me.ActingWorkspaceID)

	var policy client.Policy
	s.cliJSON(&policy, "policy", "show")
	require.Equal(t, 10, policy.RestartThreshold)
	require.True(t, policy.Gates.GlobalSecret)
	require.True(t, policy.Gates.PlatformRestart)

	// Twelve workspaces running the reference agent, restart policy auto.
	var ids []string
	for i := range 12 {
		ids = append(ids, s.create(client.CreateWorkspace{Name: fmt.Sprintf("worker-%02d", i)}).ID)
	}
	for _, id := range ids {
		s.waitStatus(id, "running", 1, 90*time.Second)
	}
	before := s.boxStates(ids)
	platform := map[string]boxState{P: {pid: platformPID, gen: 1}}
	jobsBefore, err := s.admin.ListRestarts(bg, "")
	require.NoError(t, err)

	// The concierge rotates a global key with the CLI: held.
	value := secretValue(t)
	out, errOut, code := s.cliAs(mgmtToken, value+"\n", "--json", "secrets", "set", "ORG_WIDE_KEY")
	require.Equal(t, cli.ExitApprovalRequired, code, "stdout %s stderr %s", out, errOut)
	require.NotContains(t, out+errOut, value)
	var held client.ApprovalRequired
	require.NoError(t, json.Unmarshal([]byte(out), &held), out)
	ap := held.Approval
	require.Equal(t, "pending", ap.State)
	require.Equal(t, "secret.set", ap.Action.Type)
	require.True(t, ap.Action.HasValue)
	require.Equal(t, "admin", ap.Requester.Kind)
	require.Equal(t, P, ap.Requester.WorkspaceID)
	require.Equal(t, 12, ap.Plan.Restarts)
	plan := decisionsOf(ap.Plan)
	require.Equal(t, client.Decision{WorkspaceID: P, Action: "skip", Reason: "platform_root"}, plan[P])
	for _, id := range ids {
		require.Equal(t, client.Decision{WorkspaceID: id, Action: "restart", Reason: "restart_queued"}, plan[id])
	}
	// The same in words, for a person reading it.
	_, errOut, code = s.cliAs(mgmtToken, value, "secrets", "set", "ORG_WIDE_KEY")
	require.Equal(t, cli.ExitApprovalRequired, code, errOut)
	require.Contains(t, errOut, "approval required: ap")
	require.Contains(t, errOut, "orgplane approvals approve ap")
	require.NotContains(t, errOut, value)

	// Nothing changed: no secret, no restart job (they would have been
	// committed with the write), the same boxes.
	secrets, err := s.admin.ListSecrets(bg, "")
	require.NoError(t, err)
	require.Empty(t, secrets)
	jobs, err := s.admin.ListRestarts(bg, "")
	require.NoError(t, err)
	require.Equal(t, len(jobsBefore), len(jobs), "no restart job was queued")
	s.requireUntouched("held", before)
	s.requireUntouched("held", platform)

	// The second held write is withdrawn by the concierge itself.
	var pending []client.Approval
	s.cliJSON(&pending, "approvals", "ls", "--state", "pending")
	require.Len(t, pending, 2)
	second := pending[0].ID
	if second == ap.ID {
		second = pending[1].ID
	}
	out, errOut, code = s.cliAs(mgmtToken, "", "approvals", "cancel", second)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "now cancelled")

	// An agent cannot decide, not even another's approval.
	_, errOut, code = s.cliAs(mgmtToken, "", "approvals", "approve", ap.ID)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "403 not_a_person")

	// The owner reads it (the impact table) and approves it.
	out = s.cliOK("approvals", "show", ap.ID)
	require.Contains(t, out, "state:        pending\n")
	require.Contains(t, out, "plan at request time: restarts 12 of 13 workspaces affected; secret version 1\n")
	require.Contains(t, out, "plan now: restarts 12 of 13 workspaces affected; secret version 1\n")
	require.Contains(t, out, "restart_queued  12\n")
	require.Contains(t, out, P+"  skip     platform_root\n")
	require.NotContains(t, out, value)
	out = s.cliOK("approvals", "approve", ap.ID, "--note", "planned rotation")
	require.Contains(t, out, "now succeeded")
	require.Contains(t, out, "done: restarts 12 of 13 workspaces affected")

	var done client.Approval
	s.cliJSON(&done, "approvals", "show", ap.ID)
	require.Equal(t, "succeeded", done.State)
	require.Nil(t, done.Error)
	require.Len(t, done.Decisions, 1)
	require.Equal(t, "approve", done.Decisions[0].Verdict)
	require.Equal(t, "planned rotation", done.Decisions[0].Note)
	require.Equal(t, 12, done.Result.Restarts)
	require.Equal(t, client.Decision{WorkspaceID: P, Action: "skip", Reason: "platform_root"}, decisionsOf(done.Result)[P])

	// Two clicks give one execution.
	_, errOut, code = s.cli("approvals", "approve", ap.ID)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "409 not_pending")

	// The twelve restart, by the rules: a new box each, healthy with the
	// new generation and the new env.
	for _, id := range ids {
		w := s.waitStatus(id, "running", 2, 120*time.Second)
		require.False(t, w.Stale, id)
	}
	for _, id := range ids {
		pid := boxPID(t, id)
		require.NotEqual(t, before[id].pid, pid, "%s: a new box", id)
		waitGone(t, before[id].pid, 30*time.Second)
		require.Equal(t, "2", procEnv(t, pid)["ORGPLANE_GENERATION"], id)
		require.True(t, procEnv(t, pid)["ORG_WIDE_KEY"] == value, "%s runs with the approved value", id)
	}
	// The platform never: same process, same generation, stale.
	s.requireUntouched("after the approved rotation", platform)
	require.True(t, s.get(P).Stale, "the platform runs the old env")
	for _, j := range mustRestarts(t, s, P) {
		require.Equal(t, "skipped", j.State, "platform job %+v", j)
		require.Equal(t, "platform_root", j.Reason)
	}

	// Another held write of the concierge, left pending across its box's
	// replacement below.
	_, err = mgmt.DeleteSecret(bg, "", "ORG_WIDE_KEY", false)
	orphan := gatedApproval(t, err)
	require.Equal(t, "secret.delete", orphan.Action.Type)
	require.Equal(t, 12, orphan.Plan.Restarts)

	// The concierge asks for its own restart: held, then approved.
	_, err = mgmt.RestartWorkspace(bg, P, "pick up the rotated key")
	restart := gatedApproval(t, err)
	require.Equal(t, "workspace.restart", restart.Action.Type)
	s.requireUntouched("restart held", platform)
	out = s.cliOK("approvals", "approve", restart.ID)
	require.Contains(t, out, "now succeeded")
	w := s.waitStatus(P, "running", 2, 60*time.Second)
	require.False(t, w.Stale)
	newPID := boxPID(t, P)
	require.NotEqual(t, platformPID, newPID)
	waitGone(t, platformPID, 30*time.Second)
	require.True(t, procEnv(t, newPID)["ORG_WIDE_KEY"] == value, "the new platform box runs with the rotated value")
	// Exactly once: one restart job of the platform ran and is done, and
	// nothing else ran or waits for it.
	var ran []client.RestartJob
	eventually(t, 30*time.Second, func() bool {
		ran = ran[:0]
		for _, j := range mustRestarts(t, s, P) {
			if j.State != "skipped" {
				ran = append(ran, j)
			}
		}
		return len(ran) == 1 && ran[0].State == "succeeded"
	}, func() string { return fmt.Sprintf("want one succeeded platform restart, have %+v", ran) })
	var ranAp client.Approval
	s.cliJSON(&ranAp, "approvals", "show", restart.ID)
	require.Equal(t, "succeeded", ranAp.State)
	require.Equal(t, ran[0].ID, ranAp.Result.JobID, "the job is the approval's")
	require.EqualValues(t, 2, s.get(P).Generation)
	eventually(t, 10*time.Second, func() bool { return s.actions(P)["restart.succeeded"] == 1 },
		func() string { return fmt.Sprintf("platform audit: %v", s.actions(P)) })
	// The management token died with its box; the new box has its own.
	eventually(t, 10*time.Second, func() bool {
		_, err := mgmt.Whoami(bg)
		return apiStatus(err) == http.StatusUnauthorized
	}, func() string { return "the replaced box's management token still works" })
	require.NotEqual(t, mgmtToken, procEnv(t, newPID)["ORGPLANE_MANAGEMENT_TOKEN"])

	// The management token is fresh per provision: the approval it asked
	// for before the platform restarted can no longer run (its requester's
	// token is revoked), and approving it says so and changes nothing.
	_, errOut, code = s.cli("approvals", "approve", orphan.ID)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "requester_revoked")
	var failed client.Approval
	s.cliJSON(&failed, "approvals", "show", orphan.ID)
	require.Equal(t, "failed", failed.State)
	require.Equal(t, "requester_revoked", failed.Error.Code)
	secrets, err = s.admin.ListSecrets(bg, "")
	require.NoError(t, err)
	require.Len(t, secrets, 1, "the secret is still there")
	for _, id := range ids {
		require.EqualValues(t, 2, s.get(id).Generation, "%s was not restarted again", id)
	}

	// A person never decides their own approval.
	owner := client.New(s.url, s.ownerToken())
	own, err := owner.CreateApproval(bg, client.CreateApproval{Title: "Order more GPUs"})
	require.NoError(t, err)
	_, errOut, code = s.cli("approvals", "approve", own.ID)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "403 own_request")
	require.Contains(t, errOut, "someone other than the requester must decide it")
	_, errOut, code = s.cli("approvals", "show", "apzzzzzzzzzzzzzzzz")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "404 not_found")
	s.cliOK("approvals", "cancel", own.ID)
}

func mustRestarts(t *testing.T, s *server, id string) []client.RestartJob {
	t.Helper()
	js, err := s.admin.ListRestarts(bg, id)
	require.NoError(t, err)
	return js
}

// events collects an event stream until stopped.
type events struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *events) Write(b []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.buf.Write(b)
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.buf.String()
}

func (e *events) stop() {
	e.cancel()
	<-e.done
}

func streamEvents(t *testing.T, url, token string) *events {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e := &events{cancel: cancel, done: make(chan struct{})}
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/v1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	go func() {
		defer close(e.done)
		defer resp.Body.Close()
		_, _ = io.Copy(e, resp.Body)
	}()
	t.Cleanup(e.stop)
	return e
}

// TestSecretRequestAnsweredByAPerson: an agent asks for a secret with its
// workspace's own token; a person answers with the CLI, the value on
// stdin. The asking box is not restarted (self_write), reads the value
// from its /values, and the value appears nowhere else: not in the
// server's log, the audit log, the request, the approvals, the events,
// the box's logs or the CLI's output.
func TestSecretRequestAnsweredByAPerson(t *testing.T) {
	t.Parallel()
	s := startServer(t, append(append([]string(nil), processFlags...), "--log-level", "debug")...)
	W := s.create(client.CreateWorkspace{Name: "billing"}).ID
	s.waitStatus(W, "running", 1, 60*time.Second)
	before := s.boxStates([]string{W})
	box := client.New(s.url, procEnv(t, before[W].pid)["ORGPLANE_TOKEN"])
	ownerEvents := streamEvents(t, s.url, s.ownerToken())
	boxEvents := streamEvents(t, s.url, procEnv(t, before[W].pid)["ORGPLANE_TOKEN"])

	rq, err := box.CreateRequest(bg, client.CreateRequest{Title: "I need the Stripe key", Ask: "secret", Key: "STRIPE_KEY"})
	require.NoError(t, err)
	require.Equal(t, "pending", rq.State)
	require.Equal(t, W, rq.WorkspaceID)
	out := s.cliOK("requests", "ls", "--state", "pending")
	require.Contains(t, out, rq.ID)
	require.Contains(t, out, "secret STRIPE_KEY@"+W)
	out = s.cliOK("requests", "show", rq.ID)
	require.Contains(t, out, "secret:       STRIPE_KEY\n")

	value := secretValue(t)
	var cliOut strings.Builder
	// No flag takes the value.
	o, e, code := s.cli("requests", "answer", rq.ID, "--value", value)
	require.Equal(t, 1, code)
	require.Contains(t, e, "unknown flag: --value")
	cliOut.WriteString(o + e)
	o, e, code = e2etest.CLIStdin(t, s.dir, nil, value+"\n", "requests", "answer", rq.ID)
	require.Equal(t, 0, code, e)
	require.Contains(t, o, "answered "+rq.ID+": set STRIPE_KEY (workspace "+W+", version 1)")
	cliOut.WriteString(o + e)

	// The asking box: not restarted, and it reads the value.
	s.requireUntouched("answered", before)
	require.True(t, s.get(W).Stale, "its box runs the env from before the answer")
	jobs := mustRestarts(t, s, W)
	require.Len(t, jobs, 1)
	require.Equal(t, "skipped", jobs[0].State)
	require.Equal(t, "self_write", jobs[0].Reason)
	var values map[string]string
	require.NoError(t, box.Do(bg, "GET", "/v1/workspaces/"+W+"/secrets/values", nil, &values))
	require.True(t, values["STRIPE_KEY"] == value, "the box reads the answered value from /values")

	// Everything else, read by the box and by people, holds no value.
	seen := map[string]string{"cli": cliOut.String()}
	add := func(what string, v any) {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		seen[what] += string(b)
	}
	for who, c := range map[string]*client.Client{"box": box, "owner": client.New(s.url, s.ownerToken()), "admin": s.admin} {
		got, err := c.GetRequest(bg, rq.ID)
		require.NoError(t, err)
		require.Equal(t, "answered", got.State, who)
		require.EqualValues(t, 1, got.SecretVersion, who)
		add(who+" request", got)
		list, err := c.ListRequests(bg, client.ListFilter{})
		require.NoError(t, err)
		add(who+" requests", list)
		aps, err := c.ListApprovals(bg, client.ListFilter{})
		require.NoError(t, err)
		add(who+" approvals", aps)
	}
	seen["cli show"] = s.cliOK("requests", "show", rq.ID) + s.cliOK("--json", "requests", "show", rq.ID)
	page, err := s.admin.ListAudit(bg, "", 1000, 0)
	require.NoError(t, err)
	add("audit", page)
	answered := false
	for _, e := range page.Entries {
		answered = answered || e.Action == "request.answered" && e.TargetID == rq.ID && e.Outcome == "ok"
	}
	require.True(t, answered, "the answer is audited")
	logs, err := s.admin.Logs(bg, W, 0)
	require.NoError(t, err)
	seen["box logs"] = string(logs)
	for what, ev := range map[string]*events{"owner events": ownerEvents, "box events": boxEvents} {
		eventually(t, 10*time.Second, func() bool { return strings.Contains(ev.String(), "request.answered") },
			func() string { return what + " never showed request.answered" })
		ev.stop()
		seen[what] = ev.String()
	}
	seen["server log"] = s.proc.Output()
	require.Contains(t, seen["server log"], "level=DEBUG", "the server logged at debug level")
	for what, text := range seen {
		require.NotEmpty(t, text, what)
		require.False(t, strings.Contains(text, value[len("s3cr3t-"):]), "the value leaked into the %s", what)
	}
}
