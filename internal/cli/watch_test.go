package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/testenv"
)

// These tests run the command line against a real control plane in
// process (store, service, HTTP API, the fake box runtime).

func watchRuntime() core.RuntimeConfig {
	return core.RuntimeConfig{CoalesceWindow: 50 * time.Millisecond, Jitter: time.Millisecond,
		PollInterval: 20 * time.Millisecond, RetryBackoff: 20 * time.Millisecond, ProvisionTimeout: 5 * time.Second}
}

var plainBox = json.RawMessage(`{"command":["box"],"ready_after_seconds":0}`)

// runningBoxes creates n workspaces and waits until their boxes run.
func runningBoxes(t *testing.T, e *testenv.Env, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for i := range n {
		w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("box%d", i), Spec: plainBox})
		require.NoError(t, err)
		ids = append(ids, w.ID)
	}
	for _, id := range ids {
		e.Eventually(30*time.Second, func() bool {
			w, err := e.Admin.GetWorkspace(ctx, id)
			return err == nil && w.Status == "running"
		}, "%s running", id)
	}
	return ids
}

func runAgainst(t *testing.T, e *testenv.Env, token, stdin string, args ...string) cliResult {
	t.Helper()
	return runCLI(t, stdin, append([]string{"--server", e.URL, "--token", token}, args...)...)
}

// changeIDOf finds the change id in a write's text output.
func changeIDOf(t *testing.T, out string) string {
	t.Helper()
	for line := range strings.SplitSeq(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "change "); ok {
			id, _, _ := strings.Cut(rest, " ")
			return id
		}
	}
	t.Fatalf("no change id in %q", out)
	return ""
}

func TestSecretsSetWaitExitsZeroOnceAllRestarted(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: watchRuntime()})
	runningBoxes(t, e, 3)

	r := runAgainst(t, e, e.AdminToken, "v1\n", "secrets", "set", "API_KEY", "--wait", "--timeout", "60s")
	require.Equal(t, 0, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
	require.Empty(t, r.stderr)
	require.NotContains(t, r.stdout, "\r", "not a terminal: plain lines")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	last := lines[len(lines)-1]
	require.Contains(t, last, ": succeeded: restarted 3/3, 0 in flight, 0 pending, 0 failed; skipped 1 (platform_root 1)")
	// One line per change of progress: never the same twice in a row.
	for i := 1; i < len(lines); i++ {
		require.NotEqual(t, lines[i-1], lines[i])
	}
	c, err := e.Admin.GetChange(context.Background(), changeIDOf(t, r.stdout))
	require.NoError(t, err)
	require.Equal(t, client.ChangeSucceeded, c.State)
	require.Equal(t, 3, c.Restarts.Succeeded)

	// Watching a change that has finished ends at once, with its state.
	w := runAgainst(t, e, e.AdminToken, "", "changes", "watch", c.ID)
	require.Equal(t, 0, w.code, w.stderr)
	require.Equal(t, 1, strings.Count(w.stdout, "\n"), w.stdout)
	require.Contains(t, w.stdout, "succeeded: restarted 3/3")
}

func TestSecretsSetWaitExitsFourWhenARestartFails(t *testing.T) {
	t.Parallel()
	rt := watchRuntime()
	rt.MaxProvisionRetries = 1 // one attempt: the failure is final
	e := testenv.New(t, testenv.Options{Runtime: rt})
	runningBoxes(t, e, 3)

	e.Fake.FailNextStart(errors.New("no capacity"))
	r := runAgainst(t, e, e.AdminToken, "v1\n", "secrets", "rm", "NOT_THERE", "--wait")
	require.Equal(t, 1, r.code, "removing a secret that does not exist is an error, not a wait: %q", r.stdout)

	r = runAgainst(t, e, e.AdminToken, "v1\n", "secrets", "set", "API_KEY", "--wait", "--timeout", "60s")
	require.Equal(t, ExitRestartFailed, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
	require.Contains(t, r.stdout, ": FAILED: restarted 2/3, 0 in flight, 0 pending, 1 failed")
	require.Contains(t, r.stderr, "1 of 3 restarts failed")
}

func TestSecretsSetWaitTimesOut(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: watchRuntime(), HoldQueue: true}) // the restarts stay queued
	runningBoxes(t, e, 2)

	start := time.Now()
	r := runAgainst(t, e, e.AdminToken, "v1\n", "secrets", "set", "API_KEY", "--wait", "--timeout", "300ms")
	require.Equal(t, ExitTimeout, r.code, "stdout %q stderr %q", r.stdout, r.stderr) // first
	require.Less(t, time.Since(start), 30*time.Second)
	require.Contains(t, r.stdout, ": in progress: restarted 0/2, 0 in flight, 2 pending, 0 failed")
	require.Contains(t, r.stderr, "timed out after 300ms waiting for change ")
	require.Contains(t, r.stderr, "its restarts go on")

	first := changeIDOf(t, r.stdout)

	// A second write merges into the restarts pending: it queues none of
	// its own, so there is nothing of it to wait for; it says where its
	// restarts are.
	r = runAgainst(t, e, e.AdminToken, "v2\n", "secrets", "set", "OTHER_KEY", "--wait", "--timeout", "300ms")
	require.Equal(t, 0, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
	require.Contains(t, r.stdout, "no restart queued: 2 merged into restarts already queued or pending (orgplane restarts ls --workspace ID)")

	// --json: one object per line.
	r = runAgainst(t, e, e.AdminToken, "", "--json", "changes", "watch", first, "--timeout", "300ms")
	require.Equal(t, ExitTimeout, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var last struct {
		Type   string
		Change client.Change
	}
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &last))
	require.Equal(t, "change", last.Type)
	require.Equal(t, first, last.Change.ID)
	require.Equal(t, 2, last.Change.Restarts.Pending)

	r = runAgainst(t, e, e.AdminToken, "v3\n", "--json", "secrets", "set", "THIRD_KEY", "--wait")
	require.Equal(t, 0, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 1, r.stdout)
	var write struct {
		Type  string
		Write client.SecretWrite
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &write))
	require.Equal(t, "write", write.Type)
	require.Equal(t, 2, write.Write.Summary["coalesced"])
}

func TestSecretsSetWaitWithNothingToWaitFor(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: watchRuntime()})
	// Only the platform workspace: never restarted automatically.
	r := runAgainst(t, e, e.AdminToken, "v1\n", "secrets", "set", "API_KEY", "--wait")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "no restart queued: nothing to wait for")

	// Held for people: exit 3 at once, nothing to wait for.
	ctx := context.Background()
	yes, zero, one, ttl, maxTTL := true, 0, 1, 3600, 7200
	_, err := e.Owner.SetPolicy(ctx, client.PutPolicy{Gates: &client.PutPolicyGates{PlatformRestart: &yes, GlobalSecret: &yes,
		WorkspaceDelete: &yes, AdminToken: &yes, WorkspaceProtection: &yes}, RestartThreshold: &zero, Quorum: &one,
		DefaultTTLSeconds: &ttl, MaxTTLSeconds: &maxTTL})
	require.NoError(t, err)
	runningBoxes(t, e, 1)
	agent, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "concierge", ActingWorkspaceID: e.Org.Platform.ID})
	require.NoError(t, err)
	start := time.Now()
	r = runAgainst(t, e, agent.Secret, "v2\n", "secrets", "set", "API_KEY", "--wait")
	require.Equal(t, ExitApprovalRequired, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
	require.Less(t, time.Since(start), 10*time.Second)
	require.Contains(t, r.stderr, "approval required")
}

func TestChangesShowAndDecisions(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: watchRuntime()})
	ws := runningBoxes(t, e, 3)
	res, err := e.Admin.SetSecret(context.Background(), "", "API_KEY", "v1", false)
	require.NoError(t, err)

	r := runAgainst(t, e, e.AdminToken, "", "changes", "show", res.ChangeID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "key:       API_KEY")
	require.Contains(t, r.stdout, "decisions: 4")
	require.Contains(t, r.stdout, "restart_queued  3")
	require.Contains(t, r.stdout, "platform_root   1")

	// Pages of one follow the Link header to the end.
	r = runAgainst(t, e, e.AdminToken, "", "changes", "decisions", res.ChangeID, "--page-size", "1")
	require.Equal(t, 0, r.code, r.stderr)
	for _, id := range append(ws, e.Org.Platform.ID) {
		require.Contains(t, r.stdout, id)
	}
	require.Equal(t, 5, strings.Count(r.stdout, "\n"), r.stdout)
	r = runAgainst(t, e, e.AdminToken, "", "--json", "changes", "decisions", res.ChangeID, "--page-size", "2")
	require.Equal(t, 0, r.code, r.stderr)
	var ds []client.Decision
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ds))
	require.Len(t, ds, 4)

	r = runAgainst(t, e, e.AdminToken, "", "changes", "watch", "ch_nope")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "404")
}
