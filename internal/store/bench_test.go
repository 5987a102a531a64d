package store_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/orgplane/orgplane/internal/store"
)

// go test ./internal/store -run '^$' -bench . -benchtime 3x -count 5

const benchN = 10_000

// engines runs fn once per engine, with a function that opens a fresh,
// migrated store.
func engines(b *testing.B, fn func(b *testing.B, fresh func() store.Store)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, func() store.Store { return open(b, sqliteURL(b)) }) })
	b.Run("postgres", func(b *testing.B) { fn(b, func() store.Store { return open(b, pgURL(b)) }) })
}

func benchOrg(b testing.TB, s store.Store) (store.Org, store.Workspace) {
	b.Helper()
	ctx := context.Background()
	now := time.Now()
	o := store.Org{ID: "o-bench", Name: "bench", CreatedAt: now}
	p := store.Workspace{ID: "w-platform", OrgID: o.ID, Name: "platform", Kind: store.KindPlatform, Runtime: "process",
		Spec: "{}", Status: "running", RestartPolicy: "auto", CreatedAt: now, UpdatedAt: now}
	err := s.InTx(ctx, func(tx store.Store) error {
		if err := tx.CreateOrg(ctx, o); err != nil {
			return err
		}
		return tx.InsertWorkspace(ctx, p)
	})
	if err != nil {
		b.Fatal(err)
	}
	return o, p
}

func benchWorkspace(p store.Workspace, i int) store.Workspace {
	now := time.Now()
	return store.Workspace{ID: fmt.Sprintf("w%06d", i), OrgID: p.OrgID, ParentID: p.ID, Name: fmt.Sprintf("agent-%06d", i),
		Kind: store.KindWorkspace, Runtime: "process", Spec: `{"command":["agent"]}`, Status: "provisioning",
		RestartPolicy: "auto", CreatedAt: now, UpdatedAt: now}
}

// BenchmarkCreateWorkspaces10k creates 10,000 workspaces under the platform
// workspace one transaction each, as the service does (find the parent,
// insert, append the audit entry). One op is the whole batch of 10,000.
func BenchmarkCreateWorkspaces10k(b *testing.B) {
	engines(b, func(b *testing.B, fresh func() store.Store) {
		ctx := context.Background()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			s := fresh()
			o, _ := benchOrg(b, s)
			b.StartTimer()
			for n := range benchN {
				err := s.InTx(ctx, func(tx store.Store) error {
					p, err := tx.GetPlatformWorkspace(ctx, o.ID)
					if err != nil {
						return err
					}
					w := benchWorkspace(p, n)
					if err := tx.InsertWorkspace(ctx, w); err != nil {
						return err
					}
					_, err = tx.AppendAudit(ctx, store.AuditEntry{OrgID: o.ID, At: time.Now(), TokenID: "t-admin",
						PrincipalKind: "admin", Action: "workspace.create", TargetKind: "workspace", TargetID: w.ID,
						WorkspaceID: w.ID, Outcome: "ok", Detail: `{"name":"` + w.Name + `"}`})
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			_ = s.Close()
		}
		b.ReportMetric(float64(b.Elapsed())/float64(b.N)/1e6, "ms/10k")
	})
}

// BenchmarkListWorkspaces10k lists an org of 10,000 workspaces (and its
// platform workspace) in one call.
func BenchmarkListWorkspaces10k(b *testing.B) {
	engines(b, func(b *testing.B, fresh func() store.Store) {
		ctx := context.Background()
		s := fresh()
		o, p := benchOrg(b, s)
		err := s.InTx(ctx, func(tx store.Store) error {
			for n := range benchN {
				if err := tx.InsertWorkspace(ctx, benchWorkspace(p, n)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() { // the setup above is not timed
			ws, err := s.ListWorkspaces(ctx, o.ID, false, store.ListParams{})
			if err != nil {
				b.Fatal(err)
			}
			if len(ws) != benchN+1 {
				b.Fatalf("listed %d workspaces, want %d", len(ws), benchN+1)
			}
		}
		b.ReportMetric(float64(b.Elapsed())/float64(b.N)/1e6, "ms/list")
	})
}

// BenchmarkGetWorkspace reads one workspace by id, outside and inside a
// transaction: the most frequent query (heartbeats, watchers, jobs). Besides
// the wall time it reports the process's CPU time per op (getrusage), which
// a busy machine disturbs less.
func BenchmarkGetWorkspace(b *testing.B) {
	engines(b, func(b *testing.B, fresh func() store.Store) {
		ctx := context.Background()
		s := fresh()
		o, p := benchOrg(b, s)
		b.Run("read", func(b *testing.B) {
			cpu := cpuClock(b)
			for i := 0; i < b.N; i++ {
				if _, err := s.GetWorkspace(ctx, o.ID, p.ID); err != nil {
					b.Fatal(err)
				}
			}
			cpu()
		})
		b.Run("in-tx", func(b *testing.B) {
			cpu := cpuClock(b)
			for i := 0; i < b.N; i++ {
				err := s.InTx(ctx, func(tx store.Store) error {
					_, err := tx.GetWorkspaceForUpdate(ctx, o.ID, p.ID)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			cpu()
		})
	})
}

// cpuClock starts counting this process's user+system CPU time; the
// function it returns reports it per op.
func cpuClock(b *testing.B) func() {
	now := func() int64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	b.ResetTimer()
	t0 := now()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(now()-t0)/float64(b.N), "cpu-ns/op")
	}
}
