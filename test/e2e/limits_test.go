package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The connection limits reach the real server through its flags: a
// second event stream of one token is refused, and a body trickled in
// slower than the read timeout loses its connection.
func TestConnectionLimitFlags(t *testing.T) {
	s := startServer(t, "--max-event-streams-per-token", "1", "--http-read-timeout", "2s")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	open := func() *http.Response {
		req, err := http.NewRequestWithContext(ctx, "GET", s.url+"/v1/events", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	require.Equal(t, 200, open().StatusCode)
	second := open()
	require.Equal(t, http.StatusTooManyRequests, second.StatusCode)
	b, _ := io.ReadAll(second.Body)
	require.Contains(t, string(b), "too_many_streams")

	c, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "PUT /v1/secrets/TRICKLED HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", s.token, 100<<10)
	require.NoError(t, err)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, c)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case <-closed:
			done = true
		case <-tick.C:
			_, _ = c.Write([]byte("x")) // fails once the server hung up
		case <-deadline:
			t.Fatal("the server kept a trickling connection for 30s with --http-read-timeout 2s")
		}
	}
	secrets, err := s.admin.ListSecrets(context.Background(), "")
	require.NoError(t, err)
	for _, sec := range secrets {
		require.False(t, strings.EqualFold(sec.Key, "TRICKLED"))
	}
}
