package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newUsersCmd(g)}
	})
}

func newUsersCmd(g *Globals) *cobra.Command {
	cmd := noArgsGroup(&cobra.Command{
		Use:   "users",
		Short: "List, add and remove the org's people (owners manage them)",
		Long: `People are owners, admins and viewers. Only people decide (approvals, answers
to requests); agents and automation use admin and workspace tokens. A viewer
reads only. Only owners add and remove people; the last owner stays.`,
	})
	cmd.AddCommand(newUsersLsCmd(g), newUsersAddCmd(g), newUsersRmCmd(g), newUsersLoginLinkCmd(g))
	return cmd
}

func newUsersLsCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the org's people",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			list, err := c.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			if g.JSON {
				if list == nil {
					list = []client.User{}
				}
				return printJSON(g.Stdout, list)
			}
			t := newTable(g.Stdout, "ID", "NAME", "ROLE", "CREATED")
			for _, u := range list {
				t.row(u.ID, u.Name, u.Role, fmtTime(u.CreatedAt))
			}
			return t.flush()
		},
	}
}

func newUsersAddCmd(g *Globals) *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:     "add NAME --role owner|admin|viewer",
		Short:   "Add a person to the org",
		Example: `  orgplane users add alice --role admin`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch role {
			case "owner", "admin", "viewer":
			case "":
				return errors.New("--role is required: owner, admin or viewer")
			default:
				return fmt.Errorf("--role must be owner, admin or viewer; got %q", role)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			u, err := c.CreateUser(cmd.Context(), client.CreateUser{Name: args[0], Role: role})
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, u)
			}
			fmt.Fprintf(g.Stdout, "added %s %s (%s)\n", cell(u.Role), cell(u.Name), cell(u.ID))
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "owner, admin or viewer (required)")
	return cmd
}

func newUsersRmCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME|ID",
		Aliases: []string{"remove"},
		Short:   "Remove a person; their tokens stop working at once",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, map[string]any{"user": args[0], "removed": true})
			}
			fmt.Fprintf(g.Stdout, "removed %s\n", cell(args[0]))
			return nil
		},
	}
}

func newUsersLoginLinkCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "login-link NAME|ID",
		Short: "Make a one-time canvas sign-in link for a person (works once, for 10 minutes)",
		Long: `Make a one-time sign-in link for a person: opened in a browser, it signs them in
to the canvas. It works once, within 10 minutes. Only a person makes one: an
owner for anyone, an admin for admins and viewers; no admin or workspace token
can (agents never obtain a person's credential). Hand the link to that person
only: whoever opens it first is signed in as them.`,
		Example: `  orgplane users login-link alice`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			l, err := c.CreateLoginLink(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, l)
			}
			fmt.Fprintf(g.Stdout, "Sign-in link for %s (works once, until %s):\n%s\n", cell(args[0]), fmtTime(l.ExpiresAt), l.URL)
			return nil
		},
	}
}
