package core

import (
	"context"
	"time"

	"github.com/orgplane/orgplane/internal/store"
)

// PlatformState is what every canvas page says of the org root.
type PlatformState struct {
	Workspace store.Workspace
	// NotRunningSince is when the platform workspace was first seen not
	// running (zero while it runs): by this replica's platform supervisor,
	// or, before the supervisor has looked, the last change of its row.
	NotRunningSince time.Time
}

// Running reports whether the platform workspace is running.
func (p PlatformState) Running() bool { return p.Workspace.Status == StatusRunning }

// PlatformState reads the org's platform workspace for anyone who reads
// the org.
func (s *Service) PlatformState(ctx context.Context) (PlatformState, error) {
	p, err := principal(ctx)
	if err != nil {
		return PlatformState{}, err
	}
	if err := requireReader(p, "reading the platform workspace"); err != nil {
		return PlatformState{}, err
	}
	w, err := s.store.GetPlatformWorkspace(ctx, p.OrgID)
	if err != nil {
		return PlatformState{}, err
	}
	out := PlatformState{Workspace: w}
	if w.Status != StatusRunning {
		s.mu.Lock()
		since, seen := s.platformDown[p.OrgID]
		s.mu.Unlock()
		if !seen || w.UpdatedAt.Before(since) {
			since = w.UpdatedAt
		}
		out.NotRunningSince = since
	}
	return out, nil
}
