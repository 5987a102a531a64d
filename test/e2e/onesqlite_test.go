package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/e2etest"
)

// Issue 8: two servers on one SQLite file were not refused; the second
// expired the first's job leases at start and stole its running restarts.
// The second refuses to start, says why, and changes nothing.
func TestSecondServerOnOneSQLiteFileIsRefused(t *testing.T) {
	s := startServer(t)
	s.waitStatus(s.platformID, "running", 1, 30*time.Second)
	before := s.actions(s.platformID)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.Binary(t), "up", "--addr", e2etest.FreeAddr(t))
	cmd.Dir = s.dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "the second server must exit with an error:\n%s", out)
	require.NotZero(t, ee.ExitCode())
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	require.True(t, strings.HasPrefix(last, "error: "), "it ends with one error line:\n%s", out)
	require.Contains(t, last, "one server at a time")
	require.Equal(t, 1, strings.Count(string(out), "error: "), "%s", out)

	// The first one goes on, untouched.
	w := s.get(s.platformID)
	require.EqualValues(t, 1, w.Generation)
	require.Equal(t, before, s.actions(s.platformID))
}
