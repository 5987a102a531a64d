package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/store"
)

// The platform supervisor keeps each org's root up. Its rules:
//   - the platform box is never stopped by an automatic path (terminate
//     refuses it);
//   - a platform box known to be dead (exited, or gone by its provisioner's
//     word) is always started again, with capped exponential backoff and no
//     give-up (scheduleRecoveryTx);
//   - a platform box that is alive but late is kept, degraded; a late
//     healthy heartbeat makes it running (follow);
//   - unknown is not dead: a box that cannot be checked (an inspect or
//     adopt error) is degraded with the reason and checked again, never
//     acted on (checkLater).
// The loop below is the backstop of the event-driven paths: whatever left
// a platform failed with nothing queued to bring it back (a job that ran
// out of attempts, a store outage that dropped a scheduling), it finds it.

// supervisePlatforms runs the supervisor's checks until ctx ends.
func (s *Service) supervisePlatforms(ctx context.Context) {
	t := time.NewTicker(s.cfg.PlatformCheckInterval)
	defer t.Stop()
	for {
		s.checkPlatforms(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) checkPlatforms(ctx context.Context) {
	orgs, err := s.store.ListOrgs(ctx)
	if err != nil {
		return
	}
	now := s.clock.Now()
	down := 0
	var longest time.Duration
	for _, o := range orgs {
		pw, err := s.store.GetPlatformWorkspace(ctx, o.ID)
		if err != nil {
			continue
		}
		s.mu.Lock()
		since, seen := s.platformDown[o.ID]
		if pw.Status == StatusRunning {
			delete(s.platformDown, o.ID)
		} else if !seen {
			since = now
			s.platformDown[o.ID] = now
		}
		s.mu.Unlock()
		if pw.Status == StatusRunning {
			continue
		}
		downFor := now.Sub(since)
		longest = max(longest, downFor)
		if downFor > s.cfg.PlatformDownAlert {
			down++
			s.log.Error("the platform workspace is not running", "org_id", o.ID, "workspace_id", pw.ID,
				"status", pw.Status, "for", downFor.Truncate(time.Second).String(), "last_error", pw.LastError)
		}
		if pw.Status == StatusFailed {
			s.recoverPlatform(ctx, pw)
		}
	}
	s.metrics.PlatformNotRunning.Set(longest.Seconds())
	s.metrics.PlatformsDown.Set(float64(down))
}

// recoverPlatform queues the re-provision of a failed platform workspace
// whose box is known to be gone, unless a job is already on it.
func (s *Service) recoverPlatform(ctx context.Context, pw store.Workspace) {
	jobs, err := s.store.ListOpenJobs(ctx, pw.OrgID, pw.ID)
	if err != nil {
		return
	}
	for _, j := range jobs {
		if j.State == store.JobPending || j.State == store.JobRunning {
			return
		}
	}
	if !s.boxGone(ctx, pw) {
		return // alive, or not known to be dead: never act on a guess
	}
	scheduled := false
	err = s.durableTx(func(ctx context.Context, tx store.Store) error {
		if err := tx.LockOrg(ctx, pw.OrgID); err != nil {
			return err
		}
		var err error
		scheduled, err = s.scheduleRecoveryTx(ctx, tx, pw.OrgID, pw.ID, pw.Generation)
		return err
	})
	if err != nil {
		s.log.Error("schedule the platform's recovery", "workspace_id", pw.ID, "err", err)
		return
	}
	if scheduled {
		s.metrics.PlatformRecoveries.Inc()
		s.log.Warn("bringing the platform workspace back", "org_id", pw.OrgID, "workspace_id", pw.ID, "generation", pw.Generation)
		s.kick()
	}
}

// platformTransition counts a committed status change of a platform
// workspace.
func (s *Service) platformTransition(kind, to string) {
	if kind == store.KindPlatform {
		s.metrics.PlatformTransitions.WithLabelValues(to).Inc()
	}
}

// checkLater follows a box whose provisioner could not say whether it is
// alive (an adopt error at start: the engine not up yet, EMFILE reading
// /proc). Unknown is not dead: the workspace is degraded with the reason,
// and the check is tried again with backoff until it answers; then the box
// is watched (alive) or failed and recovered (gone).
func (s *Service) checkLater(w store.Workspace, h provision.Handle, cause error) {
	msg := fmt.Sprintf("cannot check box generation %d: %v; checking again", w.Generation, cause)
	s.log.Warn("box state unknown", "workspace_id", w.ID, "generation", w.Generation, "err", cause)
	if w.Status != StatusDegraded {
		s.setStatus(w.OrgID, w.ID, w.Generation, w.Status, StatusDegraded, msg)
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		for attempt := 0; ; attempt++ {
			t := time.NewTimer(backoff(time.Second, attempt, 30*time.Second))
			select {
			case <-s.bgCtx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			cur, err := s.store.GetWorkspace(s.bgCtx, w.OrgID, w.ID)
			if err != nil {
				continue
			}
			if cur.Generation != w.Generation || !hasBox(cur.Status) {
				return // replaced or stopped meanwhile: nothing to check
			}
			prov := s.provs[w.Runtime]
			if prov == nil {
				return
			}
			st, err := s.provAdopt(s.bgCtx, prov, h)
			switch {
			case err == nil && st.Running:
				s.log.Info("box checked: alive", "workspace_id", w.ID, "generation", w.Generation)
				if cur.Status == StatusDegraded && !isAgentBox(cur) {
					// Degraded only because it could not be checked: it is
					// alive, and a plain box sends no heartbeat to say so.
					s.markHealthy(w.OrgID, w.ID, w.Generation, "checked alive")
					if c, err := s.store.GetWorkspace(s.bgCtx, w.OrgID, w.ID); err == nil {
						cur = c
					}
				}
				if s.claimSupervision(w.ID, w.Generation, false) {
					s.watch(cur, h, false, cur.UpdatedAt)
				}
				return
			case err == nil || errors.Is(err, provision.ErrNotFound):
				why := "box missing after a control-plane restart"
				if err == nil && st.Reason != "" {
					why += ": " + st.Reason
				}
				s.markFailed(w.OrgID, w.ID, w.Generation, "missing", fmt.Sprintf("box generation %d: %s", w.Generation, why), true)
				return
			}
		}
	}()
}
