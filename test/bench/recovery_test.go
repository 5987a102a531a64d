package bench

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// BenchmarkPlatformRecovery: the platform box's process is killed (SIGKILL,
// as the OOM killer or a crash would), and the clock runs until the
// workspace is running again with a new generation whose box has
// heartbeated. The control plane is in-process with the default runtime
// settings (backoff included); the box is the real reference agent.
//
// Each iteration is one death and one recovery; s/recovery is their mean
// over the run's b.N. Run it with -benchtime 1x -count 20 and take the
// median of the 20 (docs/benchmarks.md does).
//
// StableAfter is shortened so that every death is that of a box that has
// proven itself, as a long-running platform box has; with the default
// (one minute) the second death within a minute would be counted as a
// flapping box's, with a longer backoff.
func BenchmarkPlatformRecovery(b *testing.B) {
	e := processEnv(b, core.RuntimeConfig{StableAfter: time.Millisecond})
	events, cancel := e.Service.Events().Subscribe(e.Org.Org.ID)
	defer cancel()
	ctx := context.Background()
	P := e.Org.Platform.ID
	waitHealthy(b, e, events, P, 1)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w, err := e.Store.GetWorkspace(ctx, e.Org.Org.ID, P)
		require.NoError(b, err)
		gen := w.Generation
		var pids []int
		e.Eventually(30*time.Second, func() bool {
			pids = e2etest.BoxPIDs(P)
			return len(pids) == 1
		}, "one platform box process (have %v)", &pids)
		b.StartTimer()
		t0 := time.Now()
		require.NoError(b, syscall.Kill(pids[0], syscall.SIGKILL))
		deadline := time.After(2 * time.Minute)
		for {
			w, err = e.Store.GetWorkspace(ctx, e.Org.Org.ID, P)
			require.NoError(b, err)
			if w.Generation > gen && w.Status == core.StatusRunning && !w.HeartbeatAt.IsZero() {
				break
			}
			select {
			case <-events:
			case <-time.After(5 * time.Millisecond):
			case <-deadline:
				b.Fatalf("platform not back 2 minutes after its box died: generation %d, %s: %s", w.Generation, w.Status, w.LastError)
			}
		}
		total += time.Since(t0)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/recovery")
}
