package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// TestUp runs `orgplane up` in a fresh dir, drives the API and the CLI with
// the admin token it printed, restarts it on the same dir and checks that
// everything (org, platform workspace and its box, token) carried over and
// that the token was not printed again.
func TestUp(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	dataDir := filepath.Join(s.dir, "orgplane-data")

	t.Run("data dir", func(t *testing.T) {
		s := s.with(t)
		fi, err := os.Stat(dataDir)
		require.NoError(t, err)
		assert.Equal(t, fs.ModeDir|0o700, fi.Mode(), "data dir mode")
		for name, mode := range map[string]fs.FileMode{"master.key": 0o600, "admin.token": 0o600} {
			fi, err := os.Stat(filepath.Join(dataDir, name))
			require.NoError(t, err, name)
			assert.Equal(t, mode, fi.Mode(), "%s mode", name)
		}
		_, err = os.Stat(filepath.Join(dataDir, "orgplane.db"))
		require.NoError(t, err, "the SQLite store")
		key, err := os.ReadFile(filepath.Join(dataDir, "master.key"))
		require.NoError(t, err)
		assert.NotEmpty(t, strings.TrimSpace(string(key)))

		out := s.proc.Output()
		assert.Equal(t, 1, strings.Count(out, s.token), "the admin token is printed exactly once on the first run")
		assert.Contains(t, out, "shown once")
	})

	t.Run("platform box", func(t *testing.T) {
		s := s.with(t)
		w := s.waitStatus(s.platformID, "running", 1, 15*time.Second)
		assert.Equal(t, "platform", w.Kind)
		assert.Nil(t, w.ParentID)
		assert.Empty(t, w.LastError)
		pid := boxPID(t, s.platformID)
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		require.NoError(t, err)
		assert.Equal(t, "agent", lastArg(cmdline), "the platform box runs the reference agent")
		env := procEnv(t, pid)
		assert.Equal(t, s.url, env["ORGPLANE_URL"])
		assert.Equal(t, "1", env["ORGPLANE_GENERATION"])
	})

	t.Run("api", func(t *testing.T) {
		s := s.with(t)
		me, err := s.admin.Whoami(bg)
		require.NoError(t, err)
		assert.Equal(t, "admin", me.Kind)
		assert.NotEmpty(t, me.TokenID)

		// Workspaces: create (without a box), list, get, patch, delete.
		w := s.create(client.CreateWorkspace{Name: "api-ws", Start: ptr(false)})
		assert.Equal(t, "stopped", w.Status)
		assert.Equal(t, int64(0), w.Generation)
		require.NotNil(t, w.ParentID)
		assert.Equal(t, s.platformID, *w.ParentID, "default parent is the platform workspace")
		list, err := s.admin.ListWorkspaces(bg)
		require.NoError(t, err)
		assert.Contains(t, names(list), "api-ws")
		assert.Equal(t, "api-ws", s.get(w.ID).Name)
		p, err := s.admin.PatchWorkspace(bg, w.ID, client.PatchWorkspace{
			Name: ptr("api-ws2"), RestartPolicy: ptr("manual"), Protected: ptr(true)})
		require.NoError(t, err)
		assert.Equal(t, "api-ws2", p.Name)
		assert.Equal(t, "manual", p.RestartPolicy)
		assert.True(t, p.Protected)
		_, err = s.admin.CreateWorkspace(bg, client.CreateWorkspace{Name: "api-ws2", Start: ptr(false)})
		assert.Equal(t, http.StatusConflict, apiStatus(err), "duplicate sibling name: %v", err)
		del, err := s.admin.DeleteWorkspace(bg, w.ID, false)
		require.NoError(t, err)
		assert.Equal(t, []string{w.ID}, del.Removed)
		assert.Equal(t, "removed", s.get(w.ID).Status)

		// The platform workspace is the org's root.
		_, err = s.admin.DeleteWorkspace(bg, s.platformID, false)
		assert.Equal(t, http.StatusUnprocessableEntity, apiStatus(err), "delete platform: %v", err)
		_, err = s.admin.PauseWorkspace(bg, s.platformID)
		assert.Equal(t, http.StatusUnprocessableEntity, apiStatus(err), "pause platform: %v", err)

		// Tokens: mint, use, list (no secrets), revoke.
		tok, err := s.admin.CreateToken(bg, client.CreateToken{Kind: "admin", Name: "api-ci"})
		require.NoError(t, err)
		require.NotEmpty(t, tok.Secret)
		other := client.New(s.url, tok.Secret)
		me2, err := other.Whoami(bg)
		require.NoError(t, err)
		assert.Equal(t, tok.Token.ID, me2.TokenID)
		var raw []byte
		require.NoError(t, s.admin.Do(bg, http.MethodGet, "/v1/tokens", nil, &raw))
		assert.NotContains(t, string(raw), tok.Secret, "token list shows no secret")
		toks, err := s.admin.ListTokens(bg)
		require.NoError(t, err)
		assert.Contains(t, tokenIDs(toks), tok.Token.ID)
		require.NoError(t, s.admin.RevokeToken(bg, tok.Token.ID))
		_, err = other.Whoami(bg)
		assert.Equal(t, http.StatusUnauthorized, apiStatus(err), "revoked token: %v", err)

		// Audit: every mutation above left an entry.
		acts := map[string]int{}
		page, err := s.admin.ListAudit(bg, "", 200, 0)
		require.NoError(t, err)
		for _, e := range page.Entries {
			acts[e.Action]++
		}
		for _, a := range []string{"workspace.create", "workspace.update", "workspace.delete", "token.create", "token.revoke", "box.provision", "box.healthy"} {
			assert.Positive(t, acts[a], "audit action %s (have %v)", a, acts)
		}
	})

	t.Run("cli", func(t *testing.T) {
		s := s.with(t)
		// The CLI acts as the person at the keyboard: DATA_DIR/owner.token.
		out := s.cliOK("whoami")
		assert.Contains(t, out, "user")
		assert.Contains(t, out, "owner")
		assert.Contains(t, out, s.orgID)
		var who client.Whoami
		s.cliJSON(&who, "whoami")
		assert.Equal(t, s.orgID, who.Principal.OrgID)

		assert.Contains(t, s.cliOK("workspaces", "ls"), s.platformID)
		var created client.Workspace
		s.cliJSON(&created, "workspaces", "create", "cli-ws", "--no-start")
		require.NotEmpty(t, created.ID)
		assert.Equal(t, "stopped", created.Status)
		var got client.Workspace
		s.cliJSON(&got, "ws", "get", created.ID)
		assert.Equal(t, "cli-ws", got.Name)
		var list []client.Workspace
		s.cliJSON(&list, "ws", "ls")
		assert.Contains(t, names(list), "cli-ws")
		s.cliOK("workspaces", "rm", created.ID)
		assert.Equal(t, "removed", s.get(created.ID).Status)

		var tok client.CreatedToken
		s.cliJSON(&tok, "tokens", "create", "--kind", "admin", "--name", "cli-ci")
		require.NotEmpty(t, tok.Secret)
		var toks []client.Token
		s.cliJSON(&toks, "tokens", "ls")
		assert.Contains(t, tokenIDs(toks), tok.Token.ID)
		assert.NotContains(t, s.cliOK("tokens", "ls"), tok.Secret)
		s.cliOK("tokens", "revoke", tok.Token.ID)
		_, err := client.New(s.url, tok.Secret).Whoami(bg)
		assert.Equal(t, http.StatusUnauthorized, apiStatus(err))

		assert.Contains(t, s.cliOK("audit"), "token.revoke")
		var page client.AuditPage
		s.cliJSON(&page, "audit", "--limit", "5")
		assert.Len(t, page.Entries, 5)

		// A server error: one line on stderr, nothing on stdout, exit != 0.
		for _, args := range [][]string{
			{"workspaces", "get", "no-such-workspace"},
			{"workspaces", "create", "cli-dup", "--no-start", "--parent", "no-such-parent"},
			{"--token", "op_admin_bogus_bogus", "whoami"},
			{"workspaces", "rm", s.platformID},
		} {
			stdout, stderr, code := s.cli(args...)
			assert.NotEqual(t, 0, code, "%v", args)
			assert.Empty(t, stdout, "%v", args)
			assert.Equal(t, 1, strings.Count(strings.TrimRight(stderr, "\n"), "\n")+1, "%v: one line on stderr, got %q", args, stderr)
		}
	})

	// Restart on the same dir (not a subtest: it replaces s's process).
	{
		platformPID := boxPID(t, s.platformID)
		orgID, token, platformID := s.orgID, s.token, s.platformID
		s.proc.Stop() // SIGTERM: a graceful stop; boxes live on by design
		require.True(t, e2etest.ProcessAlive(platformPID), "stopping the control plane must not stop boxes")
		s.start()
		out := s.proc.Output()
		assert.NotContains(t, out, token, "the admin token is printed only on the first run")
		assert.NotContains(t, out, "shown once")
		assert.Equal(t, token, s.token, "admin.token unchanged")
		assert.Equal(t, orgID, s.orgID, "same org")
		assert.Equal(t, platformID, s.platformID, "same platform workspace")
		me, err := s.admin.Whoami(bg)
		require.NoError(t, err, "the first run's token still works")
		assert.Equal(t, orgID, me.OrgID)
		var raw json.RawMessage
		require.NoError(t, s.admin.Do(bg, http.MethodGet, "/v1/workspaces", nil, &raw))
		var list []client.Workspace
		require.NoError(t, json.Unmarshal(raw, &list))
		platforms := 0
		for _, w := range list {
			if w.Kind == "platform" {
				platforms++
			}
		}
		assert.Equal(t, 1, platforms)
		// The platform box was adopted, not replaced.
		w := s.waitStatus(s.platformID, "running", 1, 10*time.Second)
		assert.Equal(t, int64(1), w.Generation)
		assert.Equal(t, platformPID, boxPID(t, s.platformID))
	}
}

func names(list []client.Workspace) []string {
	var out []string
	for _, w := range list {
		out = append(out, w.Name)
	}
	return out
}

func tokenIDs(list []client.Token) []string {
	var out []string
	for _, t := range list {
		out = append(out, t.ID)
	}
	return out
}

func lastArg(cmdline []byte) string {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	return args[len(args)-1]
}
