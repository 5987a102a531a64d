package mcp_test

import (
	"os/exec"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orgplane/orgplane/internal/e2etest"
	"github.com/orgplane/orgplane/internal/testenv"
)

// stdioTransport runs `orgplane mcp` (the real binary) as a subprocess
// against the Env's server.
func stdioTransport(t testing.TB, e *testenv.Env, token string) sdk.Transport {
	t.Helper()
	cmd := exec.Command(e2etest.Binary(t), "mcp", "--server", e.URL, "--token", token, "--data-dir", t.TempDir())
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	return &sdk.CommandTransport{Command: cmd}
}
