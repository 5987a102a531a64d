package core

import (
	"context"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/store"
)

// InlineDecisions is the most decisions a write's answer carries; the
// rest are paged from its change (GET /v1/changes/{id}/decisions).
const InlineDecisions = 1000

// States of a change's restarts.
const (
	ChangeInProgress = "in_progress"
	ChangeSucceeded  = "succeeded"
	ChangeFailed     = "failed"
)

// ChangeStatus is a change with the state of its restarts.
type ChangeStatus struct {
	store.Change
	State   string
	Running int // restart jobs running now
	Pending int // queued, not started (or waiting to retry)
}

// GetChange returns a change of the caller's org and how its restarts
// stand. A workspace token sees the changes of its own workspace's secrets.
func (s *Service) GetChange(ctx context.Context, id string) (ChangeStatus, error) {
	p, err := principal(ctx)
	if err != nil {
		return ChangeStatus{}, err
	}
	c, err := s.visibleChange(ctx, p, id)
	if err != nil {
		return ChangeStatus{}, err
	}
	running, err := s.store.CountRunningForChange(ctx, p.OrgID, id)
	if err != nil {
		return ChangeStatus{}, err
	}
	return changeStatus(c, running), nil
}

func changeStatus(c store.Change, running int) ChangeStatus {
	st := ChangeStatus{Change: c, State: ChangeInProgress, Running: running}
	open := c.Restarts - c.Succeeded - c.Failed - c.Cancelled
	st.Pending = max(open-running, 0)
	switch {
	case open > 0:
	case c.Failed > 0:
		st.State = ChangeFailed
	default:
		st.State = ChangeSucceeded
	}
	return st
}

// ListChangeDecisions pages a change's decisions by workspace id: up to
// limit of those after the workspace id after.
func (s *Service) ListChangeDecisions(ctx context.Context, id, after string, limit int) ([]propagation.Decision, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > InlineDecisions+1 { // a face may ask one more, to know whether a page follows
		return nil, Invalid("invalid_limit", "limit must be between 1 and %d", InlineDecisions)
	}
	if _, err := s.visibleChange(ctx, p, id); err != nil {
		return nil, err
	}
	ds, err := s.store.ListChangeDecisions(ctx, p.OrgID, id, after, limit)
	if err != nil {
		return nil, notFoundAs(err, "change", id)
	}
	out := make([]propagation.Decision, len(ds))
	for i, d := range ds {
		out[i] = propagation.Decision{WorkspaceID: d.WorkspaceID, Reason: d.Reason, Action: propagation.ActionOf(d.Reason)}
	}
	return out, nil
}

func (s *Service) visibleChange(ctx context.Context, p auth.Principal, id string) (store.Change, error) {
	c, err := s.store.GetChange(ctx, p.OrgID, id)
	if err != nil {
		return store.Change{}, notFoundAs(err, "change", id)
	}
	if p.Kind == auth.KindWorkspace {
		if c.WorkspaceID == "" || c.WorkspaceID != p.WorkspaceID {
			return store.Change{}, NotFound("change", id)
		}
		return c, nil
	}
	if err := requireReader(p, "reading changes"); err != nil {
		return store.Change{}, err
	}
	return c, nil
}
