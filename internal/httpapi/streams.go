package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/core"
)

// Limits bound what a caller can hold of the server: how long a request
// may take to arrive and to be answered, how long an idle connection is
// kept, and how many event streams are open. Zero values take the
// defaults.
type Limits struct {
	// ReadHeaderTimeout: the request line and headers (default 10s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout: the whole request, body included (default 30s). A body
	// trickled in slower than this loses its connection.
	ReadTimeout time.Duration
	// WriteTimeout: from the end of the request headers to the end of the
	// answer (default 60s). Event streams are exempt; each of their writes
	// has StreamWriteTimeout instead.
	WriteTimeout time.Duration
	// IdleTimeout: a kept-alive connection with no request (default 120s).
	IdleTimeout time.Duration
	// MaxStreams caps the event streams open on this replica (default
	// 1000): one more is 503 streams_exhausted.
	MaxStreams int
	// MaxStreamsPerToken caps one token's open streams (default 8): one
	// more is 429 too_many_streams.
	MaxStreamsPerToken int
	// StreamHeartbeat: a comment line keeps idle streams alive through
	// proxies, and the stream's token is checked again, this often
	// (default 15s).
	StreamHeartbeat time.Duration
	// StreamWriteTimeout: one write to a stream; a client that stops
	// reading loses its stream (default 30s).
	StreamWriteTimeout time.Duration
}

func (l *Limits) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, 10*time.Second)
	def(&l.ReadTimeout, 30*time.Second)
	def(&l.WriteTimeout, 60*time.Second)
	def(&l.IdleTimeout, 120*time.Second)
	def(&l.StreamHeartbeat, 15*time.Second)
	def(&l.StreamWriteTimeout, 30*time.Second)
	if l.MaxStreams <= 0 {
		l.MaxStreams = 1000
	}
	if l.MaxStreamsPerToken <= 0 {
		l.MaxStreamsPerToken = 8
	}
}

// HTTPServer returns an http.Server for the API with the limits' timeouts.
// Its Shutdown ends the event streams (they would otherwise hold it until
// its deadline).
func (s *Server) HTTPServer(errorLog *log.Logger) *http.Server {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		ReadTimeout:       s.limits.ReadTimeout,
		WriteTimeout:      s.limits.WriteTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		ErrorLog:          errorLog,
	}
	hs.RegisterOnShutdown(s.CloseStreams)
	return hs
}

// streams counts the open event streams.
type streams struct {
	mu      sync.Mutex
	total   int
	byToken map[string]int
	closing chan struct{}
	once    sync.Once
}

func newStreams() *streams {
	return &streams{byToken: map[string]int{}, closing: make(chan struct{})}
}

// acquire takes a stream slot for the token, or says why not.
func (st *streams) acquire(l Limits, tokenID string) *core.Error {
	st.mu.Lock()
	defer st.mu.Unlock()
	select {
	case <-st.closing:
		return &core.Error{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: "the server is shutting down; reconnect to another replica or later"}
	default:
	}
	if st.byToken[tokenID] >= l.MaxStreamsPerToken {
		return &core.Error{Status: http.StatusTooManyRequests, Code: "too_many_streams",
			Message: fmt.Sprintf("this token already has %d event streams open, the most it may; close one first", l.MaxStreamsPerToken)}
	}
	if st.total >= l.MaxStreams {
		return &core.Error{Status: http.StatusServiceUnavailable, Code: "streams_exhausted",
			Message: "this server has as many event streams open as it serves; retry later"}
	}
	st.total++
	st.byToken[tokenID]++
	return nil
}

func (st *streams) release(tokenID string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.total--
	if st.byToken[tokenID]--; st.byToken[tokenID] <= 0 {
		delete(st.byToken, tokenID)
	}
}

// CloseStreams ends every event stream, now and from now on (graceful
// shutdown: http.Server.Shutdown waits for handlers, and a stream's would
// never return on its own).
func (s *Server) CloseStreams() { s.streams.once.Do(func() { close(s.streams.closing) }) }

// eventsStream serves the org's changes as Server-Sent Events. A workspace
// token sees only its own workspace's events. The stream ends when its
// token stops working (revoked, expired, its workspace removed: checked
// at every heartbeat, and at once on a revocation or removal event), when
// the server shuts down, or when the client stops reading.
func (s *Server) eventsStream(w http.ResponseWriter, r *http.Request, _ query) {
	p, _ := auth.FromContext(r.Context())
	if err := s.streams.acquire(s.limits, p.TokenID); err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(s.limits.StreamHeartbeat/time.Second)+1))
		s.fail(w, r, err)
		return
	}
	defer s.streams.release(p.TokenID)
	rc := http.NewResponseController(w)
	// The server's read and write deadlines are for requests that end; a
	// stream's writes get their own deadline below.
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return
	}
	ch, cancel := s.svc.Events().Subscribe(p.OrgID)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	send := func(format string, args ...any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.limits.StreamWriteTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// closed tells the client why the stream ends, so that it does not
	// reconnect with a dead token.
	closed := func(reason, code string) {
		b, _ := json.Marshal(map[string]string{"reason": reason, "code": code})
		send("event: stream.closed\ndata: %s\n\n", b)
	}
	w.WriteHeader(200)
	if !send(": orgplane events\n\n") {
		return
	}
	var expiry <-chan time.Time
	if !p.ExpiresAt.IsZero() {
		t := time.NewTimer(time.Until(p.ExpiresAt))
		defer t.Stop()
		expiry = t.C
	}
	// recheck asks the service whether the token still works; a store
	// that does not answer keeps the stream (it is checked again later).
	recheck := func() bool {
		err := s.svc.Recheck(r.Context(), p)
		if e := core.AsError(err); err != nil && e.Status == http.StatusUnauthorized {
			closed(e.Message, e.Code)
			return false
		}
		return true
	}
	keep := time.NewTicker(s.limits.StreamHeartbeat)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.streams.closing:
			closed("the server is shutting down", "shutting_down")
			return
		case <-expiry:
			closed("token expired", "unauthorized")
			return
		case <-keep.C:
			if !recheck() || !send(": keep-alive\n\n") {
				return
			}
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev.Type == "token.revoke" || ev.Type == "workspace.delete" || ev.Type == "session.revoke" || ev.Type == "user.delete" {
				if !recheck() {
					return
				}
			}
			if p.Kind == auth.KindWorkspace && ev.WorkspaceID != p.WorkspaceID {
				continue
			}
			b, _ := json.Marshal(ev)
			if !send("event: %s\ndata: %s\n\n", ev.Type, b) {
				return
			}
		}
	}
}
