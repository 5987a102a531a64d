package core

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/store"
)

// Plan is the decisions of one secret change, the change's record and the
// restarts it queues (those of its restart_queued decisions, kept in the
// change until the governor takes them: only then is a restart job made).
type Plan struct {
	ChangeID  string
	Decisions []propagation.Decision
	change    store.Change
	queue     []store.QueuedBatch // its restarts, until the governor takes them
	merged    []string            // pending jobs coalesced decisions merged into
	// extend: the queued restarts (by change) that decisions coalesced
	// into: those not due yet wait out the window again (debounce).
	extend map[string][]string
	broken []string // workspaces the loop breaker stops now
}

// Summary counts the plan's decisions by reason (for the audit entry).
func (p Plan) Summary() map[string]int {
	out := map[string]int{}
	for _, d := range p.Decisions {
		out[d.Reason]++
	}
	return out
}

func (s *Service) limits() propagation.Limits {
	return propagation.Limits{MaxAutoRestarts: s.cfg.LoopMax}
}

func targetOf(f store.PropagationFacts) propagation.Target {
	return propagation.Target{
		WorkspaceID: f.WorkspaceID, Known: true, Kind: f.Kind, Runtime: f.Runtime, Status: f.Status,
		RestartPolicy: f.RestartPolicy, Protected: f.Protected, Overrides: f.OverridesKey,
		RecentAutoRestarts: f.RecentAutoRestarts, LoopBroken: f.LoopBroken, PendingRestart: f.PendingJobID != "" || f.QueuedIn != "",
	}
}

// planChange decides, for every workspace the change could affect, what
// happens to its box. It reads only: applyPlan writes.
func (s *Service) planChange(ctx context.Context, tx store.Store, p auth.Principal, ch Change) (Plan, error) {
	plan := Plan{ChangeID: ids.New("c")}
	caller := propagation.Caller{Workspace: callerWorkspace(ctx, p)}
	since := s.clock.Now().Add(-s.cfg.LoopWindow)
	// The restarts queued by earlier changes and not taken yet: a change
	// coalesces into them. Reading them holds the org's claims until this
	// change commits, so none is taken (with the old env) meanwhile.
	queued, err := tx.QueuedRestarts(ctx, ch.OrgID)
	if err != nil {
		return Plan{}, err
	}
	var facts []store.PropagationFacts
	var unknown []string
	platformID := ""
	if ch.WorkspaceID == "" {
		// In the database's order (its cheapest join): the decisions are
		// sorted once made, smaller than the facts.
		facts, err = tx.ListPropagationFacts(ctx, ch.OrgID, ch.Key, since)
		if err != nil {
			return Plan{}, err
		}
		// The affected-set query leaves the platform workspace out; its
		// decision is still reported, and the rules skip it again.
		pw, err := tx.GetPlatformWorkspace(ctx, ch.OrgID)
		if err != nil {
			return Plan{}, err
		}
		platformID = pw.ID
		f, err := tx.GetPropagationFacts(ctx, ch.OrgID, pw.ID, ch.Key, since)
		if err != nil {
			unknown = append(unknown, pw.ID)
		} else {
			facts = append(facts, f)
		}
	} else {
		f, err := tx.GetPropagationFacts(ctx, ch.OrgID, ch.WorkspaceID, ch.Key, since)
		if err != nil {
			if errors.Is(err, store.ErrUnavailable) {
				return Plan{}, err
			}
			unknown = append(unknown, ch.WorkspaceID)
		} else {
			f.OverridesKey = false // its own key: nothing overrides it
			facts = []store.PropagationFacts{f}
		}
	}
	// Same bytes again: no effective env changes. A global delete of a key
	// every workspace overrides is handled by Overrides.
	unchanged := !ch.Delete && ch.OldMAC != "" && ch.OldMAC == ch.NewMAC
	var globalMAC string
	if ch.WorkspaceID != "" {
		// A workspace write that only replaces the global value by the same
		// bytes (or a delete that uncovers the same global value) changes nothing.
		if g, err := tx.GetSecret(ctx, ch.OrgID, "", ch.Key); err == nil {
			globalMAC = g.ValueMAC
		}
	}
	now := s.clock.Now()
	for _, id := range unknown {
		plan.Decisions = append(plan.Decisions, propagation.Decide(propagation.Target{WorkspaceID: id}, caller, s.limits()))
	}
	// A change merged into a pending job must hold that job until it
	// commits: otherwise a claim could take the job and read the old env
	// first, and the change would be lost (the box started with the old
	// value, nothing left queued). Jobs claimed meanwhile are no longer
	// pending: for those the change queues a restart of its own.
	var merging []string
	for _, f := range facts {
		if f.PendingJobID != "" {
			merging = append(merging, f.PendingJobID)
		}
	}
	held, err := tx.LockPendingJobs(ctx, merging)
	if err != nil {
		return Plan{}, err
	}
	for i := range facts {
		if facts[i].PendingJobID != "" && !held[facts[i].PendingJobID] {
			facts[i].PendingJobID = ""
		}
		facts[i].QueuedIn = queued[facts[i].WorkspaceID]
	}
	plan.Decisions = slices.Grow(plan.Decisions, len(facts))
	restarts := 0
	var burst map[string]bool
	for i := range facts {
		f := &facts[i]
		t := targetOf(*f)
		if t.RecentAutoRestarts >= s.limits().MaxAutoRestarts && !t.LoopBroken {
			// An admin restart lifts the breaker.
			t.RecentAutoRestarts = s.autoRestartsSinceAdmin(ctx, tx, ch.OrgID, f.WorkspaceID, since, t.RecentAutoRestarts)
		}
		switch {
		case ch.WorkspaceID != "" && ch.Delete:
			t.Unchanged = globalMAC != "" && globalMAC == ch.OldMAC
		case ch.WorkspaceID != "" && ch.OldMAC == "":
			t.Unchanged = globalMAC != "" && globalMAC == ch.NewMAC
		default:
			t.Unchanged = unchanged
		}
		d := propagation.Decide(t, caller, s.limits())
		plan.Decisions = append(plan.Decisions, d)
		switch d.Reason {
		case propagation.ReasonRestartQueued:
			restarts++
			if s.inBurst(f, now) {
				// A burst: it restarted for a change a moment ago. This
				// one waits out the window, and what comes meanwhile
				// coalesces into it.
				if burst == nil {
					burst = map[string]bool{}
				}
				burst[d.WorkspaceID] = true
			}
		case propagation.ReasonCoalesced:
			if f.PendingJobID != "" {
				plan.merged = append(plan.merged, f.PendingJobID)
			}
			if f.QueuedIn != "" {
				// A burst: the restart it joins, if not due yet, waits
				// until the burst pauses for a window (within a bound).
				if plan.extend == nil {
					plan.extend = map[string][]string{}
				}
				plan.extend[f.QueuedIn] = append(plan.extend[f.QueuedIn], d.WorkspaceID)
			}
		case propagation.ReasonLoopBreaker:
			plan.broken = append(plan.broken, d.WorkspaceID)
		}
	}
	// Decisions in workspace id order, the platform workspace's first.
	slices.SortFunc(plan.Decisions, func(a, b propagation.Decision) int {
		switch {
		case a.WorkspaceID == b.WorkspaceID:
			return 0
		case a.WorkspaceID == platformID:
			return -1
		case b.WorkspaceID == platformID:
			return 1
		}
		return strings.Compare(a.WorkspaceID, b.WorkspaceID)
	})
	plan.queue = s.queueRestarts(plan.Decisions, restarts, burst, now)
	op := "set"
	if ch.Delete {
		op = "delete"
	}
	plan.change = store.Change{ID: plan.ChangeID, OrgID: ch.OrgID, WorkspaceID: ch.WorkspaceID, Key: ch.Key, Op: op,
		CallerWorkspaceID: caller.Workspace, RequestedBy: p.TokenID, CreatedAt: now, Total: len(plan.Decisions),
		Restarts: restarts, Counts: plan.Summary()}
	if restarts == 0 {
		plan.change.FinishedAt = now
	}
	return plan, nil
}

// autoRestartsSinceAdmin recounts the automatic restarts of a workspace at
// the loop breaker's threshold, leaving out those before its last successful
// explicit admin restart: an admin restart lifts the breaker (issue 5:
// "skipped until an admin restarts it"). The facts query counts the whole
// window, so without this a workspace stayed loop-broken after an admin
// restart until the window passed. Only workspaces at the threshold pay for
// the extra read; on a read error (or too many rows) n is kept: fail towards
// the breaker.
func (s *Service) autoRestartsSinceAdmin(ctx context.Context, st store.Store, orgID, wsID string, since time.Time, n int) int {
	const limit = 1000
	jobs, err := st.ListJobs(ctx, orgID, wsID, limit)
	if err != nil || len(jobs) == limit {
		return n
	}
	var admin time.Time
	for _, j := range jobs {
		if !j.Automatic && j.RequestedBy != "" && j.State == store.JobSucceeded && j.StartedAt.After(admin) {
			admin = j.StartedAt
		}
	}
	if admin.IsZero() {
		return n
	}
	count := 0
	for _, j := range jobs {
		counted := j.State == store.JobRunning || j.State == store.JobSucceeded || j.State == store.JobFailed
		if counted && j.Automatic && !j.StartedAt.Before(since) && j.StartedAt.After(admin) {
			count++
		}
	}
	return count
}

// maxBurstDelay bounds how long a burst's restart keeps waiting while the
// burst goes on, in coalescing windows.
const maxBurstDelay = 15

// inBurst reports whether a workspace is in a burst of changes: restarted
// automatically for a change made less than a coalescing window ago.
func (s *Service) inBurst(f *store.PropagationFacts, now time.Time) bool {
	return !f.LastAutoRestart.IsZero() && now.Sub(f.LastAutoRestart) < s.cfg.CoalesceWindow
}

// queueRestarts batches the plan's restarts (in workspace id order) for
// the change's queue. A restart is due at once, but for a workspace in a
// burst of changes (burst), due after the coalescing window; each batch
// adds a jitter of its own, which spreads a fan-out.
func (s *Service) queueRestarts(ds []propagation.Decision, restarts int, burst map[string]bool, now time.Time) []store.QueuedBatch {
	if restarts == 0 {
		return nil
	}
	// The ids in one exact allocation: a fan-out's are most of what a plan
	// allocates.
	wsIDs := make([]string, 0, restarts)
	var later []string
	for _, d := range ds {
		switch {
		case d.Reason != propagation.ReasonRestartQueued:
		case burst[d.WorkspaceID]:
			later = append(later, d.WorkspaceID)
		default:
			wsIDs = append(wsIDs, d.WorkspaceID)
		}
	}
	out := make([]store.QueuedBatch, 0, (restarts+store.QueueBatchSize-1)/store.QueueBatchSize+1)
	for _, run := range []struct {
		ids []string
		at  time.Time
	}{{wsIDs, now}, {later, now.Add(s.cfg.CoalesceWindow)}} {
		slices.Sort(run.ids) // the platform workspace's decision comes first
		for start := 0; start < len(run.ids); start += store.QueueBatchSize {
			out = append(out, store.QueuedBatch{RunAfter: run.at.Add(s.jitter()),
				IDs: run.ids[start:min(start+store.QueueBatchSize, len(run.ids))]})
		}
	}
	return out
}

func (s *Service) jitter() time.Duration {
	if s.cfg.Jitter <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(s.cfg.Jitter)))
}

// applyPlan records the change and its restart jobs in the change's
// transaction: the outbox. A crash after commit loses no restart; one
// before loses the change with it.
func (s *Service) applyPlan(ctx context.Context, tx store.Store, p auth.Principal, plan Plan) error {
	if len(plan.Decisions) == 0 {
		return nil
	}
	ds := make([]store.ChangeDecision, len(plan.Decisions))
	for i, d := range plan.Decisions {
		ds[i] = store.ChangeDecision{WorkspaceID: d.WorkspaceID, Reason: d.Reason}
	}
	if err := tx.InsertChange(ctx, plan.change, ds); err != nil {
		return err
	}
	if err := tx.InsertRestartQueue(ctx, plan.change.OrgID, plan.ChangeID, plan.queue); err != nil {
		return err
	}
	if err := tx.MarkMerged(ctx, plan.merged); err != nil {
		return err
	}
	for change, ws := range plan.extend {
		if err := tx.DelayQueuedRestarts(ctx, change, ws, plan.change.CreatedAt, s.cfg.CoalesceWindow,
			maxBurstDelay*s.cfg.CoalesceWindow); err != nil {
			return err
		}
	}
	for _, id := range plan.broken {
		w, err := tx.GetWorkspaceForUpdate(ctx, plan.change.OrgID, id)
		if err != nil {
			return err
		}
		if !w.LoopBroken {
			w.LoopBroken = true
			if err := tx.UpdateWorkspace(ctx, w); err != nil {
				return err
			}
		}
	}
	return nil
}

// afterPlan counts the decisions and wakes the workers once the change
// has committed.
func (s *Service) afterPlan(ds []propagation.Decision) {
	queued := false
	for _, d := range ds {
		s.metrics.Decisions.WithLabelValues(d.Reason, d.Action).Inc()
		queued = queued || d.Reason == propagation.ReasonRestartQueued
	}
	if queued {
		s.kick()
		// The restarts are due after their jitter (and the window, in a
		// burst): the workers are woken then, not at their next poll.
		time.AfterFunc(s.cfg.Jitter, s.kick)
		time.AfterFunc(s.cfg.CoalesceWindow+s.cfg.Jitter, s.kick)
	}
}

// kick wakes a job worker without blocking.
func (s *Service) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
