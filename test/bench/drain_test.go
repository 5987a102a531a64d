package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

// drainRuntime: restarts are due at once (no coalescing window, no
// jitter to speak of), eight in flight, and a loop breaker that a second
// change never trips: the drain's rate is the job machinery's, not the
// pacing's.
func drainRuntime() core.RuntimeConfig {
	return core.RuntimeConfig{
		PollInterval:   50 * time.Millisecond,
		CoalesceWindow: time.Nanosecond, Jitter: time.Nanosecond,
		MaxConcurrentRestarts: 8, MaxConcurrentRestartsPerOrg: 8,
		ReadyAfter: time.Nanosecond, LoopMax: 1 << 20,
	}
}

// fakeBoxSpec: a process box with a command of its own, so that it is
// healthy once started (after ready_after_seconds, 0) rather than by an
// agent's heartbeat, which a fake box never sends.
const fakeBoxSpec = `{"command":["sleep","infinity"],"ready_after_seconds":0}`

// restartsDone reads orgplane_restarts_total (all outcomes but retries)
// from the service's metrics: the jobs finished so far.
func restartsDone(b *testing.B, svc *core.Service) (done, succeeded int) {
	mfs, err := svc.Metrics().Registry.Gather()
	require.NoError(b, err)
	for _, mf := range mfs {
		if mf.GetName() != "orgplane_restarts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			outcome := label(m, "outcome")
			if outcome == "retry" {
				continue
			}
			done += int(m.GetCounter().GetValue())
			if outcome == "succeeded" {
				succeeded += int(m.GetCounter().GetValue())
			}
		}
	}
	return done, succeeded
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// drainTrace is the count of finished restarts of one drain over time.
type drainTrace struct {
	n      int             // restarts queued
	at     []time.Duration // at[k]: when the (k+1)th restart finished, from the write's return
	ended  bool            // all n finished within the budget
	failed int
}

// rate is the restarts per second between the from-th and to-th finished
// restart (0 < from < to <= n; from 0 means the write's return). It is 0
// when the drain did not get that far.
func (d drainTrace) rate(from, to int) float64 {
	if to > len(d.at) || to <= from {
		return 0
	}
	var t0 time.Duration
	if from > 0 {
		t0 = d.at[from-1]
	}
	return float64(to-from) / (d.at[to-1] - t0).Seconds()
}

// drain writes one global secret, which queues a restart of each of the
// n workspaces, and follows the finished count until all n are done or
// the budget is spent. The write itself (planning) is not in the trace:
// its clock starts when the write returns.
func drain(b *testing.B, e *testenv.Env, n int, value string, budget time.Duration) drainTrace {
	b.Helper()
	base, baseOK := restartsDone(b, e.Service)
	actx := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.KindAdmin, OrgID: e.Org.Org.ID, TokenID: e.Org.Token.ID})
	res, err := e.Service.SetSecret(actx, "", "API_KEY", value, false)
	require.NoError(b, err)
	t0 := time.Now()
	queued := 0
	for _, d := range res.Decisions {
		if d.Action == "restart" {
			queued++
		}
	}
	require.Equal(b, n, queued, "restarts queued by the change")
	d := drainTrace{n: n, at: make([]time.Duration, 0, n)}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		done, ok := restartsDone(b, e.Service)
		now := time.Since(t0)
		for len(d.at) < min(done-base, n) {
			d.at = append(d.at, now)
		}
		if len(d.at) >= n {
			d.ended = true
			d.failed = n - (ok - baseOK)
			return d
		}
		if now > budget {
			return d
		}
		<-tick.C
	}
}

// drainBudget bounds each drain of a run, so that a run stays within a
// few minutes whatever the rate; ORGPLANE_BENCH_DRAIN_BUDGET (a Go
// duration) changes it, e.g. to let 100,000 restarts drain to the end.
func drainBudget(b *testing.B) time.Duration {
	if v := os.Getenv("ORGPLANE_BENCH_DRAIN_BUDGET"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(b, err, "ORGPLANE_BENCH_DRAIN_BUDGET")
		return d
	}
	return 60 * time.Second
}

// BenchmarkDrain: a global secret change queues a restart of each of n
// workspaces on fake boxes (instant), eight in flight, due at once; the
// figures are the drain's rate in restarts per second, in windows:
//
//   - first-tenth, last-tenth: the rate over the first and the last tenth
//     of the restarts the drain finished (all n when it drained, else
//     those finished within the budget): does the rate fall as the drain
//     goes on?
//   - drained-%: how much of the queue finished within the budget, and
//     cut-restarts/s: the rate over the budget when it ran out;
//   - 2nd-first-tenth, 2nd-last-tenth, 2nd/1st: when the first drain
//     finished, the same for a second change, with the first drain's n
//     finished jobs as history, and the ratio of the two drains' rates.
//
// Issue 14's aim: the rate does not fall with the queue or the history
// (last/first and 2nd/1st within 20%, and the same rate at 1k, 10k and
// 100k). The drain's clock starts when the write returns: planning is
// BenchmarkPlanGlobalChange's.
func BenchmarkDrain(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, n := range []int{1_000, 10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/%dk", engine, n/1000), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					benchDrain(b, engine, n)
				}
			})
		}
	}
}

func benchDrain(b *testing.B, engine string, n int) {
	b.StopTimer()
	budget := drainBudget(b)
	e := testenv.New(b, testenv.Options{Postgres: engine == "postgres", Runtime: drainRuntime()})
	insertWorkspacesSpec(b, e.Store, e.Org, n, fakeBoxSpec)
	b.StartTimer()
	first := drain(b, e, n, "one", budget)
	var second drainTrace
	if first.ended {
		second = drain(b, e, n, "two", budget)
	}
	b.StopTimer()
	report := func(v float64, unit string) {
		if v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
			b.ReportMetric(v, unit)
		}
	}
	firstTenth, lastTenth := first.tenths()
	report(firstTenth, "first-tenth-restarts/s")
	report(lastTenth, "last-tenth-restarts/s")
	report(lastTenth/firstTenth, "last/first")
	// Reported even when 0: nothing finished within the budget is a figure.
	b.ReportMetric(100*float64(len(first.at))/float64(n), "drained-%")
	if !first.ended {
		// Too few for tenths, maybe: the rate over the whole budget.
		b.ReportMetric(float64(len(first.at))/budget.Seconds(), "cut-restarts/s")
		return
	}
	require.Zero(b, first.failed, "restarts of the first drain that did not succeed")
	firstRate := first.rate(0, n)
	report(firstRate, "1st-restarts/s")
	f2, l2 := second.tenths()
	report(f2, "2nd-first-tenth-restarts/s")
	report(l2, "2nd-last-tenth-restarts/s")
	if second.ended {
		require.Zero(b, second.failed, "restarts of the second drain that did not succeed")
		report(second.rate(0, n), "2nd-restarts/s")
		report(second.rate(0, n)/firstRate, "2nd/1st")
	}
}

// tenths returns the rates over the first and the last tenth of the
// restarts finished (0 when fewer than 20 finished: too few to tell).
func (d drainTrace) tenths() (first, last float64) {
	done := len(d.at)
	tenth := done / 10
	if tenth < 2 {
		return 0, 0
	}
	return d.rate(0, tenth), d.rate(done-tenth, done)
}

// BenchmarkDrainHistory: the rate of a drain of 1,000 restarts (fake
// boxes, as BenchmarkDrain) when the store already holds h finished
// restart jobs of the same org: the history of earlier fan-outs (h/1,000
// per workspace, started and finished over the hour before, so that some
// fall within the loop breaker's window, as after a busy hour). It shows
// the rate as a function of the history alone, at sizes a full drain of
// 100,000 could not reach today within a run.
func BenchmarkDrainHistory(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, h := range []int{0, 10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/h%dk", engine, h/1000), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					benchDrainHistory(b, engine, h)
				}
			})
		}
	}
}

func benchDrainHistory(b *testing.B, engine string, h int) {
	const n = 1000
	b.StopTimer()
	budget := drainBudget(b)
	e := testenv.New(b, testenv.Options{Postgres: engine == "postgres", Runtime: drainRuntime()})
	insertWorkspacesSpec(b, e.Store, e.Org, n, fakeBoxSpec)
	seedHistory(b, e, h)
	b.StartTimer()
	d := drain(b, e, n, "one", budget)
	b.StopTimer()
	if d.ended {
		require.Zero(b, d.failed, "restarts that did not succeed")
		b.ReportMetric(d.rate(0, n), "restarts/s")
	} else if len(d.at) > 0 {
		b.ReportMetric(float64(len(d.at))/d.at[len(d.at)-1].Seconds(), "restarts/s")
	}
	b.ReportMetric(100*float64(len(d.at))/float64(n), "drained-%")
	b.ReportMetric(float64(h), "history-jobs")
}

// seedHistory inserts h succeeded automatic restart jobs spread over the
// org's workspaces and the hour before now.
func seedHistory(b *testing.B, e *testenv.Env, h int) {
	b.Helper()
	if h == 0 {
		return
	}
	ctx := context.Background()
	list, err := e.Store.ListWorkspaces(ctx, e.Org.Org.ID, false, store.ListParams{})
	require.NoError(b, err)
	var ws []string
	for _, w := range list {
		if w.Kind == store.KindWorkspace {
			ws = append(ws, w.ID)
		}
	}
	require.NotEmpty(b, ws)
	now := time.Now().UTC()
	change := ids.New("c")
	for start := 0; start < h; start += 1000 {
		var jobs []store.RestartJob
		for k := start; k < min(start+1000, h); k++ {
			at := now.Add(-time.Hour + time.Duration(k)*time.Hour/time.Duration(h))
			jobs = append(jobs, store.RestartJob{ID: ids.New("j"), OrgID: e.Org.Org.ID, WorkspaceID: ws[k%len(ws)],
				Automatic: true, State: store.JobSucceeded, Reason: "restart_queued", ChangeID: change,
				RequestedBy: e.Org.Token.ID, Attempts: 1, MaxAttempts: 3, RunAfter: at, CreatedAt: at,
				UpdatedAt: at.Add(30 * time.Millisecond), StartedAt: at, FinishedAt: at.Add(30 * time.Millisecond)})
		}
		require.NoError(b, e.Store.InsertJobs(ctx, jobs))
	}
}
