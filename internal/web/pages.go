package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/store"
)

// View is what a page template gets: the chrome every page shows and the
// page's own Data.
type View struct {
	Title string
	Page  string
	Me    auth.Principal
	Name  string // the signed-in person's name
	CSRF  string
	// CanWrite: the person may change the org (owner, admin); a viewer
	// gets no write control at all. IsOwner: people and policy.
	CanWrite, IsOwner bool

	Platform         *core.PlatformState
	PendingApprovals int
	PendingRequests  int
	Error            *core.Error
	Now              time.Time
	Data             any
}

// chrome fills what every page shows: the platform banner and the
// inboxes' counts. A failure there does not hide the page.
func (c *Canvas) chrome(r *http.Request, v *View) {
	ctx := r.Context()
	v.Now = time.Now().UTC()
	if ps, err := c.svc.PlatformState(ctx); err == nil {
		v.Platform = &ps
	}
	if a, rq, err := c.svc.PendingCounts(ctx); err == nil {
		v.PendingApprovals, v.PendingRequests = a, rq
	}
}

// Node is one workspace of the org tree with its children.
type Node struct {
	W        core.Workspace
	Children []*Node
}

// OrgData is the org page's.
type OrgData struct {
	Roots                    []*Node
	Total, Stale, NotRunning int
}

func (c *Canvas) orgPage(r *http.Request, v *View) error {
	v.Title = "Org"
	list, err := c.svc.ListWorkspaces(r.Context())
	if err != nil {
		return err
	}
	d := &OrgData{Roots: tree(list), Total: len(list)}
	for _, w := range list {
		if w.Stale {
			d.Stale++
		}
		if w.Status != core.StatusRunning {
			d.NotRunning++
		}
	}
	v.Data = d
	return nil
}

// tree arranges workspaces by parent, the platform workspace first and
// siblings by name. A workspace whose parent is not listed is a root.
func tree(list []core.Workspace) []*Node {
	nodes := make(map[string]*Node, len(list))
	for _, w := range list {
		nodes[w.ID] = &Node{W: w}
	}
	var roots []*Node
	for _, w := range list {
		n := nodes[w.ID]
		if p, ok := nodes[w.ParentID]; ok && w.ParentID != "" {
			p.Children = append(p.Children, n)
		} else {
			roots = append(roots, n)
		}
	}
	var order func([]*Node)
	order = func(ns []*Node) {
		sort.Slice(ns, func(i, j int) bool {
			if (ns[i].W.Kind == store.KindPlatform) != (ns[j].W.Kind == store.KindPlatform) {
				return ns[i].W.Kind == store.KindPlatform
			}
			return ns[i].W.Name < ns[j].W.Name
		})
		for _, n := range ns {
			order(n.Children)
		}
	}
	order(roots)
	return roots
}

// WorkspaceData is the workspace page's.
type WorkspaceData struct {
	W          core.Workspace
	Parent     *core.Workspace
	Children   []core.Workspace
	Spec       string
	Restarts   []store.RestartJob
	Secrets    []core.SecretMeta
	SecretsErr *core.Error
	Logs       string
	LogsErr    *core.Error
	Names      map[string]string
}

func (c *Canvas) workspacePage(r *http.Request, v *View) error {
	ctx := r.Context()
	id := chi.URLParam(r, "id")
	w, err := c.svc.GetWorkspace(ctx, id)
	if err != nil {
		v.Title = "Workspace"
		return err
	}
	v.Title = w.Name
	d := &WorkspaceData{W: w, Spec: prettyJSON(w.Spec)}
	if list, err := c.svc.ListWorkspaces(ctx); err == nil {
		d.Names = names(list)
		for i := range list {
			if list[i].ID == w.ParentID {
				d.Parent = &list[i]
			}
			if list[i].ParentID == w.ID {
				d.Children = append(d.Children, list[i])
			}
		}
	}
	if d.Restarts, err = c.svc.ListRestarts(ctx, id, 50); err != nil {
		return err
	}
	if d.Secrets, err = c.svc.ListSecrets(ctx, id); err != nil {
		d.SecretsErr = core.AsError(err)
	}
	if b, err := c.svc.Logs(ctx, id, 200); err != nil {
		d.LogsErr = core.AsError(err)
	} else {
		d.Logs = string(b)
	}
	v.Data = d
	return nil
}

// SecretsData is the global secrets page's.
type SecretsData struct {
	Secrets []core.SecretMeta
}

func (c *Canvas) secretsPage(r *http.Request, v *View) error {
	v.Title = "Secrets"
	list, err := c.svc.ListSecrets(r.Context(), "")
	if err != nil {
		return err
	}
	v.Data = &SecretsData{Secrets: list}
	return nil
}

// ApprovalsData is the approvals inbox's.
type ApprovalsData struct {
	Pending []core.Approval
	Recent  []core.Approval
	Names   map[string]string
	People  map[string]string
	Tokens  map[string]string
}

// maxReplanned bounds the pending approvals whose plan a page load
// recomputes.
const maxReplanned = 10

func (c *Canvas) approvalsPage(r *http.Request, v *View) error {
	ctx := r.Context()
	v.Title = "Approvals"
	all, err := c.svc.ListApprovals(ctx, core.ApprovalFilter{Limit: 100})
	if err != nil {
		return err
	}
	d := &ApprovalsData{Names: c.workspaceNames(r), People: c.peopleNames(r), Tokens: c.tokenNames(r)}
	for _, a := range all {
		if a.State == "pending" {
			// The one-approval view recomputes the plan as of now: a
			// rolled-back run of the action each, so only for the newest
			// few; the others show their plan at request time.
			if len(d.Pending) < maxReplanned {
				if full, err := c.svc.GetApproval(ctx, a.ID); err == nil {
					a = full
				}
			}
			d.Pending = append(d.Pending, a)
		} else {
			d.Recent = append(d.Recent, a)
		}
	}
	v.Data = d
	return nil
}

// RequestsData is the requests inbox's.
type RequestsData struct {
	Pending []store.Request
	Recent  []store.Request
	Names   map[string]string
	People  map[string]string
	Tokens  map[string]string
}

func (c *Canvas) requestsPage(r *http.Request, v *View) error {
	v.Title = "Requests"
	all, err := c.svc.ListRequests(r.Context(), core.ApprovalFilter{Limit: 100})
	if err != nil {
		return err
	}
	d := &RequestsData{Names: c.workspaceNames(r), People: c.peopleNames(r), Tokens: c.tokenNames(r)}
	for _, x := range all {
		if x.State == "pending" {
			d.Pending = append(d.Pending, x)
		} else {
			d.Recent = append(d.Recent, x)
		}
	}
	v.Data = d
	return nil
}

// AuditData is the audit page's.
type AuditData struct {
	Filter     store.AuditFilter
	Entries    []store.AuditEntry
	Names      map[string]string
	Workspaces []core.Workspace
	Next       string // query of the next page; "" on the last
	First      string // query of the first page, when not on it
}

const auditPageSize = 50

func (c *Canvas) auditPage(r *http.Request, v *View) error {
	v.Title = "Audit"
	q := r.URL.Query()
	f := store.AuditFilter{WorkspaceID: q.Get("workspace_id"), Action: q.Get("action"),
		TokenID: q.Get("token_id"), Outcome: q.Get("outcome"), Limit: auditPageSize}
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return core.Invalid("invalid_before", "before must be a positive entry id")
		}
		f.Before = n
	}
	d := &AuditData{Filter: f}
	v.Data = d
	if list, err := c.svc.ListWorkspaces(r.Context()); err == nil {
		d.Names, d.Workspaces = names(list), list
		sort.Slice(d.Workspaces, func(i, j int) bool { return d.Workspaces[i].Name < d.Workspaces[j].Name })
	}
	entries, err := c.svc.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	d.Entries = entries
	page := url.Values{}
	for k, val := range map[string]string{"workspace_id": f.WorkspaceID, "action": f.Action, "token_id": f.TokenID, "outcome": f.Outcome} {
		if val != "" {
			page.Set(k, val)
		}
	}
	if f.Before != 0 {
		d.First = "?" + page.Encode()
	}
	if len(entries) == auditPageSize {
		page.Set("before", strconv.FormatInt(entries[len(entries)-1].ID, 10))
		d.Next = "?" + page.Encode()
	}
	return nil
}

// TokensData is the tokens page's.
type TokensData struct {
	Tokens     []store.Token
	Names      map[string]string
	People     map[string]string
	Workspaces []core.Workspace
}

func (c *Canvas) tokensPage(r *http.Request, v *View) error {
	v.Title = "Tokens"
	list, err := c.svc.ListTokens(r.Context())
	if err != nil {
		return err
	}
	// Live ones first, newest first within.
	sort.SliceStable(list, func(i, j int) bool {
		if list[i].RevokedAt.IsZero() != list[j].RevokedAt.IsZero() {
			return list[i].RevokedAt.IsZero()
		}
		return list[i].CreatedAt.After(list[j].CreatedAt)
	})
	d := &TokensData{Tokens: list, People: c.peopleNames(r)}
	if ws, err := c.svc.ListWorkspaces(r.Context()); err == nil {
		d.Names, d.Workspaces = names(ws), ws
	}
	v.Data = d
	return nil
}

// PeopleData is the people page's.
type PeopleData struct {
	People []store.User
}

func (c *Canvas) peoplePage(r *http.Request, v *View) error {
	v.Title = "People"
	list, err := c.svc.ListUsers(r.Context())
	if err != nil {
		return err
	}
	v.Data = &PeopleData{People: list}
	return nil
}

// PolicyData is the policy page's.
type PolicyData struct {
	Policy core.Policy
}

func (c *Canvas) policyPage(r *http.Request, v *View) error {
	v.Title = "Policy"
	p, err := c.svc.GetPolicy(r.Context())
	if err != nil {
		return err
	}
	v.Data = &PolicyData{Policy: p}
	return nil
}

func (c *Canvas) workspaceNames(r *http.Request) map[string]string {
	list, err := c.svc.ListWorkspaces(r.Context())
	if err != nil {
		return map[string]string{}
	}
	return names(list)
}

// peopleNames maps people's ids to names, for those who may list them.
func (c *Canvas) peopleNames(r *http.Request) map[string]string {
	out := map[string]string{}
	list, err := c.svc.ListUsers(r.Context())
	if err != nil {
		return out
	}
	for _, u := range list {
		out[u.ID] = u.Name
	}
	return out
}

// tokenNames maps token ids to names: who asked, by the name a person gave
// the token.
func (c *Canvas) tokenNames(r *http.Request) map[string]string {
	out := map[string]string{}
	list, err := c.svc.ListTokens(r.Context())
	if err != nil {
		return out
	}
	for _, t := range list {
		out[t.ID] = t.Name
	}
	return out
}

func names(list []core.Workspace) map[string]string {
	out := make(map[string]string, len(list))
	for _, w := range list {
		out[w.ID] = w.Name
	}
	return out
}

func prettyJSON(s string) string {
	if s == "" {
		return ""
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return s
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return s
	}
	return string(b)
}

// reasonCounts orders a plan's counts by reason, the propagation rules'
// order.
func reasonCounts(counts map[string]int) []ReasonCount {
	out := make([]ReasonCount, 0, len(counts))
	for r, n := range counts {
		out = append(out, ReasonCount{Reason: r, N: n, Restart: r == propagation.ReasonRestartQueued || r == propagation.ReasonCoalesced})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reason < out[j].Reason })
	return out
}

// ReasonCount is one row of an impact table's summary.
type ReasonCount struct {
	Reason  string
	N       int
	Restart bool
}
