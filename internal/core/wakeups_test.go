package core_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/fake"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

// quickAgents is a fake whose agent boxes heartbeat from inside Start,
// before Start returns: the first heartbeat always commits before the
// control plane has recorded the box, let alone begun to watch it.
type quickAgents struct {
	*fake.Provisioner
	t testing.TB
}

func (p quickAgents) Start(ctx context.Context, spec provision.Spec) (provision.Handle, error) {
	h, err := p.Provisioner.Start(ctx, spec)
	if err != nil || len(spec.Command) == 0 || spec.Command[len(spec.Command)-1] != "agent" {
		return h, err
	}
	var out client.Workspace
	err = client.New(spec.Env[core.EnvURL], spec.Env[core.EnvToken]).Do(ctx, http.MethodPost,
		"/v1/workspaces/"+spec.WorkspaceID+"/heartbeat",
		map[string]any{"generation": spec.Generation, "fingerprint": spec.Env[core.EnvFingerprint]}, &out)
	if err != nil || out.Status != "running" {
		p.t.Errorf("first heartbeat of %s g%d: %v (status %q)", spec.WorkspaceID, spec.Generation, err, out.Status)
	}
	return h, nil
}

// slowChecks makes the watchers' own store checks and the workers' polls
// come so late that a test passes only if something woke them.
func slowChecks() core.RuntimeConfig {
	rt := fastRuntime()
	rt.HeartbeatTimeout = 3 * time.Hour // a watcher's safety check: after an hour or more
	rt.ProvisionTimeout = time.Hour
	rt.PollInterval = time.Hour
	return rt
}

// The lost wake-up: a box's first heartbeat committed before its watcher
// was registered, so the heartbeat nudged nobody and the restart waited for
// the watcher's next poll of the store. The watcher reads the store once as
// soon as it is registered: the restart succeeds without any later check.
func TestHeartbeatBeforeWatchIsSeen(t *testing.T) {
	t.Parallel()
	provs := map[string]provision.Provisioner{provision.RuntimeProcess: quickAgents{fake.New(), t}}
	e := testenv.New(t, testenv.Options{Runtime: slowChecks(), Provisioners: provs})
	ctx := context.Background()
	waitWS(t, e, e.Org.Platform.ID, "platform running", func(w client.Workspace) bool { return w.Status == "running" })
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "agent"})
	require.NoError(t, err)
	waitWS(t, e, w.ID, "running", func(x client.Workspace) bool { return x.Status == "running" })
	for gen := int64(2); gen <= 4; gen++ {
		job, err := e.Admin.RestartWorkspace(ctx, w.ID, "restart")
		require.NoError(t, err)
		waitJob(t, e, job.ID, store.JobSucceeded)
		require.EqualValues(t, gen, getWS(t, e, w.ID).Generation)
	}
}

// silentSpec: an agent box (no command of its own) that quickAgents does
// not heartbeat for.
var silentSpec = json.RawMessage(`{"env":{"TEST_SILENT_AGENT":"1"}}`)

// mostlyQuickAgents heartbeats at start as quickAgents does, except for the
// boxes of silentSpec.
type mostlyQuickAgents struct{ quickAgents }

func (p mostlyQuickAgents) Start(ctx context.Context, spec provision.Spec) (provision.Handle, error) {
	if spec.Env["TEST_SILENT_AGENT"] != "" {
		return p.Provisioner.Start(ctx, spec)
	}
	return p.quickAgents.Start(ctx, spec)
}

// The lost wake-up after the first read: another replica records a box's
// heartbeat and its notification never arrives. No watcher reads the store
// on a timer of its own any longer; the watchers' shared sweep finds the
// change and wakes the watcher, which then follows the box's heartbeat
// deadline (here: none comes, so the box is degraded).
func TestWatchSweepFindsChangeWhoseWakeUpWasLost(t *testing.T) {
	t.Parallel()
	rt := slowChecks()
	rt.HeartbeatTimeout = 300 * time.Millisecond // the sweep: every 100ms
	provs := map[string]provision.Provisioner{provision.RuntimeProcess: mostlyQuickAgents{quickAgents{fake.New(), t}}}
	e := testenv.New(t, testenv.Options{Runtime: rt, Provisioners: provs})
	ctx := context.Background()
	waitWS(t, e, e.Org.Platform.ID, "platform running", func(w client.Workspace) bool { return w.Status == "running" })
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "silent", Spec: silentSpec})
	require.NoError(t, err)
	var cur store.Workspace
	e.Eventually(10*time.Second, func() bool {
		cur, err = e.Store.GetWorkspace(ctx, e.Org.Org.ID, w.ID)
		return err == nil && cur.Status == "provisioning" && cur.Box != ""
	}, "the silent box started and recorded")

	// Straight into the store, as another replica's heartbeat would be
	// written: nothing in this process is told.
	require.NoError(t, e.Store.InTx(ctx, func(tx store.Store) error {
		cur, err := tx.GetWorkspaceForUpdate(ctx, e.Org.Org.ID, w.ID)
		if err != nil {
			return err
		}
		now := time.Now()
		cur.Status, cur.HealthyAt, cur.HeartbeatAt, cur.UpdatedAt = "running", now, now, now
		return tx.UpdateWorkspace(ctx, cur)
	}))
	got := waitWS(t, e, w.ID, "degraded by its watcher", func(x client.Workspace) bool { return x.Status == "degraded" })
	require.Contains(t, got.LastError, "no heartbeat")
}

func waitJob(t *testing.T, e *testenv.Env, id, state string) store.RestartJob {
	t.Helper()
	var j store.RestartJob
	e.Eventually(30*time.Second, func() bool {
		var err error
		j, err = e.Store.GetJob(context.Background(), e.Org.Org.ID, id)
		return err == nil && j.Finished()
	}, "job %s finished (%+v)", id, &j)
	require.Equal(t, state, j.State, "job %s: %s", id, j.Error)
	return j
}

// notWorking is a second replica on e's store that serves calls but runs no
// background work (no job workers, no listener): what it queues, only the
// store's notifications can announce to e.
func notWorking(t *testing.T, e *testenv.Env) (*core.Service, context.Context) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, e.DBURL)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	keys, err := core.OpenKeyring(ctx, st, e.MasterKey)
	require.NoError(t, err)
	s := core.New(st, core.Options{Keys: keys, Runtime: slowChecks()})
	return s, auth.WithPrincipal(ctx, auth.Principal{Kind: auth.KindAdmin, OrgID: e.Org.Org.ID, TokenID: e.Org.Token.ID})
}

func listenerConnects(e *testenv.Env) float64 {
	return metric(e.T.(*testing.T), e.Service.Metrics().Registry, "orgplane_store_listener_connects_total", nil)
}

// Replicas on Postgres: a restart queued through one replica is claimed by
// another at once, woken by the store's notification, not at its next
// poll (an hour away here). The listener reconnects after its connection
// is killed, and then wakes the replica again.
func TestReplicaClaimsJobQueuedElsewhere(t *testing.T) {
	t.Parallel()
	provs := map[string]provision.Provisioner{provision.RuntimeProcess: quickAgents{fake.New(), t}}
	b := testenv.New(t, testenv.Options{Postgres: true, Runtime: slowChecks(), Provisioners: provs})
	ctx := context.Background()
	w, err := b.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "worker", Spec: plainSpec})
	require.NoError(t, err)
	waitWS(t, b, w.ID, "running", func(x client.Workspace) bool { return x.Status == "running" })
	b.Eventually(10*time.Second, func() bool { return listenerConnects(b) >= 1 }, "replica b listens")

	a, actx := notWorking(t, b)
	job, err := a.RestartWorkspace(actx, w.ID, "queued on a")
	require.NoError(t, err)
	waitJob(t, b, job.ID, store.JobSucceeded)
	require.EqualValues(t, 2, getWS(t, b, w.ID).Generation)

	// Kill b's listener connection; it comes back by itself.
	db, err := sql.Open("pgx", b.DBURL)
	require.NoError(t, err)
	defer db.Close()
	var killed int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()) k`, store.ListenerApplicationName).Scan(&killed))
	require.Equal(t, 1, killed, "one listener connection for the one replica that listens")
	b.Eventually(20*time.Second, func() bool {
		return listenerConnects(b) >= 2 && metric(t, b.Service.Metrics().Registry, "orgplane_store_listener_connected", nil) == 1
	}, "replica b listens again")
	job, err = a.RestartWorkspace(actx, w.ID, "queued on a after the reconnection")
	require.NoError(t, err)
	waitJob(t, b, job.ID, store.JobSucceeded)
	require.EqualValues(t, 3, getWS(t, b, w.ID).Generation)
}

// sse reads an event stream and sends each data line.
func sse(t *testing.T, url, token string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := make(chan string, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				select {
				case out <- data:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); resp.Body.Close(); <-done })
	return out
}

// waitData waits for a data line that contains every part.
func waitData(t *testing.T, lines <-chan string, what string, parts ...string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l := <-lines:
			all := true
			for _, p := range parts {
				all = all && strings.Contains(l, p)
			}
			if all {
				return
			}
		case <-timeout:
			t.Fatalf("no event: %s", what)
		}
	}
}

// Replicas on Postgres: an event stream on one replica shows the changes
// made through another, once each.
func TestReplicaStreamsOtherReplicasEvents(t *testing.T) {
	t.Parallel()
	provs := map[string]provision.Provisioner{provision.RuntimeProcess: quickAgents{fake.New(), t}}
	a := testenv.New(t, testenv.Options{Postgres: true, Runtime: fastRuntime(), Provisioners: provs})
	b := replica(t, a, fastRuntime(), provs)
	for _, e := range []*testenv.Env{a, b} {
		e.Eventually(10*time.Second, func() bool { return listenerConnects(e) >= 1 }, "replica listens")
	}
	onB := sse(t, b.URL, a.AdminToken)
	local, cancel := a.Service.Events().Subscribe(a.Org.Org.ID)
	defer cancel()
	ctx := context.Background()
	start := false
	w, err := a.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "made-on-a", Start: &start})
	require.NoError(t, err)
	waitData(t, onB, "b streams a's workspace.create", `"workspace.create"`, w.ID)

	// b's change reaches a after a's own event went out through the store:
	// a echo of it would have come back to a by now.
	name := "renamed-on-b"
	_, err = b.Admin.PatchWorkspace(ctx, w.ID, client.PatchWorkspace{Name: &name})
	require.NoError(t, err)
	creates := 0
	timeout := time.After(20 * time.Second)
	for updated := false; !updated; {
		select {
		case ev := <-local:
			creates += btoi(ev.Type == "workspace.create" && ev.TargetID == w.ID)
			updated = ev.Type == "workspace.update" && ev.TargetID == w.ID
		case <-timeout:
			t.Fatal("a never saw b's workspace.update")
		}
	}
	require.Equal(t, 1, creates, "a's own event once, not echoed back")
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
