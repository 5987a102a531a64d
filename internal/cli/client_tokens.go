package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newTokensCmd(g)}
	})
}

func newTokensCmd(g *Globals) *cobra.Command {
	cmd := noArgsGroup(&cobra.Command{
		Use:   "tokens",
		Short: "List, mint and revoke API tokens",
	})
	cmd.AddCommand(newTokensLsCmd(g), newTokensCreateCmd(g, time.Now), newTokensRevokeCmd(g))
	return cmd
}

func tokenState(t client.Token, now time.Time) string {
	switch {
	case t.RevokedAt != nil:
		return "revoked"
	case t.ExpiresAt != nil && !t.ExpiresAt.After(now):
		return "expired"
	default:
		return "active"
	}
}

func newTokensLsCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the org's tokens (never their secrets)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			list, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			if g.JSON {
				if list == nil {
					list = []client.Token{}
				}
				return printJSON(g.Stdout, list)
			}
			now := time.Now()
			t := newTable(g.Stdout, "ID", "KIND", "NAME", "WORKSPACE", "ACTING", "STATE", "CREATED", "EXPIRES", "LAST USED")
			for _, k := range list {
				t.row(k.ID, k.Kind, k.Name, k.WorkspaceID, k.ActingWorkspaceID, tokenState(k, now),
					fmtTime(k.CreatedAt), fmtTimePtr(k.ExpiresAt), fmtTimePtr(k.LastUsedAt))
			}
			return t.flush()
		},
	}
}

// parseExpiresIn reads a positive Go duration ("90m", "720h") or a number
// of days ("30d").
func parseExpiresIn(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100*365 {
			return 0, fmt.Errorf("--expires-in must be a duration such as 30d, 12h or 90m; got %q", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("--expires-in must be a duration such as 30d, 12h or 90m; got %q", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("--expires-in must be positive; got %q", s)
	}
	return d, nil
}

func newTokensCreateCmd(g *Globals, now func() time.Time) *cobra.Command {
	var (
		in        client.CreateToken
		expiresIn string
	)
	cmd := &cobra.Command{
		Use:   "create --kind admin|workspace|user --name NAME",
		Short: "Mint a token; its secret is shown once",
		Long: `Mint a token. Its secret is printed once and cannot be read again:
store it right away.

An admin token acts on the whole org; --acting-workspace binds it to a
workspace (the platform workspace for the concierge). A workspace token
acts as one workspace (--workspace). A user token is yours, a person's
(sign in as yourself to mint one): it acts with your role.`,
		Example: `  orgplane tokens create --kind admin --name ci --expires-in 30d
  orgplane tokens create --kind workspace --name researcher --workspace ws_123`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch in.Kind {
			case "admin":
				if in.WorkspaceID != "" {
					return errors.New("--workspace is for workspace tokens; an admin token takes --acting-workspace")
				}
			case "workspace":
				if in.WorkspaceID == "" {
					return errors.New("a workspace token needs --workspace ID")
				}
				if in.ActingWorkspaceID != "" {
					return errors.New("--acting-workspace is for admin tokens only")
				}
			case "user":
				if in.WorkspaceID != "" || in.ActingWorkspaceID != "" {
					return errors.New("a user token is a person's: it takes no --workspace nor --acting-workspace")
				}
			case "":
				return errors.New("--kind is required: admin, workspace or user")
			default:
				return fmt.Errorf("--kind must be admin, workspace or user; got %q", in.Kind)
			}
			if strings.TrimSpace(in.Name) == "" {
				return errors.New("--name is required")
			}
			if cmd.Flags().Changed("expires-in") {
				d, err := parseExpiresIn(expiresIn)
				if err != nil {
					return err
				}
				at := now().Add(d).UTC().Truncate(time.Second)
				in.ExpiresAt = &at
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			out, err := c.CreateToken(cmd.Context(), in)
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, out)
			}
			fmt.Fprintf(g.Stdout, "created %s token %s (%s)", cell(out.Token.Kind), cell(out.Token.Name), cell(out.Token.ID))
			if out.Token.ExpiresAt != nil {
				fmt.Fprintf(g.Stdout, ", expires %s", fmtTime(*out.Token.ExpiresAt))
			}
			fmt.Fprintf(g.Stdout, "\n\n    %s\n\nThis secret will not be shown again: store it now.\n", out.Secret)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Kind, "kind", "", "admin, workspace or user (required)")
	f.StringVar(&in.Name, "name", "", "a name to recognize it by (required)")
	f.StringVar(&in.WorkspaceID, "workspace", "", "the workspace a workspace token acts as")
	f.StringVar(&in.ActingWorkspaceID, "acting-workspace", "", "bind an admin token to this workspace")
	f.StringVar(&expiresIn, "expires-in", "", "lifetime, e.g. 30d, 12h, 90m (default: no expiry)")
	return cmd
}

func newTokensRevokeCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token; it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, map[string]any{"id": args[0], "revoked": true})
			}
			fmt.Fprintf(g.Stdout, "revoked token %s\n", cell(args[0]))
			return nil
		},
	}
}
