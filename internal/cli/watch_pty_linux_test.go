//go:build linux

package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/testenv"
)

// On a terminal the progress is one line rewritten in place: each status
// starts with a carriage return and an erase-line, and only the last ends
// with a newline.
func TestSecretsSetWaitRewritesOneLineOnATerminal(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: watchRuntime()})
	runningBoxes(t, e, 3)
	master, slave := openPTY(t)

	var errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(context.Background(), []string{"--server", e.URL, "--token", e.AdminToken,
			"secrets", "set", "API_KEY", "--wait", "--timeout", "60s"}, strings.NewReader("v1\n"), slave, &errb)
	}()
	var code int
	select {
	case code = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("secrets set --wait did not finish")
	}
	require.Equal(t, 0, code, errb.String())
	out := drainTTY(t, master)
	// The terminal turns "\n" into "\r\n".
	i := strings.Index(out, "\r\x1b[K")
	require.GreaterOrEqual(t, i, 0, "%q", out)
	status := out[i:]
	require.True(t, strings.HasSuffix(status, "succeeded: restarted 3/3, 0 in flight, 0 pending, 0 failed; skipped 1 (platform_root 1)\r\n"), "%q", status)
	require.Equal(t, 1, strings.Count(status, "\n"), "one line, rewritten in place: %q", status)
}
