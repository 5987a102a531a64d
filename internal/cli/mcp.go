package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/mcp"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command { return []*cobra.Command{newMCPCmd(g)} })
}

func newMCPCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "mcp",
		Short: "Serve orgplane's MCP tools over stdio, for a local MCP client",
		Long: `Serve orgplane's MCP tools over stdin/stdout for a local MCP client (an agent's
configuration runs "orgplane mcp"). Every tool call is relayed to the server as an
MCP call: an agent's, to which the org's approval policy applies.

The server and token are the CLI's: --server/ORGPLANE_SERVER and --token/ORGPLANE_TOKEN,
else DATA_DIR/admin.token. MCP is for agents: a person's token is refused. An admin
token gets the management tools, a workspace token the workspace tools.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.agentClient()
			if err != nil {
				return err
			}
			b := mcp.NewRemoteBackend(c)
			// The tool set follows the token: ask the server who it is
			// (as an MCP call, so that a person's token is refused now).
			p, err := b.Whoami(cmd.Context())
			if err != nil {
				return fmt.Errorf("orgplane mcp: %w", err)
			}
			srv := mcp.NewServer(mcp.ModeFor(p.Kind), b)
			return srv.Run(cmd.Context(), &sdk.StdioTransport{})
		},
	}
}

// agentClient is Globals.Client for an agent: without --token, the data
// dir's admin.token (never owner.token: MCP refuses people's tokens).
func (g *Globals) agentClient() (*client.Client, error) {
	if g.Token != "" {
		return g.Client()
	}
	b, err := os.ReadFile(filepath.Join(g.DataDir, "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("no token: pass --token or set ORGPLANE_TOKEN (an admin or workspace token), or run where %s/admin.token exists", g.DataDir)
	}
	cp := *g
	cp.Token = strings.TrimSpace(string(b))
	return cp.Client()
}
