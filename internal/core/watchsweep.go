package core

import (
	"context"
	"slices"
	"time"

	"github.com/orgplane/orgplane/internal/store"
)

// The box watchers' safety re-read. A watcher is woken when its workspace
// changes (nudge: in-process, or through the store's notifications) and
// reads it then; the safety re-read catches a wake-up that was lost all
// the same. Done by each watcher on a timer of its own, it cost one read
// per box per interval: with thousands of boxes, thousands of reads a
// second, growing with every box a drain of restarts left running. One
// sweep reads the generation and status of all the watched workspaces in
// a statement per batch instead, and wakes only the watchers whose last
// read is behind: they read their workspace again as if nudged.

// watchSweepBatch bounds the ids of one statement of the sweep.
const watchSweepBatch = 1000

// watchSweepEvery is how often the sweep runs: a third of the heartbeat
// timeout while every change wakes the watchers, and every second while
// another replica's changes cannot reach them (the store's notifications
// are down).
func (s *Service) watchSweepEvery() time.Duration {
	if !s.signalled() {
		return time.Second
	}
	return max(s.cfg.HeartbeatTimeout/3, 50*time.Millisecond)
}

// startWatchSweep runs the sweep until the service closes; the first
// watcher starts it (once).
func (s *Service) startWatchSweep() {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.sweepWatches(s.bgCtx)
	}()
}

// sweepSoon asks the sweep for a pass now, and to take up its pace again:
// the notifications were lost or are back.
func (s *Service) sweepSoon() {
	select {
	case s.sweepNow <- struct{}{}:
	default:
	}
}

func (s *Service) sweepWatches(ctx context.Context) {
	t := time.NewTimer(s.watchSweepEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.sweepNow:
		}
		s.sweepWatchesOnce(ctx)
		t.Reset(s.watchSweepEvery())
	}
}

// sweepWatchesOnce reads the workspaces of every watcher and nudges those
// that missed a change. A batch the store cannot read is tried again at the
// next pass, as a watcher's own failed read was.
func (s *Service) sweepWatchesOnce(ctx context.Context) {
	s.mu.Lock()
	watches := make([]*boxWatch, 0, len(s.watches))
	for _, bw := range s.watches {
		watches = append(watches, bw)
	}
	s.mu.Unlock()
	ids := make([]string, 0, min(len(watches), watchSweepBatch))
	for batch := range slices.Chunk(watches, watchSweepBatch) {
		ids = ids[:0]
		for _, bw := range batch {
			ids = append(ids, bw.wsID)
		}
		states, err := s.store.WorkspaceStates(ctx, ids)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("re-read the watched workspaces", "watchers", len(batch), "err", err)
			}
			return
		}
		byID := make(map[string]*store.WorkspaceState, len(states))
		for i := range states {
			byID[states[i].ID] = &states[i]
		}
		for _, bw := range batch {
			if bw.missed(byID[bw.wsID]) {
				bw.nudge()
			}
		}
	}
}

// missed reports whether the watcher's last read is behind st, its
// workspace as the store has it now (nil: not found): it has not read yet,
// or the generation or status moved, or a first heartbeat came (from which
// it follows the heartbeat deadline). A heartbeat that only moves the
// time is the deadline timer's to read, not the sweep's.
func (w *boxWatch) missed(st *store.WorkspaceState) bool {
	seen := w.seen.Load()
	if seen == nil || st == nil {
		return true
	}
	return st.Generation != seen.Generation || st.Status != seen.Status ||
		st.HeartbeatAt.IsZero() != seen.HeartbeatAt.IsZero()
}

// sawStatus records the watcher's own write of its workspace's status, as
// if it had read it back (nothing when it has read nothing yet).
func (w *boxWatch) sawStatus(status string) {
	if seen := w.seen.Load(); seen != nil {
		next := *seen
		next.Status = status
		w.seen.Store(&next)
	}
}
