package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/e2etest"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/process"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

// processEnv is an in-process control plane whose process boxes run the
// real reference agent (the orgplane binary).
func processEnv(b *testing.B, rt core.RuntimeConfig) *testenv.Env {
	b.Helper()
	return processEnvOpts(b, testenv.Options{Runtime: rt})
}

// processEnvOpts is processEnv with more options (Postgres, or the DBURL
// and MasterKey of another replica); Provisioners and the agent command
// are set here.
func processEnvOpts(b *testing.B, opts testenv.Options) *testenv.Env {
	b.Helper()
	bin := e2etest.Binary(b)
	proc, err := process.New(process.Config{LogDir: b.TempDir(), StopGrace: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(b, err)
	opts.Runtime.AgentCommand = []string{bin, "agent"}
	opts.Provisioners = map[string]provision.Provisioner{provision.RuntimeProcess: proc}
	// Registered before the Env's own clean-up, so that it runs after the
	// control plane has stopped: boxes killed while it still ran were seen
	// dead and recovered, and the new boxes outlived the benchmark.
	var url string
	b.Cleanup(func() {
		if url != "" {
			e2etest.KillAllBoxesUnder(url)
		}
		proc.Close()
	})
	e := testenv.New(b, opts)
	url = e.URL
	return e
}

// waitHealthy waits for the workspace's box of generation gen to be running.
func waitHealthy(b *testing.B, e *testenv.Env, events <-chan core.Event, wsID string, gen int64) {
	b.Helper()
	deadline := time.After(60 * time.Second)
	for {
		w, err := e.Store.GetWorkspace(context.Background(), e.Org.Org.ID, wsID)
		require.NoError(b, err)
		if w.Generation >= gen && w.Status == core.StatusRunning {
			return
		}
		select {
		case <-events:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			b.Fatalf("workspace %s not healthy with generation %d: %s %s", wsID, gen, w.Status, w.LastError)
		}
	}
}

var seq atomic.Int64

// BenchmarkProcessBox: provision (create → healthy) and explicit restart
// (request → new generation healthy) of one process box running the
// reference agent.
func BenchmarkProcessBox(b *testing.B) {
	e := processEnv(b, core.RuntimeConfig{PollInterval: 50 * time.Millisecond})
	events, cancel := e.Service.Events().Subscribe(e.Org.Org.ID)
	defer cancel()
	ctx := context.Background()
	b.Run("provision", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("p%d", seq.Add(1))})
			require.NoError(b, err)
			waitHealthy(b, e, events, w.ID, 1)
		}
	})
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "r"})
	require.NoError(b, err)
	waitHealthy(b, e, events, w.ID, 1)
	benchRestarts(b, e, events, w.ID)
}

// BenchmarkProcessBoxes200: 200 process workspaces created together, until
// all are healthy; reports the control plane's heap afterwards.
func BenchmarkProcessBoxes200(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := processEnv(b, core.RuntimeConfig{PollInterval: 50 * time.Millisecond})
		ctx := context.Background()
		b.StartTimer()
		var wg sync.WaitGroup
		idsCh := make(chan string, 200)
		for j := 0; j < 200; j++ {
			wg.Add(1)
			go func(j int) {
				defer wg.Done()
				w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("w%03d", j)})
				require.NoError(b, err)
				idsCh <- w.ID
			}(j)
		}
		wg.Wait()
		close(idsCh)
		deadline := time.Now().Add(120 * time.Second)
		for {
			list, err := e.Store.ListWorkspaces(ctx, e.Org.Org.ID, false, store.ListParams{})
			require.NoError(b, err)
			healthy := 0
			for _, w := range list {
				if w.Status == core.StatusRunning && w.Kind == store.KindWorkspace {
					healthy++
				}
			}
			if healthy == 200 {
				break
			}
			require.True(b, time.Now().Before(deadline), "only %d of 200 healthy", healthy)
			time.Sleep(10 * time.Millisecond)
		}
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MB")
		b.ReportMetric(float64(ms.Sys)/(1<<20), "sys-MB")
		e2etest.KillAllBoxesUnder(e.URL)
		b.StartTimer()
	}
}

// BenchmarkGlobalRotation200: one global secret change across 200 running
// process workspaces (reference agents) with the restart cap at 8; reports
// the propagation lag (write → each box healthy with the new env) p50/p99
// and its ratio to the bare cost (200 restarts / 8 in parallel × the median
// single restart).
func BenchmarkGlobalRotation200(b *testing.B) {
	rt := core.RuntimeConfig{PollInterval: 50 * time.Millisecond, MaxConcurrentRestarts: 8, MaxConcurrentRestartsPerOrg: 8,
		CoalesceWindow: 100 * time.Millisecond, Jitter: 100 * time.Millisecond}
	e := processEnv(b, rt)
	events, cancel := e.Service.Events().Subscribe(e.Org.Org.ID)
	defer cancel()
	ctx := context.Background()
	var ids []string
	for j := 0; j < 200; j++ {
		w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("w%03d", j)})
		require.NoError(b, err)
		ids = append(ids, w.ID)
	}
	for _, id := range ids {
		waitHealthy(b, e, events, id, 1)
	}
	// The bare cost of one restart, measured on this machine now.
	var single []time.Duration
	gen := map[string]int64{}
	for _, id := range ids {
		gen[id] = 1
	}
	for k := 0; k < 5; k++ {
		t0 := time.Now()
		_, err := e.Admin.RestartWorkspace(ctx, ids[k], "bare cost")
		require.NoError(b, err)
		gen[ids[k]]++
		waitHealthy(b, e, events, ids[k], gen[ids[k]])
		single = append(single, time.Since(t0))
	}
	bare := percentile(single, 0.5)
	actx := auth.WithPrincipal(ctx, auth.Principal{Kind: auth.KindAdmin, OrgID: e.Org.Org.ID, TokenID: e.Org.Token.ID})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res, err := e.Service.SetSecret(actx, "", "ROTATED", fmt.Sprintf("v%d", i), false)
		require.NoError(b, err)
		for _, d := range res.Decisions {
			if d.Action != "restart" {
				continue
			}
			gen[d.WorkspaceID]++
			waitHealthy(b, e, events, d.WorkspaceID, gen[d.WorkspaceID])
		}
		total := time.Since(t0)
		// Each box's lag, from the write to its job's success.
		lags := restartLags(b, e, ids, t0)
		b.ReportMetric(percentile(lags, 0.5).Seconds(), "lag-p50-s")
		b.ReportMetric(percentile(lags, 0.99).Seconds(), "lag-p99-s")
		b.ReportMetric(total.Seconds(), "total-s")
		b.ReportMetric(bare.Seconds()*1000, "single-restart-ms")
		b.ReportMetric(total.Seconds()/(bare.Seconds()*200/8), "ratio-to-bare")
	}
}

// benchRestarts runs the "restart" sub-benchmark: explicit restarts of a
// healthy workspace of generation 1, each until the new box is healthy.
func benchRestarts(b *testing.B, e *testenv.Env, events <-chan core.Event, wsID string) {
	gen := int64(1)
	b.Run("restart", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_, err := e.Admin.RestartWorkspace(context.Background(), wsID, "bench")
			require.NoError(b, err)
			gen++
			waitHealthy(b, e, events, wsID, gen)
		}
	})
}

// waitRestarted waits for each workspace a fan-out decided to restart to
// be healthy at its next generation (gen counts them) and returns how many
// there were.
func waitRestarted(b *testing.B, e *testenv.Env, events <-chan core.Event, ds []propagation.Decision, gen map[string]int64) int {
	b.Helper()
	restarts := 0
	for _, d := range ds {
		if d.Action != propagation.ActionRestart {
			continue
		}
		restarts++
		gen[d.WorkspaceID]++
		waitHealthy(b, e, events, d.WorkspaceID, gen[d.WorkspaceID])
	}
	return restarts
}

// restartLags waits for the newest restart job of each workspace to
// finish, requires that it succeeded, and returns each one's lag from t0
// (the write) to its success.
func restartLags(b *testing.B, e *testenv.Env, ids []string, t0 time.Time) []time.Duration {
	b.Helper()
	lags := make([]time.Duration, 0, len(ids))
	for _, id := range ids {
		var job store.RestartJob
		e.Eventually(30*time.Second, func() bool {
			jobs, err := e.Store.ListJobs(context.Background(), e.Org.Org.ID, id, 1)
			if err != nil || len(jobs) == 0 {
				return false
			}
			job = jobs[0]
			return job.Finished()
		}, "job of %s finished", id)
		require.Equal(b, store.JobSucceeded, job.State)
		lags = append(lags, job.FinishedAt.Sub(t0))
	}
	return lags
}
