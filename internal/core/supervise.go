package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/store"
)

// Supervision across replicas: each box is watched by exactly one live
// replica, the holder of its lease in the store (box_supervision). A
// replica renews its leases while it lives; when one lapses (the replica
// died, or lost the store for longer than the lease), a replica that can
// see the box (its node: process boxes are node-local, docker boxes belong
// to their engine) takes it over and adopts it. A replica never declares
// dead a box it cannot see.

// claimSupervision takes the lease on a workspace's box; force takes it
// even from a live holder (the replica that starts or resumes the box). It
// reports whether this replica holds it; on a store error it says no,
// unless forced (the watch goes on; the lease is taken at the next scan).
func (s *Service) claimSupervision(wsID string, gen int64, force bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := s.clock.Now()
	ok, err := s.store.ClaimSupervision(ctx, wsID, s.owner, gen, now, now.Add(s.cfg.SupervisionLease), force)
	if err != nil {
		s.log.Warn("claim box supervision", "workspace_id", wsID, "err", err)
		return force
	}
	return ok
}

// superviseBoxes renews this replica's leases and takes over the boxes
// whose lease lapsed, until ctx ends.
func (s *Service) superviseBoxes(ctx context.Context) {
	t := time.NewTicker(s.cfg.SupervisionLease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.store.RenewSupervision(ctx, s.owner, s.clock.Now().Add(s.cfg.SupervisionLease)); err != nil && ctx.Err() == nil {
			s.log.Warn("renew box supervision", "err", err)
			continue
		}
		s.takeOverLapsed(ctx)
	}
}

// takeOverLapsed adopts the visible boxes that nobody supervises: their
// lease is missing or lapsed, or another replica holds it now (then this
// replica's stale watch of it, if any, ends).
func (s *Service) takeOverLapsed(ctx context.Context) {
	now := s.clock.Now()
	// Only the boxes this replica holds no live lease on: on one replica,
	// none in the steady state, whatever the number of boxes.
	list, err := s.store.ListUnsupervised(ctx, s.owner, now)
	if err != nil {
		return
	}
	for _, b := range list {
		w, l := b.Workspace, b.Lease
		if w.Runtime == RuntimeExternal || ctx.Err() != nil {
			continue
		}
		h, ok := currentHandle(w)
		if !ok || !s.sees(w.Runtime, h) {
			continue
		}
		leased := l.Owner != ""
		s.mu.Lock()
		bw := s.watches[w.ID]
		s.mu.Unlock()
		mine := bw != nil && bw.gen == w.Generation
		switch {
		case mine && leased && l.Owner != s.owner && !l.Until.Before(now):
			// Taken over while this replica could not renew: the other
			// replica watches it now.
			s.log.Warn("box supervision taken over by another replica", "workspace_id", w.ID)
			bw.cancel()
			bw.resolve(errors.New("supervision taken over by another replica"))
			continue
		case mine:
			continue
		case leased && l.Owner != s.owner && !l.Until.Before(now):
			continue // a live replica watches it
		}
		if !s.claimSupervision(w.ID, w.Generation, false) {
			continue
		}
		s.log.Info("taking over the supervision of a box", "workspace_id", w.ID, "generation", w.Generation, "previous", l.Owner)
		unlock := s.lockWS(w.ID)
		s.adopt(ctx, w, h)
		unlock()
	}
}

// adopt takes over a recorded box: watched if alive, failed and recovered
// if gone, checked again later if its state cannot be read.
func (s *Service) adopt(ctx context.Context, w store.Workspace, h provision.Handle) {
	cur, err := s.store.GetWorkspace(ctx, w.OrgID, w.ID)
	if err != nil || cur.Generation != w.Generation || !hasBox(cur.Status) {
		return // moved on meanwhile
	}
	prov := s.provs[w.Runtime]
	if prov == nil {
		s.markFailed(w.OrgID, w.ID, w.Generation, "runtime", fmt.Sprintf("runtime %s is not enabled on this control plane", w.Runtime), false)
		return
	}
	st, err := s.provAdopt(ctx, prov, h)
	switch {
	case err == nil && st.Running:
		s.watch(cur, h, false, cur.UpdatedAt)
	case err != nil && !errors.Is(err, provision.ErrNotFound):
		s.checkLater(cur, h, err) // unknown is not dead
	default:
		why := "box missing when its supervision was taken over"
		if err == nil && st.Reason != "" {
			why += ": " + st.Reason
		}
		s.markFailed(w.OrgID, w.ID, w.Generation, "missing", fmt.Sprintf("box generation %d: %s", w.Generation, why), true)
	}
}
