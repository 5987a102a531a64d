package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newRequestsCmd(g)}
	})
}

func newRequestsCmd(g *Globals) *cobra.Command {
	cmd := noArgsGroup(&cobra.Command{
		Use:   "requests",
		Short: "List, show and answer requests (agents' questions to people)",
		Long: `A request is an agent asking people for something: an answer (ask "text"),
or a secret to be set (ask "secret"). A secret's value goes from the person
straight into the store, never through the agent: the agent's box is not
restarted for it and reads the value from its /values.`,
	})
	cmd.AddCommand(newRequestsLsCmd(g), newRequestsShowCmd(g), newRequestsAnswerCmd(g),
		newRequestsDeclineCmd(g), newRequestsCancelCmd(g))
	return cmd
}

func newRequestsLsCmd(g *Globals) *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List requests, newest first",
		Example: `  orgplane requests ls --state pending`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := lf.filter()
			if err != nil {
				return err
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			list, err := c.ListRequests(cmd.Context(), f)
			if err != nil {
				return err
			}
			if g.JSON {
				if list == nil {
					list = []client.Request{}
				}
				return printJSON(g.Stdout, list)
			}
			t := newTable(g.Stdout, "ID", "STATE", "ASK", "TITLE", "REQUESTER", "CREATED", "EXPIRES")
			for _, r := range list {
				t.row(r.ID, r.State, askLine(r), truncate(r.Title, 60), requesterShort(r.Requester),
					fmtTime(r.CreatedAt), fmtTime(r.ExpiresAt))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if len(list) > 0 {
				lf.moreHint(g.Stderr, "requests", len(list), list[len(list)-1].ID)
			}
			return nil
		},
	}
	lf.register(cmd, "pending, answered, declined, expired, cancelled")
	return cmd
}

// askLine is what a request asks for: text, or which secret.
func askLine(r client.Request) string {
	if r.Ask != "secret" {
		return r.Ask
	}
	s := "secret " + r.Key
	if r.WorkspaceID != "" {
		s += "@" + r.WorkspaceID
	}
	return s
}

func newRequestsShowCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a request",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			r, err := c.GetRequest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printRequest(g, r)
		},
	}
}

func printRequest(g *Globals, r client.Request) error {
	if g.JSON {
		return printJSON(g.Stdout, r)
	}
	f := newFields(g.Stdout)
	f.add("id", r.ID)
	f.add("state", r.State)
	f.add("title", r.Title)
	if r.Detail != "" {
		f.add("detail", r.Detail)
	}
	f.add("ask", r.Ask)
	if r.Ask == "secret" {
		f.add("secret", r.Key)
		scope := "global"
		if r.WorkspaceID != "" {
			scope = "workspace " + r.WorkspaceID
		}
		f.add("scope", scope)
	}
	f.add("requested by", requesterLong(r.Requester))
	f.add("created", fmtTime(r.CreatedAt))
	f.add("expires", fmtTime(r.ExpiresAt))
	if r.EndedAt != nil {
		f.add("ended", fmtTimePtr(r.EndedAt))
	}
	if r.Responder != nil {
		f.add("responder", responderLine(*r.Responder))
	}
	if r.Answer != "" {
		f.add("answer", r.Answer)
	}
	if r.SecretVersion > 0 {
		f.add("secret version", strconv.FormatInt(r.SecretVersion, 10))
	}
	if r.Note != "" {
		f.add("note", r.Note)
	}
	if err := f.flush(); err != nil {
		return err
	}
	if r.State == "pending" {
		how := "orgplane requests answer " + cell(r.ID) + " --text TEXT"
		if r.Ask == "secret" {
			how = "orgplane requests answer " + cell(r.ID) + " (the value on stdin, or typed at the prompt)"
		}
		fmt.Fprintf(g.Stdout, "\nanswer: %s\ndecline: orgplane requests decline %s [--note TEXT]\n", how, cell(r.ID))
	}
	return nil
}

func responderLine(r client.Responder) string {
	s := "person " + r.UserID
	if r.TokenID != "" {
		s += ", token " + r.TokenID
	}
	if r.Via != "" {
		s += ", via " + r.Via
	}
	return s
}

func newRequestsAnswerCmd(g *Globals) *cobra.Command {
	var text string
	cmd := &cobra.Command{
		Use:   "answer ID [--text TEXT]",
		Short: "Answer a request: text, or a secret's value from stdin or a prompt",
		Long: `Answer a pending request.

A request for text takes --text. A request for a secret takes its value from
stdin when stdin is not a terminal (one trailing newline is dropped), or from
a prompt that does not echo; never from an argument, which would leave it in
your shell history. The value is written as the secret (by you) and is not
shown again; the requesting workspace reads it from its /values without being
restarted.`,
		Example: `  orgplane requests answer rq2b3c4d5e6f7g2h3i --text "use the staging bucket"
  orgplane requests answer rq2b3c4d5e6f7g2h3i < api-key.txt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			c, err := g.Client()
			if err != nil {
				return err
			}
			r, err := c.GetRequest(cmd.Context(), id)
			if err != nil {
				return err
			}
			var in client.Answer
			switch r.Ask {
			case "secret":
				if cmd.Flags().Changed("text") {
					return fmt.Errorf("request %s asks for the secret %s: its value comes from stdin or the prompt, not --text", id, r.Key)
				}
				if r.State != "pending" {
					return fmt.Errorf("request %s is %s, not pending: nothing to answer", id, r.State)
				}
				v, err := readSecretValue(cmd.Context(), g, r.Key)
				if err != nil {
					return err
				}
				if v == "" {
					return fmt.Errorf("empty value for %s: nothing sent", r.Key)
				}
				in.Value = &v
			default:
				if !cmd.Flags().Changed("text") {
					return fmt.Errorf("request %s asks for text: pass --text", id)
				}
				if strings.TrimSpace(text) == "" {
					return errors.New("--text must not be empty")
				}
				in.Text = &text
			}
			done, err := c.AnswerRequest(cmd.Context(), id, in)
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, done)
			}
			if done.Ask == "secret" {
				fmt.Fprintf(g.Stdout, "answered %s: set %s (%s, version %d); the value is not shown again\n",
					cell(done.ID), cell(done.Key), cell(scopeOf(done)), done.SecretVersion)
				return nil
			}
			fmt.Fprintf(g.Stdout, "answered %s\n", cell(done.ID))
			return nil
		},
	}
	cmd.Flags().StringVar(&text, "text", "", "the answer to a request for text")
	// A value on the command line would sit in the shell history and the
	// process list: there is no flag for it, and trying one says why.
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if strings.Contains(err.Error(), "unknown flag") {
			return fmt.Errorf("%w (a secret's value is never taken from an argument: pipe it on stdin or type it at the prompt)", err)
		}
		return err
	})
	return cmd
}

func scopeOf(r client.Request) string {
	if r.WorkspaceID != "" {
		return "workspace " + r.WorkspaceID
	}
	return "global"
}

func newRequestsDeclineCmd(g *Globals) *cobra.Command {
	var note string
	cmd := &cobra.Command{
		Use:   "decline ID",
		Short: "Decline a request",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			r, err := c.DeclineRequest(cmd.Context(), args[0], note)
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, r)
			}
			fmt.Fprintf(g.Stdout, "declined %s (%s): now %s\n", cell(r.ID), cell(truncate(r.Title, 80)), cell(r.State))
			return nil
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "why, shown to the requester")
	return cmd
}

func newRequestsCancelCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Withdraw a pending request you made",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			r, err := c.CancelRequest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, r)
			}
			fmt.Fprintf(g.Stdout, "cancelled %s (%s): now %s\n", cell(r.ID), cell(truncate(r.Title, 80)), cell(r.State))
			return nil
		},
	}
}
