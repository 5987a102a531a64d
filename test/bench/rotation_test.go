package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/testenv"
)

// BenchmarkRotationCaps: one global secret change across 200 running
// process workspaces (reference agents), with the restart cap (overall and
// per org) at 2, 4 and 8; no coalescing window and no jitter to speak of,
// so that the fan-out can be set against its floor:
//
//	floor = 200 × one restart ÷ min(cap, cores)
//
// where one restart is the median of 5 explicit restarts measured in the
// same run, before the change (a box cannot restart faster than alone,
// and no more restarts run at once than there are cores to run them).
// Reported: total-s (write → all 200 healthy), ratio-to-floor (issue 14's
// aim: ≤ 1.25), the propagation lag p50/p99 (write → that box's job
// succeeded), single-restart-ms and floor-s.
//
// sqlite: one control plane. postgres-2replicas: two control planes on one
// Postgres database, each with its own process provisioner on this
// machine (as two `orgplane serve` on one host), the workspaces created
// through both, the write through the first; the cap holds over both.
func BenchmarkRotationCaps(b *testing.B) {
	for _, setup := range []string{"sqlite", "postgres-2replicas"} {
		for _, limit := range []int{2, 4, 8} {
			b.Run(fmt.Sprintf("%s/cap%d", setup, limit), func(b *testing.B) {
				benchRotationCaps(b, setup == "postgres-2replicas", limit)
			})
		}
	}
}

func benchRotationCaps(b *testing.B, replicas bool, limit int) {
	const n = 200
	rt := core.RuntimeConfig{PollInterval: 50 * time.Millisecond, MaxConcurrentRestarts: limit, MaxConcurrentRestartsPerOrg: limit,
		CoalesceWindow: time.Nanosecond, Jitter: time.Nanosecond}
	e := processEnvOpts(b, testenv.Options{Runtime: rt, Postgres: replicas})
	admins := []*client.Client{e.Admin}
	if replicas {
		r := processEnvOpts(b, testenv.Options{Runtime: rt, DBURL: e.DBURL, MasterKey: e.MasterKey})
		admins = append(admins, client.New(r.URL, e.AdminToken))
	}
	events, cancel := e.Service.Events().Subscribe(e.Org.Org.ID)
	defer cancel()
	ctx := context.Background()
	var ids []string
	for j := 0; j < n; j++ {
		w, err := admins[j%len(admins)].CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("w%03d", j)})
		require.NoError(b, err)
		ids = append(ids, w.ID)
	}
	gen := map[string]int64{}
	for _, id := range ids {
		waitHealthy(b, e, events, id, 1)
		gen[id] = 1
	}
	// One restart alone, on this machine now.
	var single []time.Duration
	for k := 0; k < 5; k++ {
		t0 := time.Now()
		_, err := admins[k%len(admins)].RestartWorkspace(ctx, ids[k], "one restart alone")
		require.NoError(b, err)
		gen[ids[k]]++
		waitHealthy(b, e, events, ids[k], gen[ids[k]])
		single = append(single, time.Since(t0))
	}
	one := percentile(single, 0.5)
	floor := time.Duration(float64(one) * n / float64(min(limit, runtime.NumCPU())))
	actx := auth.WithPrincipal(ctx, auth.Principal{Kind: auth.KindAdmin, OrgID: e.Org.Org.ID, TokenID: e.Org.Token.ID})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res, err := e.Service.SetSecret(actx, "", "ROTATED", fmt.Sprintf("v%d", i), false)
		require.NoError(b, err)
		restarts := waitRestarted(b, e, events, res.Decisions, gen)
		total := time.Since(t0)
		b.StopTimer()
		require.Equal(b, n, restarts)
		lags := restartLags(b, e, ids, t0)
		b.ReportMetric(percentile(lags, 0.5).Seconds(), "lag-p50-s")
		b.ReportMetric(percentile(lags, 0.99).Seconds(), "lag-p99-s")
		b.ReportMetric(total.Seconds(), "total-s")
		b.ReportMetric(one.Seconds()*1000, "single-restart-ms")
		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(total.Seconds()/floor.Seconds(), "ratio-to-floor")
		b.StartTimer()
	}
}
