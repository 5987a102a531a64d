package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/store"
)

// Reasons of jobs that are not propagation decisions.
const (
	ReasonAdminRestart = "admin_restart"
	ReasonBoxFailed    = "box_failed"
)

// Start runs the background work: adopting the boxes a previous run left,
// and the restart workers. Close stops it.
func (s *Service) Start(ctx context.Context) error {
	release, err := s.store.LockServer()
	if err != nil {
		return err
	}
	s.unlockServer = release
	started := false
	defer func() {
		if !started {
			release()
		}
	}()
	if s.store.Dialect() == store.SQLite {
		// The embedded store has one server: jobs still marked running
		// belonged to a run that died; resume them now, not after a lease.
		if n, err := s.store.ExpireLeases(ctx); err != nil {
			return err
		} else if n > 0 {
			s.log.Info("resuming restart jobs of the previous run", "jobs", n)
		}
		// The same holds for its supervision leases.
		if err := s.store.ClearSupervision(ctx); err != nil {
			return err
		}
	}
	if err := s.reconcile(ctx); err != nil {
		return fmt.Errorf("adopt boxes: %w", err)
	}
	if s.notifier != nil {
		s.fwd = make(chan Event, 1024)
		s.events.setForward(s.queueForward)
		s.bg.Add(2)
		go func() {
			defer s.bg.Done()
			s.listen(s.bgCtx)
		}()
		go func() {
			defer s.bg.Done()
			s.forwardEvents(s.bgCtx)
		}()
	}
	for i := 0; i < s.cfg.MaxConcurrentRestarts; i++ {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			s.worker(s.bgCtx)
		}()
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.housekeeping(s.bgCtx)
	}()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.supervisePlatforms(s.bgCtx)
	}()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.superviseBoxes(s.bgCtx)
	}()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.sweepApprovals(s.bgCtx)
	}()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.pruneHistory(s.bgCtx)
	}()
	started = true
	return nil
}

// Close stops the background work. Boxes keep running: a control-plane
// restart neither kills nor duplicates them.
func (s *Service) Close() {
	s.stop()
	s.events.setForward(nil)
	s.bg.Wait()
	// Hand the boxes over at once: the leases end now rather than lapse.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.RenewSupervision(ctx, s.owner, time.Time{}); err != nil {
		s.log.Warn("hand over box supervision", "err", err)
	}
	// And the restarts this replica had in flight: another replica (or
	// this one's successor) resumes them now, not after the lease.
	if n, err := s.store.ReleaseLeases(ctx, s.owner); err != nil {
		s.log.Warn("hand over restart jobs", "err", err)
	} else if n > 0 {
		s.log.Info("handed over restart jobs in flight", "jobs", n)
	}
	if s.unlockServer != nil {
		s.unlockServer()
	}
}

// worker claims and executes restart jobs until ctx ends. The caps are
// checked in the store when a job is claimed, so they hold across replicas.
func (s *Service) worker(ctx context.Context) {
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	for {
		for {
			if ctx.Err() != nil {
				return
			}
			now := s.clock.Now()
			j, err := s.store.ClaimJob(ctx, s.owner, now, now.Add(s.cfg.JobLease), store.ClaimLimits{
				MaxRunning: s.cfg.MaxConcurrentRestarts, MaxRunningPerOrg: s.cfg.MaxConcurrentRestartsPerOrg,
				QueuedReason: propagation.ReasonRestartQueued, MaxAttempts: s.cfg.MaxProvisionRetries,
				SkipQueued: s.holdQueue != nil && s.holdQueue(),
			})
			if err != nil {
				if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
					s.log.Warn("claim restart job", "err", err)
				}
				break
			}
			s.kick() // there may be more: another idle worker looks too
			s.execute(ctx, j)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-poll.C:
		}
	}
}

// execute runs one claimed job to a final state (or back to pending for a
// retry). Its lease is renewed while it runs; losing it stops the work.
func (s *Service) execute(parent context.Context, j store.RestartJob) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	s.metrics.RestartsInFlight.Inc()
	defer s.metrics.RestartsInFlight.Dec()
	leaseUntil := j.LeaseUntil
	go func() {
		t := time.NewTicker(s.cfg.JobLease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				now := s.clock.Now()
				err := s.store.RenewLease(ctx, j.ID, s.owner, now.Add(s.cfg.JobLease))
				switch {
				case err == nil:
					leaseUntil = now.Add(s.cfg.JobLease)
				case errors.Is(err, store.ErrNotFound) || !now.Before(leaseUntil):
					// Taken over, or expired while the store was away: another
					// replica may run the job now, so this one stops.
					s.log.Warn("lost the lease of a restart job", "job_id", j.ID, "err", err)
					cancel()
					return
				default:
					// A transient error: the lease still holds; try again on
					// the next tick rather than abort a restart midway.
					s.log.Warn("renew the lease of a restart job; will retry", "job_id", j.ID, "err", err)
				}
			}
		}
	}()
	started := s.clock.Now()
	s.events.Publish(Event{OrgID: j.OrgID, Type: "restart.running", WorkspaceID: j.WorkspaceID, TargetID: j.ID, Reason: j.Reason,
		ChangeID: j.ChangeID})
	end := s.run(ctx, j)
	if parent.Err() != nil && end.state == "" {
		return // shutting down: the lease expires and a replica resumes the job
	}
	s.finish(j, end, started)
}

// jobEnd is how a job's work ended: a final state (or "" when the worker
// stopped mid-way), the reason, the error; final forbids a retry.
type jobEnd struct {
	state, reason, err string
	final              bool
}

func ended(state, reason, errMsg string) jobEnd {
	return jobEnd{state: state, reason: reason, err: errMsg}
}

// run does the job's work and says how it ended.
func (s *Service) run(ctx context.Context, j store.RestartJob) jobEnd {
	unlock := s.lockWS(j.WorkspaceID)
	defer unlock()
	w, err := s.store.GetWorkspace(ctx, j.OrgID, j.WorkspaceID)
	if err != nil {
		if ctx.Err() != nil {
			return jobEnd{}
		}
		if errors.Is(err, store.ErrNotFound) {
			return ended(store.JobSkipped, propagation.ReasonRemoved, "")
		}
		// Fail closed: facts that cannot be read never lead to a restart.
		return ended(store.JobSkipped, propagation.ReasonKindUnknown, "read workspace: "+err.Error())
	}
	resumed := j.Generation != 0 && w.Generation == j.Generation
	switch {
	case resumed:
		// A replica crashed after recording this job's generation: adopt
		// that box rather than start another — even one whose handle it
		// had no time to record.
		h, ok := currentHandle(w)
		if !ok {
			h, ok = s.findBox(ctx, w)
		}
		if ok && s.sees(w.Runtime, h) {
			if prov := s.provs[w.Runtime]; prov != nil {
				st, err := s.provAdopt(ctx, prov, h)
				switch {
				case err == nil && st.Running:
					if w.Status == StatusRunning {
						return ended(store.JobSucceeded, j.Reason, "")
					}
					s.claimSupervision(w.ID, w.Generation, true)
					bw := s.watch(w, h, true, w.UpdatedAt)
					return s.await(ctx, bw)
				case err != nil && !errors.Is(err, provision.ErrNotFound) && ctx.Err() == nil:
					// Unknown is not dead: the box this job started may be
					// alive. Restarting it again on a guess would stop it; it
					// is checked again later instead, and the job ends.
					s.checkLater(w, h, err)
					return jobEnd{state: store.JobFailed, reason: j.Reason, final: true,
						err: "cannot check the box this restart started (it is checked again): " + err.Error()}
				}
				// Gone: provision afresh below.
			}
		}
	case j.Automatic:
		// The rules again, at execution: the world may have changed since
		// the job was queued.
		if d := s.recheck(ctx, j, w); d.Action != propagation.ActionRestart {
			return ended(store.JobSkipped, d.Reason, "")
		}
	case j.RequestedBy == "" && j.Reason == ReasonBoxFailed:
		// Recovery of a dead box: moot if the box is back or replaced.
		if w.Status != StatusFailed {
			// Unless secret changes were merged into
			// this job while it was pending (decisions "coalesced"): they were
			// promised a restart, so the rules decide, as for an automatic
			// job. Superseding it dropped them and left the box stale; seen
			// when another replica's restart made this replica's watcher
			// record a failure and queue this recovery.
			if !hasBox(w.Status) || !j.Merged {
				return ended(store.JobSuperseded, j.Reason, "the box was replaced meanwhile")
			}
			if d := s.recheck(ctx, j, w); d.Action != propagation.ActionRestart {
				return ended(store.JobSkipped, d.Reason, "")
			}
		}
	default:
		if !hasBox(w.Status) && w.Status != StatusFailed && w.Status != StatusStopped {
			return ended(store.JobSkipped, w.Status, "")
		}
	}
	if w.Runtime == RuntimeExternal {
		return ended(store.JobSkipped, propagation.ReasonExternalRuntime, "")
	}
	explicit := !j.Automatic && j.RequestedBy != ""
	// A box known to be gone is only cleaned up (an exited container is
	// removed): bringing back a dead platform box terminates nothing, and
	// the guard would refuse a stop and leave the org root down. A live
	// platform box is still never stopped automatically, and one that
	// cannot be checked is not known to be gone.
	if (hasBox(w.Status) || w.Status == StatusFailed) && s.boxGone(ctx, w) {
		s.cleanUpGone(ctx, w)
	} else if hasBox(w.Status) || w.Status == StatusFailed {
		if err := s.stopCurrent(ctx, w, explicit); err != nil {
			if errors.Is(err, ErrPlatformStop) {
				return ended(store.JobSkipped, propagation.ReasonPlatformRoot, "")
			}
			return ended(store.JobFailed, j.Reason, err.Error())
		}
	}
	// A resumed job whose box never started provisions its recorded
	// generation: one restart, not two generations.
	bw, err := s.startBox(ctx, j.OrgID, j.WorkspaceID, w.Generation, resumed, "restart:"+j.Reason, true, func(tx store.Store, gen int64) error {
		j.Generation = gen
		cur, err := tx.GetJobForUpdate(ctx, j.OrgID, j.ID)
		if err != nil {
			return err
		}
		if cur.LeaseOwner != s.owner || cur.State != store.JobRunning {
			return errors.New("lost the job's lease")
		}
		cur.Generation, cur.UpdatedAt = gen, s.clock.Now()
		return tx.UpdateJob(ctx, cur)
	})
	if errors.Is(err, errSuperseded) {
		// Another replica's restart or a resume moved the workspace on
		// since it was read: its box is the current one; this job is moot.
		return ended(store.JobSuperseded, j.Reason, err.Error())
	}
	if err != nil {
		if ctx.Err() != nil {
			return jobEnd{}
		}
		// The error's own text, not AsError's (which would say "internal
		// error"): it is the message markFailed put in the workspace's
		// last_error, and provisioner errors are already redacted.
		return ended(store.JobFailed, j.Reason, err.Error())
	}
	return s.await(ctx, bw)
}

// updateJob writes a job back; when this ends a change's restart job, the
// change's progress counts it, in the same transaction.
func (s *Service) updateJob(ctx context.Context, tx store.Store, from string, j store.RestartJob) error {
	if err := tx.UpdateJob(ctx, j); err != nil {
		return err
	}
	wasOpen := from == store.JobPending || from == store.JobRunning
	if !wasOpen || !j.Finished() || j.ChangeID == "" || !j.Automatic {
		return nil
	}
	if err := tx.RecordChangeOutcome(ctx, j.OrgID, j.ChangeID, j.State, j.UpdatedAt); err != nil {
		return err
	}
	return s.noteChangeFinished(ctx, tx, j.OrgID, j.ChangeID)
}

// boxGone reports whether the workspace's recorded box is known not to be
// running (exited, or not found by its provisioner).
func (s *Service) boxGone(ctx context.Context, w store.Workspace) bool {
	h, ok := currentHandle(w)
	if !ok {
		return true
	}
	prov := s.provs[w.Runtime]
	if prov == nil || !s.sees(w.Runtime, h) {
		return false // not known: another node's box, or no provisioner here
	}
	st, err := s.provInspect(ctx, prov, h)
	return (err == nil && !st.Running) || errors.Is(err, provision.ErrNotFound)
}

// await waits for a box's first outcome, with a margin over the
// provision deadline that its watcher enforces. A platform box kept
// running although late ends the job failed, with no retry: a retry would
// stop a live platform box.
func (s *Service) await(ctx context.Context, bw *boxWatch) jobEnd {
	t := time.NewTimer(s.cfg.ProvisionTimeout + 10*time.Second)
	defer t.Stop()
	select {
	case err := <-bw.result:
		if err != nil {
			return jobEnd{state: store.JobFailed, err: err.Error(), final: bw.kept.Load()}
		}
		return jobEnd{state: store.JobSucceeded}
	case <-t.C:
		return jobEnd{state: store.JobFailed, err: "no outcome from the box watcher"}
	case <-ctx.Done():
		return jobEnd{}
	}
}

// recheck applies the propagation rules to an automatic job at execution.
func (s *Service) recheck(ctx context.Context, j store.RestartJob, w store.Workspace) propagation.Decision {
	since := s.clock.Now().Add(-s.cfg.LoopWindow)
	f, err := s.store.GetPropagationFacts(ctx, j.OrgID, j.WorkspaceID, "", since)
	if err != nil {
		return propagation.Decide(propagation.Target{WorkspaceID: j.WorkspaceID}, propagation.Caller{}, s.limits())
	}
	t := targetOf(f)
	t.PendingRestart = false
	if t.RecentAutoRestarts > s.limits().MaxAutoRestarts && !t.LoopBroken {
		// An admin restart lifts the breaker.
		t.RecentAutoRestarts = s.autoRestartsSinceAdmin(ctx, s.store, j.OrgID, j.WorkspaceID, since, t.RecentAutoRestarts)
	}
	if t.RecentAutoRestarts > 0 {
		t.RecentAutoRestarts-- // this job counts itself once claimed
	}
	if t.Status == StatusFailed && j.Attempts > 1 {
		t.Status = StatusRunning // failed by this job's own previous attempt: retry it
	}
	if hasBox(w.Status) {
		if cur, err := s.currentFingerprint(ctx, j.OrgID, j.WorkspaceID); err == nil && cur == w.BoxFingerprint {
			t.Unchanged = true // e.g. the change was reverted within the window
		}
	}
	d := propagation.Decide(t, propagation.Caller{Workspace: j.CallerWorkspaceID}, s.limits())
	if d.Reason == propagation.ReasonLoopBreaker {
		s.setLoopBroken(j.OrgID, j.WorkspaceID)
	}
	return d
}

func (s *Service) currentFingerprint(ctx context.Context, orgID, wsID string) (string, error) {
	macs := map[string]string{}
	for _, scope := range []string{"", wsID} {
		list, err := s.store.ListSecrets(ctx, orgID, scope)
		if err != nil {
			return "", err
		}
		for _, x := range list {
			macs[x.Key] = x.ValueMAC
		}
	}
	return s.keys.Fingerprint(macs), nil
}

func (s *Service) setLoopBroken(orgID, wsID string) {
	err := s.durableTx(func(ctx context.Context, tx store.Store) error {
		w, err := tx.GetWorkspaceForUpdate(ctx, orgID, wsID)
		if err != nil || w.LoopBroken {
			return err
		}
		w.LoopBroken = true
		return tx.UpdateWorkspace(ctx, w)
	})
	if err != nil {
		s.log.Error("flag loop breaker", "workspace_id", wsID, "err", err)
	}
}

// finish records a job's outcome on a fresh context, with its audit entry
// and metrics; a failed attempt with retries left goes back to pending with
// backoff.
func (s *Service) finish(j store.RestartJob, end jobEnd, started time.Time) {
	state, reason, errMsg := end.state, end.reason, end.err
	now := s.clock.Now()
	if reason == "" {
		reason = j.Reason
	}
	canRetry := state == store.JobFailed && j.Attempts < j.MaxAttempts && !end.final
	retry := canRetry
	changed := &changeEvents{}
	err := s.durableTx(func(ctx context.Context, tx store.Store) error {
		retry = canRetry
		changed.evs = nil
		ctx = withChangeEvents(ctx, changed)
		if err := tx.LockOrg(ctx, j.OrgID); err != nil {
			return err
		}
		cur, err := tx.GetJobForUpdate(ctx, j.OrgID, j.ID)
		if err != nil {
			return err
		}
		if cur.LeaseOwner != s.owner || cur.State != store.JobRunning {
			return nil // another replica took it over
		}
		gen := cur.Generation
		cur.Reason, cur.Error, cur.UpdatedAt, cur.LeaseUntil = reason, errMsg, now, time.Time{}
		action := "restart." + state
		if retry {
			if _, perr := tx.GetPendingJob(ctx, j.WorkspaceID); perr == nil {
				retry = false // a newer pending restart will apply everything
			}
		}
		if retry {
			cur.State, cur.LeaseOwner = store.JobPending, ""
			cur.RunAfter = now.Add(s.cfg.RetryBackoff << (cur.Attempts - 1))
			// The next attempt provisions a new box; a recorded generation
			// would make it adopt this attempt's failed one instead.
			cur.Generation = 0
			action = "restart.retry"
		} else {
			cur.State, cur.FinishedAt = state, now
		}
		if err := s.updateJob(ctx, tx, store.JobRunning, cur); err != nil {
			return err
		}
		if !retry && state == store.JobFailed && j.Reason == ReasonBoxFailed && j.RequestedBy == "" && gen > 0 {
			// A recovery job has one attempt and owns the box it provisions,
			// so neither boxExited nor the provision deadline queues the next
			// recovery when that box fails too; it is queued here, and
			// scheduleRecoveryTx applies the bound (then box.gave_up).
			if _, err := s.scheduleRecoveryTx(ctx, tx, j.OrgID, j.WorkspaceID, gen); err != nil {
				return err
			}
		}
		if state == store.JobSucceeded && !j.Automatic && j.RequestedBy != "" {
			// An admin's explicit restart clears the loop breaker.
			if w, err := tx.GetWorkspaceForUpdate(ctx, j.OrgID, j.WorkspaceID); err == nil && w.LoopBroken {
				w.LoopBroken = false
				if err := tx.UpdateWorkspace(ctx, w); err != nil {
					return err
				}
			}
		}
		outcome := "ok"
		if state == store.JobFailed {
			outcome = "failed"
		}
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(j.OrgID), auditEvent{
			Action: action, TargetKind: "restart_job", TargetID: j.ID, WorkspaceID: j.WorkspaceID,
			Detail: map[string]any{"reason": reason, "attempt": cur.Attempts, "generation": gen,
				"automatic": j.Automatic, "change_id": j.ChangeID, "error": errMsg},
		}, outcome))
		return err
	})
	if err != nil {
		s.log.Error("record restart outcome", "job_id", j.ID, "state", state, "err", err)
		return
	}
	if retry {
		s.metrics.Restarts.WithLabelValues("retry").Inc()
		s.events.Publish(Event{OrgID: j.OrgID, Type: "restart.retry", WorkspaceID: j.WorkspaceID, TargetID: j.ID, Reason: reason,
			ChangeID: j.ChangeID})
		return
	}
	if state == store.JobFailed && j.Reason == ReasonBoxFailed {
		s.kick()
	}
	s.metrics.Restarts.WithLabelValues(state).Inc()
	if state == store.JobSucceeded {
		s.metrics.RestartDuration.Observe(now.Sub(started).Seconds())
		if j.Automatic {
			s.metrics.PropagationLag.Observe(now.Sub(j.CreatedAt).Seconds())
		}
	}
	s.events.Publish(Event{OrgID: j.OrgID, Type: "restart." + state, WorkspaceID: j.WorkspaceID, TargetID: j.ID, Reason: reason,
		ChangeID: j.ChangeID})
	changed.publish(s.events)
}

// scheduleRecoveryTx queues the re-provision of a dead box, with backoff, a
// bounded number of times; after that the workspace stays failed. It runs
// in the caller's transaction, so that a failure and its recovery commit
// together: nobody ever sees the one without the other. The caller holds
// the org lock.
func (s *Service) scheduleRecoveryTx(ctx context.Context, tx store.Store, orgID, wsID string, gen int64) (bool, error) {
	w, err := tx.GetWorkspaceForUpdate(ctx, orgID, wsID)
	if err != nil || w.Generation != gen || w.Status != StatusFailed {
		return false, err
	}
	platform := w.Kind == store.KindPlatform
	if w.Failures > s.cfg.MaxProvisionRetries && !platform {
		_, err := tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{
			Action: "box.gave_up", TargetKind: "workspace", TargetID: wsID, WorkspaceID: wsID,
			Detail: map[string]any{"generation": gen, "failures": w.Failures},
		}, "failed"))
		return false, err
	}
	now := s.clock.Now()
	recoveryID := ids.New("j")
	merged := false
	if pend, err := tx.GetPendingJobForUpdate(ctx, wsID); err == nil {
		if !pend.Automatic || pend.Reason == ReasonBoxFailed {
			return false, nil // an explicit restart or a recovery will provision it
		}
		// A pending propagation restart would find the workspace failed and
		// skip it ("it gets the new env when it next starts"): the recovery
		// is that next start. The change is merged into it, so the new box
		// gets the new env and the recovery, marked merged, runs.
		pend.State, pend.FinishedAt, pend.UpdatedAt = store.JobSuperseded, now, now
		pend.Note = "merged into recovery job " + recoveryID
		if err := s.updateJob(ctx, tx, store.JobPending, pend); err != nil {
			return false, err
		}
		merged = true
	}
	// The org root is never given up on: its attempts go on, with an
	// exponential backoff capped at PlatformMaxBackoff; the first one, after
	// a box that had been stable, is immediate (the org root is down).
	wait := s.cfg.RetryBackoff << max(w.Failures-1, 0)
	if platform {
		wait = 0
		if w.Failures > 1 {
			wait = backoff(s.cfg.RetryBackoff, w.Failures-2, s.cfg.PlatformMaxBackoff)
		}
	}
	err = tx.InsertJobs(ctx, []store.RestartJob{{
		ID: recoveryID, OrgID: orgID, WorkspaceID: wsID, State: store.JobPending, Reason: ReasonBoxFailed,
		Note: fmt.Sprintf("recovers generation %d", gen), MaxAttempts: 1, RunAfter: now.Add(wait),
		CreatedAt: now, UpdatedAt: now, Merged: merged,
	}})
	if err == nil && wait > 0 {
		// The workers are woken when it is due, not at their next poll
		// after that (a spurious wake-up, should the transaction not
		// commit, costs one claim).
		time.AfterFunc(wait, s.kick)
	}
	if err != nil || !platform {
		return err == nil, err
	}
	_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{
		Action: "platform.recovery_scheduled", TargetKind: "workspace", TargetID: wsID, WorkspaceID: wsID,
		Detail: map[string]any{"generation": gen, "failures": w.Failures, "after_seconds": wait.Seconds()},
	}, "ok"))
	return err == nil, err
}

// reconcile adopts, at start, the boxes a previous run left: running ones
// keep their generation; missing ones are failed and recovered.
func (s *Service) reconcile(ctx context.Context) error {
	list, err := s.store.ListActiveWorkspaces(ctx)
	if err != nil {
		return err
	}
	for _, w := range list {
		if w.Runtime == RuntimeExternal {
			continue
		}
		h, ok := currentHandle(w)
		if !ok {
			h, ok = s.findBox(ctx, w)
		}
		if !ok {
			// Intent recorded, box never started (a crash in between): a
			// running job owns it, or nobody does and we start it.
			if jobs, err := s.store.ListOpenJobs(ctx, w.OrgID, w.ID); err == nil {
				owned := false
				for _, j := range jobs {
					owned = owned || (j.State == store.JobRunning && j.Generation == w.Generation)
				}
				if owned {
					continue
				}
			}
			s.startAsync(w.OrgID, w.ID, w.Generation, "reconcile")
			continue
		}
		if !s.sees(w.Runtime, h) {
			// Another node's box: the replicas there supervise it.
			s.log.Info("box on another node; not adopted here", "workspace_id", w.ID, "node", h.Node)
			continue
		}
		if !s.claimSupervision(w.ID, w.Generation, false) {
			continue // a live replica watches it
		}
		prov := s.provs[w.Runtime]
		if prov == nil {
			s.markFailed(w.OrgID, w.ID, w.Generation, "runtime", fmt.Sprintf("runtime %s is not enabled on this control plane", w.Runtime), false)
			continue
		}
		st, err := s.provAdopt(ctx, prov, h)
		if err == nil && st.Running {
			s.watch(w, h, false, w.UpdatedAt)
			continue
		}
		if err != nil && !errors.Is(err, provision.ErrNotFound) {
			// Unknown is not dead: the engine may not be up yet.
			s.checkLater(w, h, err)
			continue
		}
		why := "box missing after a control-plane restart"
		if err == nil && st.Reason != "" {
			why += ": " + st.Reason
		}
		s.markFailed(w.OrgID, w.ID, w.Generation, "missing", fmt.Sprintf("box generation %d: %s", w.Generation, why), true)
	}
	return nil
}

// startAsync provisions a workspace's box in the background (create,
// resume, a start that never happened): it is not a restart, so it does not
// wait for the governor. It starts nothing unless the workspace is still
// provisioning generation gen with no box, so a second call cannot double it.
func (s *Service) startAsync(orgID, wsID string, gen int64, cause string) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		unlock := s.lockWS(wsID)
		defer unlock()
		w, err := s.store.GetWorkspace(s.bgCtx, orgID, wsID)
		if err != nil || w.Status != StatusProvisioning || w.Box != "" || w.Generation != gen {
			return
		}
		if _, err := s.startBox(s.bgCtx, orgID, wsID, gen, false, cause, false, nil); err != nil && s.bgCtx.Err() == nil {
			s.log.Warn("start box", "workspace_id", wsID, "err", AsError(err).Message)
		}
	}()
}

// startStuck starts the boxes that are provisioning with no box for longer
// than a provision deadline and that no job owns: a start that failed before
// it could record anything (the store was away, say) is retried rather than
// left waiting for the next control-plane restart.
func (s *Service) startStuck(ctx context.Context) {
	list, err := s.store.ListStuckStarts(ctx, s.clock.Now().Add(-s.cfg.ProvisionTimeout))
	if err != nil {
		return
	}
	for _, w := range list {
		jobs, err := s.store.ListOpenJobs(ctx, w.OrgID, w.ID)
		if err != nil {
			continue
		}
		owned := false
		for _, j := range jobs {
			owned = owned || j.State == store.JobRunning
		}
		if !owned {
			s.log.Warn("starting a box whose start never happened", "workspace_id", w.ID, "generation", w.Generation)
			s.startAsync(w.OrgID, w.ID, w.Generation, "stuck")
		}
	}
}

// housekeeping refreshes the stale gauge, reloads the key ring and starts
// boxes whose start never happened.
func (s *Service) housekeeping(ctx context.Context) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		s.refreshStale(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.keys.Reload(ctx, s.store); err != nil && ctx.Err() == nil {
				s.log.Warn("reload data keys", "err", err)
			}
			s.startStuck(ctx)
		}
	}
}

func (s *Service) refreshStale(ctx context.Context) {
	orgs, err := s.store.ListOrgs(ctx)
	if err != nil {
		return
	}
	n := 0
	for _, o := range orgs {
		list, err := s.store.ListWorkspaces(ctx, o.ID, false, store.ListParams{})
		if err != nil {
			return
		}
		fp, err := s.newFingerprinter(ctx, s.store, o.ID)
		if err != nil {
			return
		}
		for _, w := range list {
			if isStale(w, fp) {
				n++
			}
		}
	}
	s.metrics.StaleWorkspaces.Set(float64(n))
}

func isStale(w store.Workspace, fp *fingerprinter) bool {
	return hasBox(w.Status) && w.BoxFingerprint != "" && fp != nil && w.BoxFingerprint != fp.of(w.ID)
}

// findBox looks for a running box of the workspace's current generation
// whose handle was never recorded (the control plane died between starting
// it and writing it down). A box found is recorded and returned, so that it
// is adopted rather than doubled.
func (s *Service) findBox(ctx context.Context, w store.Workspace) (provision.Handle, bool) {
	l, ok := s.provs[w.Runtime].(provision.Lister)
	if !ok || w.Generation == 0 {
		return provision.Handle{}, false
	}
	list, err := s.provList(ctx, l)
	if err != nil {
		s.log.Warn("list boxes", "runtime", w.Runtime, "err", err)
		return provision.Handle{}, false
	}
	for _, h := range list {
		if h.WorkspaceID != w.ID || h.Generation != w.Generation {
			continue
		}
		hb, _ := json.Marshal(h)
		err := s.store.InTx(ctx, func(tx store.Store) error {
			cur, err := tx.GetWorkspaceForUpdate(ctx, w.OrgID, w.ID)
			if err != nil {
				return err
			}
			if cur.Generation != w.Generation || cur.Box != "" {
				return Conflict("superseded")
			}
			cur.Box = string(hb)
			return tx.UpdateWorkspace(ctx, cur)
		})
		if err != nil {
			return provision.Handle{}, false
		}
		s.log.Info("found an unrecorded box", "workspace_id", w.ID, "generation", w.Generation, "id", h.ID)
		return h, true
	}
	return provision.Handle{}, false
}
