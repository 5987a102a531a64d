package core

import (
	"context"
	"errors"

	"github.com/orgplane/orgplane/internal/store"
)

// EventChangeFinished is published when the last restart of a secret
// change ends (TargetID and ChangeID name the change; Status is the
// change's final state). A change that queued no restart is finished when
// it is written and has no such event.
const EventChangeFinished = "change.finished"

// changeEvents collects the change.finished events of one transaction, to
// be published once it has committed: a watcher that reads the change on
// the event must find it finished.
type changeEvents struct{ evs []Event }

type changeEventsKey struct{}

func withChangeEvents(ctx context.Context, c *changeEvents) context.Context {
	return context.WithValue(ctx, changeEventsKey{}, c)
}

func (c *changeEvents) publish(b *Bus) {
	for _, ev := range c.evs {
		b.Publish(ev)
	}
}

// noteChangeFinished reads the change a restart job just counted in and,
// if that job was its last, queues change.finished for after the commit:
// in the transaction's collector, in the execution's events, or, from a
// path that keeps neither (an admin restart superseding the change's last
// pending job), now: a watcher that reads the change before the commit
// finds it in progress and sees it end at its next backup read.
func (s *Service) noteChangeFinished(ctx context.Context, tx store.Store, orgID, changeID string) error {
	c, err := tx.GetChange(ctx, orgID, changeID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // a job queued before changes were recorded
	} else if err != nil {
		return err
	}
	if c.Restarts == 0 || c.Succeeded+c.Failed+c.Cancelled != c.Restarts {
		return nil // not the last one (counts only grow: equal exactly once)
	}
	ev := Event{OrgID: orgID, Type: EventChangeFinished, WorkspaceID: c.WorkspaceID, TargetID: c.ID, ChangeID: c.ID,
		Status: changeStatus(c, 0).State, At: c.FinishedAt}
	if col, ok := ctx.Value(changeEventsKey{}).(*changeEvents); ok {
		col.evs = append(col.evs, ev)
		return nil
	}
	if x := execOf(ctx); x != nil {
		x.events = append(x.events, ev)
		return nil
	}
	s.events.Publish(ev)
	return nil
}
