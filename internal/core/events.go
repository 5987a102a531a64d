package core

import (
	"sync"
	"sync/atomic"
	"time"
)

// Event is one change in an org, for the /v1/events stream. It carries ids
// and codes only, never a secret value.
type Event struct {
	OrgID       string `json:"org_id"`
	Type        string `json:"type"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	TargetID    string `json:"target_id,omitempty"`
	Status      string `json:"status,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// ChangeID names the secret change a restart job belongs to
	// (restart.* events) or the change itself (change.finished).
	ChangeID string    `json:"change_id,omitempty"`
	At       time.Time `json:"at"`
}

// Bus fans events out to subscribers. A slow subscriber loses events
// rather than slowing the control plane; it can re-read the state.
type Bus struct {
	mu   sync.Mutex
	subs map[chan Event]string // channel -> org id
	// forward sends events to the other replicas (Postgres).
	forward atomic.Pointer[func(Event)]
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{subs: map[chan Event]string{}} }

// Subscribe returns a channel of the org's events and a function that ends
// the subscription.
func (b *Bus) Subscribe(orgID string) (<-chan Event, func()) {
	ch := make(chan Event, 256)
	b.mu.Lock()
	b.subs[ch] = orgID
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
		b.mu.Unlock()
	}
}

// Publish sends ev to the org's subscribers without blocking, and to the
// other replicas' through the forwarder, if one is set.
func (b *Bus) Publish(ev Event) {
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	b.deliver(ev)
	if f := b.forward.Load(); f != nil {
		(*f)(ev)
	}
}

// setForward makes Publish hand every event to f as well (nil: no more).
func (b *Bus) setForward(f func(Event)) {
	if f == nil {
		b.forward.Store(nil)
		return
	}
	b.forward.Store(&f)
}

// deliver sends ev to this replica's subscribers of its org.
func (b *Bus) deliver(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch, org := range b.subs {
		if org != ev.OrgID {
			continue
		}
		select {
		case ch <- ev:
		default:
		}
	}
}
