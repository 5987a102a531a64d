package cli

import (
	"strconv"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newRestartsCmd(g)}
	})
}

func newRestartsCmd(g *Globals) *cobra.Command {
	cmd := noArgsGroup(&cobra.Command{
		Use:   "restarts",
		Short: "Inspect restart jobs",
	})
	cmd.AddCommand(newRestartsLsCmd(g))
	return cmd
}

func newRestartsLsCmd(g *Globals) *cobra.Command {
	var workspace string
	cmd := &cobra.Command{
		Use:     "ls [--workspace ID]",
		Aliases: []string{"list"},
		Short:   "List restart jobs and decisions, newest first (the org's, or one workspace's)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			list, err := c.ListRestarts(cmd.Context(), workspace)
			if err != nil {
				return err
			}
			if g.JSON {
				if list == nil {
					list = []client.RestartJob{}
				}
				return printJSON(g.Stdout, list)
			}
			t := newTable(g.Stdout, "ID", "WORKSPACE", "STATE", "REASON", "ATTEMPTS", "ERROR", "CREATED")
			for _, j := range list {
				reason := j.Reason
				if j.RequestedReason != "" {
					reason += ": " + j.RequestedReason
				}
				attempts := strconv.Itoa(j.Attempts)
				if j.MaxAttempts > 0 {
					attempts += "/" + strconv.Itoa(j.MaxAttempts)
				}
				t.row(j.ID, j.WorkspaceID, j.State, truncate(cell(reason), 48), attempts,
					truncate(cell(j.Error), 60), fmtTime(j.CreatedAt))
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&workspace, "workspace", "", "only this workspace's (default: the whole org's; admins only)")
	return cmd
}
