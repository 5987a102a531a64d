// Package bench holds the benchmarks whose figures docs/benchmarks.md
// records: API latency, effective env, key rotation, propagation planning,
// and real process boxes.
package bench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/pgtest"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// BenchmarkGetWorkspace: an authenticated GET /v1/workspaces/{id} over
// loopback, SQLite store.
func BenchmarkGetWorkspace(b *testing.B) {
	e := testenv.New(b, testenv.Options{})
	ctx := context.Background()
	start := false
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "w", Start: &start})
	require.NoError(b, err)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.Admin.GetWorkspace(ctx, w.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEffectiveEnv200: effective env and fingerprint of a workspace
// with 200 secrets (100 global, 100 its own, 50 of which override).
func BenchmarkEffectiveEnv200(b *testing.B) {
	e := testenv.New(b, testenv.Options{})
	ctx := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.KindAdmin, OrgID: e.Org.Org.ID})
	start := false
	w, err := e.Admin.CreateWorkspace(context.Background(), client.CreateWorkspace{Name: "w", Start: &start})
	require.NoError(b, err)
	for i := 0; i < 100; i++ {
		_, err := e.Service.SetSecret(ctx, "", fmt.Sprintf("G_%03d", i), strings.Repeat("g", 64), false)
		require.NoError(b, err)
		key := fmt.Sprintf("W_%03d", i)
		if i < 50 {
			key = fmt.Sprintf("G_%03d", i)
		}
		_, err = e.Service.SetSecret(ctx, w.ID, key, strings.Repeat("w", 64), false)
		require.NoError(b, err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		env, fp, err := e.Service.EffectiveEnv(context.Background(), e.Store, e.Org.Org.ID, w.ID)
		if err != nil || len(env) != 150 || fp == "" {
			b.Fatalf("env %d keys, err %v", len(env), err)
		}
	}
}

func openStore(b *testing.B, engine string) (store.Store, string) {
	b.Helper()
	var url string
	if engine == "postgres" {
		url = pgtest.URL(b)
	} else {
		url = "sqlite:" + b.TempDir() + "/orgplane.db"
	}
	st, err := store.Open(context.Background(), url)
	require.NoError(b, err)
	b.Cleanup(func() { st.Close() })
	return st, url
}

// peakHeap samples the heap until stop is called and returns the peak.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

// BenchmarkRotate: re-encrypt N secrets under a new data key, in batches;
// reports the peak heap, which must not grow with N.
func BenchmarkRotate(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, n := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/%dk", engine, n/1000), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					st, _ := openStore(b, engine)
					master, _ := crypto.GenerateMasterKey()
					kr, err := core.OpenKeyring(context.Background(), st, master)
					require.NoError(b, err)
					svc := core.New(st, core.Options{Keys: kr})
					org, err := svc.CreateOrg(context.Background(), "acme")
					require.NoError(b, err)
					now := time.Now().UTC()
					for start := 0; start < n; start += 1000 {
						err := st.InTx(context.Background(), func(tx store.Store) error {
							for j := start; j < start+1000 && j < n; j++ {
								sec, err := kr.Seal(store.Secret{OrgID: org.Org.ID, Key: fmt.Sprintf("K_%06d", j), Version: 1, CreatedAt: now, UpdatedAt: now}, "value-"+fmt.Sprint(j))
								if err != nil {
									return err
								}
								if err := tx.PutSecret(context.Background(), sec); err != nil {
									return err
								}
							}
							return nil
						})
						require.NoError(b, err)
					}
					runtime.GC()
					stop := peakHeap()
					b.StartTimer()
					res, err := kr.RotateKeys(context.Background(), st, core.RotateOptions{BatchSize: 500, Settle: time.Nanosecond})
					b.StopTimer()
					peak := stop()
					require.NoError(b, err)
					require.EqualValues(b, n, res.Reencrypted)
					b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
					b.ReportMetric(float64(n), "secrets")
				}
			})
		}
	}
}

// BenchmarkPlanGlobalChange: plan and enqueue one global change across N
// running workspaces (decisions, the change's record and its queue of restarts, audit),
// without executing. "restarts": every decision is a restart; "skips": 9 in
// 10 workspaces override the key (overridden), so 1 in 10 restarts.
func BenchmarkPlanGlobalChange(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, n := range []int{10_000, 100_000} {
			for _, mix := range []string{"restarts", "skips"} {
				b.Run(fmt.Sprintf("%s/%dk/%s", engine, n/1000, mix), func(b *testing.B) {
					st, url := openStore(b, engine)
					master, _ := crypto.GenerateMasterKey()
					kr, err := core.OpenKeyring(context.Background(), st, master)
					require.NoError(b, err)
					svc := core.New(st, core.Options{Keys: kr}) // no Start: nothing executes
					org, err := svc.CreateOrg(context.Background(), "acme")
					require.NoError(b, err)
					ws := insertWorkspaces(b, st, org, n)
					want := "restart_queued"
					if mix == "skips" {
						overrideKey(b, st, ws, "API_KEY", func(i int) bool { return i%10 != 0 })
					}
					raw := rawDB(b, engine, url)
					if engine == "postgres" {
						// Statistics, as autovacuum would have them by now: a
						// bulk load leaves the planner guessing empty tables.
						_, err := raw.Exec(`ANALYZE`)
						require.NoError(b, err)
					}
					ctx := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.KindAdmin, OrgID: org.Org.ID, TokenID: org.Token.ID})
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						res, err := svc.SetSecret(ctx, "", "API_KEY", fmt.Sprintf("value-%d", i), false)
						b.StopTimer()
						require.NoError(b, err)
						restarts := 0
						for _, d := range res.Decisions {
							if d.Reason == want {
								restarts++
							}
						}
						if mix == "skips" {
							require.Equal(b, n/10, restarts)
						} else {
							require.Equal(b, n, restarts)
						}
						// The next change finds no restart queued to coalesce into.
						for _, q := range []string{`DELETE FROM restart_jobs`, `DELETE FROM change_restarts`} {
							_, err = raw.Exec(q)
							require.NoError(b, err)
						}
						b.StartTimer()
					}
					b.ReportMetric(float64(n), "workspaces")
				})
			}
		}
	}
}

// overrideKey gives the chosen workspaces (by index) their own secret key,
// written straight to the store (the value is never decrypted here).
func overrideKey(b *testing.B, st store.Store, ws []store.Workspace, key string, pick func(i int) bool) {
	now := time.Now().UTC()
	keys, err := st.ListDataKeys(context.Background())
	require.NoError(b, err)
	require.NotEmpty(b, keys)
	for start := 0; start < len(ws); start += 1000 {
		err := st.InTx(context.Background(), func(tx store.Store) error {
			for i := start; i < start+1000 && i < len(ws); i++ {
				if !pick(i) {
					continue
				}
				sec := store.Secret{OrgID: ws[i].OrgID, WorkspaceID: ws[i].ID, Key: key, KeyID: keys[0].ID,
					Ciphertext: make([]byte, 48), ValueMAC: "mac", Version: 1, CreatedAt: now, UpdatedAt: now}
				if err := tx.PutSecret(context.Background(), sec); err != nil {
					return err
				}
			}
			return nil
		})
		require.NoError(b, err)
	}
}

func rawDB(b *testing.B, engine, url string) *sql.DB {
	driver, dsn := "pgx", url
	if engine == "sqlite" {
		driver, dsn = "sqlite", "file:"+strings.TrimPrefix(url, "sqlite:")+"?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	require.NoError(b, err)
	b.Cleanup(func() { db.Close() })
	return db
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(p*float64(len(s)-1))]
}

// BenchmarkListWorkspacesAPI10k: GET /v1/workspaces of an org holding
// 10,000 workspaces (JSON, stale computed), SQLite store, over loopback.
func BenchmarkListWorkspacesAPI10k(b *testing.B) {
	e := testenv.New(b, testenv.Options{})
	now := time.Now().UTC()
	for start := 0; start < 10_000; start += 1000 {
		err := e.Store.InTx(context.Background(), func(tx store.Store) error {
			for j := start; j < start+1000; j++ {
				w := store.Workspace{ID: ids.New("w"), OrgID: e.Org.Org.ID, ParentID: e.Org.Platform.ID,
					Name: fmt.Sprintf("w%05d", j), Kind: store.KindWorkspace, Runtime: "process", Spec: "{}",
					Status: "stopped", RestartPolicy: "auto", CreatedAt: now, UpdatedAt: now}
				if err := tx.InsertWorkspace(context.Background(), w); err != nil {
					return err
				}
			}
			return nil
		})
		require.NoError(b, err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		list, err := e.Admin.ListWorkspaces(ctx)
		if err != nil || len(list) != 10_001 {
			b.Fatalf("%d workspaces, %v", len(list), err)
		}
	}
}

// listOrg10k is an Env whose org holds 10,000 stopped workspaces besides
// the platform, as BenchmarkListWorkspacesAPI10k sets up.
func listOrg10k(b *testing.B, pg bool) *testenv.Env {
	e := testenv.New(b, testenv.Options{Postgres: pg})
	now := time.Now().UTC()
	for start := 0; start < 10_000; start += 1000 {
		err := e.Store.InTx(context.Background(), func(tx store.Store) error {
			for j := start; j < start+1000; j++ {
				w := store.Workspace{ID: ids.New("w"), OrgID: e.Org.Org.ID, ParentID: e.Org.Platform.ID,
					Name: fmt.Sprintf("w%05d", j), Kind: store.KindWorkspace, Runtime: "process", Spec: `{"command":["agent"]}`,
					Status: "stopped", RestartPolicy: "auto", CreatedAt: now, UpdatedAt: now}
				if err := tx.InsertWorkspace(context.Background(), w); err != nil {
					return err
				}
			}
			return nil
		})
		require.NoError(b, err)
	}
	return e
}

// BenchmarkListWorkspacesPage500: GET /v1/workspaces?limit=500 in an org of
// 10,000 workspaces, over loopback, client decode included; each op is the
// next of the org's 21 pages (so every part of the id range is read).
func BenchmarkListWorkspacesPage500(b *testing.B) {
	for _, pg := range []bool{false, true} {
		b.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(b *testing.B) {
			e := listOrg10k(b, pg)
			ctx := context.Background()
			cursors := []string{""}
			for {
				_, next, err := e.Admin.ListWorkspacesPage(ctx, 500, cursors[len(cursors)-1])
				require.NoError(b, err)
				if next == "" {
					break
				}
				cursors = append(cursors, next)
			}
			require.Len(b, cursors, 21)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				list, _, err := e.Admin.ListWorkspacesPage(ctx, 500, cursors[i%20])
				if err != nil || len(list) != 500 {
					b.Fatalf("%d workspaces, %v", len(list), err)
				}
			}
		})
	}
}

// BenchmarkListWorkspacesWalk10k: all 10,001 workspaces of an org, in pages
// of 500 (as the CLI walks them), over loopback, client decode included.
func BenchmarkListWorkspacesWalk10k(b *testing.B) {
	for _, pg := range []bool{false, true} {
		b.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(b *testing.B) {
			e := listOrg10k(b, pg)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n, pages := 0, 0
				for after := ""; ; pages++ {
					list, next, err := e.Admin.ListWorkspacesPage(ctx, 500, after)
					if err != nil {
						b.Fatal(err)
					}
					n += len(list)
					if next == "" {
						break
					}
					after = next
				}
				if n != 10_001 {
					b.Fatalf("%d workspaces in %d pages", n, pages)
				}
			}
		})
	}
}
