package core

import (
	"context"
	"errors"
	"time"

	"github.com/orgplane/orgplane/internal/approvals"
	"github.com/orgplane/orgplane/internal/store"
)

// sweepBatch bounds the approvals and requests one sweep handles; the next
// sweep takes the rest.
const sweepBatch = 500

// sweepApprovals runs Sweep every SweepInterval until ctx ends.
func (s *Service) sweepApprovals(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("sweep approvals and requests", "err", err)
			}
		}
	}
}

// Sweep expires the approvals and requests whose time has come, and
// executes approved actions that were not executed yet (the server died
// between a decision and its execution). Expiry does not wait for anyone
// to look: it happens on time, on every replica's sweep (each change is a
// compare-and-set, so replicas sweeping at once do each thing once).
func (s *Service) Sweep(ctx context.Context) error {
	now := s.clock.Now()
	due, err := s.store.ListDueApprovals(ctx, now, sweepBatch)
	if err != nil {
		return err
	}
	for _, a := range due {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch a.State {
		case approvals.Pending:
			s.expireApproval(ctx, a.OrgID, a.ID)
		case approvals.Approved:
			s.executeApproval(ctx, a.OrgID, a.ID)
		}
	}
	reqs, err := s.store.ListDueRequests(ctx, now, sweepBatch)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.expireRequest(ctx, r.OrgID, r.ID)
	}
	return nil
}

func (s *Service) expireApproval(ctx context.Context, orgID, id string) {
	var row store.Approval
	err := s.store.InTx(ctx, func(tx store.Store) error {
		var err error
		if row, err = tx.GetApprovalForUpdate(ctx, orgID, id); err != nil {
			return err
		}
		now := s.clock.Now()
		if row.State != approvals.Pending || now.Before(row.ExpiresAt) {
			return errPlanned // decided meanwhile
		}
		row.State, row.UpdatedAt = approvals.Expired, now
		wipe(&row, now)
		if err := tx.UpdateApproval(ctx, row, approvals.Pending); err != nil {
			return err
		}
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{Action: "approval.expired",
			TargetKind: "approval", TargetID: id, WorkspaceID: row.Requester.WorkspaceID}, "ok"))
		return err
	})
	if err != nil {
		if !errors.Is(err, errPlanned) {
			s.log.Warn("expire approval", "approval_id", id, "err", err)
		}
		return
	}
	s.approvalMoved(row, approvals.Pending)
}

func (s *Service) expireRequest(ctx context.Context, orgID, id string) {
	var row store.Request
	err := s.store.InTx(ctx, func(tx store.Store) error {
		var err error
		if row, err = tx.GetRequestForUpdate(ctx, orgID, id); err != nil {
			return err
		}
		now := s.clock.Now()
		if row.State != approvals.Pending || now.Before(row.ExpiresAt) {
			return errPlanned
		}
		row.State, row.UpdatedAt, row.EndedAt = approvals.Expired, now, now
		if err := tx.UpdateRequest(ctx, row, approvals.Pending); err != nil {
			return err
		}
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{Action: "request.expired",
			TargetKind: "request", TargetID: id, WorkspaceID: row.Requester.WorkspaceID}, "ok"))
		return err
	})
	if err != nil {
		if !errors.Is(err, errPlanned) {
			s.log.Warn("expire request", "request_id", id, "err", err)
		}
		return
	}
	s.requestMoved(row)
}
