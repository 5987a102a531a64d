package core

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/redact"
	"github.com/orgplane/orgplane/internal/store"
)

// RestartWorkspace queues an explicit, audited restart by an admin. It is
// the only way the platform workspace's box is ever terminated. A pending
// automatic restart of the workspace is superseded by it.
func (s *Service) RestartWorkspace(ctx context.Context, id, note string) (store.RestartJob, error) {
	p, err := principal(ctx)
	if err != nil {
		return store.RestartJob{}, err
	}
	ev := &auditEvent{Action: "workspace.restart", TargetKind: "workspace", TargetID: id, WorkspaceID: id,
		Detail: map[string]any{"reason": note}}
	var job store.RestartJob
	// A change whose last restart this one supersedes is announced finished
	// once this commits (inside an approved action's transaction, the
	// action announces it when that one commits).
	changed := &changeEvents{}
	if execOf(ctx) == nil {
		ctx = withChangeEvents(ctx, changed)
	}
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		changed.evs = nil
		if err := tx.LockOrg(ctx, p.OrgID); err != nil {
			return err
		}
		w, err := s.visibleWorkspace(ctx, tx, p, id)
		if err != nil {
			return err
		}
		if err := requireAdmin(p, "restarting a workspace"); err != nil {
			return err
		}
		if w.Kind == store.KindPlatform {
			// Its agent is interrupted mid-turn: an agent asks people first.
			if err := s.gate(ctx, tx, p, func(g Gates) bool { return g.PlatformRestart }, nil); err != nil {
				return err
			}
		}
		if len(note) > 1000 {
			return Invalid("invalid_reason", "reason is over 1000 characters")
		}
		switch {
		case w.Status == StatusRemoved:
			return NotFound("workspace", id)
		case w.Status == StatusPaused:
			return Conflict("workspace %s is paused; resume it instead", id)
		case w.Runtime == RuntimeExternal:
			return Refused("external_runtime", "workspace %s runs elsewhere (runtime external): orgplane never restarts it", id)
		}
		now := s.clock.Now()
		if pend, err := tx.GetPendingJobForUpdate(ctx, id); err == nil {
			pend.State, pend.FinishedAt, pend.UpdatedAt = store.JobSuperseded, now, now
			pend.Note = "superseded by an admin restart"
			if err := s.updateJob(ctx, tx, store.JobPending, pend); err != nil {
				return err
			}
		}
		job = store.RestartJob{ID: ids.New("j"), OrgID: p.OrgID, WorkspaceID: id, State: store.JobPending,
			Reason: ReasonAdminRestart, Note: note, CallerWorkspaceID: p.CallerWorkspace(), RequestedBy: p.TokenID,
			MaxAttempts: s.cfg.MaxProvisionRetries, RunAfter: now, CreatedAt: now, UpdatedAt: now}
		if p.TokenID == "" {
			job.RequestedBy = "system:admin"
		}
		ev.TargetID = id
		ev.Detail["job_id"] = job.ID
		return tx.InsertJobs(ctx, []store.RestartJob{job})
	})
	if errors.Is(err, errGated) {
		return store.RestartJob{}, s.askApproval(ctx, p, Action{Type: ActionWorkspaceRestart,
			Params: ActionParams{WorkspaceID: id, Reason: note}}, "Restart the platform workspace")
	}
	if err != nil {
		return store.RestartJob{}, err
	}
	changed.publish(s.events)
	s.afterCommit(ctx, s.kick)
	return job, nil
}

// ListRestarts lists a workspace's restart jobs and decisions, newest first. A
// decision that queued no job (a skip, or a restart merged into a pending
// one), and a restart queued that the governor has not taken yet, have no
// job id: their change names them.
func (s *Service) ListRestarts(ctx context.Context, id string, limit int) ([]store.RestartJob, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	w, err := s.visibleWorkspace(ctx, s.store, p, id)
	if err != nil {
		return nil, err
	}
	if limit < 0 || limit > 1000 {
		return nil, Invalid("invalid_limit", "limit must be between 1 and 1000")
	}
	if limit == 0 {
		limit = 100
	}
	jobs, err := s.store.ListJobs(ctx, p.OrgID, id, limit)
	if err != nil {
		return nil, err
	}
	// The decisions that queued no job live in their changes' records.
	ds, err := s.store.ListWorkspaceDecisions(ctx, p.OrgID, id, w.CreatedAt, limit)
	if err != nil {
		return nil, err
	}
	// A restart still in its change's queue has no job yet either.
	var queued []string
	for _, d := range ds {
		if d.Reason == propagation.ReasonRestartQueued {
			if queued, err = s.store.QueuedChangesOf(ctx, p.OrgID, id); err != nil {
				return nil, err
			}
			break
		}
	}
	for _, d := range ds {
		c := d.Change
		if d.Reason == propagation.ReasonRestartQueued {
			if slices.Contains(queued, c.ID) {
				jobs = append(jobs, store.RestartJob{OrgID: c.OrgID, WorkspaceID: id, Automatic: true, State: store.JobPending,
					Reason: d.Reason, ChangeID: c.ID, CallerWorkspaceID: c.CallerWorkspaceID, RequestedBy: c.RequestedBy,
					CreatedAt: c.CreatedAt, UpdatedAt: c.CreatedAt, Note: "queued; the governor has not taken it yet"})
			}
			continue // otherwise its job is listed
		}
		// A decision, not a job: no job id; its change names it.
		j := store.RestartJob{OrgID: c.OrgID, WorkspaceID: id, Automatic: true, State: store.JobSkipped,
			Reason: d.Reason, ChangeID: c.ID, CallerWorkspaceID: c.CallerWorkspaceID, RequestedBy: c.RequestedBy,
			CreatedAt: c.CreatedAt, UpdatedAt: c.CreatedAt, FinishedAt: c.CreatedAt}
		if d.Reason == propagation.ReasonCoalesced {
			j.State, j.Note = store.JobSuperseded, "merged into the restart pending then"
		}
		jobs = append(jobs, j)
	}
	slices.SortStableFunc(jobs, func(a, b store.RestartJob) int { return b.CreatedAt.Compare(a.CreatedAt) })
	if len(jobs) > limit {
		jobs = jobs[:limit]
	}
	return jobs, nil
}

// ListOrgRestarts lists the org's restart jobs newest first, older than
// before (zero: from the newest); admins only. limit 0 is 100.
func (s *Service) ListOrgRestarts(ctx context.Context, limit int, before store.JobCursor) ([]store.RestartJob, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireReader(p, "listing the org's restarts"); err != nil {
		return nil, err
	}
	if limit < 0 || limit > MaxPageLimit+1 {
		return nil, Invalid("invalid_limit", "limit must be between 1 and %d", MaxPageLimit)
	}
	return s.store.ListJobsBefore(ctx, p.OrgID, "", before, limit)
}

// GetRestart returns one job of the org.
func (s *Service) GetRestart(ctx context.Context, id string) (store.RestartJob, error) {
	p, err := principal(ctx)
	if err != nil {
		return store.RestartJob{}, err
	}
	j, err := s.store.GetJob(ctx, p.OrgID, id)
	if err != nil {
		return store.RestartJob{}, notFoundAs(err, "restart job", id)
	}
	if p.Kind == auth.KindWorkspace && j.WorkspaceID != p.WorkspaceID {
		return store.RestartJob{}, NotFound("restart job", id)
	}
	return j, nil
}

// PauseWorkspace stops a workspace's box and those of its subtree; the
// platform workspace cannot be paused.
func (s *Service) PauseWorkspace(ctx context.Context, id string) (Workspace, error) {
	return s.pauseResume(ctx, id, true)
}

// ResumeWorkspace starts the boxes of a paused subtree again.
func (s *Service) ResumeWorkspace(ctx context.Context, id string) (Workspace, error) {
	return s.pauseResume(ctx, id, false)
}

func (s *Service) pauseResume(ctx context.Context, id string, pause bool) (Workspace, error) {
	p, err := principal(ctx)
	if err != nil {
		return Workspace{}, err
	}
	action := "workspace.resume"
	if pause {
		action = "workspace.pause"
	}
	ev := &auditEvent{Action: action, TargetKind: "workspace", TargetID: id, WorkspaceID: id, Detail: map[string]any{}}
	var changed []store.Workspace
	var root store.Workspace
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		changed, root = nil, store.Workspace{} // the transaction may run again
		w, err := s.visibleWorkspace(ctx, tx, p, id)
		if err != nil {
			return err
		}
		if err := requireAdmin(p, action); err != nil {
			return err
		}
		if w.Status == StatusRemoved {
			return NotFound("workspace", id)
		}
		if pause && w.Kind == store.KindPlatform {
			return Refused("platform_workspace", "the platform workspace cannot be paused")
		}
		if !pause && w.Status != StatusPaused {
			return Conflict("workspace %s is %s, not paused", id, w.Status)
		}
		sub, err := s.subtree(ctx, tx, w)
		if err != nil {
			return err
		}
		now := s.clock.Now()
		var ids []string
		for _, x := range sub {
			before := x
			switch {
			case pause && x.Status != StatusPaused:
				x.Status = StatusPaused
			case !pause && x.Status == StatusPaused:
				if x.Runtime == RuntimeExternal {
					x.Status = StatusStopped
				} else {
					x.Status = StatusProvisioning
					x.Box = "" // the paused box was stopped; a new one is provisioned
				}
			default:
				continue
			}
			if err := checkTransition(x.ID, before.Status, x.Status); err != nil {
				return err
			}
			x.UpdatedAt = now
			if err := tx.UpdateWorkspace(ctx, x); err != nil {
				return err
			}
			changed = append(changed, before)
			ids = append(ids, x.ID)
			if x.ID == id {
				root = x
			}
		}
		if root.ID == "" {
			root = w
		}
		ev.Detail["workspaces"] = ids
		return nil
	})
	if err != nil {
		return Workspace{}, err
	}
	for _, before := range changed {
		if pause {
			s.stopAsync(before, "paused")
		} else if before.Runtime != RuntimeExternal {
			s.startAsync(before.OrgID, before.ID, before.Generation, "resume")
		}
	}
	return s.view(root), nil
}

// stopAsync stops a box an admin paused or deleted; a failure to stop is
// recorded on the workspace, never dropped.
func (s *Service) stopAsync(w store.Workspace, why string) {
	if _, ok := currentHandle(w); !ok {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		unlock := s.lockWS(w.ID)
		defer unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := s.stopCurrent(ctx, w, true)
		s.auditBoxStop(w, w.Generation, why, nil, err)
		if err != nil {
			s.recordError(w, "stop box ("+why+"): "+err.Error())
			return
		}
		s.events.Publish(Event{OrgID: w.OrgID, Type: "box.stop", WorkspaceID: w.ID, Reason: why})
	}()
}

func (s *Service) recordError(w store.Workspace, msg string) {
	err := s.durableTx(func(ctx context.Context, tx store.Store) error {
		cur, err := tx.GetWorkspaceForUpdate(ctx, w.OrgID, w.ID)
		if err != nil {
			return err
		}
		cur.LastError, cur.UpdatedAt = msg, s.clock.Now()
		return tx.UpdateWorkspace(ctx, cur)
	})
	if err != nil {
		s.log.Error("record a box error", "workspace_id", w.ID, "err", err)
	}
}

// Heartbeat records that a box is alive. Only the workspace's own token may
// send it; a heartbeat of the current generation (and fingerprint, when
// given) makes a provisioning or degraded box running.
func (s *Service) Heartbeat(ctx context.Context, id string, gen int64, fingerprint string) (Workspace, error) {
	p, err := principal(ctx)
	if err != nil {
		return Workspace{}, err
	}
	if _, err := s.visibleWorkspace(ctx, s.store, p, id); err != nil {
		return Workspace{}, err
	}
	if p.Kind != auth.KindWorkspace {
		return Workspace{}, Forbidden("heartbeats come from the workspace's own box token")
	}
	if gen <= 0 {
		return Workspace{}, Invalid("invalid_generation", "generation must be a positive integer")
	}
	check := func(w store.Workspace) error {
		if w.Generation != gen {
			return Conflict("stale generation %d: the current box is generation %d", gen, w.Generation)
		}
		if w.BoxTokenID == "" || p.TokenID != w.BoxTokenID {
			// Only the box itself speaks for its health: another token of
			// the workspace (one an admin minted) cannot make a hung box
			// look running.
			return Forbidden("heartbeats for generation %d come from that box's own token (ORGPLANE_TOKEN), not token %s", gen, p.TokenID)
		}
		if fingerprint != "" && fingerprint != w.BoxFingerprint {
			return Conflict("fingerprint mismatch: the box does not run the env it was provisioned with")
		}
		if !hasBox(w.Status) {
			return Conflict("workspace %s is %s", id, w.Status)
		}
		return nil
	}
	// A running box that beat recently needs no write: heartbeats are the
	// most frequent call, and the store has one writer on SQLite.
	if w, err := s.store.GetWorkspace(ctx, p.OrgID, id); err == nil && check(w) == nil &&
		w.Status == StatusRunning && s.clock.Now().Sub(w.HeartbeatAt) < s.cfg.HeartbeatTimeout/3 {
		return Workspace{Workspace: w}, nil
	}
	var out store.Workspace
	changed := false
	err = s.store.InTx(ctx, func(tx store.Store) error {
		changed = false
		w, err := tx.GetWorkspaceForUpdate(ctx, p.OrgID, id)
		if err != nil {
			return err
		}
		if err := check(w); err != nil {
			return err
		}
		now := s.clock.Now()
		w.HeartbeatAt = now
		if w.Status == StatusRunning {
			out = w
			return tx.UpdateWorkspace(ctx, w)
		}
		// Provisioning or degraded (check passed): healthyTx writes the
		// heartbeat with the status, in one statement.
		if _, changed, err = s.healthyTx(ctx, tx, w, gen, "heartbeat"); err != nil {
			return err
		}
		if !changed {
			if err := tx.UpdateWorkspace(ctx, w); err != nil {
				return err
			}
		}
		out, err = tx.GetWorkspace(ctx, p.OrgID, id)
		return err
	})
	if err != nil {
		return Workspace{}, err
	}
	if changed {
		s.healthyCommitted(out.OrgID, out.ID, out.Kind)
		// Its watcher sees the box healthy now. A heartbeat that only moves
		// heartbeat_at on needs no wake-up: the watcher reads it when the
		// heartbeat deadline it set comes.
		s.nudge(id)
	}
	return Workspace{Workspace: out}, nil
}

// Logs returns the last lines of a workspace's box output; admins only.
func (s *Service) Logs(ctx context.Context, id string, tail int) ([]byte, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	w, err := s.visibleWorkspace(ctx, s.store, p, id)
	if err != nil {
		return nil, err
	}
	if err := requireReader(p, "reading box logs"); err != nil {
		return nil, err
	}
	if tail < 0 || tail > 100000 {
		return nil, Invalid("invalid_tail", "tail must be between 0 and 100000")
	}
	lg, ok := s.provs[w.Runtime].(provision.Logger)
	if !ok {
		return nil, Refused("no_logs", "runtime %s keeps no logs here", w.Runtime)
	}
	b, err := lg.Logs(ctx, id, tail)
	if errors.Is(err, provision.ErrNotFound) {
		return []byte{}, nil
	}
	if err != nil || len(b) == 0 {
		return b, err
	}
	// Humans write secrets, boxes read them: a box that prints its env does
	// not show the values to whoever reads its logs.
	env, _, err := s.EffectiveEnv(ctx, s.store, w.OrgID, w.ID)
	if err != nil {
		return nil, err
	}
	return []byte(redact.String(string(b), env)), nil
}
