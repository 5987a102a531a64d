package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
)

// TestBoxOutputMasksWhatTheBoxWasStartedWith: a box that prints its
// secrets and its token keeps them masked in the logs API, in last_error
// and in the box.failed audit detail, after the secrets were deleted (so
// the current secrets no longer name them), short values included.
func TestBoxOutputMasksWhatTheBoxWasStartedWith(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	key := secretValue(t)
	_, err := s.admin.SetSecret(bg, "", "API_KEY", key, false)
	require.NoError(t, err)
	_, err = s.admin.SetSecret(bg, "", "PIN", "q7", false)
	require.NoError(t, err)
	// Manual policy: deleting the secrets does not restart the box, which
	// keeps printing what it was started with; then it fails.
	w := s.create(client.CreateWorkspace{Name: "talker", RestartPolicy: "manual", Spec: spec(t, map[string]any{
		"command": []string{"/bin/sh", "-c", `echo "key=$API_KEY tok=$ORGPLANE_TOKEN pin=$PIN"; ` +
			`while [ ! -e stop-now ]; do sleep 0.1; done; echo "again key=$API_KEY tok=$ORGPLANE_TOKEN pin=$PIN"; exit 3`},
		"ready_after_seconds": 0.5})})
	s.waitStatus(w.ID, "running", 1, 30*time.Second)
	pid := boxPID(t, w.ID)
	token := procEnv(t, pid)["ORGPLANE_TOKEN"]
	require.NotEmpty(t, token)

	_, err = s.admin.DeleteSecret(bg, "", "API_KEY", false)
	require.NoError(t, err)
	_, err = s.admin.DeleteSecret(bg, "", "PIN", false)
	require.NoError(t, err)
	clean := func(what, text string) {
		t.Helper()
		require.NotContains(t, text, key, what)
		require.NotContains(t, text, token, what)
		require.NotContains(t, text, "pin=q7", what)
	}
	logs, err := s.admin.Logs(bg, w.ID, 0)
	require.NoError(t, err)
	require.Contains(t, string(logs), "key=[REDACTED] tok=[REDACTED] pin=[REDACTED]")
	clean("logs", string(logs))

	// The box lets itself be told to stop from its own directory.
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(cwd, "stop-now"), nil, 0o644))
	var failed client.Workspace
	eventually(t, 30*time.Second, func() bool {
		failed = s.get(w.ID)
		return strings.Contains(failed.LastError, "again")
	}, func() string { return "last_error: " + failed.LastError })
	require.Contains(t, failed.LastError, "again key=[REDACTED] tok=[REDACTED] pin=[REDACTED]")
	clean("last_error", failed.LastError)
	seen := false
	for _, e := range s.audit(w.ID) {
		clean("audit "+e.Action, string(e.Detail))
		seen = seen || (e.Action == "box.failed" && strings.Contains(string(e.Detail), "again key=[REDACTED]"))
	}
	require.True(t, seen, "the box.failed entry carries the masked output")
}
