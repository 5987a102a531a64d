package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newAuditCmd(g)}
	})
}

func newAuditCmd(g *Globals) *cobra.Command {
	var (
		workspace string
		limit     int
		before    int64
		all       bool
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read the audit log, newest first",
		Long: `Read the org's append-only audit log, newest first, one page at a time.
When there are older entries, a hint gives the --before of the next page.
A --limit above 500, or --all, is read in pages of 500.`,
		Example: `  orgplane audit --workspace ws_123 --limit 20`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit must be a positive number; got %d", limit)
			}
			if all && limit > 0 {
				return fmt.Errorf("--all reads every entry: give it or --limit, not both")
			}
			if before < 0 {
				return fmt.Errorf("--before must be an audit entry ID; got %d", before)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			page, err := readAudit(cmd, c, workspace, limit, before, all)
			if err != nil {
				return err
			}
			if g.JSON {
				if page.Entries == nil {
					page.Entries = []client.AuditEntry{}
				}
				return printJSON(g.Stdout, page)
			}
			t := newTable(g.Stdout, "ID", "TIME", "PRINCIPAL", "ACTION", "TARGET", "OUTCOME")
			for _, e := range page.Entries {
				principal := e.PrincipalKind
				if e.ActingWorkspaceID != "" {
					principal += "@" + e.ActingWorkspaceID
				}
				if e.TokenID != "" {
					principal += " (" + e.TokenID + ")"
				}
				target := e.TargetID
				if e.TargetKind != "" && e.TargetID != "" {
					target = e.TargetKind + " " + e.TargetID
				}
				t.row(strconv.FormatInt(e.ID, 10), fmtTime(e.At), principal, e.Action, target, e.Outcome)
			}
			if err := t.flush(); err != nil {
				return err
			}
			if page.NextBefore > 0 {
				next := []string{"orgplane audit"}
				if workspace != "" {
					next = append(next, "--workspace "+workspace)
				}
				if limit > 0 {
					next = append(next, "--limit "+strconv.Itoa(limit))
				}
				next = append(next, "--before "+strconv.FormatInt(page.NextBefore, 10))
				fmt.Fprintf(g.Stderr, "more entries: %s\n", cell(strings.Join(next, " ")))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&workspace, "workspace", "", "only entries about this workspace")
	f.IntVar(&limit, "limit", 0, "at most this many entries (default: the server's page, 100; above 500, read in pages of 500)")
	f.Int64Var(&before, "before", 0, "only entries older than this entry ID (from the previous page's hint)")
	f.BoolVar(&all, "all", false, "every entry (older than --before), read in pages of 500")
	return cmd
}

// readAudit reads one page as asked, or walks pages of cliPage (at most
// limit entries in all, or every one with all); NextBefore is then that of
// the last page read.
func readAudit(cmd *cobra.Command, c *client.Client, workspace string, limit int, before int64, all bool) (client.AuditPage, error) {
	if !all && limit <= cliPage {
		return c.ListAudit(cmd.Context(), workspace, limit, before)
	}
	out := client.AuditPage{Entries: []client.AuditEntry{}}
	for {
		n := cliPage
		if !all {
			n = min(n, limit-len(out.Entries))
		}
		page, err := c.ListAudit(cmd.Context(), workspace, n, before)
		if err != nil {
			return client.AuditPage{}, err
		}
		out.Entries = append(out.Entries, page.Entries...)
		out.NextBefore = page.NextBefore
		if page.NextBefore == 0 || len(page.Entries) == 0 || (!all && len(out.Entries) >= limit) {
			return out, nil
		}
		before = page.NextBefore
	}
}
