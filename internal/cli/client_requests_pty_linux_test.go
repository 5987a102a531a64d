//go:build linux

package cli

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
)

// At a terminal, a secret request's value is typed at a prompt that does
// not echo.
func TestRequestsAnswerPromptsWithoutEcho(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/requests/{id}", 200, secretRequest())
	f.handle("POST /v1/requests/{id}/answer", 200, answeredSecret())
	master, slave := openPTY(t)

	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(context.Background(), []string{"--server", f.srv.URL, "--token", testToken, "requests", "answer", testRequestID}, slave, &out, &errb)
	}()
	waitEchoOff(t, slave, done, &errb)
	_, err := master.Write([]byte(plantedSecret + "\n"))
	require.NoError(t, err)
	select {
	case code := <-done:
		require.Equal(t, 0, code, errb.String())
	case <-time.After(10 * time.Second):
		t.Fatal("requests answer did not finish")
	}
	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.JSONEq(t, mustJSON(t, client.Answer{Value: ptrTo(plantedSecret)}), string(reqs[1].Body))
	require.Equal(t, "Value for STRIPE_KEY (not shown): \n", errb.String())
	require.Contains(t, out.String(), "answered "+testRequestID)
	require.True(t, echoOn(t, slave), "echo is back after the prompt")
	require.NotContains(t, drainTTY(t, master), "pl4nted", "the terminal did not echo the value")
}
