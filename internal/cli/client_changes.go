package cli

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newChangesCmd(g)}
	})
}

// defaultWaitTimeout is how long --wait and changes watch wait by default.
const defaultWaitTimeout = 10 * time.Minute

// waitHelp documents the waiting commands' output and exit codes.
const waitHelp = `On a terminal the progress is one line rewritten in place; otherwise one
line per change of progress. With --json, one JSON object per line:
{"type":"event","event":{...}} for each event about the change and
{"type":"change","change":{...}} (as GET /v1/changes/{id}) each time its
progress changes.

Exit codes: 0 every restart of the change succeeded (or it queued none);
1 an error; 3 the write is held for people's approval (nothing changed
yet; nothing to wait for); 4 the change finished and a restart failed;
5 the timeout passed first (the restarts go on).`

func newChangesCmd(g *Globals) *cobra.Command {
	cmd := noArgsGroup(&cobra.Command{
		Use:   "changes",
		Short: "Show and follow secret changes and their restarts",
		Long: `Every secret write that decides anything records a change: what was written,
what propagation decided for each workspace, and how its restarts go.
"secrets set" and "secrets rm" print its id.`,
	})
	cmd.AddCommand(newChangesShowCmd(g), newChangesWatchCmd(g), newChangesDecisionsCmd(g))
	return cmd
}

func newChangesShowCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a change: its decisions by reason and where its restarts stand",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			ch, err := c.GetChange(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, ch)
			}
			f := newFields(g.Stdout)
			f.add("id", ch.ID)
			f.add("key", ch.Key)
			scope := ch.Scope
			if ch.WorkspaceID != "" {
				scope += " " + ch.WorkspaceID
			}
			f.add("scope", scope)
			f.add("op", ch.Op)
			f.add("state", ch.State)
			f.add("created", fmtTime(ch.CreatedAt))
			f.add("finished", fmtTimePtr(ch.FinishedAt))
			f.add("decisions", strconv.Itoa(ch.Total))
			r := ch.Restarts
			f.add("restarts", fmt.Sprintf("%d queued: %d succeeded, %d failed, %d cancelled, %d running, %d pending",
				r.Queued, r.Succeeded, r.Failed, r.Cancelled, r.Running, r.Pending))
			if err := f.flush(); err != nil {
				return err
			}
			if len(ch.Counts) > 0 {
				fmt.Fprintln(g.Stdout)
				t := newTable(g.Stdout, "REASON", "WORKSPACES")
				for _, reason := range sortedKeys(ch.Counts) {
					t.row(reason, strconv.Itoa(ch.Counts[reason]))
				}
				return t.flush()
			}
			return nil
		},
	}
}

func newChangesWatchCmd(g *Globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a change's restarts until they have all ended",
		Long: `Follow a change's restarts live until they have all ended, as
"kubectl rollout status" follows a rollout.

` + waitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return errors.New("--timeout must not be negative")
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			return watchChange(cmd.Context(), g, c, args[0], timeout, defaultWatchTiming)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", defaultWaitTimeout, "give up waiting after this long (0: no limit); exit code 5")
	return cmd
}

func newChangesDecisionsCmd(g *Globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "decisions ID",
		Short: "List a change's decisions, one row per workspace, in workspace id order",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 || limit > 1000 {
				return errors.New("--page-size must be between 1 and 1000 (0: the server's default)")
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			var all []client.Decision
			var t *table
			if !g.JSON {
				t = newTable(g.Stdout, "WORKSPACE", "ACTION", "REASON")
			}
			for after, first := "", true; first || after != ""; first = false {
				page, next, err := c.ListChangeDecisionsPage(cmd.Context(), args[0], limit, after)
				if err != nil {
					return err
				}
				after = next
				if g.JSON {
					all = append(all, page...)
					continue
				}
				for _, d := range page {
					t.row(d.WorkspaceID, d.Action, d.Reason)
				}
				// Each page is written as it comes: a large change's
				// decisions show without waiting for the last page.
				if err := t.flush(); err != nil {
					return err
				}
			}
			if g.JSON {
				if all == nil {
					all = []client.Decision{}
				}
				return printJSON(g.Stdout, all)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "page-size", 0, "decisions read per request, 1-1000 (default: the server's, 1000)")
	return cmd
}

func sortedKeys(m map[string]int) []string {
	return slices.Sorted(maps.Keys(m))
}

// waitFlags are --wait and --timeout of the secret writes.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) add(f *pflag.FlagSet) {
	f.BoolVar(&w.wait, "wait", false, "follow the restarts the write queued until they have all ended; exit 4 if one failed, 5 on --timeout")
	f.DurationVar(&w.timeout, "timeout", defaultWaitTimeout, "with --wait: give up waiting after this long (0: no limit)")
}

// check refuses what cannot be waited for, before anything is written.
func (w *waitFlags) check(dryRun bool) error {
	if w.wait && dryRun {
		return errors.New("--wait and --dry-run: a dry run changes nothing, so there is nothing to wait for")
	}
	if w.timeout < 0 {
		return errors.New("--timeout must not be negative")
	}
	return nil
}

// after reports a secret write and, with --wait, follows its change.
// A write that queued no restart of its own ends at once.
func (w *waitFlags) after(cmd *cobra.Command, g *Globals, c *client.Client, verb, key, workspace string, dryRun bool, res client.SecretWrite) error {
	if !w.wait {
		return printSecretWrite(g, verb, key, workspace, dryRun, res)
	}
	if g.JSON {
		if res.Decisions == nil {
			res.Decisions = []client.Decision{}
		}
		if err := jsonLine(g.Stdout, struct {
			Type  string             `json:"type"`
			Write client.SecretWrite `json:"write"`
		}{"write", res}); err != nil {
			return err
		}
	} else if err := printSecretWrite(g, verb, key, workspace, dryRun, res); err != nil {
		return err
	}
	if res.ChangeID == "" || res.Summary["restart_queued"] == 0 {
		if !g.JSON {
			// A decision merged into a restart already queued rides on that
			// restart, which belongs to an earlier change.
			if n := res.Summary["coalesced"]; n > 0 {
				fmt.Fprintf(g.Stdout, "no restart queued: %d merged into restarts already queued or pending (orgplane restarts ls --workspace ID)\n", n)
			} else {
				fmt.Fprintln(g.Stdout, "no restart queued: nothing to wait for")
			}
		}
		return nil
	}
	return watchChange(cmd.Context(), g, c, res.ChangeID, w.timeout, defaultWatchTiming)
}
