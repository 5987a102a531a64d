package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newWorkspacesCmd(g)}
	})
}

func newWorkspacesCmd(g *Globals) *cobra.Command {
	cmd := noArgsGroup(&cobra.Command{
		Use:     "workspaces",
		Aliases: []string{"ws"},
		Short:   "List, create, change and remove workspaces",
	})
	cmd.AddCommand(
		newWorkspacesLsCmd(g),
		newWorkspacesGetCmd(g),
		newWorkspacesCreateCmd(g),
		newWorkspacesUpdateCmd(g),
		newWorkspacesRmCmd(g),
		newWorkspacesLogsCmd(g),
		newWorkspacesRestartCmd(g),
		newWorkspacesPauseCmd(g),
		newWorkspacesResumeCmd(g),
	)
	return cmd
}

func newWorkspacesLsCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the workspaces you may see",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			list, err := allWorkspaces(cmd.Context(), c)
			if err != nil {
				return err
			}
			if g.JSON {
				if list == nil {
					list = []client.Workspace{}
				}
				return printJSON(g.Stdout, list)
			}
			t := newTable(g.Stdout, "ID", "NAME", "KIND", "RUNTIME", "STATUS", "GEN", "STALE", "PARENT")
			for _, w := range list {
				t.row(w.ID, w.Name, w.Kind, w.Runtime, w.Status, strconv.FormatInt(w.Generation, 10), yesNo(w.Stale), deref(w.ParentID))
			}
			return t.flush()
		},
	}
}

// cliPage is how many entries the command line asks for at a time when it
// walks a list: small enough for the server to answer fast, large enough
// for few round trips.
const cliPage = 500

// allWorkspaces walks the workspaces in pages, so that a huge org is never
// one answer. A server from before paging (which refuses the limit) is
// asked for the whole list.
func allWorkspaces(ctx context.Context, c *client.Client) ([]client.Workspace, error) {
	var all []client.Workspace
	for after := ""; ; {
		page, next, err := c.ListWorkspacesPage(ctx, cliPage, after)
		var ae *client.Error
		if after == "" && errors.As(err, &ae) && ae.Code == "unknown_query_param" {
			return c.ListWorkspaces(ctx)
		}
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" || next == after {
			return all, nil
		}
		after = next
	}
}

// printWorkspace writes one workspace as key: value lines, or as JSON.
func printWorkspace(g *Globals, w client.Workspace) error {
	if g.JSON {
		return printJSON(g.Stdout, w)
	}
	f := newFields(g.Stdout)
	f.add("id", w.ID)
	f.add("name", w.Name)
	f.add("org", w.OrgID)
	f.add("parent", deref(w.ParentID))
	f.add("kind", w.Kind)
	f.add("runtime", w.Runtime)
	f.add("status", w.Status)
	f.add("restart policy", w.RestartPolicy)
	f.add("protected", yesNo(w.Protected))
	f.add("generation", strconv.FormatInt(w.Generation, 10))
	f.add("stale", yesNo(w.Stale))
	f.add("last error", w.LastError)
	f.add("spec", compactJSON(w.Spec))
	f.add("created", fmtTime(w.CreatedAt))
	f.add("updated", fmtTime(w.UpdatedAt))
	return f.flush()
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

func newWorkspacesGetCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show one workspace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			w, err := c.GetWorkspace(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printWorkspace(g, w)
		},
	}
}

// specFlags are --spec and --spec-file, shared by create and update.
type specFlags struct {
	inline string
	file   string
}

func (s *specFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.inline, "spec", "", `runtime spec as a JSON object, e.g. '{"command":["./agent"]}'`)
	cmd.Flags().StringVar(&s.file, "spec-file", "", `read the runtime spec from a JSON file ("-": stdin)`)
	cmd.MarkFlagsMutuallyExclusive("spec", "spec-file")
}

// read returns the spec given by the flags, nil when none was, and refuses
// anything that is not a JSON object before a request is sent.
func (s *specFlags) read(cmd *cobra.Command, stdin io.Reader) (json.RawMessage, error) {
	var raw []byte
	switch {
	case cmd.Flags().Changed("spec"):
		raw = []byte(s.inline)
	case cmd.Flags().Changed("spec-file"):
		var err error
		if s.file == "-" {
			raw, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
		} else {
			raw, err = os.ReadFile(s.file)
		}
		if err != nil {
			return nil, fmt.Errorf("read --spec-file: %w", err)
		}
	default:
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, errors.New("the spec must be a JSON object, e.g. '{\"command\":[\"./agent\"]}'")
	}
	return json.RawMessage(raw), nil
}

func checkRestartPolicy(p string) error {
	if p != "auto" && p != "manual" {
		return fmt.Errorf("--restart-policy must be auto or manual; got %q", p)
	}
	return nil
}

func newWorkspacesCreateCmd(g *Globals) *cobra.Command {
	var (
		in      client.CreateWorkspace
		spec    specFlags
		noStart bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a workspace (and start its box unless --no-start)",
		Example: `  orgplane workspaces create researcher --parent ws_123
  orgplane workspaces create web --runtime docker --spec '{"image":"example/agent:1"}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in.Name = args[0]
			if in.Name == "" {
				return errors.New("the workspace name must not be empty")
			}
			if cmd.Flags().Changed("restart-policy") {
				if err := checkRestartPolicy(in.RestartPolicy); err != nil {
					return err
				}
			}
			s, err := spec.read(cmd, g.Stdin)
			if err != nil {
				return err
			}
			in.Spec = s
			if noStart {
				start := false
				in.Start = &start
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			w, err := c.CreateWorkspace(cmd.Context(), in)
			if err != nil {
				return err
			}
			return printWorkspace(g, w)
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.ParentID, "parent", "", "parent workspace ID (default: the platform workspace)")
	f.StringVar(&in.Runtime, "runtime", "", "runtime: process, docker or external (default: process)")
	spec.register(cmd)
	f.StringVar(&in.RestartPolicy, "restart-policy", "", "auto or manual (default: auto)")
	f.BoolVar(&in.Protected, "protected", false, "never restart it automatically when a secret changes")
	f.BoolVar(&noStart, "no-start", false, "create it without starting its box")
	return cmd
}

func newWorkspacesUpdateCmd(g *Globals) *cobra.Command {
	var (
		name, parent, policy string
		protected            bool
		spec                 specFlags
	)
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change a workspace; only the flags given are changed",
		Example: `  orgplane workspaces update ws_123 --restart-policy manual
  orgplane workspaces update ws_123 --protected=false`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in client.PatchWorkspace
			fl := cmd.Flags()
			if fl.Changed("name") {
				if name == "" {
					return errors.New("--name must not be empty")
				}
				in.Name = &name
			}
			if fl.Changed("parent") {
				if parent == "" {
					return errors.New("--parent must not be empty")
				}
				in.ParentID = &parent
			}
			if fl.Changed("restart-policy") {
				if err := checkRestartPolicy(policy); err != nil {
					return err
				}
				in.RestartPolicy = &policy
			}
			if fl.Changed("protected") {
				in.Protected = &protected
			}
			s, err := spec.read(cmd, g.Stdin)
			if err != nil {
				return err
			}
			in.Spec = s
			if in.Name == nil && in.ParentID == nil && in.RestartPolicy == nil && in.Protected == nil && in.Spec == nil {
				return errors.New("nothing to change: give at least one of --name, --parent, --spec, --spec-file, --restart-policy, --protected")
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			w, err := c.PatchWorkspace(cmd.Context(), args[0], in)
			if err != nil {
				return err
			}
			return printWorkspace(g, w)
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "new name")
	f.StringVar(&parent, "parent", "", "new parent workspace ID")
	spec.register(cmd)
	f.StringVar(&policy, "restart-policy", "", "auto or manual")
	f.BoolVar(&protected, "protected", false, "protect it from automatic restarts (--protected=false to clear)")
	return cmd
}

func newWorkspacesRmCmd(g *Globals) *cobra.Command {
	var cascade bool
	cmd := &cobra.Command{
		Use:     "rm ID",
		Aliases: []string{"delete"},
		Short:   "Remove a workspace (with --cascade, its whole subtree)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			res, err := c.DeleteWorkspace(cmd.Context(), args[0], cascade)
			if err != nil {
				return err
			}
			if g.JSON {
				if res.Removed == nil {
					res.Removed = []string{}
				}
				return printJSON(g.Stdout, res)
			}
			for _, id := range res.Removed {
				fmt.Fprintf(g.Stdout, "removed %s\n", cell(id))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&cascade, "cascade", false, "also remove every workspace under it")
	return cmd
}

func newWorkspacesLogsCmd(g *Globals) *cobra.Command {
	var tail int
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print the recent output of a workspace's box",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < 0 {
				return fmt.Errorf("--tail must be a positive number of lines; got %d", tail)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			out, err := c.Logs(cmd.Context(), args[0], tail)
			if err != nil {
				return err
			}
			_, err = g.Stdout.Write(out)
			return err
		},
	}
	cmd.Flags().IntVar(&tail, "tail", 0, "number of lines from the end (default: the server's)")
	return cmd
}

func newWorkspacesRestartCmd(g *Globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "restart ID",
		Short: "Restart a workspace's box now (explicit and audited)",
		Long: `Queue an explicit restart of a workspace's box. This is the only way the
platform workspace is ever restarted; it needs an admin token.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			job, err := c.RestartWorkspace(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, client.RestartAccepted{Job: job})
			}
			fmt.Fprintf(g.Stdout, "restart of %s accepted: job %s (%s)\n", cell(args[0]), cell(job.ID), cell(job.State))
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the job and the audit log")
	return cmd
}

func newWorkspacesPauseCmd(g *Globals) *cobra.Command {
	return workspaceActionCmd(g, "pause ID", "Stop a workspace's box and keep it stopped", "paused",
		(*client.Client).PauseWorkspace)
}

func newWorkspacesResumeCmd(g *Globals) *cobra.Command {
	return workspaceActionCmd(g, "resume ID", "Start a paused workspace again", "resumed",
		(*client.Client).ResumeWorkspace)
}

// workspaceActionCmd is a command that posts an action on one workspace and
// gets the workspace back.
func workspaceActionCmd(g *Globals, use, short, done string, call func(*client.Client, context.Context, string) (client.Workspace, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			w, err := call(c, cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, w)
			}
			fmt.Fprintf(g.Stdout, "%s %s (%s), status %s\n", done, cell(w.ID), cell(w.Name), cell(w.Status))
			return nil
		},
	}
}
