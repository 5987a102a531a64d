package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/orgplane/orgplane/internal/client"
)

// Exit codes of the commands that wait for a change (secrets set|rm
// --wait, changes watch), beside 0 (every restart succeeded), 1 (an error)
// and ExitApprovalRequired (3: the write is held for people).
const (
	// ExitRestartFailed: the change finished and at least one of its
	// restarts failed.
	ExitRestartFailed = 4
	// ExitTimeout: the timeout passed before the change finished; its
	// restarts go on.
	ExitTimeout = 5
)

// exitError ends a command with a given exit code; Main prints its
// message (if any) as the error line.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// watchTiming paces a watch: re-reads after events are at least
// minReread apart (a fan-out's events do not become one GET each), and
// the change is re-read every backup even without events (events missed
// while reconnecting, or published on another replica).
type watchTiming struct {
	minReread, backup, reconnect time.Duration
}

var defaultWatchTiming = watchTiming{minReread: 250 * time.Millisecond, backup: 5 * time.Second, reconnect: time.Second}

// watchOutput is how a watch reports: a progress line (terminal or plain)
// or JSON lines.
type watchOutput struct {
	g    *Globals
	line *progressLine
}

func newWatchOutput(g *Globals) *watchOutput {
	return &watchOutput{g: g, line: newProgressLine(g.Stdout)}
}

// watchEvent is a --json line about an event of the change.
type watchEvent struct {
	Type  string       `json:"type"` // "event"
	Event client.Event `json:"event"`
}

// watchChangeLine is a --json line with the change as it now stands.
type watchChangeLine struct {
	Type   string        `json:"type"` // "change"
	Change client.Change `json:"change"`
}

func (o *watchOutput) event(ev client.Event) {
	if o.g.JSON {
		_ = jsonLine(o.g.Stdout, watchEvent{Type: "event", Event: ev})
	}
}

func (o *watchOutput) progress(c client.Change) {
	if o.g.JSON {
		_ = jsonLine(o.g.Stdout, watchChangeLine{Type: "change", Change: c})
		return
	}
	if c.Done() {
		o.line.done(changeLine(c))
		return
	}
	o.line.set(changeLine(c))
}

// watchChange follows a change until its restarts have all ended, the
// timeout passes (0: no timeout) or ctx ends. It follows /v1/events and
// re-reads the change on each event about it, and every backup interval
// in any case. It returns nil when every restart succeeded, an
// *exitError when one failed or the timeout passed.
func watchChange(ctx context.Context, g *Globals, c *client.Client, id string, timeout time.Duration, tm watchTiming) error {
	out := newWatchOutput(g)
	defer out.line.end()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	poke := make(chan struct{}, 1)
	wake := func() {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		followEvents(wctx, c, id, tm, out, wake)
	}()
	defer func() { cancel(); <-streamDone }()

	backup := time.NewTicker(tm.backup)
	defer backup.Stop()
	var last client.Change
	var lastRead time.Time
	for {
		ch, err := c.GetChange(wctx, id)
		lastRead = time.Now()
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			var ce *client.Error
			if errors.As(err, &ce) && ce.Status < 500 {
				return err // gone, or not ours: waiting will not help
			}
			// The server or the network: keep trying until the timeout.
		default:
			if !sameProgress(last, ch) {
				out.progress(ch)
			}
			last = ch
			if ch.Done() {
				if ch.State == client.ChangeFailed {
					return &exitError{code: ExitRestartFailed, msg: fmt.Sprintf(
						"change %s: %d of %d restarts failed (see orgplane restarts ls)", ch.ID, ch.Restarts.Failed, ch.Restarts.Queued)}
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			msg := fmt.Sprintf("timed out after %s waiting for change %s", timeout, id)
			if last.ID != "" {
				msg += ": " + progressText(last)
			}
			return &exitError{code: ExitTimeout, msg: msg + "; its restarts go on (orgplane changes watch " + id + ")"}
		case <-backup.C:
		case <-poke:
			// Events come in bursts: read once for the burst.
			if wait := tm.minReread - time.Since(lastRead); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
		}
	}
}

// followEvents reads the org's events until ctx ends, reconnecting when
// the stream drops, and wakes the watch on each event about the change.
// A stream the server refuses for good (the token) ends it: the backup
// re-reads go on, and say so if the token is the trouble.
func followEvents(ctx context.Context, c *client.Client, id string, tm watchTiming, out *watchOutput, wake func()) {
	for ctx.Err() == nil {
		err := c.Events(ctx, wake, func(ev client.Event) error {
			if ev.ChangeID == id || ev.TargetID == id {
				out.event(ev)
				wake()
			}
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		var ce *client.Error
		if client.IsUnauthorized(err) || (errors.As(err, &ce) && ce.Status == 403) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(tm.reconnect):
		}
	}
}

// sameProgress reports whether two reads of a change show the same.
func sameProgress(a, b client.Change) bool {
	return a.ID == b.ID && a.State == b.State && a.Restarts == b.Restarts
}

// changeLine is the one-line status of a change.
func changeLine(c client.Change) string {
	what := "global " + c.Key
	if c.WorkspaceID != "" {
		what = c.WorkspaceID + " " + c.Key
	}
	state := "in progress"
	switch c.State {
	case client.ChangeSucceeded:
		state = "succeeded"
	case client.ChangeFailed:
		state = "FAILED"
	}
	return fmt.Sprintf("change %s (%s %s): %s: %s", cell(c.ID), c.Op, cell(what), state, progressText(c))
}

// progressText is where a change's restarts stand, and what it skipped.
func progressText(c client.Change) string {
	r := c.Restarts
	parts := []string{
		fmt.Sprintf("restarted %d/%d", r.Succeeded, r.Queued),
		fmt.Sprintf("%d in flight", r.Running),
		fmt.Sprintf("%d pending", r.Pending),
		fmt.Sprintf("%d failed", r.Failed),
	}
	if r.Cancelled > 0 {
		parts = append(parts, fmt.Sprintf("%d cancelled", r.Cancelled))
	}
	s := strings.Join(parts, ", ")
	if n := c.Counts["coalesced"]; n > 0 {
		s += fmt.Sprintf("; %d merged into restarts already queued or pending", n)
	}
	if skipped := skippedText(c.Counts); skipped != "" {
		s += "; " + skipped
	}
	return s
}

// skippedText counts the skipped decisions, by reason.
func skippedText(counts map[string]int) string {
	var reasons []string
	n := 0
	for r, k := range counts {
		if r == "restart_queued" || r == "coalesced" || k == 0 {
			continue
		}
		reasons = append(reasons, r)
		n += k
	}
	if n == 0 {
		return ""
	}
	sort.Strings(reasons)
	for i, r := range reasons {
		reasons[i] = cell(r) + " " + strconv.Itoa(counts[r])
	}
	return fmt.Sprintf("skipped %d (%s)", n, strings.Join(reasons, ", "))
}
