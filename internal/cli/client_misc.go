package cli

import (
	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newWhoamiCmd(g)}
	})
}

func newWhoamiCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who the server thinks you are (from your token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			p, err := c.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, client.Whoami{Principal: p})
			}
			f := newFields(g.Stdout)
			f.add("kind", p.Kind)
			f.add("org", p.OrgID)
			if p.WorkspaceID != "" {
				f.add("workspace", p.WorkspaceID)
			}
			if p.ActingWorkspaceID != "" {
				f.add("acting workspace", p.ActingWorkspaceID)
			}
			if p.UserID != "" {
				f.add("user", p.UserID)
				f.add("role", p.Role)
			}
			f.add("token", p.TokenID)
			return f.flush()
		},
	}
}
