package core_test

// The propagation rules of DESIGN.md, end to end at the service level: real
// secret writes through the API (or the service) over a real store, boxes on
// the fake provisioner. Every reason code, both scopes, every kind of caller,
// dry runs, the re-check at execution, failures, the loop breaker and stale.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/fake"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

// rulesRuntime is a control plane with short windows. mods adjust it. The
// provision deadline is not short: the platform box is healthy only once
// the emulated agent's heartbeat gets through, which on a loaded machine
// under -race has taken more than 2s; no test here waits for the deadline.
func rulesRuntime(mods ...func(*core.RuntimeConfig)) core.RuntimeConfig {
	rt := core.RuntimeConfig{CoalesceWindow: 50 * time.Millisecond, Jitter: time.Millisecond,
		PollInterval: 20 * time.Millisecond, RetryBackoff: 20 * time.Millisecond, ProvisionTimeout: 30 * time.Second}
	for _, m := range mods {
		m(&rt)
	}
	return rt
}

// rulesSpec is a fake box that is healthy as soon as it starts.
var rulesSpec = json.RawMessage(`{"command":["box"],"ready_after_seconds":0}`)

func newRulesEnv(t *testing.T, mods ...func(*core.RuntimeConfig)) *testenv.Env {
	t.Helper()
	return newRulesEnvWith(t, testenv.Options{Runtime: rulesRuntime(mods...)})
}

func newRulesEnvWith(t *testing.T, opts testenv.Options) *testenv.Env {
	t.Helper()
	e := testenv.New(t, opts)
	// The platform box runs the reference agent (no command), healthy only
	// by heartbeat: play its part.
	emulateAgent(t, e.Fake, e.Org.Platform.ID, func(token string, gen int64, fp string) error {
		return e.Client(token).Do(context.Background(), "POST", "/v1/workspaces/"+e.Org.Platform.ID+"/heartbeat",
			map[string]any{"generation": gen, "fingerprint": fp}, nil)
	})
	waitWS(t, e, e.Org.Platform.ID, "platform running", func(w client.Workspace) bool { return w.Status == "running" })
	return e
}

// emulateAgent heartbeats, as the reference agent would, from whatever box
// of the workspace the fake runs, with that box's token, generation and
// fingerprint, until the test ends.
func emulateAgent(t *testing.T, fk *fake.Provisioner, wsID string, beat func(token string, gen int64, fp string) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last string
		var lastAt time.Time
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			h, ok := fk.Running(wsID)
			if !ok || (h.ID == last && time.Since(lastAt) < time.Second) {
				continue
			}
			if env, ok := fk.EnvOf(h); ok && beat(env[core.EnvToken], h.Generation, env[core.EnvFingerprint]) == nil {
				last, lastAt = h.ID, time.Now()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func getWS(t *testing.T, e *testenv.Env, id string) client.Workspace {
	t.Helper()
	w, err := e.Admin.GetWorkspace(context.Background(), id)
	require.NoError(t, err)
	return w
}

func waitWS(t *testing.T, e *testenv.Env, id, what string, cond func(client.Workspace) bool) client.Workspace {
	t.Helper()
	var last client.Workspace
	e.Eventually(10*time.Second, func() bool {
		w, err := e.Admin.GetWorkspace(context.Background(), id)
		last = w
		return err == nil && cond(w)
	}, "%s (workspace %s: %+v)", what, id, &last)
	return last
}

type wsOpts struct {
	runtime, policy string
	protected       bool
	noStart         bool
}

// newWS creates a workspace and waits for its box to be healthy (unless it
// is not started or runs elsewhere).
func newWS(t *testing.T, e *testenv.Env, name string, o wsOpts) client.Workspace {
	t.Helper()
	in := client.CreateWorkspace{Name: name, Spec: rulesSpec, Runtime: o.runtime, RestartPolicy: o.policy, Protected: o.protected}
	if o.runtime == "external" {
		in.Spec = json.RawMessage(`{}`)
	}
	if o.noStart {
		f := false
		in.Start = &f
	}
	w, err := e.Admin.CreateWorkspace(context.Background(), in)
	require.NoError(t, err)
	if o.noStart || o.runtime == "external" {
		return w
	}
	return waitWS(t, e, w.ID, name+" running", func(w client.Workspace) bool { return w.Status == "running" })
}

func decisionMap(t *testing.T, ds []client.Decision) map[string]client.Decision {
	t.Helper()
	out := map[string]client.Decision{}
	for _, d := range ds {
		_, dup := out[d.WorkspaceID]
		require.False(t, dup, "two decisions for workspace %s: %+v", d.WorkspaceID, ds)
		out[d.WorkspaceID] = d
		want := propagation.ActionSkip
		if d.Reason == propagation.ReasonRestartQueued || d.Reason == propagation.ReasonCoalesced {
			want = propagation.ActionRestart
		}
		require.Equal(t, want, d.Action, "action of %+v", d)
	}
	return out
}

// reasons maps workspace id -> reason code.
func reasons(t *testing.T, ds []client.Decision) map[string]string {
	t.Helper()
	out := map[string]string{}
	for id, d := range decisionMap(t, ds) {
		out[id] = d.Reason
	}
	return out
}

// longWindow is a wait no test outlasts, however loaded the machine: a job
// planted due after it waits until the test ends it with release.
const longWindow = 10 * time.Minute

// release lets the workers take the queued restarts the test held (see
// testenv's HoldQueue) and makes every pending job of the env due now, as
// the end of its backoff would.
func release(t *testing.T, e *testenv.Env) {
	t.Helper()
	e.ReleaseQueue()
	ctx := context.Background()
	js, err := e.Store.ListJobs(ctx, e.Org.Org.ID, "", 1000)
	require.NoError(t, err)
	now := time.Now().UTC()
	for _, j := range js {
		if j.State != store.JobPending || !j.RunAfter.After(now) {
			continue
		}
		err := e.Store.InTx(ctx, func(tx store.Store) error {
			cur, err := tx.GetJob(ctx, j.OrgID, j.ID)
			if err != nil || cur.State != store.JobPending {
				return err
			}
			cur.RunAfter = now
			return tx.UpdateJob(ctx, cur)
		})
		require.NoError(t, err)
	}
}

// drain waits until no job is pending or running, and stays so for a few
// polls: a box failure noticed just after the last operation (its watcher
// runs on its own) queues a recovery a moment later.
func drain(t *testing.T, e *testenv.Env) {
	t.Helper()
	var counts map[string]int
	quiet := 0
	// A generous bound: under -race on a loaded machine a handful of
	// restarts can take well over 15 s; a drain that ends returns at once.
	e.Eventually(60*time.Second, func() bool {
		c, err := e.Store.CountJobsByState(context.Background())
		counts = c
		if err == nil && c[store.JobPending] == 0 && c[store.JobRunning] == 0 {
			quiet++
		} else {
			quiet = 0
		}
		if quiet < 5 {
			time.Sleep(50 * time.Millisecond)
			return false
		}
		return true
	}, "restart jobs drained (%v)", &counts)
}

func jobsOf(t *testing.T, e *testenv.Env, wsID string) []client.RestartJob {
	t.Helper()
	js, err := e.Admin.ListRestarts(context.Background(), wsID)
	require.NoError(t, err)
	return js
}

// platformStops returns the stops that terminated a running platform box
// (the clean-up of a box that had died already terminates nothing).
func platformStops(e *testenv.Env) []provision.Handle { return fakeStops(e.Fake, e.Org.Platform.ID) }

func startsOf(e *testenv.Env, wsID string) []provision.Spec {
	var out []provision.Spec
	for _, s := range e.Fake.Starts() {
		if s.WorkspaceID == wsID {
			out = append(out, s)
		}
	}
	return out
}

func stopsOf(e *testenv.Env, wsID string) []provision.Handle {
	var out []provision.Handle
	for _, h := range e.Fake.Stops() {
		if h.WorkspaceID == wsID {
			out = append(out, h)
		}
	}
	return out
}

// runningEnv is the env of the workspace's live fake box.
func runningEnv(t *testing.T, e *testenv.Env, wsID string) map[string]string {
	t.Helper()
	h, ok := e.Fake.Running(wsID)
	require.True(t, ok, "workspace %s has no running box", wsID)
	for _, c := range e.Fake.Calls() {
		if c.Op == "start" && c.Handle.ID == h.ID {
			return c.Spec.Env
		}
	}
	t.Fatalf("no start call for box %s", h.ID)
	return nil
}

// metric sums the samples of a counter or gauge whose labels include want.
func metric(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			match := true
			for k, v := range want {
				match = match && got[k] == v
			}
			if !match {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func auditOf(t *testing.T, e *testenv.Env, wsID string) []client.AuditEntry {
	t.Helper()
	page, err := e.Admin.ListAudit(context.Background(), wsID, 1000, 0)
	require.NoError(t, err)
	return page.Entries
}

func countActions(entries []client.AuditEntry, action string) int {
	n := 0
	for _, a := range entries {
		if a.Action == action {
			n++
		}
	}
	return n
}

// caller is one kind of principal that may write secrets.
type caller struct {
	name string
	c    *client.Client
	// ws is the caller's (acting) workspace, "" for none.
	ws string
	// wsToken: a workspace token (may write only its own workspace's secrets).
	wsToken bool
}

func mintAdmin(t *testing.T, e *testenv.Env, name, acting string) *client.Client {
	t.Helper()
	tok, err := e.Admin.CreateToken(context.Background(), client.CreateToken{Kind: "admin", Name: name, ActingWorkspaceID: acting})
	require.NoError(t, err)
	return e.Client(tok.Secret)
}

func mintWS(t *testing.T, e *testenv.Env, name, wsID string) *client.Client {
	t.Helper()
	tok, err := e.Admin.CreateToken(context.Background(), client.CreateToken{Kind: "workspace", Name: name, WorkspaceID: wsID})
	require.NoError(t, err)
	return e.Client(tok.Secret)
}

func requireStatus(t *testing.T, err error, status int, msgAndArgs ...any) {
	t.Helper()
	var ce *client.Error
	require.True(t, errors.As(err, &ce), "want an API error %d, got %v", status, err)
	require.Equal(t, status, ce.Status, msgAndArgs...)
}

// TestRulesEveryCallerBothScopes writes global and workspace secrets as
// every kind of caller and checks the decisions against the rules: the
// platform workspace is skipped (platform_root) whoever writes, including
// a management token bound to it; the caller's own workspace is skipped
// (self_write); everything else restarts once.
func TestRulesEveryCallerBothScopes(t *testing.T) {
	t.Parallel()
	kinds := []string{"admin", "admin_bound_platform", "admin_bound_target", "admin_bound_other",
		"ws_token_target", "ws_token_other"}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			// No loop breaker here: the target is restarted up to 4 times.
			e := newRulesEnv(t, func(rt *core.RuntimeConfig) { rt.LoopMax = 100 })
			ctx := context.Background()
			P := e.Org.Platform.ID
			A := newWS(t, e, "target", wsOpts{}).ID
			B := newWS(t, e, "other", wsOpts{}).ID
			var c caller
			switch kind {
			case "admin":
				c = caller{name: kind, c: e.Admin}
			case "admin_bound_platform":
				c = caller{name: kind, c: mintAdmin(t, e, "concierge", P), ws: P}
			case "admin_bound_target":
				c = caller{name: kind, c: mintAdmin(t, e, "bound-a", A), ws: A}
			case "admin_bound_other":
				c = caller{name: kind, c: mintAdmin(t, e, "bound-b", B), ws: B}
			case "ws_token_target":
				c = caller{name: kind, c: mintWS(t, e, "tok-a", A), ws: A, wsToken: true}
			case "ws_token_other":
				c = caller{name: kind, c: mintWS(t, e, "tok-b", B), ws: B, wsToken: true}
			}
			who, err := c.c.Whoami(ctx)
			require.NoError(t, err)
			require.Equal(t, c.ws, map[bool]string{true: who.WorkspaceID, false: who.ActingWorkspaceID}[c.wsToken])

			gens := map[string]int64{P: 1, A: 1, B: 1}
			// expect: the reason for a workspace of the affected set.
			expect := func(id string) string {
				switch {
				case id == P:
					return propagation.ReasonPlatformRoot
				case id == c.ws:
					return propagation.ReasonSelfWrite
				default:
					return propagation.ReasonRestartQueued
				}
			}
			check := func(step string, res client.SecretWrite, affected ...string) {
				t.Helper()
				got := reasons(t, res.Decisions)
				want := map[string]string{}
				for _, id := range affected {
					want[id] = expect(id)
				}
				require.Equal(t, want, got, "%s by %s", step, c.name)
				drain(t, e)
				for _, id := range affected {
					if want[id] == propagation.ReasonRestartQueued {
						gens[id]++
					}
				}
				for _, id := range []string{P, A, B} {
					w := waitWS(t, e, id, step+": settled", func(w client.Workspace) bool { return w.Status == "running" })
					require.Equal(t, gens[id], w.Generation, "%s: generation of %s", step, id)
				}
				for _, id := range affected {
					js := jobsOf(t, e, id)
					require.NotEmpty(t, js)
					j := js[0] // newest: the decision of this write
					require.True(t, j.Automatic)
					require.Equal(t, want[id], j.Reason, "%s: job row of %s", step, id)
					if want[id] == propagation.ReasonRestartQueued {
						require.Equal(t, store.JobSucceeded, j.State, "%s: job of %s", step, id)
					} else {
						require.Equal(t, store.JobSkipped, j.State, "%s: job of %s", step, id)
					}
				}
				require.Empty(t, platformStops(e), "%s: the platform box was stopped", step)
			}

			// Global scope: only admins may write it.
			if c.wsToken {
				_, err := c.c.SetSecret(ctx, "", "SHARED", "g1", false)
				requireStatus(t, err, 403, "a workspace token writes a global")
				_, err = c.c.DeleteSecret(ctx, "", "SHARED", false)
				requireStatus(t, err, 403, "a workspace token deletes a global")
			} else {
				res, err := c.c.SetSecret(ctx, "", "SHARED", "g1", false)
				require.NoError(t, err)
				require.Equal(t, "global", res.Scope)
				check("global set", res, P, A, B)
				res, err = c.c.DeleteSecret(ctx, "", "SHARED", false)
				require.NoError(t, err)
				check("global delete", res, P, A, B)
			}

			// The target's own secrets: a workspace token of another
			// workspace does not see it (404, nothing written).
			if kind == "ws_token_other" {
				_, err := c.c.SetSecret(ctx, A, "OWN", "a1", false)
				requireStatus(t, err, 404, "another workspace's token writes the target's secret")
				_, err = c.c.SetSecret(ctx, P, "OWN", "p1", false)
				requireStatus(t, err, 404, "a workspace token writes the platform's secret")
				secs, err := e.Admin.ListSecrets(ctx, A)
				require.NoError(t, err)
				require.Empty(t, secs)
				// Its own workspace: self_write.
				res, err := c.c.SetSecret(ctx, B, "OWN", "b1", false)
				require.NoError(t, err)
				check("own workspace set", res, B)
				res, err = c.c.DeleteSecret(ctx, B, "OWN", false)
				require.NoError(t, err)
				check("own workspace delete", res, B)
			} else {
				res, err := c.c.SetSecret(ctx, A, "OWN", "a1", false)
				require.NoError(t, err)
				require.Equal(t, "workspace", res.Scope)
				check("workspace set", res, A)
				res, err = c.c.DeleteSecret(ctx, A, "OWN", false)
				require.NoError(t, err)
				check("workspace delete", res, A)
			}

			// The platform's own secrets: admins only (a workspace token does
			// not see the platform workspace); platform_root for all of
			// them, the management token bound to it included.
			if !c.wsToken {
				res, err := c.c.SetSecret(ctx, P, "CONCIERGE_KEY", "p1", false)
				require.NoError(t, err)
				check("platform set", res, P)
				require.True(t, getWS(t, e, P).Stale, "the platform runs an old env after the write")
				res, err = c.c.DeleteSecret(ctx, P, "CONCIERGE_KEY", false)
				require.NoError(t, err)
				check("platform delete", res, P)
			} else if kind == "ws_token_target" {
				_, err := c.c.SetSecret(ctx, P, "CONCIERGE_KEY", "p1", false)
				requireStatus(t, err, 404, "a workspace token writes the platform's secret")
			}
			require.Empty(t, platformStops(e))
			require.Len(t, startsOf(e, P), 1, "the platform box was started once, never again")
		})
	}
}

// TestRulesEveryReasonGlobalAndWorkspace builds one org where a single
// global write reaches every plan-time reason code, then checks the
// workspace scope, the job rows, the audit entry, the metrics and stale.
func TestRulesEveryReasonGlobalAndWorkspace(t *testing.T) {
	t.Parallel()
	e := newRulesEnv(t)
	ctx := context.Background()
	reg := e.Service.Metrics().Registry
	P := e.Org.Platform.ID
	A := newWS(t, e, "auto", wsOpts{}).ID
	OV := newWS(t, e, "overrides", wsOpts{}).ID
	PR := newWS(t, e, "protected", wsOpts{protected: true}).ID
	EX := newWS(t, e, "external", wsOpts{runtime: "external"}).ID
	PA := newWS(t, e, "paused", wsOpts{}).ID
	ST := newWS(t, e, "stopped", wsOpts{noStart: true}).ID
	MA := newWS(t, e, "manual", wsOpts{policy: "manual"}).ID
	// failed: an admin starts it and every attempt fails (the attempts of
	// an admin restart are bounded by MaxProvisionRetries, default 3).
	FA := newWS(t, e, "failed", wsOpts{noStart: true}).ID
	for range 3 {
		e.Fake.FailNextStart(errors.New("no capacity"))
	}
	_, err := e.Admin.RestartWorkspace(ctx, FA, "start it")
	require.NoError(t, err)
	drain(t, e)
	waitWS(t, e, FA, "failed", func(w client.Workspace) bool { return w.Status == "failed" })
	_, err = e.Admin.PauseWorkspace(ctx, PA)
	require.NoError(t, err)
	_, err = e.Admin.SetSecret(ctx, OV, "KEY", "own", false)
	require.NoError(t, err)
	drain(t, e)
	waitWS(t, e, PA, "paused", func(w client.Workspace) bool { return w.Status == "paused" })
	waitWS(t, e, OV, "restarted with its own key", func(w client.Workspace) bool {
		return w.Status == "running" && w.Generation == 2 && !w.Stale
	})
	startsBefore := len(e.Fake.Starts())
	stopsBefore := len(e.Fake.Stops())
	beforeM := map[string]float64{}
	for _, r := range propagation.Reasons {
		beforeM[r] = metric(t, reg, "orgplane_propagation_decisions_total", map[string]string{"reason": r})
	}

	res, err := e.Admin.SetSecret(ctx, "", "KEY", "global-1", false)
	require.NoError(t, err)
	want := map[string]string{
		P: propagation.ReasonPlatformRoot, A: propagation.ReasonRestartQueued, OV: propagation.ReasonOverridden,
		PR: propagation.ReasonProtected, EX: propagation.ReasonExternalRuntime, PA: propagation.ReasonPaused,
		ST: propagation.ReasonStopped, FA: propagation.ReasonFailed, MA: propagation.ReasonManualPolicy,
	}
	require.Equal(t, want, reasons(t, res.Decisions))
	drain(t, e)

	// One job row per decision, all of one change.
	changes := map[string]bool{}
	for id, reason := range want {
		j := jobsOf(t, e, id)[0]
		require.Equal(t, reason, j.Reason, "job row of %s", id)
		require.True(t, j.Automatic)
		changes[j.ChangeID] = true
		if reason == propagation.ReasonRestartQueued {
			require.Equal(t, store.JobSucceeded, j.State)
		} else {
			require.Equal(t, store.JobSkipped, j.State, "job of %s", id)
		}
	}
	require.Len(t, changes, 1, "the decisions of one write share one change id")
	// Only A was restarted: one stop and one start, nothing else touched.
	require.Len(t, e.Fake.Starts(), startsBefore+1)
	require.Len(t, e.Fake.Stops(), stopsBefore+1)
	require.Equal(t, A, e.Fake.Stops()[len(e.Fake.Stops())-1].WorkspaceID)
	require.Equal(t, "global-1", runningEnv(t, e, A)["KEY"])
	require.Equal(t, "own", runningEnv(t, e, OV)["KEY"])

	// Stale: the skips that leave a live box with an old env.
	for id, stale := range map[string]bool{P: true, A: false, OV: false, PR: true, MA: true, EX: false, PA: false, ST: false, FA: false} {
		require.Equal(t, stale, getWS(t, e, id).Stale, "stale of %s (%s)", id, want[id])
	}
	// Metrics by reason; the audit entry of the write carries the summary.
	for _, r := range propagation.Reasons {
		n := 0.0
		for _, got := range want {
			if got == r {
				n++
			}
		}
		require.Equal(t, beforeM[r]+n, metric(t, reg, "orgplane_propagation_decisions_total", map[string]string{"reason": r}), "metric of %s", r)
	}
	var setEntry *client.AuditEntry
	for _, a := range auditOf(t, e, "") {
		if a.Action == "secret.set" && a.TargetID == "KEY" && strings.Contains(string(a.Detail), `"global"`) {
			setEntry = &a
			break
		}
	}
	require.NotNil(t, setEntry)
	var detail struct {
		Decisions map[string]int `json:"decisions"`
	}
	require.NoError(t, json.Unmarshal(setEntry.Detail, &detail))
	require.Equal(t, 1, detail.Decisions[propagation.ReasonRestartQueued])
	require.Equal(t, 1, detail.Decisions[propagation.ReasonPlatformRoot])
	require.Equal(t, 9, func() int {
		n := 0
		for _, v := range detail.Decisions {
			n += v
		}
		return n
	}())

	// The same bytes again: nothing changes anywhere, whatever the rule
	// after it would have said (unchanged comes before platform_root).
	res, err = e.Admin.SetSecret(ctx, "", "KEY", "global-1", false)
	require.NoError(t, err)
	for id, r := range reasons(t, res.Decisions) {
		if id == OV {
			require.Equal(t, propagation.ReasonOverridden, r)
			continue
		}
		require.Equal(t, propagation.ReasonUnchanged, r, "decision of %s", id)
	}
	drain(t, e)
	require.Len(t, e.Fake.Starts(), startsBefore+1)

	// Workspace scope: one decision, for the workspace written, same rules.
	for id, reason := range map[string]string{
		P: propagation.ReasonPlatformRoot, PR: propagation.ReasonProtected, EX: propagation.ReasonExternalRuntime,
		PA: propagation.ReasonPaused, ST: propagation.ReasonStopped, FA: propagation.ReasonFailed,
		MA: propagation.ReasonManualPolicy,
		// OV's own key: nothing overrides a workspace's own secret.
		OV: propagation.ReasonRestartQueued,
	} {
		res, err := e.Admin.SetSecret(ctx, id, "WS_KEY", "w1", false)
		require.NoError(t, err)
		require.Equal(t, map[string]string{id: reason}, reasons(t, res.Decisions))
		res, err = e.Admin.SetSecret(ctx, id, "WS_KEY", "w1", false)
		require.NoError(t, err)
		require.Equal(t, map[string]string{id: propagation.ReasonUnchanged}, reasons(t, res.Decisions), "same value again on %s", id)
		drain(t, e)
	}
	// A workspace secret equal to the global value it overrides changes
	// nothing; deleting it uncovers the same value: nothing either.
	res, err = e.Admin.SetSecret(ctx, A, "KEY", "global-1", false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{A: propagation.ReasonUnchanged}, reasons(t, res.Decisions))
	res, err = e.Admin.DeleteSecret(ctx, A, "KEY", false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{A: propagation.ReasonUnchanged}, reasons(t, res.Decisions))
	// A global delete of a key OV overrides leaves OV alone.
	res, err = e.Admin.DeleteSecret(ctx, "", "KEY", false)
	require.NoError(t, err)
	got := reasons(t, res.Decisions)
	require.Equal(t, propagation.ReasonOverridden, got[OV])
	require.Equal(t, propagation.ReasonRestartQueued, got[A])
	require.Equal(t, propagation.ReasonPlatformRoot, got[P])
	drain(t, e)
	require.Empty(t, platformStops(e))
}

// TestRulesStaleUntilRestarted: a skipped affected workspace stays stale,
// through later reads and unrelated writes, until a restart gives its box
// the current env.
func TestRulesStaleUntilRestarted(t *testing.T) {
	t.Parallel()
	e := newRulesEnv(t)
	ctx := context.Background()
	PR := newWS(t, e, "protected", wsOpts{protected: true}).ID
	MA := newWS(t, e, "manual", wsOpts{policy: "manual"}).ID
	SW := newWS(t, e, "self", wsOpts{}).ID
	self := mintWS(t, e, "self-token", SW)
	for _, id := range []string{PR, MA, SW} {
		require.False(t, getWS(t, e, id).Stale)
	}
	_, err := e.Admin.SetSecret(ctx, "", "ROTATED", "r1", false)
	require.NoError(t, err)
	drain(t, e)
	res, err := self.SetSecret(ctx, SW, "MINE", "m1", false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{SW: propagation.ReasonSelfWrite}, reasons(t, res.Decisions))
	drain(t, e)
	// SW took the global restart, then skipped its own write.
	for _, id := range []string{PR, MA, SW} {
		require.True(t, getWS(t, e, id).Stale, "stale of %s", id)
	}
	// The list shows it too, and the gauge once refreshed.
	list, err := e.Admin.ListWorkspaces(ctx)
	require.NoError(t, err)
	for _, w := range list {
		if w.ID == PR || w.ID == MA || w.ID == SW {
			require.True(t, w.Stale, "listed stale of %s", w.ID)
		}
	}
	// An unrelated workspace write elsewhere does not clear it.
	other := newWS(t, e, "other", wsOpts{}).ID
	_, err = e.Admin.SetSecret(ctx, other, "X", "1", false)
	require.NoError(t, err)
	drain(t, e)
	require.True(t, getWS(t, e, PR).Stale)
	// An admin restart gives each box the current env: stale no more.
	for _, id := range []string{PR, MA, SW} {
		before := getWS(t, e, id).Generation
		_, err := e.Admin.RestartWorkspace(ctx, id, "apply the rotation")
		require.NoError(t, err)
		w := waitWS(t, e, id, "restarted", func(w client.Workspace) bool { return w.Generation == before+1 && w.Status == "running" })
		require.False(t, w.Stale, "stale of %s after its restart", id)
		require.Equal(t, "r1", runningEnv(t, e, id)["ROTATED"])
	}
	require.Equal(t, "m1", runningEnv(t, e, SW)["MINE"])
}

// TestRulesCoalesced: writes within the window give one restart that
// applies all of them; the later decisions say coalesced. The window is
// long, and ended by the test, so that the writes land in it however slow
// the machine is.
func TestRulesCoalesced(t *testing.T) {
	t.Parallel()
	e := newRulesEnv(t)
	ctx := context.Background()
	A := newWS(t, e, "a", wsOpts{}).ID
	B := newWS(t, e, "b", wsOpts{}).ID
	e.HoldQueue()
	res1, err := e.Admin.SetSecret(ctx, "", "K1", "v1", false)
	require.NoError(t, err)
	res2, err := e.Admin.SetSecret(ctx, "", "K2", "v2", false)
	require.NoError(t, err)
	res3, err := e.Admin.SetSecret(ctx, A, "K3", "v3", false)
	require.NoError(t, err)
	require.Equal(t, propagation.ReasonRestartQueued, reasons(t, res1.Decisions)[A])
	require.Equal(t, propagation.ReasonRestartQueued, reasons(t, res1.Decisions)[B])
	require.Equal(t, propagation.ReasonCoalesced, reasons(t, res2.Decisions)[A])
	require.Equal(t, propagation.ReasonCoalesced, reasons(t, res2.Decisions)[B])
	require.Equal(t, map[string]string{A: propagation.ReasonCoalesced}, reasons(t, res3.Decisions))
	// Nothing has run yet: the window is still open.
	require.Len(t, startsOf(e, A), 1)
	release(t, e)
	drain(t, e)
	for _, id := range []string{A, B} {
		w := waitWS(t, e, id, "restarted once", func(w client.Workspace) bool { return w.Status == "running" })
		require.EqualValues(t, 2, w.Generation, "one restart of %s for three writes", id)
		require.False(t, w.Stale)
		require.Len(t, startsOf(e, id), 2)
		env := runningEnv(t, e, id)
		require.Equal(t, "v1", env["K1"])
		require.Equal(t, "v2", env["K2"])
	}
	require.Equal(t, "v3", runningEnv(t, e, A)["K3"])
	js := jobsOf(t, e, A)
	states := map[string]int{}
	for _, j := range js {
		states[j.State+"/"+j.Reason]++
	}
	require.Equal(t, map[string]int{"succeeded/restart_queued": 1, "superseded/coalesced": 2}, states)
	for _, j := range js {
		if j.Reason == propagation.ReasonCoalesced {
			require.Contains(t, j.RequestedReason, "merged into")
		}
	}
}

// TestRulesLoopBreaker: the fourth automatic restart within the window is
// refused and the workspace flagged stale, until an admin restarts it.
func TestRulesLoopBreaker(t *testing.T) {
	t.Parallel()
	e := newRulesEnv(t)
	ctx := context.Background()
	A := newWS(t, e, "flappy", wsOpts{}).ID
	for i := 1; i <= 3; i++ {
		res, err := e.Admin.SetSecret(ctx, "", "K", fmt.Sprint("v", i), false)
		require.NoError(t, err)
		require.Equal(t, propagation.ReasonRestartQueued, reasons(t, res.Decisions)[A], "write %d", i)
		drain(t, e)
		waitWS(t, e, A, "restarted", func(w client.Workspace) bool { return w.Generation == int64(i+1) && w.Status == "running" })
	}
	for i := 4; i <= 5; i++ {
		res, err := e.Admin.SetSecret(ctx, "", "K", fmt.Sprint("v", i), false)
		require.NoError(t, err)
		require.Equal(t, propagation.ReasonLoopBreaker, reasons(t, res.Decisions)[A], "write %d", i)
		drain(t, e)
		w := getWS(t, e, A)
		require.EqualValues(t, 4, w.Generation)
		require.True(t, w.Stale)
	}
	// An admin restart applies the env and lifts the breaker. The breaker
	// is lifted when the job is recorded succeeded, a moment after the box
	// is healthy: wait for that, not for the box.
	job, err := e.Admin.RestartWorkspace(ctx, A, "looked into it")
	require.NoError(t, err)
	e.Eventually(15*time.Second, func() bool {
		j, err := e.Store.GetJob(ctx, e.Org.Org.ID, job.ID)
		return err == nil && j.State == store.JobSucceeded
	}, "admin restart %s succeeded", job.ID)
	w := waitWS(t, e, A, "admin restart", func(w client.Workspace) bool { return w.Generation == 5 && w.Status == "running" })
	require.False(t, w.Stale)
	res, err := e.Admin.SetSecret(ctx, "", "K", "v6", false)
	require.NoError(t, err)
	require.Equal(t, propagation.ReasonRestartQueued, reasons(t, res.Decisions)[A],
		"after an admin restart, automatic restarts resume (issue 5: skipped until an admin restarts it)")
	drain(t, e)
	waitWS(t, e, A, "restarted", func(w client.Workspace) bool { return w.Generation == 6 && w.Status == "running" && !w.Stale })
}

// TestRulesDryRun: a dry run returns the decisions the real write then
// makes, and writes nothing: no job, no secret, no audit entry, no box.
func TestRulesDryRun(t *testing.T) {
	t.Parallel()
	e := newRulesEnv(t)
	ctx := context.Background()
	reg := e.Service.Metrics().Registry
	P := e.Org.Platform.ID
	A := newWS(t, e, "a", wsOpts{}).ID
	newWS(t, e, "protected", wsOpts{protected: true})
	newWS(t, e, "manual", wsOpts{policy: "manual"})
	bound := mintAdmin(t, e, "bound-a", A)
	type snap struct {
		jobs    map[string]int
		audit   int
		starts  int
		stops   int
		globals []client.SecretMeta
		own     []client.SecretMeta
		metric  float64
	}
	take := func() snap {
		t.Helper()
		jobs, err := e.Store.CountJobsByState(ctx)
		require.NoError(t, err)
		g, err := e.Admin.ListSecrets(ctx, "")
		require.NoError(t, err)
		o, err := e.Admin.ListSecrets(ctx, A)
		require.NoError(t, err)
		return snap{jobs: jobs, audit: len(auditOf(t, e, "")), starts: len(e.Fake.Starts()), stops: len(e.Fake.Stops()),
			globals: g, own: o, metric: metric(t, reg, "orgplane_propagation_decisions_total", nil)}
	}
	sorted := func(ds []client.Decision) []client.Decision {
		out := slices.Clone(ds)
		sort.Slice(out, func(i, j int) bool { return out[i].WorkspaceID < out[j].WorkspaceID })
		return out
	}
	steps := []struct {
		name string
		c    *client.Client
		ws   string
		del  bool
		val  string
	}{
		{"global set", e.Admin, "", false, "g1"},
		{"global set by a token bound to a", bound, "", false, "g2"},
		{"workspace set", e.Admin, A, false, "a1"},
		{"platform set", e.Admin, P, false, "p1"},
		{"global set, same value", e.Admin, "", false, "g2"},
		{"workspace delete", e.Admin, A, true, ""},
		{"global delete", e.Admin, "", true, ""},
	}
	for _, s := range steps {
		do := func(dry bool) client.SecretWrite {
			t.Helper()
			var res client.SecretWrite
			var err error
			if s.del {
				res, err = s.c.DeleteSecret(ctx, s.ws, "KEY", dry)
			} else {
				res, err = s.c.SetSecret(ctx, s.ws, "KEY", s.val, dry)
			}
			require.NoError(t, err, s.name)
			require.Equal(t, dry, res.DryRun)
			return res
		}
		before := take()
		dry := do(true)
		require.Equal(t, before, take(), "%s: a dry run changed something", s.name)
		real := do(false)
		require.Equal(t, sorted(dry.Decisions), sorted(real.Decisions), "%s: dry run and real write decide alike", s.name)
		require.NotEqual(t, before.audit, take().audit, "%s: the real write is audited", s.name)
		drain(t, e)
	}
	// A dry run of a key that does not exist is refused like the real one.
	_, err := e.Admin.DeleteSecret(ctx, "", "NOPE", true)
	requireStatus(t, err, 404)
}

// TestRulesWindowDelaysOnlyBursts: a lone change restarts at once, however
// long the coalescing window; a change to a workspace restarted for one
// less than a window ago waits out the window, and the burst's next
// changes coalesce into it: two restarts for three writes, the last with
// every value.
func TestRulesWindowDelaysOnlyBursts(t *testing.T) {
	t.Parallel()
	clock := &testenv.ShiftClock{}
	e := newRulesEnvWith(t, testenv.Options{Clock: clock,
		Runtime: rulesRuntime(func(rt *core.RuntimeConfig) { rt.CoalesceWindow = longWindow })})
	ctx := context.Background()
	A := newWS(t, e, "a", wsOpts{}).ID
	res1, err := e.Admin.SetSecret(ctx, A, "K1", "v1", false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{A: propagation.ReasonRestartQueued}, reasons(t, res1.Decisions))
	w := waitWS(t, e, A, "restarted at once, not after the window", func(w client.Workspace) bool {
		return w.Generation == 2 && w.Status == "running" && !w.Stale
	})
	require.EqualValues(t, 2, w.Generation)

	res2, err := e.Admin.SetSecret(ctx, A, "K2", "v2", false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{A: propagation.ReasonRestartQueued}, reasons(t, res2.Decisions))
	res3, err := e.Admin.SetSecret(ctx, A, "K3", "v3", false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{A: propagation.ReasonCoalesced}, reasons(t, res3.Decisions),
		"the burst's restart waits out the window: the next change coalesces into it")
	var queued client.RestartJob
	for _, j := range jobsOf(t, e, A) {
		if j.ChangeID == res2.ChangeID {
			queued = j
		}
	}
	require.Equal(t, "pending", queued.State, "queued in its change: %+v", queued)
	require.Empty(t, queued.ID, "no job until the governor takes it")
	require.EqualValues(t, 2, getWS(t, e, A).Generation)

	clock.Advance(longWindow)
	drain(t, e)
	w = waitWS(t, e, A, "restarted once more, with every value", func(w client.Workspace) bool {
		return w.Generation == 3 && w.Status == "running" && !w.Stale
	})
	require.EqualValues(t, 3, w.Generation)
	env := runningEnv(t, e, A)
	for k, v := range map[string]string{"K1": "v1", "K2": "v2", "K3": "v3"} {
		require.Equal(t, v, env[k])
	}
	c, err := e.Admin.GetChange(ctx, res2.ChangeID)
	require.NoError(t, err)
	require.Equal(t, client.ChangeSucceeded, c.State)
}

// TestRulesRecheckedAtExecution changes the world between a job's queueing
// and its execution: the rules are applied again and nothing is stopped.
func TestRulesRecheckedAtExecution(t *testing.T) {
	t.Parallel()
	e := newRulesEnv(t)
	ctx := context.Background()
	P := e.Org.Platform.ID
	PROT := newWS(t, e, "to-protect", wsOpts{}).ID
	PAUSE := newWS(t, e, "to-pause", wsOpts{}).ID
	MANUAL := newWS(t, e, "to-manual", wsOpts{}).ID
	REMOVE := newWS(t, e, "to-remove", wsOpts{}).ID
	CTRL := newWS(t, e, "control", wsOpts{}).ID
	// REVERT overrides the rotated key, so the rotation leaves it alone and
	// only its own change, undone within the window, concerns it.
	REVERT := newWS(t, e, "to-revert", wsOpts{}).ID
	_, err := e.Admin.SetSecret(ctx, REVERT, "ROTATE", "mine", false)
	require.NoError(t, err)
	release(t, e)
	drain(t, e)
	waitWS(t, e, REVERT, "restarted with its key", func(w client.Workspace) bool { return w.Status == "running" && !w.Stale })

	e.HoldQueue()
	res, err := e.Admin.SetSecret(ctx, "", "ROTATE", "r1", false)
	require.NoError(t, err)
	for _, id := range []string{PROT, PAUSE, MANUAL, REMOVE, CTRL} {
		require.Equal(t, propagation.ReasonRestartQueued, reasons(t, res.Decisions)[id])
	}
	require.Equal(t, propagation.ReasonOverridden, reasons(t, res.Decisions)[REVERT])
	r1, err := e.Admin.SetSecret(ctx, REVERT, "TMP", "t", false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{REVERT: propagation.ReasonRestartQueued}, reasons(t, r1.Decisions))
	r2, err := e.Admin.DeleteSecret(ctx, REVERT, "TMP", false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{REVERT: propagation.ReasonCoalesced}, reasons(t, r2.Decisions))
	// An automatic job for the platform cannot be planned; plant one as a
	// bug or an older version might have, and see it refused at execution.
	now := time.Now().UTC()
	planted := store.RestartJob{ID: ids.New("j"), OrgID: e.Org.Org.ID, WorkspaceID: P, Automatic: true,
		State: store.JobPending, Reason: propagation.ReasonRestartQueued, ChangeID: "c_planted", MaxAttempts: 3,
		RunAfter: now, CreatedAt: now, UpdatedAt: now}
	require.NoError(t, e.Store.InsertJobs(ctx, []store.RestartJob{planted}))

	prot := true
	_, err = e.Admin.PatchWorkspace(ctx, PROT, client.PatchWorkspace{Protected: &prot})
	require.NoError(t, err)
	_, err = e.Admin.PauseWorkspace(ctx, PAUSE)
	require.NoError(t, err)
	manual := "manual"
	_, err = e.Admin.PatchWorkspace(ctx, MANUAL, client.PatchWorkspace{RestartPolicy: &manual})
	require.NoError(t, err)
	_, err = e.Admin.DeleteWorkspace(ctx, REMOVE, false)
	require.NoError(t, err)
	// Everything above happened within the window: no job has run yet.
	for _, id := range []string{PROT, MANUAL, CTRL} {
		require.Len(t, startsOf(e, id), 1, "a job ran before the window closed")
	}
	require.Len(t, startsOf(e, REVERT), 2, "a job ran before the window closed")
	release(t, e)
	drain(t, e)

	final := func(id string) client.RestartJob {
		t.Helper()
		for _, j := range jobsOf(t, e, id) {
			if j.Automatic && j.State != store.JobSuperseded {
				return j
			}
		}
		t.Fatalf("no automatic job for %s", id)
		return client.RestartJob{}
	}
	for id, reason := range map[string]string{
		PROT: propagation.ReasonProtected, PAUSE: propagation.ReasonPaused, MANUAL: propagation.ReasonManualPolicy,
		REMOVE: propagation.ReasonRemoved, REVERT: propagation.ReasonUnchanged,
	} {
		j := final(id)
		require.Equal(t, store.JobSkipped, j.State, "job of %s", id)
		require.Equal(t, reason, j.Reason, "job of %s", id)
	}
	require.Equal(t, store.JobSucceeded, final(CTRL).State)
	pj, err := e.Store.GetJob(ctx, e.Org.Org.ID, planted.ID)
	require.NoError(t, err)
	require.Equal(t, store.JobSkipped, pj.State)
	require.Equal(t, propagation.ReasonPlatformRoot, pj.Reason)

	// The skipped ones' boxes were not stopped by the job (pause and delete
	// stop theirs, as an admin asked) and kept their generation.
	for _, id := range []string{PROT, MANUAL, P} {
		require.Empty(t, stopsOf(e, id), "box of %s stopped", id)
		require.EqualValues(t, 1, getWS(t, e, id).Generation, "generation of %s", id)
	}
	require.Len(t, stopsOf(e, REVERT), 1, "only the restart that gave REVERT its own key stopped a box")
	require.EqualValues(t, 2, getWS(t, e, REVERT).Generation)
	require.True(t, getWS(t, e, PROT).Stale)
	require.True(t, getWS(t, e, MANUAL).Stale)
	require.False(t, getWS(t, e, REVERT).Stale, "a reverted change leaves the box current")
	require.EqualValues(t, 2, getWS(t, e, CTRL).Generation)
}

// TestRulesFailedRestart: a restart whose provision fails is retried a
// bounded number of times, then ends failed: status failed (never running
// with the old env), audit entries, metrics.
func TestRulesFailedRestart(t *testing.T) {
	t.Parallel()
	e := newRulesEnv(t)
	ctx := context.Background()
	reg := e.Service.Metrics().Registry
	A := newWS(t, e, "doomed", wsOpts{}).ID
	old, ok := e.Fake.Running(A)
	require.True(t, ok)
	failedBefore := metric(t, reg, "orgplane_restarts_total", map[string]string{"outcome": "failed"})
	retryBefore := metric(t, reg, "orgplane_restarts_total", map[string]string{"outcome": "retry"})
	boxBefore := metric(t, reg, "orgplane_box_failures_total", map[string]string{"cause": "start"})
	for range 3 { // MaxProvisionRetries, default 3: every attempt fails
		e.Fake.FailNextStart(errors.New("image pull failed"))
	}
	res, err := e.Admin.SetSecret(ctx, "", "K", "new", false)
	require.NoError(t, err)
	require.Equal(t, propagation.ReasonRestartQueued, reasons(t, res.Decisions)[A])
	drain(t, e)
	w := waitWS(t, e, A, "failed", func(w client.Workspace) bool { return w.Status == "failed" })
	require.Contains(t, w.LastError, "image pull failed")
	js := jobsOf(t, e, A)
	require.Equal(t, store.JobFailed, js[0].State)
	require.Equal(t, 3, js[0].Attempts)
	require.Contains(t, js[0].Error, "image pull failed")
	// The old box was stopped and nothing runs: never running with the old env.
	require.True(t, slices.ContainsFunc(stopsOf(e, A), func(h provision.Handle) bool { return h.ID == old.ID }), "old box stopped")
	_, running := e.Fake.Running(A)
	require.False(t, running)
	// Bounded: three attempts, then nothing more.
	require.Len(t, startsOf(e, A), 1+3)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, startsOf(e, A), 1+3)
	require.Equal(t, "failed", getWS(t, e, A).Status)

	audit := auditOf(t, e, A)
	require.Equal(t, 3, countActions(audit, "box.failed"))
	require.Equal(t, 2, countActions(audit, "restart.retry"))
	require.Equal(t, 1, countActions(audit, "restart.failed"))
	require.Equal(t, failedBefore+1, metric(t, reg, "orgplane_restarts_total", map[string]string{"outcome": "failed"}))
	require.Equal(t, retryBefore+2, metric(t, reg, "orgplane_restarts_total", map[string]string{"outcome": "retry"}))
	require.Equal(t, boxBefore+3, metric(t, reg, "orgplane_box_failures_total", map[string]string{"cause": "start"}))

	// One failure only: the retry succeeds with the new env.
	B := newWS(t, e, "flaky", wsOpts{}).ID
	e.Fake.FailNextStart(errors.New("transient"))
	_, err = e.Admin.SetSecret(ctx, "", "K", "newer", false)
	require.NoError(t, err)
	drain(t, e)
	w = waitWS(t, e, B, "running after a retry", func(w client.Workspace) bool { return w.Status == "running" })
	require.False(t, w.Stale)
	require.Equal(t, "newer", runningEnv(t, e, B)["K"])
	require.Equal(t, store.JobSucceeded, jobsOf(t, e, B)[0].State)
	require.Equal(t, 2, jobsOf(t, e, B)[0].Attempts)
}

// TestRulesPlatformCrashRecovered: the guard that keeps automatic paths
// from stopping the platform box must not keep a platform box that died on
// its own from being brought back (bringing back terminates nothing).
func TestRulesPlatformCrashRecovered(t *testing.T) {
	t.Parallel()
	e := newRulesEnv(t)
	P := e.Org.Platform.ID
	h, ok := e.Fake.Running(P)
	require.True(t, ok)
	require.NoError(t, e.Fake.Exit(h, 2))
	w := waitWS(t, e, P, "platform recovered", func(w client.Workspace) bool { return w.Status == "running" && w.Generation == 2 })
	require.False(t, w.Stale)
	require.Empty(t, platformStops(e), "recovering the platform stopped a platform box")
}

// faultyFacts is a store whose propagation facts of chosen workspaces
// cannot be read: the only way to reach kind_unknown through the service.
type faultyFacts struct {
	store.Store
	ctl *factsControl
}

type factsControl struct {
	mu       sync.Mutex
	failing  map[string]error
	listFail error
}

func (c *factsControl) set(id string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.failing, id)
		return
	}
	c.failing[id] = err
}

func (c *factsControl) get(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failing[id]
}

func (f faultyFacts) InTx(ctx context.Context, fn func(store.Store) error) error {
	return f.Store.InTx(ctx, func(tx store.Store) error { return fn(faultyFacts{Store: tx, ctl: f.ctl}) })
}

func (f faultyFacts) GetPropagationFacts(ctx context.Context, orgID, wsID, key string, since time.Time) (store.PropagationFacts, error) {
	if err := f.ctl.get(wsID); err != nil {
		return store.PropagationFacts{}, err
	}
	return f.Store.GetPropagationFacts(ctx, orgID, wsID, key, since)
}

func (f faultyFacts) ListPropagationFacts(ctx context.Context, orgID, key string, since time.Time) ([]store.PropagationFacts, error) {
	f.ctl.mu.Lock()
	err := f.ctl.listFail
	f.ctl.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.Store.ListPropagationFacts(ctx, orgID, key, since)
}

// TestRulesKindUnknownFailsClosed drives the service directly over a store
// whose facts reads fail: the decision is kind_unknown (skip, stale), at
// planning and at execution; nothing is stopped.
func TestRulesKindUnknownFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "orgplane.db"))
	require.NoError(t, err)
	mk, err := crypto.GenerateMasterKey()
	require.NoError(t, err)
	keys, err := core.OpenKeyring(ctx, st, mk)
	require.NoError(t, err)
	ctl := &factsControl{failing: map[string]error{}}
	fk := fake.New()
	svc := core.New(faultyFacts{Store: st, ctl: ctl}, core.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Keys: keys,
		Provisioners: map[string]provision.Provisioner{provision.RuntimeProcess: fk},
		Runtime: rulesRuntime(func(rt *core.RuntimeConfig) {
			rt.CoalesceWindow, rt.AgentCommand = time.Second, []string{"orgplane", "agent"}
		}),
	})
	require.NoError(t, svc.Start(ctx))
	t.Cleanup(func() { svc.Close(); st.Close() })
	org, err := svc.CreateOrg(ctx, "acme")
	require.NoError(t, err)
	require.NoError(t, svc.StartPending(ctx, org.Org.ID, org.Platform.ID))
	actx := auth.WithPrincipal(ctx, auth.Principal{Kind: auth.KindAdmin, OrgID: org.Org.ID, TokenID: org.Token.ID})
	P := org.Platform.ID
	mk1 := func(name string) string {
		w, err := svc.CreateWorkspace(actx, core.CreateWorkspaceInput{Name: name, Spec: rulesSpec})
		require.NoError(t, err)
		return w.ID
	}
	A, B := mk1("a"), mk1("b")
	waitRunning := func(id string) core.Workspace {
		t.Helper()
		var w core.Workspace
		require.Eventually(t, func() bool {
			w, err = svc.GetWorkspace(actx, id)
			return err == nil && w.Status == core.StatusRunning
		}, 10*time.Second, 20*time.Millisecond, "workspace %s running (%+v, %v)", id, &w, &err)
		return w
	}
	emulateAgent(t, fk, P, func(token string, gen int64, fp string) error {
		p, err := svc.Authenticate(ctx, token)
		if err != nil {
			return err
		}
		_, err = svc.Heartbeat(auth.WithPrincipal(ctx, p), P, gen, fp)
		return err
	})
	for _, id := range []string{P, A, B} {
		waitRunning(id)
	}
	rs := func(ds []propagation.Decision) map[string]string {
		out := map[string]string{}
		for _, d := range ds {
			out[d.WorkspaceID] = d.Reason
			if d.Reason == propagation.ReasonKindUnknown {
				require.Equal(t, propagation.ActionSkip, d.Action)
			}
		}
		return out
	}
	drainSvc := func() {
		t.Helper()
		require.Eventually(t, func() bool {
			c, err := st.CountJobsByState(ctx)
			return err == nil && c[store.JobPending] == 0 && c[store.JobRunning] == 0
		}, 10*time.Second, 20*time.Millisecond)
	}

	// Workspace scope: A's facts cannot be read.
	ctl.set(A, errors.New("injected: facts unreadable"))
	out, err := svc.SetSecret(actx, A, "K", "v", false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{A: propagation.ReasonKindUnknown}, rs(out.Decisions))
	// Global scope: the platform's facts cannot be read either.
	ctl.set(P, errors.New("injected: facts unreadable"))
	out, err = svc.SetSecret(actx, "", "G", "v", false)
	require.NoError(t, err)
	got := rs(out.Decisions)
	require.Equal(t, propagation.ReasonKindUnknown, got[P])
	// A's facts come from the one affected-set query, which works: it and B
	// restart, but A's job meets the unreadable facts at execution.
	require.Equal(t, propagation.ReasonRestartQueued, got[A])
	require.Equal(t, propagation.ReasonRestartQueued, got[B])
	drainSvc()
	jobs, err := svc.ListRestarts(actx, A, 10)
	require.NoError(t, err)
	for _, j := range jobs {
		require.Equal(t, store.JobSkipped, j.State)
		require.Equal(t, propagation.ReasonKindUnknown, j.Reason, "job %s", j.ID)
	}
	for _, h := range fk.Stops() {
		require.NotEqual(t, A, h.WorkspaceID, "a workspace with unreadable facts was stopped")
		require.NotEqual(t, P, h.WorkspaceID)
	}
	wa, err := svc.GetWorkspace(actx, A)
	require.NoError(t, err)
	require.EqualValues(t, 1, wa.Generation)
	require.True(t, wa.Stale, "kind_unknown marks stale")
	wb, err := svc.GetWorkspace(actx, B)
	require.NoError(t, err)
	require.EqualValues(t, 2, wb.Generation)

	// The store is down: the write is refused and nothing changes.
	ctl.set(A, fmt.Errorf("injected: %w", store.ErrUnavailable))
	_, err = svc.SetSecret(actx, A, "K2", "v", false)
	require.Error(t, err)
	require.Equal(t, 503, core.AsError(err).Status)
	_, err = st.GetSecret(ctx, org.Org.ID, A, "K2")
	require.ErrorIs(t, err, store.ErrNotFound)
	// The affected-set query fails: the global write is refused whole.
	ctl.mu.Lock()
	ctl.listFail = errors.New("injected: list failed")
	ctl.mu.Unlock()
	_, err = svc.SetSecret(actx, "", "G2", "v", false)
	require.Error(t, err)
	_, err = st.GetSecret(ctx, org.Org.ID, "", "G2")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// TestRulesCoalescedIntoRecoveryIsApplied: a decision coalesced into a
// pending recovery job (one another replica queued after it saw the box
// end, while this replica restarted it) is a promised restart: the box ends
// with the new env, not stale.
func TestRulesCoalescedIntoRecoveryIsApplied(t *testing.T) {
	t.Parallel()
	e := newRulesEnv(t)
	ctx := context.Background()
	A := newWS(t, e, "a", wsOpts{}).ID
	B := newWS(t, e, "b", wsOpts{}).ID
	now := time.Now().UTC()
	var recs []store.RestartJob
	for _, id := range []string{A, B} {
		recs = append(recs, store.RestartJob{ID: ids.New("j"), OrgID: e.Org.Org.ID, WorkspaceID: id, State: store.JobPending,
			Reason: core.ReasonBoxFailed, Note: "recovers generation 1", MaxAttempts: 1,
			RunAfter: now.Add(longWindow), CreatedAt: now, UpdatedAt: now})
	}
	require.NoError(t, e.Store.InsertJobs(ctx, recs))
	// A gets a change merged into its recovery job; B does not. The jobs
	// wait until released, so the write meets them pending however slow
	// the machine is.
	res, err := e.Admin.SetSecret(ctx, A, "K", "v", false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{A: propagation.ReasonCoalesced}, reasons(t, res.Decisions))
	release(t, e)
	drain(t, e)
	w := waitWS(t, e, A, "restarted", func(w client.Workspace) bool { return w.Status == "running" })
	require.False(t, w.Stale, "the coalesced change was dropped")
	require.EqualValues(t, 2, w.Generation)
	require.Equal(t, "v", runningEnv(t, e, A)["K"])
	j, err := e.Store.GetJob(ctx, e.Org.Org.ID, recs[0].ID)
	require.NoError(t, err)
	require.Equal(t, store.JobSucceeded, j.State)
	// Nothing merged into B's: superseded, its box untouched.
	j, err = e.Store.GetJob(ctx, e.Org.Org.ID, recs[1].ID)
	require.NoError(t, err)
	require.Equal(t, store.JobSuperseded, j.State)
	require.EqualValues(t, 1, getWS(t, e, B).Generation)
	require.Empty(t, stopsOf(e, B))
}
