package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Event is one event of GET /v1/events. It carries ids and codes only.
type Event struct {
	OrgID       string    `json:"org_id"`
	Type        string    `json:"type"`
	WorkspaceID string    `json:"workspace_id,omitempty"`
	TargetID    string    `json:"target_id,omitempty"`
	Status      string    `json:"status,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	ChangeID    string    `json:"change_id,omitempty"`
	At          time.Time `json:"at"`
}

// StreamClosedError is how a stream ends when the server says why
// (event stream.closed): its token stopped working, or it shuts down.
type StreamClosedError struct {
	Code, Reason string
}

func (e *StreamClosedError) Error() string {
	return fmt.Sprintf("event stream closed by the server: %s (%s)", e.Reason, e.Code)
}

// maxEventLine bounds one line of the stream: events are small.
const maxEventLine = 1 << 20

// Events follows the org's event stream, calling fn with each event,
// until ctx ends (nil), the stream ends (io.ErrUnexpectedEOF, or a
// *StreamClosedError when the server said why) or fn returns an error
// (that error). ready, if not nil, is called once the stream is open:
// events published before then are not seen.
func (c *Client) Events(ctx context.Context, ready func(), fn func(Event) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/events", nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// A stream outlives the client's per-call timeout.
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("GET /v1/events: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var eb ErrorBody
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
			return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return &Error{Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(raw))}
	}
	if ready != nil {
		ready()
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	var typ, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if typ == "" && data == "" {
				continue
			}
			if err := dispatch(typ, data, fn); err != nil {
				return err
			}
			typ, data = "", ""
		case strings.HasPrefix(line, ":"):
			// a comment: the server's keep-alive
		case strings.HasPrefix(line, "event:"):
			typ = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data != "" {
				data += "\n"
			}
			data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read /v1/events: %w", err)
	}
	return io.ErrUnexpectedEOF
}

func dispatch(typ, data string, fn func(Event) error) error {
	if typ == "stream.closed" {
		var why struct{ Reason, Code string }
		_ = json.Unmarshal([]byte(data), &why)
		return &StreamClosedError{Code: why.Code, Reason: why.Reason}
	}
	var ev Event
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		return nil // not an event this client knows: skipped
	}
	if ev.Type == "" {
		ev.Type = typ
	}
	return fn(ev)
}

// IsUnauthorized reports whether err says the token no longer works.
func IsUnauthorized(err error) bool {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Status == http.StatusUnauthorized
	}
	var sc *StreamClosedError
	return errors.As(err, &sc) && sc.Code == "unauthorized"
}
