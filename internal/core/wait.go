package core

import (
	"context"
	"time"

	"github.com/orgplane/orgplane/internal/store"
)

// MaxWait bounds a long poll on an approval or a request.
const MaxWait = 60 * time.Second

// waitPoll is how often a wait reads the store again: a transition made by
// another replica publishes on that replica's bus only.
const waitPoll = time.Second

// WaitApproval waits until the approval is done (an end state, or approved
// for a free-form one) or timeout (at most MaxWait) passes, and returns it
// as it then is. progress, when not nil, is told each state seen.
func (s *Service) WaitApproval(ctx context.Context, id string, timeout time.Duration, progress func(state string)) (Approval, error) {
	var out Approval
	err := s.wait(ctx, id, timeout, func() (string, bool, error) {
		a, err := s.GetApproval(ctx, id)
		if err != nil {
			return "", false, err
		}
		out = a
		return a.State, a.Done(), nil
	}, progress)
	return out, err
}

// WaitRequest waits until the request has ended or timeout passes.
func (s *Service) WaitRequest(ctx context.Context, id string, timeout time.Duration, progress func(state string)) (store.Request, error) {
	var out store.Request
	err := s.wait(ctx, id, timeout, func() (string, bool, error) {
		r, err := s.GetRequest(ctx, id)
		if err != nil {
			return "", false, err
		}
		out = r
		return r.State, RequestDone(r), nil
	}, progress)
	return out, err
}

func (s *Service) wait(ctx context.Context, id string, timeout time.Duration, look func() (string, bool, error), progress func(string)) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	if timeout <= 0 || timeout > MaxWait {
		timeout = MaxWait
	}
	// Subscribe before the first look, so that no transition falls between.
	events, cancel := s.events.Subscribe(p.OrgID)
	defer cancel()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(waitPoll)
	defer poll.Stop()
	last := ""
	for {
		state, done, err := look()
		if err != nil {
			return err
		}
		if state != last && progress != nil {
			progress(state)
		}
		last = state
		if done {
			return nil
		}
		// Look again when this one moves (its event), or at the next poll.
		for woke := false; !woke; {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-deadline.C:
				return nil
			case <-poll.C:
				woke = true
			case ev, ok := <-events:
				if !ok {
					return nil
				}
				woke = ev.TargetID == id
			}
		}
	}
}
