package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/httpapi"
	"github.com/orgplane/orgplane/internal/testenv"
)

// limitedServer serves e's service with the given limits, through the same
// http.Server settings the control plane uses.
func limitedServer(t *testing.T, e *testenv.Env, l httpapi.Limits) (*httptest.Server, *http.Server) {
	t.Helper()
	api := httpapi.New(e.Service, httpapi.Options{Limits: l})
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = api.HTTPServer(nil)
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, srv.Config
}

// stream is an open event stream, read line by line in the background.
type stream struct {
	Status int
	Body   []byte // error answers only
	mu     sync.Mutex
	lines  []string
	done   chan struct{}
	cancel context.CancelFunc
}

func openStream(t *testing.T, url, token string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/v1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	s := &stream{Status: resp.StatusCode, done: make(chan struct{}), cancel: cancel}
	t.Cleanup(func() {
		cancel()
		<-s.done
		tr.CloseIdleConnections()
	})
	if resp.StatusCode != 200 {
		s.Body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
		}
	}()
	// The handler holds its slot once the first comment arrived.
	eventually(t, 10*time.Second, func() bool { return s.count(": orgplane events") == 1 }, "stream opened")
	return s
}

func (s *stream) count(line string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		if strings.HasPrefix(l, line) {
			n++
		}
	}
	return n
}

func (s *stream) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func (s *stream) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *stream) close() {
	s.cancel()
	<-s.done
}

func mintAdmin(t *testing.T, e *testenv.Env, in client.CreateToken) client.CreatedToken {
	t.Helper()
	in.Kind = "admin"
	if in.Name == "" {
		in.Name = uniq("admin")
	}
	tok, err := e.Admin.CreateToken(context.Background(), in)
	require.NoError(t, err)
	return tok
}

// Finding: no cap on event streams. One token may hold a few; the server
// holds a bounded number; the answers say which limit was hit.
func TestEventStreamCaps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	srv, _ := limitedServer(t, e, httpapi.Limits{MaxStreams: 3, MaxStreamsPerToken: 2})
	a := mintAdmin(t, e, client.CreateToken{})
	b := mintAdmin(t, e, client.CreateToken{})
	c := mintAdmin(t, e, client.CreateToken{})

	a1 := openStream(t, srv.URL, a.Secret)
	require.Equal(t, 200, a1.Status)
	require.Equal(t, 200, openStream(t, srv.URL, a.Secret).Status)
	third := openStream(t, srv.URL, a.Secret)
	code, msg := requireErrorShape(t, result{Status: third.Status, Body: third.Body, Header: http.Header{"Content-Type": {"application/json"}}}, http.StatusTooManyRequests)
	require.Equal(t, "too_many_streams", code, msg)

	require.Equal(t, 200, openStream(t, srv.URL, b.Secret).Status)
	full := openStream(t, srv.URL, c.Secret)
	code, msg = requireErrorShape(t, result{Status: full.Status, Body: full.Body, Header: http.Header{"Content-Type": {"application/json"}}}, http.StatusServiceUnavailable)
	require.Equal(t, "streams_exhausted", code, msg)

	// A closed stream frees its slot.
	a1.close()
	eventually(t, 10*time.Second, func() bool {
		s := openStream(t, srv.URL, c.Secret)
		defer s.close()
		return s.Status == 200
	}, "a slot frees up")
}

// Finding: a stream kept receiving events after its token was revoked.
// It now ends, saying why, when its token stops working, however that
// happens; and it is exempt from the write timeout that ends other calls.
func TestEventStreamEndsWhenTokenStopsWorking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, testenv.Options{})
	srv, _ := limitedServer(t, e, httpapi.Limits{StreamHeartbeat: 100 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})

	t.Run("outlives-write-timeout", func(t *testing.T) {
		s := openStream(t, srv.URL, e.AdminToken)
		eventually(t, 10*time.Second, func() bool { return s.count(": keep-alive") >= 10 }, "ten heartbeats (1s) on one stream")
		require.False(t, s.ended())
		_, err := e.Admin.SetSecret(ctx, "", "STREAMED", "v", false)
		require.NoError(t, err)
		eventually(t, 10*time.Second, func() bool { return s.count("event: secret.set") == 1 }, "an event after the write timeout")
		require.NotContains(t, s.text(), `"v"`)
	})

	t.Run("revoked-through-the-api", func(t *testing.T) {
		tok := mintAdmin(t, e, client.CreateToken{})
		s := openStream(t, srv.URL, tok.Secret)
		require.NoError(t, e.Admin.RevokeToken(ctx, tok.Token.ID))
		eventually(t, 10*time.Second, s.ended, "stream ends")
		require.Contains(t, s.text(), "event: stream.closed")
		require.Contains(t, s.text(), "token revoked")
	})

	t.Run("revoked-elsewhere", func(t *testing.T) {
		// Another replica revokes it: no event here, the heartbeat's
		// re-check finds it.
		tok := mintAdmin(t, e, client.CreateToken{})
		s := openStream(t, srv.URL, tok.Secret)
		require.NoError(t, e.Store.RevokeToken(ctx, e.Org.Org.ID, tok.Token.ID, time.Now()))
		eventually(t, 10*time.Second, s.ended, "stream ends")
		require.Contains(t, s.text(), "token revoked")
	})

	t.Run("expired", func(t *testing.T) {
		tok := mintAdmin(t, e, client.CreateToken{ExpiresAt: new(time.Now().Add(1500 * time.Millisecond))})
		s := openStream(t, srv.URL, tok.Secret)
		eventually(t, 10*time.Second, s.ended, "stream ends")
		require.Contains(t, s.text(), "token expired")
	})

	t.Run("workspace-removed", func(t *testing.T) {
		ws, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("gone"), Start: new(false)})
		require.NoError(t, err)
		tok := mintWorkspaceToken(t, e.Admin, ws.ID)
		acting := mintAdmin(t, e, client.CreateToken{ActingWorkspaceID: ws.ID})
		s := openStream(t, srv.URL, tok.Secret)
		sa := openStream(t, srv.URL, acting.Secret)
		_, err = e.Admin.DeleteWorkspace(ctx, ws.ID, false)
		require.NoError(t, err)
		eventually(t, 10*time.Second, func() bool { return s.ended() && sa.ended() }, "streams end")
		require.Contains(t, s.text(), "workspace was removed")
		require.Contains(t, sa.text(), "acting workspace was removed")
	})
}

// Graceful shutdown ends the streams instead of waiting on them.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	srv, hs := limitedServer(t, e, httpapi.Limits{})
	s1 := openStream(t, srv.URL, e.AdminToken)
	s2 := openStream(t, srv.URL, e.AdminToken)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, hs.Shutdown(ctx), "shutdown waited for the streams to its deadline")
	for _, s := range []*stream{s1, s2} {
		eventually(t, 10*time.Second, s.ended, "stream ends")
		require.Contains(t, s.text(), "shutting down")
	}
}

// Finding: no read timeout, so bodies trickled in held their connections
// for ever. With the limits, every such connection is closed, whether its
// caller authenticated or not, and nothing is written.
func TestSlowBodiesLoseTheirConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	srv, _ := limitedServer(t, e, httpapi.Limits{ReadHeaderTimeout: 500 * time.Millisecond, ReadTimeout: time.Second})
	addr := strings.TrimPrefix(srv.URL, "http://")
	const conns = 50
	var closed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var open []net.Conn
	defer func() {
		close(stop)
		for _, c := range open {
			c.Close()
		}
		wg.Wait()
	}()
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		open = append(open, c)
		authz := ""
		if i%2 == 0 {
			authz = "Authorization: Bearer " + e.AdminToken + "\r\n"
		}
		_, err = fmt.Fprintf(c, "PUT /v1/secrets/TRICKLED HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"value\":\"", authz, 100<<10)
		require.NoError(t, err)
		wg.Add(2)
		go func() { // trickle a byte every 50ms until the server hangs up
			defer wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
		go func() { // read whatever answer comes, until the connection ends
			defer wg.Done()
			_, _ = io.Copy(io.Discard, c)
			closed.Add(1)
		}()
	}
	eventually(t, 20*time.Second, func() bool { return closed.Load() == conns }, "all %d trickling connections closed by the server", conns)
	secs, err := e.Admin.ListSecrets(context.Background(), "")
	require.NoError(t, err)
	for _, s := range secs {
		require.NotEqual(t, "TRICKLED", s.Key)
	}
}
