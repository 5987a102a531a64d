package core

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/orgplane/orgplane/internal/store"
)

// Replicas that share a store (Postgres) wake each other through its
// notifications: each listens on one connection of its own, and the store
// notifies from the writing transaction when restart work is queued or a
// slot frees up (workers are kicked) and when a workspace's status or
// generation changes (its watcher is nudged); events of the org bus are
// forwarded, so that event streams on every replica show every change. A
// store only this process uses (SQLite) needs none of it: the in-process
// signals see every write. The polls stay, slower, as a backup; while the
// listener is down the watchers' shared sweep re-reads every second.

// signalled reports whether every change that concerns this replica's
// watchers and workers wakes them: always on a store only this process
// uses; on a shared store, while the listener is connected.
func (s *Service) signalled() bool {
	return s.notifier == nil || s.listening.Load()
}

// listen keeps this replica listening to the store's notifications until
// ctx ends, reconnecting with backoff; every loss is logged, and the
// polls cover the gap.
func (s *Service) listen(ctx context.Context) {
	const firstWait, maxWait = 250 * time.Millisecond, 30 * time.Second
	wait := firstWait
	lost := false
	for {
		connected := false
		err := s.notifier.Listen(ctx, func() {
			connected = true
			s.listening.Store(true)
			s.metrics.ListenerConnected.Set(1)
			s.metrics.ListenerConnects.Inc()
			if lost {
				s.log.Info("listening to the store's notifications again")
			}
			// What changed while nobody listened was not announced: look now.
			s.kick()
			s.sweepSoon()
		}, s.dispatch)
		s.listening.Store(false)
		s.metrics.ListenerConnected.Set(0)
		if ctx.Err() != nil {
			return
		}
		if connected {
			wait = firstWait
		}
		lost = true
		s.log.Warn("lost the store's notifications; polling until they are back", "err", err, "retry_in", wait)
		s.sweepSoon() // the watchers' sweep runs every second meanwhile
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// dispatch acts on one notification.
func (s *Service) dispatch(n store.Notification) {
	switch n.Channel {
	case store.ChannelJobs:
		s.kick()
	case store.ChannelWorkspaces:
		s.nudge(n.Payload)
	case store.ChannelEvents:
		var b eventBatch
		if err := json.Unmarshal([]byte(n.Payload), &b); err != nil {
			s.log.Warn("unreadable event notification", "err", err)
			return
		}
		if b.Origin == s.owner {
			return // published here already
		}
		for _, ev := range b.Events {
			s.events.deliver(ev)
		}
	}
}

// eventBatch is the payload of an events notification.
type eventBatch struct {
	Origin string  `json:"o"` // the replica that published them
	Events []Event `json:"e"`
}

// maxForwardedReason bounds an event's reason in a notification, so that
// one event always fits in one.
const maxForwardedReason = 1024

// queueForward hands an event published here to the forwarder without
// blocking: a replica's stream loses events rather than slowing the
// control plane (as a slow subscriber does), and the loss is logged.
func (s *Service) queueForward(ev Event) {
	if len(ev.Reason) > maxForwardedReason {
		ev.Reason = strings.ToValidUTF8(ev.Reason[:maxForwardedReason], "") + "…"
	}
	select {
	case s.fwd <- ev:
	default:
		s.fwdDropped.Add(1)
	}
}

// forwardEvents sends the events published here to the other replicas,
// as many per notification as fit, until ctx ends.
func (s *Service) forwardEvents(ctx context.Context) {
	for {
		var batch []Event
		select {
		case <-ctx.Done():
			return
		case ev := <-s.fwd:
			batch = append(batch, ev)
		}
	more:
		for len(batch) < 64 {
			select {
			case ev := <-s.fwd:
				batch = append(batch, ev)
			default:
				break more
			}
		}
		s.sendEvents(ctx, batch)
		if n := s.fwdDropped.Swap(0); n > 0 {
			s.log.Warn("events not forwarded to the other replicas: too many at once", "dropped", n)
		}
	}
}

func (s *Service) sendEvents(ctx context.Context, batch []Event) {
	for len(batch) > 0 {
		n := len(batch)
		var payload []byte
		for ; n > 0; n /= 2 {
			payload, _ = json.Marshal(eventBatch{Origin: s.owner, Events: batch[:n]})
			if len(payload) <= store.MaxNotifyPayload {
				break
			}
		}
		if n == 0 {
			// Ids and codes never come near the limit; say so if one does.
			s.log.Warn("event too large to forward to the other replicas", "type", batch[0].Type)
			batch = batch[1:]
			continue
		}
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.notifier.Notify(nctx, store.ChannelEvents, string(payload))
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("forward events to the other replicas", "events", n, "err", err)
		}
		batch = batch[n:]
	}
}
