package core_test

// A property test of the one guarantee that matters most: whatever
// sequence of operations any caller makes, and whatever faults happen
// (boxes that crash, adopt errors, control-plane restarts, a provisioner
// that fails, an agent slow to heartbeat), no automatic path ever stops
// the platform workspace's box, the platform is running again within a
// bound once the faults end, and the restart queue always drains.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/pgtest"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Wrap(m).Run())
}

// propSeed is ORGPLANE_PROP_SEED (to replay a failure) or the clock.
func propSeed(t *testing.T) uint64 {
	if v := os.Getenv("ORGPLANE_PROP_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err)
		return s
	}
	return uint64(time.Now().UnixNano())
}

func TestPropertyNoAutomaticStopOfPlatform(t *testing.T) {
	t.Parallel()
	base := propSeed(t)
	t.Logf("seed %d (replay with ORGPLANE_PROP_SEED=%d)", base, base)
	for _, engine := range []struct {
		name     string
		postgres bool
		rounds   int
	}{{"sqlite", false, 4}, {"postgres", true, 2}} {
		t.Run(engine.name, func(t *testing.T) {
			t.Parallel()
			for i := range engine.rounds {
				seed := base + uint64(i)
				if engine.postgres {
					seed += 1000
				}
				t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
					t.Parallel()
					runPropSequence(t, seed, engine.postgres, 90)
				})
			}
		})
	}
}

// propWorld is the test's model of the org.
type propWorld struct {
	t     *testing.T
	e     *testenv.Env
	agent *agentSim
	// platformRestarts counts accepted explicit admin restarts of the
	// platform: the only thing that may stop its box.
	platformRestarts int
	rng              *rand.Rand
	P                string
	ws               []string            // non-platform workspaces
	kids             map[string][]string // the tree below each workspace
	paused           map[string]bool     // what the successful pauses and resumes say
	callers          []caller
	counts           map[string]int // successful operations by kind, for the log
}

func runPropSequence(t *testing.T, seed uint64, postgres bool, n int) {
	// Boxes here crash at random, the platform's too: a box that has been
	// healthy at all counts as stable, so the retry bound (tested on its
	// own) does not leave the platform failed at the end.
	// The platform's recoveries back off up to PlatformMaxBackoff after
	// each crash in a row (never giving up): capped here at the scale of
	// the test's other timings, so that the queue drains within its bound.
	e := testenv.New(t, testenv.Options{Runtime: rulesRuntime(func(rt *core.RuntimeConfig) {
		rt.StableAfter, rt.PlatformMaxBackoff = time.Nanosecond, 200*time.Millisecond
	}), Postgres: postgres})
	P := e.Org.Platform.ID
	agent := simulateAgent(t, e, P)
	waitWS(t, e, P, "platform running", func(w client.Workspace) bool { return w.Status == "running" })
	ctx := context.Background()
	w := &propWorld{t: t, e: e, agent: agent, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), P: P,
		kids: map[string][]string{}, paused: map[string]bool{}, counts: map[string]int{}}
	for i := range 4 {
		in := client.CreateWorkspace{Name: fmt.Sprint("w", i), Spec: rulesSpec}
		if i == 3 {
			in.ParentID = w.ws[0] // a subtree: pausing w0 pauses w3
		}
		x, err := e.Admin.CreateWorkspace(ctx, in)
		require.NoError(t, err)
		w.ws = append(w.ws, x.ID)
		if i == 3 {
			w.kids[w.ws[0]] = append(w.kids[w.ws[0]], x.ID)
		}
	}
	for _, id := range w.ws {
		waitWS(t, e, id, "running", func(w client.Workspace) bool { return w.Status == "running" })
	}
	w.callers = []caller{
		{name: "admin", c: e.Admin},
		{name: "admin@platform", c: mintAdmin(t, e, "concierge", P), ws: P},
		{name: "admin@w0", c: mintAdmin(t, e, "bound-w0", w.ws[0]), ws: w.ws[0]},
		{name: "ws@platform", c: mintWS(t, e, "tok-p", P), ws: P, wsToken: true},
	}
	for i, id := range w.ws {
		w.callers = append(w.callers, caller{name: fmt.Sprint("ws@w", i), c: mintWS(t, e, fmt.Sprint("tok-w", i), id), ws: id, wsToken: true})
	}

	for step := range n {
		w.step(ctx, step)
		if stops := platformStops(e); len(stops) > w.platformRestarts {
			jobs, _ := e.Store.ListJobs(ctx, e.Org.Org.ID, P, 50)
			t.Fatalf("seed %d step %d: a platform box was stopped other than by an explicit admin restart (%d restarts): stops %+v; jobs %+v",
				seed, step, w.platformRestarts, stops, jobs)
		}
	}
	t.Logf("seed %d: %v", seed, w.counts)

	// Quiet now: the faults end (the agent answers), the platform is back
	// within a bound, the queue drains, and the final state holds the
	// invariants.
	agent.mute(0)
	waitWS(t, e, P, "platform running at the end", func(w client.Workspace) bool { return w.Status == "running" })
	drain(t, e)
	require.LessOrEqual(t, len(platformStops(e)), w.platformRestarts,
		"seed %d: a platform box was stopped other than by an explicit admin restart", seed)
	jobs, err := e.Store.ListJobs(ctx, e.Org.Org.ID, P, 1000)
	require.NoError(t, err)
	for _, j := range jobs {
		if j.Automatic {
			require.Equal(t, store.JobSkipped, j.State, "seed %d: an automatic job of the platform executed: %+v", seed, j)
		}
	}
	counts, err := e.Store.CountJobsByState(ctx)
	require.NoError(t, err)
	require.Zero(t, counts[store.JobPending]+counts[store.JobRunning], "seed %d: jobs left: %v", seed, counts)
	// At most one live box per workspace; paused workspaces have none. A
	// pause stops its boxes in the background (after any job holding the
	// workspace), so give that a moment to land.
	liveBoxes := func() map[string]int {
		live := map[string]int{}
		hs, err := e.Fake.List(ctx)
		require.NoError(t, err)
		for _, h := range hs {
			if st, ok := e.Fake.State(h); ok && st.Running {
				live[h.WorkspaceID]++
			}
		}
		return live
	}
	live := liveBoxes()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		settled := true
		for id := range w.paused {
			settled = settled && (!w.paused[id] || live[id] == 0)
		}
		if settled {
			break
		}
		live = liveBoxes()
	}
	for _, id := range append([]string{P}, w.ws...) {
		require.LessOrEqual(t, live[id], 1, "seed %d: two live boxes for %s", seed, id)
		if w.paused[id] {
			x := getWS(t, e, id)
			require.Equal(t, "paused", x.Status, "seed %d: %s was paused and nobody resumed it", seed, id)
			require.Zero(t, live[id], "seed %d: paused %s has a live box", seed, id)
		}
	}
}

func (w *propWorld) pick(ids []string) string { return ids[w.rng.IntN(len(ids))] }

func (w *propWorld) anyWS() string { return w.pick(append([]string{w.P}, w.ws...)) }

// ok records a successful operation, or checks that a refusal is a 4xx:
// a caller may be refused, the server must never fail.
func (w *propWorld) ok(kind string, err error) bool {
	w.t.Helper()
	if err == nil {
		w.counts[kind]++
		return true
	}
	var ce *client.Error
	require.True(w.t, errors.As(err, &ce), "%s: %v", kind, err)
	require.Less(w.t, ce.Status, 500, "%s: %v", kind, err)
	w.counts[kind+" refused"]++
	return false
}

// checkDecisions: the platform is never restarted by a write.
func (w *propWorld) checkDecisions(kind string, res client.SecretWrite) {
	w.t.Helper()
	for _, d := range res.Decisions {
		if d.WorkspaceID == w.P {
			require.Equal(w.t, propagation.ActionSkip, d.Action, "%s: %+v", kind, d)
			require.Contains(w.t, []string{propagation.ReasonPlatformRoot, propagation.ReasonUnchanged,
				propagation.ReasonOverridden, propagation.ReasonKindUnknown}, d.Reason, "%s", kind)
		}
	}
}

func (w *propWorld) subtree(id string) []string {
	out := []string{id}
	for i := 0; i < len(out); i++ {
		out = append(out, w.kids[out[i]]...)
	}
	return out
}

func (w *propWorld) step(ctx context.Context, step int) {
	e := w.e
	keys := []string{"K1", "K2"}
	vals := []string{"a", "b", "c"}
	admins := w.callers[:3]
	switch op := w.rng.IntN(17); op {
	case 0, 1: // global set, by an admin (bound or not)
		c := admins[w.rng.IntN(len(admins))]
		res, err := c.c.SetSecret(ctx, "", w.pick(keys), w.pick(vals), w.rng.IntN(6) == 0)
		if w.ok("global set by "+c.name, err) {
			w.checkDecisions("global set", res)
		}
	case 2: // global delete
		c := admins[w.rng.IntN(len(admins))]
		res, err := c.c.DeleteSecret(ctx, "", w.pick(keys), false)
		if w.ok("global delete", err) {
			w.checkDecisions("global delete", res)
		}
	case 3, 4: // workspace set, by anyone
		c := w.callers[w.rng.IntN(len(w.callers))]
		res, err := c.c.SetSecret(ctx, w.anyWS(), w.pick(keys), w.pick(vals), w.rng.IntN(6) == 0)
		if w.ok("workspace set", err) {
			w.checkDecisions("workspace set", res)
		}
	case 5: // workspace delete
		c := w.callers[w.rng.IntN(len(w.callers))]
		res, err := c.c.DeleteSecret(ctx, w.anyWS(), w.pick(keys), false)
		if w.ok("workspace delete", err) {
			w.checkDecisions("workspace delete", res)
		}
	case 6: // pause or resume (the platform's pause is refused)
		id := w.anyWS()
		if w.rng.IntN(2) == 0 {
			_, err := e.Admin.PauseWorkspace(ctx, id)
			if w.ok("pause", err) {
				for _, x := range w.subtree(id) {
					w.paused[x] = true
				}
			} else if id == w.P {
				requireStatus(w.t, err, 422)
			}
		} else {
			_, err := e.Admin.ResumeWorkspace(ctx, id)
			if w.ok("resume", err) {
				for _, x := range w.subtree(id) {
					w.paused[x] = false
				}
			}
		}
	case 7: // protect or unprotect, the platform included
		v := w.rng.IntN(2) == 0
		_, err := e.Admin.PatchWorkspace(ctx, w.anyWS(), client.PatchWorkspace{Protected: &v})
		w.ok("protect", err)
	case 8: // restart policy, the platform included
		v := []string{"auto", "manual"}[w.rng.IntN(2)]
		_, err := e.Admin.PatchWorkspace(ctx, w.anyWS(), client.PatchWorkspace{RestartPolicy: &v})
		w.ok("policy", err)
	case 9: // a box crashes, the platform's included
		if h, ok := e.Fake.Running(w.anyWS()); ok {
			w.ok("crash", e.Fake.Exit(h, 1+w.rng.IntN(3)))
		}
	case 10: // an explicit admin restart of a non-platform workspace
		c := admins[w.rng.IntN(2)] // the plain admin or the concierge's token
		_, err := c.c.RestartWorkspace(ctx, w.pick(w.ws), fmt.Sprint("step ", step))
		w.ok("admin restart", err)
	case 11: // the control plane crashes and restarts; adopting may fail for a while
		if w.rng.IntN(3) == 0 { // rarer than the rest
			if n := w.rng.IntN(4); n > 0 {
				e.Fake.FailNextAdopts(syscall.EMFILE, n)
			}
			e.Restart()
			w.counts["server restart"]++
		}
	case 12: // the platform's agent is slow: it does not heartbeat for a while
		w.agent.mute(time.Duration(w.rng.IntN(3000)) * time.Millisecond)
		w.counts["agent slow"]++
	case 13: // the provisioner fails the next start
		e.Fake.FailNextStart(errors.New("engine unavailable"))
		w.counts["start fails"]++
	case 14: // an explicit admin restart of the platform
		if w.rng.IntN(3) == 0 {
			_, err := e.Admin.RestartWorkspace(ctx, w.P, fmt.Sprint("step ", step))
			if w.ok("platform restart", err) {
				w.platformRestarts++
			}
		}
	default: // let the workers run in between
		time.Sleep(time.Duration(w.rng.IntN(80)) * time.Millisecond)
	}
}

// agentSim plays the reference agent of one workspace's boxes under the
// fake provisioner, with its semantics: it heartbeats its generation with
// its own token, and exits (code 3) after three refused heartbeats in a
// row. It can be muted, as an agent that is slow to answer.
type agentSim struct {
	mu         sync.Mutex
	mutedUntil time.Time
}

func (a *agentSim) mute(d time.Duration) {
	a.mu.Lock()
	a.mutedUntil = time.Now().Add(d)
	a.mu.Unlock()
}

func (a *agentSim) muted() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return time.Now().Before(a.mutedUntil)
}

func simulateAgent(t *testing.T, e *testenv.Env, wsID string) *agentSim {
	t.Helper()
	a := &agentSim{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		refused := map[string]int{} // box id -> refusals in a row
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			h, ok := e.Fake.Running(wsID)
			if !ok || a.muted() {
				continue
			}
			env, ok := e.Fake.EnvOf(h)
			if !ok {
				continue
			}
			err := e.Client(env[core.EnvToken]).Do(ctx, "POST", "/v1/workspaces/"+wsID+"/heartbeat",
				map[string]any{"generation": h.Generation, "fingerprint": env[core.EnvFingerprint]}, nil)
			var ce *client.Error
			if errors.As(err, &ce) && (ce.Status == 401 || ce.Status == 403 || ce.Status == 409) {
				if refused[h.ID]++; refused[h.ID] >= 3 {
					_ = e.Fake.Exit(h, 3)
				}
			} else if err == nil {
				refused[h.ID] = 0
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return a
}
