package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The channels on which a shared store (Postgres) tells every replica that
// something changed. The store's own triggers send the first two from the
// writing transaction (see migration 0011_notify.sql).
const (
	// ChannelJobs: restart work to claim, or a slot freed under the caps.
	ChannelJobs = "orgplane_jobs"
	// ChannelWorkspaces: a workspace's status or generation changed; the
	// payload is its id.
	ChannelWorkspaces = "orgplane_workspaces"
	// ChannelEvents: events of the org event bus, forwarded by the replica
	// that published them (see Notify).
	ChannelEvents = "orgplane_events"
)

// MaxNotifyPayload is the largest payload Notify sends: Postgres refuses
// more than 8000 bytes.
const MaxNotifyPayload = 7900

// Notification is one signal received from the store.
type Notification struct {
	Channel string
	Payload string
}

// Notifier is implemented by a store that several replicas share
// (Postgres): what one replica writes wakes the others. Use NotifierOf.
type Notifier interface {
	// Listen opens one connection of its own, listens on the store's
	// channels, calls ready once it listens, then fn for each
	// notification, in order, until ctx ends (nil) or the connection is
	// lost (the error; the caller listens again, and meanwhile polls).
	Listen(ctx context.Context, ready func(), fn func(Notification)) error
	// Notify sends payload (at most MaxNotifyPayload bytes, never a
	// secret value) on channel to every listening replica, this one's
	// too. Inside InTx it is delivered when the transaction commits, and
	// not at all if it rolls back.
	Notify(ctx context.Context, channel, payload string) error
}

// NotifierOf returns st's notifier when st is shared by replicas.
func NotifierOf(st Store) (Notifier, bool) {
	if st.Dialect() != Postgres {
		return nil, false
	}
	n, ok := st.(Notifier)
	return n, ok
}

func (s *sqlStore) Notify(ctx context.Context, channel, payload string) error {
	if s.dialect != Postgres {
		return nil // one process: its in-process signals suffice
	}
	if len(payload) > MaxNotifyPayload {
		return fmt.Errorf("notify %s: payload of %d bytes is over %d", channel, len(payload), MaxNotifyPayload)
	}
	if _, err := s.w.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("notify %s: %w", channel, mapErr(err))
	}
	return nil
}

func (s *sqlStore) Listen(ctx context.Context, ready func(), fn func(Notification)) error {
	if s.dialect != Postgres {
		return errors.New("listen: the store is not shared by replicas")
	}
	cfg, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Named, so that an operator sees which sessions are orgplane's
	// listeners (pg_stat_activity).
	cfg.RuntimeParams["application_name"] = ListenerApplicationName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("listen: connect: %w", mapErr(err))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	for _, ch := range []string{ChannelJobs, ChannelWorkspaces, ChannelEvents} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("listen %s: %w", ch, mapErr(err))
		}
	}
	ready()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("listen: %w", mapErr(err))
		}
		fn(Notification{Channel: n.Channel, Payload: n.Payload})
	}
}

// ListenerApplicationName is the application_name of the listeners'
// connections.
const ListenerApplicationName = "orgplane-listener"
