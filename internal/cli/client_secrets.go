package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newSecretsCmd(g)}
	})
}

// maxValueRead bounds what is read from stdin for one value. The server
// refuses values over 64 KiB with a clear message; this only keeps a wrong
// pipe from filling memory.
const maxValueRead = 1 << 20

func newSecretsCmd(g *Globals) *cobra.Command {
	cmd := noArgsGroup(&cobra.Command{
		Use:   "secrets",
		Short: "List, set and remove secrets (values are never shown)",
		Long: `Secrets are env var values, encrypted at rest: global (org-wide) or scoped
to one workspace (--workspace), where they override a global of the same key.

Setting or removing one shows what happens to each affected workspace
(restart or skip, and why). --dry-run shows it without changing anything.
--wait follows the restarts it queued until they have all ended (see
"orgplane changes watch" for the output and exit codes).`,
	})
	cmd.AddCommand(newSecretsLsCmd(g), newSecretsSetCmd(g), newSecretsRmCmd(g))
	return cmd
}

func newSecretsLsCmd(g *Globals) *cobra.Command {
	var workspace string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the global secrets, or a workspace's (keys only)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			list, err := c.ListSecrets(cmd.Context(), workspace)
			if err != nil {
				return err
			}
			if g.JSON {
				if list == nil {
					list = []client.SecretMeta{}
				}
				return printJSON(g.Stdout, list)
			}
			if workspace == "" {
				t := newTable(g.Stdout, "KEY", "SCOPE", "VERSION", "UPDATED")
				for _, s := range list {
					t.row(s.Key, s.Scope, strconv.FormatInt(s.Version, 10), fmtTime(s.UpdatedAt))
				}
				return t.flush()
			}
			t := newTable(g.Stdout, "KEY", "SCOPE", "OVERRIDES GLOBAL", "VERSION", "UPDATED")
			for _, s := range list {
				t.row(s.Key, s.Scope, yesNo(s.OverridesGlobal), strconv.FormatInt(s.Version, 10), fmtTime(s.UpdatedAt))
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&workspace, "workspace", "", "a workspace's secrets (with the globals it sees) instead of the global ones")
	return cmd
}

func newSecretsSetCmd(g *Globals) *cobra.Command {
	var (
		workspace string
		dryRun    bool
		value     string
		wait      waitFlags
	)
	cmd := &cobra.Command{
		Use:   "set KEY",
		Short: "Set a secret; the value comes from stdin or a prompt",
		Long: `Set a global secret, or a workspace's with --workspace.

The value is read from stdin when stdin is not a terminal (one trailing
newline is dropped), otherwise from a prompt that does not echo. --value
works too, but leaves the secret in your shell history.

--wait follows the restarts the write queued until they have all ended.
` + waitHelp,
		Example: `  orgplane secrets set OPENAI_API_KEY < key.txt
  orgplane secrets set DB_PASSWORD --workspace ws_123 --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if key == "" {
				return errors.New("the secret key must not be empty")
			}
			var v string
			if cmd.Flags().Changed("value") {
				fmt.Fprintln(g.Stderr, "warning: --value leaves the secret in your shell history and the process list; pipe it on stdin or type it at the prompt instead")
				v = value
			} else {
				var err error
				if v, err = readSecretValue(cmd.Context(), g, key); err != nil {
					return err
				}
			}
			if v == "" {
				return fmt.Errorf("empty value for %s: nothing sent (to remove a secret: orgplane secrets rm %s)", key, key)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			if err := wait.check(dryRun); err != nil {
				return err
			}
			res, err := c.SetSecret(cmd.Context(), workspace, key, v, dryRun)
			if err != nil {
				return err
			}
			return wait.after(cmd, g, c, "set", key, workspace, dryRun, res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&workspace, "workspace", "", "set it on this workspace only (default: global)")
	f.BoolVar(&dryRun, "dry-run", false, "show what would happen to each workspace; change nothing")
	f.StringVar(&value, "value", "", "the value (discouraged: it stays in your shell history)")
	wait.add(f)
	return cmd
}

func newSecretsRmCmd(g *Globals) *cobra.Command {
	var (
		workspace string
		dryRun    bool
		wait      waitFlags
	)
	cmd := &cobra.Command{
		Use:     "rm KEY",
		Aliases: []string{"delete"},
		Short:   "Remove a secret",
		Long: `Remove a global secret, or a workspace's with --workspace.

--wait follows the restarts the removal queued until they have all ended.
` + waitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if key == "" {
				return errors.New("the secret key must not be empty")
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			if err := wait.check(dryRun); err != nil {
				return err
			}
			res, err := c.DeleteSecret(cmd.Context(), workspace, key, dryRun)
			if err != nil {
				return err
			}
			return wait.after(cmd, g, c, "removed", key, workspace, dryRun, res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&workspace, "workspace", "", "remove this workspace's secret (default: the global one)")
	f.BoolVar(&dryRun, "dry-run", false, "show what would happen to each workspace; change nothing")
	wait.add(f)
	return cmd
}

// readSecretValue reads a value from stdin, or prompts for it without echo
// when stdin is a terminal.
func readSecretValue(ctx context.Context, g *Globals, key string) (string, error) {
	if g.Stdin == nil {
		return "", errors.New("no value: pipe it on stdin")
	}
	if f, ok := g.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return promptSecret(ctx, g, int(f.Fd()), key)
	}
	b, err := io.ReadAll(io.LimitReader(g.Stdin, maxValueRead+1))
	if err != nil {
		return "", fmt.Errorf("read the value from stdin: %w", err)
	}
	if len(b) > maxValueRead {
		return "", fmt.Errorf("the value on stdin is over %d bytes: nothing sent", maxValueRead)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	return s, nil
}

// promptSecret reads a value from the terminal without echo. Interrupting
// it gives the terminal its echo back.
func promptSecret(ctx context.Context, g *Globals, fd int, key string) (string, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("read the terminal: %w", err)
	}
	rfd, release, err := ownFD(fd)
	if err != nil {
		return "", fmt.Errorf("read the terminal: %w", err)
	}
	fmt.Fprintf(g.Stderr, "Value for %s (not shown): ", key)
	type answer struct {
		b   []byte
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		defer release()
		b, err := term.ReadPassword(rfd)
		ch <- answer{b, err}
	}()
	select {
	case a := <-ch:
		fmt.Fprintln(g.Stderr)
		if a.err != nil {
			return "", fmt.Errorf("read the value: %w", a.err)
		}
		return string(a.b), nil
	case <-ctx.Done():
		_ = term.Restore(fd, state)
		fmt.Fprintln(g.Stderr)
		return "", ctx.Err()
	}
}

// printSecretWrite reports a secret write and its impact on each workspace.
func printSecretWrite(g *Globals, verb, key, workspace string, dryRun bool, res client.SecretWrite) error {
	if g.JSON {
		if res.Decisions == nil {
			res.Decisions = []client.Decision{}
		}
		return printJSON(g.Stdout, res)
	}
	dry := dryRun || res.DryRun
	if res.Key != "" {
		key = res.Key
	}
	scope := res.Scope
	if scope == "" {
		scope = "global"
		if workspace != "" {
			scope = "workspace " + workspace
		}
	}
	what := scope
	if res.Version > 0 {
		what += ", version " + strconv.FormatInt(res.Version, 10)
	}
	if dry {
		verb = "dry run: would have " + verb
	}
	fmt.Fprintf(g.Stdout, "%s %s (%s)\n", verb, cell(key), cell(what))
	if len(res.Decisions) > 0 {
		if err := printDecisions(g.Stdout, res.Decisions); err != nil {
			return err
		}
	} else if dry {
		fmt.Fprintln(g.Stdout, "no workspace is affected")
	}
	if res.DecisionsTruncated {
		shown, total := len(res.Decisions), 0
		for _, n := range res.Summary {
			total += n
		}
		fmt.Fprintf(g.Stdout, "(%d of %d decisions shown", shown, total)
		if res.ChangeID != "" {
			fmt.Fprintf(g.Stdout, "; all of them: orgplane changes decisions %s", cell(res.ChangeID))
		}
		fmt.Fprintln(g.Stdout, ")")
	}
	if dry {
		fmt.Fprintln(g.Stdout, "dry run: nothing was changed")
	}
	if res.ChangeID != "" && !dry {
		fmt.Fprintf(g.Stdout, "change %s (follow it: orgplane changes watch %s)\n", cell(res.ChangeID), cell(res.ChangeID))
	}
	return nil
}

// printDecisions writes one row per workspace: what propagation decided
// for it and why.
func printDecisions(w io.Writer, ds []client.Decision) error {
	t := newTable(w, "WORKSPACE", "ACTION", "REASON")
	for _, d := range ds {
		t.row(d.WorkspaceID, d.Action, d.Reason)
	}
	return t.flush()
}
