package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// TestProcessBoxesIsolated: `orgplane up` as root runs every process box
// as its own user. A box that tries to read the admin token in the data
// dir and the platform box's environment (its ORGPLANE_TOKEN would read
// every platform secret) gets "permission denied"; the data dir is 0700
// even when it was created open; the platform box (the reference agent,
// this binary) still runs.
func TestProcessBoxesIsolated(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("process boxes are isolated only when orgplane runs as root (CI runs as root)")
	}
	t.Parallel()
	// Every directory on the way open to all, the data dir too: only
	// orgplane's own permissions stand between a box and it.
	dir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	data := filepath.Join(dir, "orgplane-data")
	require.NoError(t, os.Mkdir(data, 0o755))
	s := &server{t: t, dir: dir, flags: processFlags, addr: e2etest.FreeAddr(t)}
	s.url = "http://" + s.addr
	registerURL(s.url)
	t.Cleanup(s.removeBoxes)
	s.start()

	fi, err := os.Stat(data)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "up keeps the data dir to itself")
	s.waitStatus(s.platformID, "running", 1, 30*time.Second)
	platformPID := boxPID(t, s.platformID)

	script := fmt.Sprintf(`id -u
cat %q; echo "token-rc=$?"
cat /proc/%d/environ; echo "environ-rc=$?"
echo snoop-done; exec sleep 1000`, filepath.Join(data, "admin.token"), platformPID)
	w := s.create(client.CreateWorkspace{Name: "snoop", Spec: spec(t, map[string]any{
		"command": []string{"/bin/sh", "-c", script}, "ready_after_seconds": 0.5})})
	s.waitStatus(w.ID, "running", 1, 30*time.Second)
	var logs string
	eventually(t, 10*time.Second, func() bool {
		b, err := s.admin.Logs(bg, w.ID, 0)
		logs = string(b)
		return err == nil && strings.Contains(logs, "snoop-done")
	}, func() string { return "snoop logs: " + logs })
	require.Contains(t, logs, "token-rc=1")
	require.Contains(t, logs, "environ-rc=1")
	require.Equal(t, 2, strings.Count(strings.ToLower(logs), "permission denied"), logs)
	require.NotContains(t, logs, strings.TrimSpace(s.token))
	require.NotContains(t, logs, "ORGPLANE_TOKEN")

	uid, err := strconv.Atoi(strings.SplitN(logs, "\n", 2)[0])
	require.NoError(t, err, logs)
	require.NotZero(t, uid, "the box does not run as root")
	platformUID := procUID(t, platformPID)
	require.NotZero(t, platformUID)
	require.NotEqual(t, uid, platformUID, "each box its own user")
}

func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			uid, err := strconv.Atoi(strings.Fields(rest)[0])
			require.NoError(t, err)
			return uid
		}
	}
	t.Fatalf("no Uid line for pid %d", pid)
	return 0
}
