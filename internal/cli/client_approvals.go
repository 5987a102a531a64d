package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command {
		return []*cobra.Command{newApprovalsCmd(g)}
	})
}

// ExitApprovalRequired is the exit code of a command whose write the org's
// policy held for people to decide (the server answered 202 with a pending
// approval): nothing changed yet. It differs from 1 (an error) so that a
// script can tell a held write from a refused one, with or without --json.
const ExitApprovalRequired = 3

// defaultPage is the server's page size of approvals and requests when no
// --limit is given.
const defaultPage = 100

func newApprovalsCmd(g *Globals) *cobra.Command {
	cmd := noArgsGroup(&cobra.Command{
		Use:   "approvals",
		Short: "List, show and decide approvals (agents' actions that wait for people)",
		Long: `An approval holds an action an agent asked for (or that the org's policy held
when an agent tried it): nothing happens until people approve it. Once
approved, the control plane runs the stored action itself, once.

Only a person (owner or admin) decides, and never the one who asked.`,
	})
	cmd.AddCommand(newApprovalsLsCmd(g), newApprovalsShowCmd(g),
		newApprovalsDecideCmd(g, "approve"), newApprovalsDecideCmd(g, "deny"), newApprovalsCancelCmd(g))
	return cmd
}

// listFlags are the paging flags of approvals ls and requests ls.
type listFlags struct {
	state  string
	limit  int
	before string
}

func (l *listFlags) register(cmd *cobra.Command, states string) {
	f := cmd.Flags()
	f.StringVar(&l.state, "state", "", "only these: "+states)
	f.IntVar(&l.limit, "limit", 0, fmt.Sprintf("at most this many (default: the server's, %d)", defaultPage))
	f.StringVar(&l.before, "before", "", "only older than this ID (from the previous page's hint)")
}

func (l *listFlags) filter() (client.ListFilter, error) {
	if l.limit < 0 {
		return client.ListFilter{}, fmt.Errorf("--limit must be a positive number; got %d", l.limit)
	}
	return client.ListFilter{State: l.state, Limit: l.limit, Before: l.before}, nil
}

// moreHint says how to get the next page when this one came full.
func (l *listFlags) moreHint(w io.Writer, noun string, n int, lastID string) {
	page := l.limit
	if page == 0 {
		page = defaultPage
	}
	if n < page || lastID == "" {
		return
	}
	next := []string{"orgplane", noun, "ls"}
	if l.state != "" {
		next = append(next, "--state", l.state)
	}
	if l.limit > 0 {
		next = append(next, "--limit", strconv.Itoa(l.limit))
	}
	next = append(next, "--before", lastID)
	fmt.Fprintf(w, "maybe more: %s\n", cell(strings.Join(next, " ")))
}

func newApprovalsLsCmd(g *Globals) *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List approvals, newest first",
		Example: `  orgplane approvals ls --state pending`,
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
			list, err := c.ListApprovals(cmd.Context(), f)
			if err != nil {
				return err
			}
			if g.JSON {
				if list == nil {
					list = []client.Approval{}
				}
				return printJSON(g.Stdout, list)
			}
			t := newTable(g.Stdout, "ID", "STATE", "ACTION", "TITLE", "REQUESTER", "APPROVALS", "CREATED", "EXPIRES")
			for _, a := range list {
				t.row(a.ID, a.State, actionType(a), truncate(a.Title, 60), requesterShort(a.Requester),
					fmt.Sprintf("%d/%d", approvesOf(a), a.Quorum), fmtTime(a.CreatedAt), fmtTime(a.ExpiresAt))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if len(list) > 0 {
				lf.moreHint(g.Stderr, "approvals", len(list), list[len(list)-1].ID)
			}
			return nil
		},
	}
	lf.register(cmd, "pending, approved, executing, succeeded, failed, denied, expired, cancelled")
	return cmd
}

func actionType(a client.Approval) string {
	if a.Action == nil {
		return "free-form"
	}
	return a.Action.Type
}

func approvesOf(a client.Approval) int {
	n := 0
	for _, v := range a.Decisions {
		if v.Verdict == "approve" {
			n++
		}
	}
	return n
}

// requesterShort is who asked, in one cell: kind@workspace (token), or
// the person.
func requesterShort(r client.Requester) string {
	s := r.Kind
	if r.UserID != "" {
		s += " " + r.UserID
	}
	if r.WorkspaceID != "" {
		s += "@" + r.WorkspaceID
	}
	if r.TokenID != "" {
		s += " (" + r.TokenID + ")"
	}
	if r.Via != "" && r.Via != "token" {
		s += " via " + r.Via
	}
	return s
}

func newApprovalsShowCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an approval: what it would do, who asked, who decided",
		Long: `Show an approval: its action, who asked, the decisions so far, and its plan
as an impact table (what happens to each workspace, counted by reason): the
plan computed when it was asked for and, while it is pending, the plan as it
would be now.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			a, err := c.GetApproval(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printApproval(g, a)
		},
	}
}

func newApprovalsDecideCmd(g *Globals, verdict string) *cobra.Command {
	var note string
	short := "Approve an approval; the control plane then runs its action, once"
	if verdict == "deny" {
		short = "Deny an approval; one deny is final"
	}
	cmd := &cobra.Command{
		Use:     verdict + " ID",
		Short:   short,
		Example: fmt.Sprintf("  orgplane approvals %s ap2b3c4d5e6f7g2h3i --note \"checked with the team\"", verdict),
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			a, err := c.DecideApproval(cmd.Context(), args[0], verdict, note)
			if err != nil {
				return decideError(err, args[0])
			}
			if g.JSON {
				if err := printJSON(g.Stdout, a); err != nil {
					return err
				}
			} else {
				printDecided(g.Stdout, verdict, a)
			}
			if a.State == "failed" {
				return executionFailed(a)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "why, recorded with the decision")
	return cmd
}

// decideError adds what to do to the refusals a person meets deciding.
func decideError(err error, id string) error {
	var ce *client.Error
	if !errors.As(err, &ce) {
		return err
	}
	switch ce.Code {
	case "own_request":
		return fmt.Errorf("%w: someone other than the requester must decide it", err)
	case "not_a_person":
		return fmt.Errorf("%w: only a person (owner or admin) decides; use your own user token, not an agent's or an admin token", err)
	case "not_pending":
		return fmt.Errorf("%w: see orgplane approvals show %s", err, id)
	}
	return err
}

func executionFailed(a client.Approval) error {
	if a.Error != nil {
		return fmt.Errorf("approval %s was approved but its action failed: %s (%s)", a.ID, a.Error.Message, a.Error.Code)
	}
	return fmt.Errorf("approval %s was approved but its action failed", a.ID)
}

// printDecided reports a decision and where it left the approval.
func printDecided(w io.Writer, verdict string, a client.Approval) {
	done := "approved"
	if verdict == "deny" {
		done = "denied"
	}
	fmt.Fprintf(w, "%s %s (%s): now %s\n", done, cell(a.ID), cell(truncate(a.Title, 80)), cell(a.State))
	switch a.State {
	case "pending":
		fmt.Fprintf(w, "%d of %d approvals so far; it waits for more people\n", approvesOf(a), a.Quorum)
	case "succeeded":
		if a.Result != nil {
			printPlanSummary(w, "done", a.Result)
		}
	case "failed":
		if a.Error != nil {
			fmt.Fprintf(w, "its action failed: %s (%s)\n", cell(a.Error.Message), cell(a.Error.Code))
		}
	}
}

func newApprovalsCancelCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Withdraw a pending approval you asked for",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			a, err := c.CancelApproval(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, a)
			}
			fmt.Fprintf(g.Stdout, "cancelled %s (%s): now %s\n", cell(a.ID), cell(truncate(a.Title, 80)), cell(a.State))
			return nil
		},
	}
}

// printApproval writes an approval: its facts, who asked, the decisions,
// and its plans as impact tables.
func printApproval(g *Globals, a client.Approval) error {
	if g.JSON {
		return printJSON(g.Stdout, a)
	}
	w := g.Stdout
	f := newFields(w)
	f.add("id", a.ID)
	f.add("state", a.State)
	f.add("title", a.Title)
	if a.Detail != "" {
		f.add("detail", a.Detail)
	}
	f.add("action", actionLine(a.Action))
	f.add("requested by", requesterLong(a.Requester))
	f.add("quorum", fmt.Sprintf("%d of %d approvals", approvesOf(a), a.Quorum))
	f.add("created", fmtTime(a.CreatedAt))
	f.add("expires", fmtTime(a.ExpiresAt))
	if a.EndedAt != nil {
		f.add("ended", fmtTimePtr(a.EndedAt))
	}
	if a.Error != nil {
		f.add("error", a.Error.Message+" ("+a.Error.Code+")")
	}
	if err := f.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(a.Decisions) == 0 {
		fmt.Fprintln(w, "decisions: none yet")
	} else {
		fmt.Fprintln(w, "decisions:")
		t := newTable(w, "PERSON", "VERDICT", "VIA", "AT", "NOTE")
		for _, v := range a.Decisions {
			t.row(v.UserID, v.Verdict, v.Via, fmtTime(v.At), truncate(v.Note, 80))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		title string
		plan  *client.Plan
	}{{"plan at request time", a.Plan}, {"plan now", a.CurrentPlan}, {"result", a.Result}} {
		if p.plan == nil {
			continue
		}
		fmt.Fprintln(w)
		if err := printPlan(w, p.title, p.plan); err != nil {
			return err
		}
	}
	if a.CurrentPlanError != "" {
		fmt.Fprintf(w, "\nplan now: cannot be computed: %s\n", cell(a.CurrentPlanError))
	}
	if a.Secret != "" {
		// A token the approved action minted for the requester: handed
		// over once, to the requester's own token.
		fmt.Fprintf(w, "\nsecret of the token it minted (shown once; store it now):\n\n    %s\n", a.Secret)
	}
	if a.State == "pending" {
		fmt.Fprintf(w, "\ndecide: orgplane approvals approve %s | orgplane approvals deny %s [--note TEXT]\n", cell(a.ID), cell(a.ID))
	}
	return nil
}

func actionLine(act *client.ApprovalAction) string {
	if act == nil {
		return "none (free-form: people approve something outside orgplane)"
	}
	s := act.Type
	if len(act.Params) > 0 && string(act.Params) != "null" {
		s += " " + compactJSON(act.Params)
	}
	if act.HasValue {
		s += " (a secret value is sealed with it, never shown)"
	}
	return s
}

func requesterLong(r client.Requester) string {
	var s string
	switch r.Kind {
	case "user":
		s = "person " + r.UserID
	case "admin":
		s = "admin token"
		if r.WorkspaceID != "" {
			s += " acting for workspace " + r.WorkspaceID
		}
	case "workspace":
		s = "workspace " + r.WorkspaceID
	default:
		s = r.Kind
		if r.WorkspaceID != "" {
			s += " of workspace " + r.WorkspaceID
		}
	}
	if r.TokenID != "" {
		s += ", token " + r.TokenID
	}
	if r.Via != "" {
		s += ", via " + r.Via
	}
	return s
}

// printPlanSummary writes one line: how many workspaces restart, and what
// else the action did.
func printPlanSummary(w io.Writer, title string, p *client.Plan) {
	fmt.Fprintf(w, "%s: %s\n", title, planLine(p))
}

func planLine(p *client.Plan) string {
	total := 0
	for _, n := range p.Counts {
		total += n
	}
	var parts []string
	if total > 0 || p.Restarts > 0 {
		parts = append(parts, fmt.Sprintf("restarts %d of %d workspaces affected", p.Restarts, total))
	}
	if p.Version > 0 {
		parts = append(parts, "secret version "+strconv.FormatInt(p.Version, 10))
	}
	if p.JobID != "" {
		parts = append(parts, "restart job "+p.JobID)
	}
	if len(p.Removed) > 0 {
		parts = append(parts, "removes "+strings.Join(p.Removed, ", "))
	}
	if p.TokenID != "" {
		parts = append(parts, "token "+p.TokenID)
	}
	if len(parts) == 0 {
		return "no workspace is affected"
	}
	return strings.Join(parts, "; ")
}

// printPlan writes a plan as the impact table: counts by reason, then the
// decision for each workspace (as secrets set --dry-run prints them).
func printPlan(w io.Writer, title string, p *client.Plan) error {
	printPlanSummary(w, title, p)
	if len(p.Counts) > 0 {
		reasons := make([]string, 0, len(p.Counts))
		for r := range p.Counts {
			reasons = append(reasons, r)
		}
		sort.Slice(reasons, func(i, j int) bool {
			if p.Counts[reasons[i]] != p.Counts[reasons[j]] {
				return p.Counts[reasons[i]] > p.Counts[reasons[j]]
			}
			return reasons[i] < reasons[j]
		})
		t := newTable(w, "REASON", "WORKSPACES")
		for _, r := range reasons {
			t.row(r, strconv.Itoa(p.Counts[r]))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(p.Decisions) > 0 {
		if err := printDecisions(w, p.Decisions); err != nil {
			return err
		}
		if p.Truncated {
			fmt.Fprintf(w, "(only the first %d workspaces are listed; the counts cover them all)\n", len(p.Decisions))
		}
	}
	return nil
}

// printApprovalRequired tells the caller that the org's policy held the
// write: nothing changed, and how people decide it.
func printApprovalRequired(stdout, stderr io.Writer, asJSON bool, a client.Approval) {
	if asJSON {
		_ = printJSON(stdout, client.ApprovalRequired{Approval: a})
		return
	}
	fmt.Fprintf(stderr, "approval required: %s waits for a person's approval; nothing has changed yet\n", cell(a.ID))
	fmt.Fprintf(stderr, "  %s\n", cell(truncate(a.Title, 120)))
	if a.Plan != nil {
		fmt.Fprintf(stderr, "  plan: %s\n", cell(planLine(a.Plan)))
	}
	fmt.Fprintf(stderr, "  expires %s\n", fmtTime(a.ExpiresAt))
	fmt.Fprintf(stderr, "a person (owner or admin) other than the requester decides it:\n")
	fmt.Fprintf(stderr, "  orgplane approvals show %s\n", cell(a.ID))
	fmt.Fprintf(stderr, "  orgplane approvals approve %s\n", cell(a.ID))
	fmt.Fprintf(stderr, "  orgplane approvals deny %s\n", cell(a.ID))
}
