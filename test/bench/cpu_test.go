package bench

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

// rusageCPU is the user+system CPU time of this process (who is
// syscall.RUSAGE_SELF) or of its children that have ended and been waited
// for (syscall.RUSAGE_CHILDREN).
func rusageCPU(b *testing.B, who int) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(who, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runningBoxes creates n process workspaces running the reference agent
// and waits until all are healthy.
func runningBoxes(b *testing.B, e *testenv.Env, events <-chan core.Event, n int) []string {
	b.Helper()
	ctx := context.Background()
	var ids []string
	for j := 0; j < n; j++ {
		w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("w%04d", j)})
		require.NoError(b, err)
		ids = append(ids, w.ID)
	}
	for _, id := range ids {
		waitHealthy(b, e, events, id, 1)
	}
	return ids
}

// waitJobsEnded waits for the restart.* event of every workspace in want,
// reading the store only every few seconds (in case the bus dropped one),
// so that the waiting adds little CPU of its own to the figure.
func waitJobsEnded(b *testing.B, e *testenv.Env, events <-chan core.Event, want map[string]bool, since time.Time) {
	b.Helper()
	ctx := context.Background()
	left := len(want)
	done := map[string]bool{}
	deadline := time.After(5 * time.Minute)
	check := time.NewTicker(3 * time.Second)
	defer check.Stop()
	for left > 0 {
		select {
		case ev := <-events:
			if want[ev.WorkspaceID] && !done[ev.WorkspaceID] && (ev.Type == "restart.succeeded" || ev.Type == "restart.failed" || ev.Type == "restart.skipped") {
				require.Equal(b, "restart.succeeded", ev.Type, "restart of %s", ev.WorkspaceID)
				done[ev.WorkspaceID] = true
				left--
			}
		case <-check.C:
			for id := range want {
				if done[id] {
					continue
				}
				jobs, err := e.Store.ListJobs(ctx, e.Org.Org.ID, id, 1)
				if err == nil && len(jobs) == 1 && jobs[0].Finished() && !jobs[0].CreatedAt.Before(since) {
					require.Equal(b, store.JobSucceeded, jobs[0].State)
					done[id] = true
					left--
				}
			}
		case <-deadline:
			b.Fatalf("%d of %d restarts not finished", left, len(want))
		}
	}
}

// BenchmarkRestartCPU: the CPU one restart costs the control plane during
// a fan-out. N process workspaces run the reference agent; one global
// secret write restarts them all (cap 8 at a time; the default 1s backup
// polls). One op is the whole fan-out; it reports:
//   - cp-cpu-ms/restart: user+system CPU of this process (the control
//     plane: API, store, workers, watchers; the benchmark's own waiting is
//     event-driven and small) over the fan-out, per restart;
//   - reaped-agent-cpu-ms/restart: the CPU of the agent processes that
//     ended and were waited for during the fan-out (the boxes replaced: a
//     whole life each, start to stop), per restart.
//
// go test ./test/bench -run '^$' -bench RestartCPU -benchtime 1x -count 5
func BenchmarkRestartCPU(b *testing.B) {
	for _, n := range []int{100} {
		b.Run(fmt.Sprintf("boxes=%d", n), func(b *testing.B) {
			rt := core.RuntimeConfig{MaxConcurrentRestarts: 8, MaxConcurrentRestartsPerOrg: 8,
				CoalesceWindow: 100 * time.Millisecond, Jitter: 100 * time.Millisecond}
			e := processEnv(b, rt)
			events, cancel := e.Service.Events().Subscribe(e.Org.Org.ID)
			defer cancel()
			runningBoxes(b, e, events, n)
			actx := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.KindAdmin, OrgID: e.Org.Org.ID, TokenID: e.Org.Token.ID})
			var self, children, wall time.Duration
			restarts := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0, s0, c0 := time.Now(), rusageCPU(b, syscall.RUSAGE_SELF), rusageCPU(b, syscall.RUSAGE_CHILDREN)
				res, err := e.Service.SetSecret(actx, "", "ROTATED", fmt.Sprintf("v%d", i), false)
				require.NoError(b, err)
				want := map[string]bool{}
				for _, d := range res.Decisions {
					if d.Action == "restart" {
						want[d.WorkspaceID] = true
					}
				}
				require.Len(b, want, n)
				waitJobsEnded(b, e, events, want, t0)
				self += rusageCPU(b, syscall.RUSAGE_SELF) - s0
				children += rusageCPU(b, syscall.RUSAGE_CHILDREN) - c0
				wall += time.Since(t0)
				restarts += len(want)
			}
			b.StopTimer()
			b.ReportMetric(float64(self.Microseconds())/1000/float64(restarts), "cp-cpu-ms/restart")
			b.ReportMetric(float64(children.Microseconds())/1000/float64(restarts), "reaped-agent-cpu-ms/restart")
			b.ReportMetric(wall.Seconds()/float64(b.N), "fanout-s")
		})
	}
}

// BenchmarkAtRestCPU200: the control plane's CPU with 200 healthy process
// boxes (reference agents heartbeating every 2s) and nothing else to do:
// watchers, heartbeats, workers' and supervisors' polls. One op is a 10s
// window; it reports CPU milliseconds per second of wall time.
//
// go test ./test/bench -run '^$' -bench AtRestCPU200 -benchtime 1x -count 5
func BenchmarkAtRestCPU200(b *testing.B) {
	e := processEnv(b, core.RuntimeConfig{})
	events, cancel := e.Service.Events().Subscribe(e.Org.Org.ID)
	ids := runningBoxes(b, e, events, 200)
	cancel()
	// The creation's after-effects settle: every box has heartbeated since
	// it turned healthy (its first heartbeat's work is done).
	e.Eventually(time.Minute, func() bool {
		for _, id := range ids {
			w, err := e.Store.GetWorkspace(context.Background(), e.Org.Org.ID, id)
			if err != nil || w.HeartbeatAt.IsZero() || !w.HeartbeatAt.After(w.HealthyAt) {
				return false
			}
		}
		return true
	}, "every box heartbeated since it was healthy")
	var self, wall time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0, s0 := time.Now(), rusageCPU(b, syscall.RUSAGE_SELF)
		time.Sleep(10 * time.Second)
		self += rusageCPU(b, syscall.RUSAGE_SELF) - s0
		wall += time.Since(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(self.Microseconds())/1000/wall.Seconds(), "cp-cpu-ms/s")
}
