package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
)

// TestEnvCapKeepsBoxesStartable replays the incident: valid 60 KB global
// secrets, one after another. Before the cap the 35th or so made every
// restart fail with "argument list too long". Now the write that would
// pass the cap is refused (422 env_too_large, as its dry run), and every
// box, the platform's agent included, still starts with what was accepted.
func TestEnvCapKeepsBoxesStartable(t *testing.T) {
	t.Parallel()
	s := startServer(t, processFlags...)
	w := s.create(client.CreateWorkspace{Name: "svc", Spec: spec(t, map[string]any{
		"command": []string{"/bin/sh", "-c", "echo up; exec sleep 1000"}, "ready_after_seconds": 0.5})})
	s.waitStatus(w.ID, "running", 1, 30*time.Second)

	value := strings.Repeat("v", 60_000)
	accepted := 0
	for i := range 45 {
		key := fmt.Sprintf("BLOB_%02d", i)
		_, dryErr := s.admin.SetSecret(bg, "", key, value, true)
		_, err := s.admin.SetSecret(bg, "", key, value, false)
		if err == nil {
			require.NoError(t, dryErr, "the dry run of an accepted write is accepted")
			accepted++
			continue
		}
		var ce, dce *client.Error
		require.True(t, errors.As(err, &ce), "%v", err)
		require.Equal(t, http.StatusUnprocessableEntity, ce.Status)
		require.Equal(t, "env_too_large", ce.Code)
		require.Contains(t, ce.Message, w.ID)
		require.Contains(t, ce.Message, s.platformID)
		require.True(t, errors.As(dryErr, &dce), "the dry run says the same: %v", dryErr)
		require.Equal(t, *ce, *dce)
		break
	}
	require.Equal(t, 17, accepted, "1 MiB holds 17 such secrets beside the contract's variables")
	globals, err := s.admin.ListSecrets(bg, "")
	require.NoError(t, err)
	require.Len(t, globals, accepted, "the refused write changed nothing")

	// The box was restarted with the accepted env and is healthy.
	eventually(t, 60*time.Second, func() bool {
		got := s.get(w.ID)
		return got.Status == "running" && !got.Stale && got.Generation > 1
	}, func() string {
		g := s.get(w.ID)
		return fmt.Sprintf("%s gen %d stale %v: %s", g.Status, g.Generation, g.Stale, g.LastError)
	})
	// The platform's agent (never restarted on its own) starts with it too.
	job, err := s.admin.RestartWorkspace(bg, s.platformID, "env cap test")
	require.NoError(t, err)
	require.NotEmpty(t, job.ID)
	s.waitStatus(s.platformID, "running", 2, 60*time.Second)
}
