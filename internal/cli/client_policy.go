package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newPolicyCmd(g)}
	})
}

func newPolicyCmd(g *Globals) *cobra.Command {
	cmd := noArgsGroup(&cobra.Command{
		Use:   "policy",
		Short: "Show or change the org's approval policy (changes: owners only)",
		Long: `The policy says which agent actions wait for people's approval (the gates),
above how many restarts a global secret change is gated, how many distinct
people must approve, and how long approvals and requests stay pending.
Agents can read it and never change it; only an owner can.`,
	})
	cmd.AddCommand(newPolicyShowCmd(g), newPolicySetCmd(g))
	return cmd
}

func gateNames() []string {
	return []string{"platform_restart", "global_secret", "workspace_delete", "admin_token", "workspace_protection"}
}

func gatePtr(g *client.PolicyGates, name string) *bool {
	switch name {
	case "platform_restart":
		return &g.PlatformRestart
	case "global_secret":
		return &g.GlobalSecret
	case "workspace_delete":
		return &g.WorkspaceDelete
	case "admin_token":
		return &g.AdminToken
	case "workspace_protection":
		return &g.WorkspaceProtection
	}
	return nil
}

func printPolicy(g *Globals, p client.Policy) error {
	if g.JSON {
		return printJSON(g.Stdout, p)
	}
	f := newFields(g.Stdout)
	for _, name := range gateNames() {
		state := "off"
		if *gatePtr(&p.Gates, name) {
			state = "gated"
		}
		f.add("gate "+name, state)
	}
	f.add("restart threshold", fmt.Sprint(p.RestartThreshold))
	f.add("quorum", fmt.Sprint(p.Quorum))
	f.add("default ttl", (time.Duration(p.DefaultTTLSeconds) * time.Second).String())
	f.add("max ttl", (time.Duration(p.MaxTTLSeconds) * time.Second).String())
	if p.UpdatedAt != nil {
		f.add("updated", fmtTime(*p.UpdatedAt))
	} else {
		f.add("updated", "never (the defaults)")
	}
	return f.flush()
}

func newPolicyShowCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the org's approval policy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			p, err := c.GetPolicy(cmd.Context())
			if err != nil {
				return err
			}
			return printPolicy(g, p)
		},
	}
}

func newPolicySetCmd(g *Globals) *cobra.Command {
	var (
		threshold, quorum  int
		defaultTTL, maxTTL time.Duration
		gates              []string
	)
	cmd := &cobra.Command{
		Use:   "set [--gate NAME=on|off ...] [--restart-threshold N] [--quorum N] [--default-ttl D] [--max-ttl D]",
		Short: "Change the org's approval policy; what is not given stays as it is",
		Example: `  orgplane policy set --quorum 2
  orgplane policy set --gate admin_token=off --restart-threshold 25`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			p, err := c.GetPolicy(cmd.Context())
			if err != nil {
				return err
			}
			for _, gv := range gates {
				name, val, ok := strings.Cut(gv, "=")
				ptr := gatePtr(&p.Gates, name)
				if !ok || ptr == nil || (val != "on" && val != "off") {
					return fmt.Errorf("--gate %q: want NAME=on or NAME=off, NAME one of %s", gv, strings.Join(gateNames(), ", "))
				}
				*ptr = val == "on"
			}
			fl := cmd.Flags()
			if fl.Changed("restart-threshold") {
				p.RestartThreshold = threshold
			}
			if fl.Changed("quorum") {
				p.Quorum = quorum
			}
			for _, d := range []struct {
				name string
				v    time.Duration
				to   *int
			}{{"default-ttl", defaultTTL, &p.DefaultTTLSeconds}, {"max-ttl", maxTTL, &p.MaxTTLSeconds}} {
				if fl.Changed(d.name) {
					if d.v <= 0 || d.v%time.Second != 0 {
						return fmt.Errorf("--%s must be a positive whole number of seconds, e.g. 24h", d.name)
					}
					*d.to = int(d.v / time.Second)
				}
			}
			gt := p.Gates
			out, err := c.SetPolicy(cmd.Context(), client.PutPolicy{
				Gates: &client.PutPolicyGates{PlatformRestart: &gt.PlatformRestart, GlobalSecret: &gt.GlobalSecret,
					WorkspaceDelete: &gt.WorkspaceDelete, AdminToken: &gt.AdminToken, WorkspaceProtection: &gt.WorkspaceProtection},
				RestartThreshold: &p.RestartThreshold, Quorum: &p.Quorum,
				DefaultTTLSeconds: &p.DefaultTTLSeconds, MaxTTLSeconds: &p.MaxTTLSeconds,
			})
			if err != nil {
				return err
			}
			return printPolicy(g, out)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&gates, "gate", nil, "NAME=on|off; NAME one of "+strings.Join(gateNames(), ", ")+" (repeatable)")
	f.IntVar(&threshold, "restart-threshold", 0, "a global secret change restarting more workspaces than this is gated")
	f.IntVar(&quorum, "quorum", 0, "distinct people who must approve")
	f.DurationVar(&defaultTTL, "default-ttl", 0, "how long an approval or request stays pending by default, e.g. 24h")
	f.DurationVar(&maxTTL, "max-ttl", 0, "the longest it may be asked to stay pending (at most 168h)")
	return cmd
}
