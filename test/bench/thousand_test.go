package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/store"
)

// restWindow is how long BenchmarkThousandBoxes watches the control plane
// at rest with every box running.
const restWindow = 30 * time.Second

// BenchmarkThousandBoxes: 1,000 process workspaces running the reference
// agent (heartbeat every 2 s, its default) on one machine, one in-process
// control plane on SQLite. Reported:
//
//   - healthy-s: from the first create call until all 1,000 are running
//     (created 16 at a time through the API); reprovisions: the boxes
//     started again on the way (a first box that missed its provision
//     deadline, 30 s, is replaced);
//   - heap-inuse-MB, sys-MB: the control plane's heap after a GC once all
//     run, and what the Go runtime holds from the OS;
//   - rest-cpu-ms/s: the control plane's CPU (user + system, getrusage of
//     this process) per second of wall time over restWindow at rest, every
//     box running and heartbeating; rest-cpu-% is the same as a share of
//     one core;
//   - agent-anon-MB, agents-anon-MB: the private resident memory of one
//     agent process (mean) and of all of them (the platform's box
//     included); agent-rss-MB: the mean resident set, which also counts
//     the pages of the binary that they all share.
//
// The benchmark process is the control plane; the test itself is idle
// during the window.
func BenchmarkThousandBoxes(b *testing.B) {
	const n = 1000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := processEnv(b, core.RuntimeConfig{PollInterval: 50 * time.Millisecond})
		ctx := context.Background()
		b.StartTimer()
		t0 := time.Now()
		var wg sync.WaitGroup
		work := make(chan int)
		errs := make(chan error, n)
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range work {
					if _, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("w%04d", j)}); err != nil {
						errs <- err
					}
				}
			}()
		}
		for j := 0; j < n; j++ {
			work <- j
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(b, err)
		}
		running := func() (int, string) {
			list, err := e.Store.ListWorkspaces(ctx, e.Org.Org.ID, false, store.ListParams{})
			require.NoError(b, err)
			up, other := 0, map[string]int{}
			for _, w := range list {
				if w.Kind != store.KindWorkspace {
					continue
				}
				if w.Status == core.StatusRunning {
					up++
				} else {
					other[w.Status]++
				}
			}
			return up, fmt.Sprint(other)
		}
		deadline := time.Now().Add(5 * time.Minute)
		poll := time.NewTicker(100 * time.Millisecond)
		defer poll.Stop()
		for {
			up, other := running()
			if up == n {
				break
			}
			require.True(b, time.Now().Before(deadline), "only %d of %d running after 5 minutes; others %s", up, n, other)
			<-poll.C
		}
		healthy := time.Since(t0)
		b.StopTimer()
		b.ReportMetric(healthy.Seconds(), "healthy-s")
		// A box that missed its provision deadline is provisioned again:
		// count those extra generations.
		gens := map[string]int64{}
		reprovisions := int64(0)
		list, err := e.Store.ListWorkspaces(ctx, e.Org.Org.ID, false, store.ListParams{})
		require.NoError(b, err)
		for _, w := range list {
			if w.Kind == store.KindWorkspace {
				gens[w.ID] = w.Generation
				reprovisions += w.Generation - 1
			}
		}
		b.ReportMetric(float64(reprovisions), "reprovisions")

		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MB")
		b.ReportMetric(float64(ms.Sys)/(1<<20), "sys-MB")

		// At rest: every box running and heartbeating, nothing else asked.
		// The window is an observation, not a wait for a condition: the
		// test does nothing in it, so that its CPU is the control plane's.
		cpu0, wall0 := cpuTime(b), time.Now()
		<-time.After(restWindow)
		cpu, wall := cpuTime(b)-cpu0, time.Since(wall0)
		list, err = e.Store.ListWorkspaces(ctx, e.Org.Org.ID, false, store.ListParams{})
		require.NoError(b, err)
		for _, w := range list {
			if w.Kind == store.KindWorkspace && (w.Status != core.StatusRunning || w.Generation != gens[w.ID]) {
				b.Fatalf("workspace %s moved during the rest window: %s, generation %d (was %d): %s", w.ID, w.Status, w.Generation, gens[w.ID], w.LastError)
			}
		}
		b.ReportMetric(float64(cpu.Milliseconds())/wall.Seconds(), "rest-cpu-ms/s")
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "rest-cpu-%")

		// The platform workspace's box is an agent too.
		count, anon, rss := boxesRSS(e.URL)
		require.Equal(b, n+1, count, "agent processes found")
		b.ReportMetric(float64(anon)/float64(count)/(1<<20), "agent-anon-MB")
		b.ReportMetric(float64(anon)/(1<<20), "agents-anon-MB")
		b.ReportMetric(float64(rss)/float64(count)/(1<<20), "agent-rss-MB")
		b.StartTimer()
	}
}

// cpuTime is this process's user plus system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// boxesRSS finds, in one pass over /proc, the processes whose environment
// names ORGPLANE_URL=url (the boxes of one control plane) and sums their
// private resident memory (RssAnon) and resident set (VmRSS, which counts
// the pages of the binary they all share in each of them).
func boxesRSS(url string) (count int, anon, rss int64) {
	want := []byte("ORGPLANE_URL=" + url + "\x00")
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !(bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...))) {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		count++
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			for field, sum := range map[string]*int64{"VmRSS:": &rss, "RssAnon:": &anon} {
				if kb, ok := strings.CutPrefix(sc.Text(), field); ok {
					v, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
					*sum += v << 10
				}
			}
		}
		f.Close()
	}
	return count, anon, rss
}
