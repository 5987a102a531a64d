package propagation_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
	"github.com/orgplane/orgplane/internal/pgtest"
)

// TestTwoServersShareOneFanOut runs two `orgplane serve` replicas on one
// Postgres database, both with restart workers, and rotates a global secret
// across 40 reference-agent workspaces twice (through one replica, then
// the other, the second as soon as the first is applied): every workspace
// is restarted exactly once per rotation, and the running-job count sampled
// from the database never exceeds the cap, across replicas.
func TestTwoServersShareOneFanOut(t *testing.T) {
	t.Parallel()
	const n, limit = 40, 4
	dsn := pgtest.URL(t)
	key := masterKey(t)
	env := []string{"ORGPLANE_MASTER_KEY=" + key}
	out, errOut, code := e2etest.CLI(t, t.TempDir(), env, "org", "create", "acme", "--db", dsn, "--json")
	require.Equal(t, 0, code, errOut)
	var org struct {
		OrgID      string `json:"org_id"`
		PlatformID string `json:"platform_workspace_id"`
		AdminToken string `json:"admin_token"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &org))

	flags := []string{"--coalesce-window", "300ms", "--max-concurrent-restarts", "4", "--max-concurrent-restarts-per-org", "4"}
	a := serve(t, dsn, key, org.AdminToken, flags...)
	// The first replica starts the platform box (it was created by the
	// operator command); the second adopts it.
	a.waitWS(org.PlatformID, 30*time.Second, "platform running", func(w client.Workspace) bool { return w.Status == "running" })
	b := serve(t, dsn, key, org.AdminToken, flags...)
	require.Equal(t, a.platformID, b.platformID)

	ids := a.createAgents("agent", n, 20)
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })

	// Sample the running jobs every 20ms through the whole fan-out.
	var (
		mu      sync.Mutex
		maxSeen int
		samples int
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var c int
			if err := db.QueryRow(`SELECT count(*) FROM restart_jobs WHERE state = 'running'`).Scan(&c); err == nil {
				mu.Lock()
				maxSeen, samples = max(maxSeen, c), samples+1
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	// Two rotations, the second as soon as the first is applied everywhere
	// (while the queue may still hold leftovers of the first).
	values := []string{randomValue(t), randomValue(t)}
	var final map[string]client.Workspace
	for round, value := range values {
		via := []*plane{b, a}[round]
		res, err := via.admin.SetSecret(bg, "", "SHARED_KEY", value, false)
		require.NoError(t, err)
		ds := decisionsByWS(res)
		require.Equal(t, "platform_root", ds[org.PlatformID].Reason)
		coalesced := 0
		for _, id := range ids {
			require.Equal(t, "restart", ds[id].Action, "rotation %d: %s", round+1, id)
			if round == 0 {
				require.Equal(t, "restart_queued", ds[id].Reason)
			}
			if ds[id].Reason == "coalesced" {
				coalesced++
			}
		}
		t.Logf("rotation %d: %d decisions coalesced into a pending job", round+1, coalesced)
		gen := int64(round + 2)
		final = a.waitAll(ids, 2*time.Minute, fmt.Sprintf("rotation %d applied", round+1), func(w client.Workspace) bool {
			return w.Status == "running" && w.Generation >= gen && !w.Stale
		})
	}
	var left int
	eventually(t, 30*time.Second, func() bool {
		return db.QueryRow(`SELECT count(*) FROM restart_jobs WHERE state IN ('pending', 'running')`).Scan(&left) == nil && left == 0
	}, func() string { return "jobs still pending or running" })
	close(stop)
	<-sampled
	mu.Lock()
	t.Logf("running jobs: at most %d over %d samples", maxSeen, samples)
	require.LessOrEqual(t, maxSeen, limit, "more restarts in flight than the cap, across replicas")
	require.Positive(t, maxSeen)
	mu.Unlock()

	boxes := map[string][]box{}
	for _, bs := range []map[string][]box{scanBoxes(a.url), scanBoxes(b.url)} {
		for id, x := range bs {
			boxes[id] = append(boxes[id], x...)
		}
	}
	for _, id := range ids {
		require.EqualValues(t, 3, final[id].Generation, "workspace %s restarted exactly once per rotation", id)
		require.Len(t, boxes[id], 1, "workspace %s: one box process", id)
		require.EqualValues(t, 3, boxes[id][0].gen())
		require.True(t, boxes[id][0].env["SHARED_KEY"] == values[1], "workspace %s runs the last value", id) // never print it
		ok := 0
		for _, j := range a.restarts(id) {
			if j.State == "succeeded" {
				ok++
			}
		}
		require.Equal(t, 2, ok, "workspace %s: one succeeded restart per rotation", id)
	}
	// Who did the work: each job keeps its last lease owner.
	rows, err := db.Query(`SELECT lease_owner, count(*) FROM restart_jobs WHERE automatic = 1 AND state = 'succeeded' GROUP BY lease_owner`)
	require.NoError(t, err)
	owners := map[string]int{}
	for rows.Next() {
		var o string
		var c int
		require.NoError(t, rows.Scan(&o, &c))
		owners[o] = c
	}
	require.NoError(t, rows.Err())
	rows.Close()
	// Not asserted: which replica does the work is a race. Workers claim
	// the next job as soon as they finish one, so the replica that claims
	// first usually keeps the cap full and the other's backup poll (1s)
	// finds no room. What holds, and is checked, is exactly-once and the cap.
	t.Logf("restarts by replica (lease owner): %v", owners)
	require.NotEmpty(t, owners)
	// Known bug, not asserted (see the report of the propagation tests): a
	// box started by one replica and stopped by another's restart is
	// recorded as failed by the first one's watcher (box.failed, a failure
	// metric, a recovery job that is then superseded).
	failures := 0
	for _, id := range ids {
		failures += countAction(a.audit(id), "box.failed")
	}
	t.Logf("box.failed entries during the two rotations: %d", failures)
	require.Equal(t, 2*n, metricSum(t, "orgplane_restarts_total", `outcome="succeeded"`, a.url, b.url))
}

func metricSum(t *testing.T, name, label string, urls ...string) int {
	t.Helper()
	sum := 0.0
	for _, u := range urls {
		sum += metric(t, u, name, label)
	}
	return int(sum)
}
