package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
)

// `orgplane up` creates the person "owner" with the org and keeps their
// token in DATA_DIR/owner.token (0600); the CLI acts as that person by
// default (a person at the keyboard), and people are managed with it.
func TestUpCreatesTheOwnerAndTheCLIActsAsThem(t *testing.T) {
	s := startServer(t)
	path := filepath.Join(s.dir, "orgplane-data", "owner.token")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.Contains(t, s.proc.Output(), "owner.token")

	var who client.Whoami
	s.cliJSON(&who, "whoami")
	require.Equal(t, "user", who.Principal.Kind)
	require.Equal(t, "owner", who.Principal.Role)

	out := s.cliOK("users", "add", "alice", "--role", "viewer")
	require.Contains(t, out, "added viewer alice")
	var people []client.User
	s.cliJSON(&people, "users", "ls")
	var names []string
	for _, u := range people {
		names = append(names, u.Name+":"+u.Role)
	}
	require.ElementsMatch(t, []string{"owner:owner", "alice:viewer"}, names)
	_, errOut, code := s.cli("users", "rm", "owner")
	require.NotZero(t, code)
	require.Contains(t, errOut, "last owner")
	require.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, "one line: %s", errOut)
	s.cliOK("users", "rm", "alice")

	// A restart keeps the token; a missing one is minted again.
	first, err := os.ReadFile(path)
	require.NoError(t, err)
	s.proc.Stop()
	s.start()
	again, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, first, again)
	s.proc.Stop()
	require.NoError(t, os.Remove(path))
	s.start()
	fresh, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotEqual(t, first, fresh)
	s.cliJSON(&who, "whoami")
	require.Equal(t, "owner", who.Principal.Role)
}

// The policy from the CLI: the owner (the CLI's default person) changes
// it; the org's admin token, automation, cannot.
func TestPolicyFromTheCLI(t *testing.T) {
	s := startServer(t)
	out := s.cliOK("policy", "show")
	require.Contains(t, out, "never (the defaults)")
	var p client.Policy
	s.cliJSON(&p, "policy", "set", "--quorum", "2", "--gate", "admin_token=off", "--default-ttl", "2h")
	require.Equal(t, 2, p.Quorum)
	require.False(t, p.Gates.AdminToken)
	require.True(t, p.Gates.PlatformRestart, "what was not given stays")
	require.Equal(t, 7200, p.DefaultTTLSeconds)
	_, errOut, code := s.cli("--token", s.token, "policy", "set", "--quorum", "1")
	require.NotZero(t, code)
	require.Contains(t, errOut, "owner")
	_, errOut, code = s.cli("policy", "set", "--gate", "everything=off")
	require.NotZero(t, code)
	require.Contains(t, errOut, "NAME=on or NAME=off")
	s.cliJSON(&p, "policy", "show")
	require.Equal(t, 2, p.Quorum, "the refused changes changed nothing")
}
