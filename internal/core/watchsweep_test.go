package core

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/store"
)

// The sweep wakes exactly the watchers whose last read is behind the
// store: a change whose wake-up was lost, a watcher that has not read (or
// could not), a workspace gone; not a heartbeat that only moved the time.
func TestWatchSweepWakesWatchersBehind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "orgplane.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	s := New(st, Options{})
	t0 := time.Now().UTC().Truncate(time.Second)
	org := store.Org{ID: "o-sweep", Name: "acme", CreatedAt: t0}
	require.NoError(t, st.CreateOrg(ctx, org))
	platform := store.Workspace{ID: "w-platform", OrgID: org.ID, Name: "platform", Kind: store.KindPlatform,
		Runtime: RuntimeProcess, Spec: "{}", Status: StatusRunning, RestartPolicy: "auto", CreatedAt: t0, UpdatedAt: t0}
	require.NoError(t, st.InsertWorkspace(ctx, platform))

	type row struct {
		gen    int64
		status string
		beat   time.Time
	}
	cases := []struct {
		name   string
		seen   *row // the watcher's last read; nil: none
		stored *row // the workspace now; nil: not in the store
		wake   bool
	}{
		{"current", &row{2, StatusRunning, t0}, &row{2, StatusRunning, t0}, false},
		{"heartbeat moved on", &row{2, StatusRunning, t0}, &row{2, StatusRunning, t0.Add(time.Second)}, false},
		{"healthy elsewhere, wake-up lost", &row{2, StatusProvisioning, time.Time{}}, &row{2, StatusRunning, t0}, true},
		{"first heartbeat", &row{2, StatusRunning, time.Time{}}, &row{2, StatusRunning, t0}, true},
		{"restarted elsewhere", &row{2, StatusRunning, t0}, &row{3, StatusProvisioning, time.Time{}}, true},
		{"stopped elsewhere", &row{2, StatusRunning, t0}, &row{2, StatusStopped, t0}, true},
		{"not read yet", nil, &row{2, StatusRunning, t0}, true},
		{"gone", &row{2, StatusRunning, t0}, nil, true},
	}
	// More watchers than one statement takes, all current: the cases are
	// found whatever batch they fall in, and nobody else is woken.
	var filler []*boxWatch
	require.NoError(t, st.InTx(ctx, func(tx store.Store) error {
		for i := range watchSweepBatch + 10 {
			w := store.Workspace{ID: fmt.Sprintf("w-fill-%05d", i), OrgID: org.ID, ParentID: platform.ID, Name: fmt.Sprintf("fill%d", i),
				Kind: store.KindWorkspace, Runtime: RuntimeProcess, Spec: "{}", Status: StatusRunning, RestartPolicy: "auto",
				Generation: 1, CreatedAt: t0, UpdatedAt: t0}
			if err := tx.InsertWorkspace(ctx, w); err != nil {
				return err
			}
			filler = append(filler, s.testWatch(w.ID, &store.WorkspaceState{ID: w.ID, Generation: 1, Status: StatusRunning}))
		}
		return nil
	}))
	watches := map[string]*boxWatch{}
	for i, c := range cases {
		id := fmt.Sprintf("w-case-%d", i)
		if c.stored != nil {
			require.NoError(t, st.InsertWorkspace(ctx, store.Workspace{ID: id, OrgID: org.ID, ParentID: platform.ID, Name: id, Kind: store.KindWorkspace,
				Runtime: RuntimeProcess, Spec: "{}", Status: c.stored.status, RestartPolicy: "auto", Generation: c.stored.gen,
				HeartbeatAt: c.stored.beat, CreatedAt: t0, UpdatedAt: t0}))
		}
		var seen *store.WorkspaceState
		if c.seen != nil {
			seen = &store.WorkspaceState{ID: id, Generation: c.seen.gen, Status: c.seen.status, HeartbeatAt: c.seen.beat}
		}
		watches[c.name] = s.testWatch(id, seen)
	}

	s.sweepWatchesOnce(ctx)
	for _, c := range cases {
		require.Equal(t, c.wake, woken(watches[c.name]), "%s: woken", c.name)
	}
	for _, bw := range filler {
		require.False(t, woken(bw), "current watcher %s woken", bw.wsID)
	}
}

// testWatch registers a watcher of wsID that last read seen; no goroutine
// follows it: the test reads its wake-ups.
func (s *Service) testWatch(wsID string, seen *store.WorkspaceState) *boxWatch {
	bw := &boxWatch{wsID: wsID, beat: make(chan struct{}, 1), result: make(chan error, 1)}
	bw.seen.Store(seen)
	s.mu.Lock()
	s.watches[wsID] = bw
	s.mu.Unlock()
	return bw
}

func woken(bw *boxWatch) bool {
	select {
	case <-bw.beat:
		return true
	default:
		return false
	}
}
