// Package cli is orgplane's command line: the server commands (up, serve),
// operator commands on the store (org, keys), the reference agent, MCP over
// stdio, and the client commands that speak the HTTP API.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

// Globals are the flags every client command shares.
type Globals struct {
	Server  string
	Token   string
	DataDir string
	JSON    bool

	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// envOr returns the env var's value, or def.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Default locations of `orgplane up`.
const (
	DefaultDataDir = "orgplane-data"
	DefaultAddr    = "127.0.0.1:8080"
)

// Client returns an API client from --server/ORGPLANE_SERVER and
// --token/ORGPLANE_TOKEN, falling back to the data dir's admin.token and
// server address.
func (g *Globals) Client() (*client.Client, error) {
	server, token := g.Server, g.Token
	if server == "" {
		server = "http://" + DefaultAddr
		if b, err := os.ReadFile(filepath.Join(g.DataDir, "server.url")); err == nil {
			server = strings.TrimSpace(string(b))
		}
	}
	if token == "" {
		// A person at the keyboard first: owner.token, else admin.token.
		for _, name := range []string{"owner.token", "admin.token"} {
			if b, err := os.ReadFile(filepath.Join(g.DataDir, name)); err == nil {
				token = strings.TrimSpace(string(b))
				break
			}
		}
		if token == "" {
			return nil, fmt.Errorf("no token: pass --token or set ORGPLANE_TOKEN (or run where %s/owner.token or admin.token exists)", g.DataDir)
		}
	}
	return client.New(server, token), nil
}

// NewRoot returns the root command.
func NewRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &Globals{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	root := &cobra.Command{
		Use:   "orgplane",
		Short: "Control plane for an organization of long-running AI agent workspaces",
		Long: `orgplane runs an org of AI agent workspaces: boxes whose environment comes from
encrypted secrets, restarted safely when a secret changes.

Start everything embedded with "orgplane up"; talk to a server with the
client commands (workspaces, secrets, tokens, audit, ...).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.Server, "server", os.Getenv("ORGPLANE_SERVER"), "server URL (env ORGPLANE_SERVER; default from the data dir, else http://"+DefaultAddr+")")
	pf.StringVar(&g.Token, "token", os.Getenv("ORGPLANE_TOKEN"), "API token (env ORGPLANE_TOKEN; default DATA_DIR/owner.token, else DATA_DIR/admin.token)")
	pf.StringVar(&g.DataDir, "data-dir", envOr("ORGPLANE_DATA_DIR", DefaultDataDir), "data directory (env ORGPLANE_DATA_DIR)")
	pf.BoolVar(&g.JSON, "json", false, "machine-readable JSON output")

	root.AddCommand(newUpCmd(g), newServeCmd(g), newOrgCmd(g))
	for _, add := range extraCommands {
		root.AddCommand(add(g)...)
	}
	return root
}

// extraCommands lets each file of the package register its commands.
var extraCommands []func(g *Globals) []*cobra.Command

// Main runs the command line and returns the exit code: 0, 1 on an error,
// ExitApprovalRequired when the org's policy held a write for people, and
// for the commands that wait for a change ExitRestartFailed or
// ExitTimeout.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := NewRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var gated *client.ApprovalRequiredError
		if errors.As(err, &gated) {
			// Not an error: the org's policy holds the write for people.
			asJSON, _ := root.PersistentFlags().GetBool("json")
			printApprovalRequired(stdout, stderr, asJSON, gated.Approval)
			return ExitApprovalRequired
		}
		var exit *exitError
		if errors.As(err, &exit) {
			if exit.msg != "" {
				fmt.Fprintln(stderr, "error:", errorLine(err))
			}
			return exit.code
		}
		fmt.Fprintln(stderr, "error:", errorLine(err))
		return 1
	}
	return 0
}

// errorLine renders an error as one clear line. A server's error reads
// "message (status code)" (client.Error), with what a command added to it.
func errorLine(err error) string {
	return oneLine(err.Error())
}

// oneLine folds whitespace and drops control characters: a server's (or a
// proxy's) text must neither span lines nor reach the terminal as escapes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}
