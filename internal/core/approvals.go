package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/orgplane/orgplane/internal/approvals"
	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
)

// Bounds of what people and agents write into approvals and requests.
const (
	maxTitle      = 200
	maxDetail     = 8 << 10
	maxNote       = 1000
	maxListLimit  = 1000
	defListLimit  = 100
	execTimeout   = 2 * time.Minute
	sealApproval  = "approval"
	sealResultFor = "approval-result"
)

// Approval is an approval as the faces show it: never a secret value.
type Approval struct {
	store.Approval
	// Action is nil for a free-form approval. Its parameters never hold a
	// secret value (HasValue says one is sealed with the approval); they
	// are gone once the approval has ended.
	Action        *ApprovalAction
	Preconds      Preconditions
	PlanAtRequest *ActionResult
	// CurrentPlan is the plan recomputed now, for a pending approval shown
	// on its own; nil otherwise (or when it cannot be recomputed: then
	// CurrentPlanError says why).
	CurrentPlan      *ActionResult
	CurrentPlanError string
	Outcome          *ActionResult
	Votes            []store.ApprovalVote
	// Secret is a credential the execution made for the requester (a
	// minted token's secret): shown once, to the requester's own token.
	Secret string
}

// ApprovalAction is an approval's action as shown.
type ApprovalAction struct {
	Type     string
	Params   json.RawMessage // canonical, without the value; null once wiped
	HasValue bool
}

// CreateApprovalInput is an approval asked for directly (POST
// /v1/approvals): free-form without an action, or for an action.
type CreateApprovalInput struct {
	Title      string
	Detail     string
	ActionType string
	Params     json.RawMessage
	TTLSeconds *int
}

// ApprovalRequired is the answer to a call the org's policy gates: nothing
// changed; the approval waits for people. Faces answer 202 with it.
type ApprovalRequired struct {
	Approval Approval
}

func (e *ApprovalRequired) Error() string {
	return fmt.Sprintf("approval required: approval %s is pending", e.Approval.ID)
}

var errPlanned = errors.New("planned") // rolls a planning transaction back

func validText(what, v string, maxLen int, required bool) error {
	switch {
	case required && v == "":
		return Invalid("missing_field", "%s is required", what)
	case len(v) > maxLen:
		return Invalid("too_long", "%s is %d bytes; at most %d", what, len(v), maxLen)
	case !utf8.ValidString(v):
		return Invalid("invalid_text", "%s is not valid UTF-8", what)
	}
	return nil
}

// ttlOf picks how long an approval or request stays pending: the policy's
// default, or the caller's, within [60 s, the policy's maximum].
func ttlOf(pol Policy, ttl *int) (time.Duration, error) {
	if ttl == nil {
		return time.Duration(pol.DefaultTTLSeconds) * time.Second, nil
	}
	if *ttl < minPolicyTTL || *ttl > pol.MaxTTLSeconds {
		return 0, Invalid("invalid_ttl", "ttl_seconds must be between %d and %d (the policy's maximum)", minPolicyTTL, pol.MaxTTLSeconds)
	}
	return time.Duration(*ttl) * time.Second, nil
}

func requesterOf(p auth.Principal) store.Requester {
	via := p.Via
	if via == "" {
		via = auth.ViaToken
	}
	return store.Requester{Kind: p.Kind, TokenID: p.TokenID, UserID: p.UserID, WorkspaceID: p.CallerWorkspace(), Via: via}
}

func partyOf(p auth.Principal) approvals.Party {
	kind := p.Kind
	if p.Via == auth.ViaMCP {
		kind = "mcp" // anything over MCP is an agent: it never decides
	}
	return approvals.Party{Kind: kind, TokenID: p.TokenID, UserID: p.UserID, Role: p.Role, Workspace: p.CallerWorkspace()}
}

func partyOfRequester(r store.Requester) approvals.Party {
	return approvals.Party{Kind: r.Kind, TokenID: r.TokenID, UserID: r.UserID, Workspace: r.WorkspaceID}
}

// ruleError maps the approval rules' refusals to API errors.
func ruleError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, approvals.ErrNotPerson):
		return &Error{Status: 403, Code: "not_a_person", Message: err.Error()}
	case errors.Is(err, approvals.ErrRoleViewer):
		return &Error{Status: 403, Code: "forbidden", Message: err.Error()}
	case errors.Is(err, approvals.ErrOwnRequest):
		return &Error{Status: 403, Code: "own_request", Message: err.Error()}
	case errors.Is(err, approvals.ErrNotPending):
		return &Error{Status: 409, Code: "not_pending", Message: err.Error()}
	case errors.Is(err, approvals.ErrAlreadyVoted):
		return &Error{Status: 409, Code: "already_decided", Message: err.Error()}
	case errors.Is(err, approvals.ErrExpiredByTime):
		return &Error{Status: 409, Code: "expired", Message: err.Error()}
	}
	return err
}

// canSee reports whether p may see an approval or request of its org
// asked by r: people and admin tokens see the org's; an agent sees those
// of its own workspace, and its own.
func canSee(p auth.Principal, r store.Requester) bool {
	return p.CanReadOrg() || p.TokenID != "" && p.TokenID == r.TokenID ||
		p.CallerWorkspace() != "" && p.CallerWorkspace() == r.WorkspaceID
}

// mayAsk is the rule for asking: anyone of the org but a viewer.
func mayAsk(p auth.Principal, what string) error {
	if p.IsPerson() && !p.IsAdmin() {
		return Forbidden("%s: a %s reads only", what, p.Role)
	}
	return nil
}

// CreateApproval asks people to approve an action, or a free-form
// question when in has no action.
func (s *Service) CreateApproval(ctx context.Context, in CreateApprovalInput) (Approval, error) {
	p, err := principal(ctx)
	if err != nil {
		return Approval{}, err
	}
	fail := func(err error) (Approval, error) {
		s.auditRefused(ctx, p, auditEvent{Action: "approval.requested", TargetKind: "approval", WorkspaceID: p.CallerWorkspace()}, err)
		return Approval{}, err
	}
	if err := mayAsk(p, "asking for an approval"); err != nil {
		return fail(err)
	}
	if err := validText("title", in.Title, maxTitle, true); err != nil {
		return fail(err)
	}
	if err := validText("detail", in.Detail, maxDetail, false); err != nil {
		return fail(err)
	}
	var act *Action
	switch {
	case in.ActionType != "":
		a, err := ParseAction(in.ActionType, in.Params)
		if err != nil {
			return fail(err)
		}
		act = &a
	case len(in.Params) > 0 && string(in.Params) != "null":
		return fail(Invalid("invalid_action", "action params given without an action type"))
	}
	a, err := s.newApproval(ctx, p, in.Title, in.Detail, act, in.TTLSeconds)
	if err != nil {
		return Approval{}, err
	}
	return a, nil
}

// auditRefused records a refused call that did not reach mutate.
func (s *Service) auditRefused(ctx context.Context, p auth.Principal, ev auditEvent, err error) {
	if e := AsError(err); e.Status < 500 {
		s.appendAudit(ctx, p, ev, outcomeOf(e))
	}
}

// plan runs act as p in a transaction that is then rolled back: the
// decisions and effects the action would have now, with every rule and
// authorization of the real call applied.
func (s *Service) plan(ctx context.Context, p auth.Principal, act Action) (ActionResult, Preconditions, error) {
	var res ActionResult
	var pc Preconditions
	x := &execState{}
	pctx := withExec(auth.WithPrincipal(ctx, p), x)
	err := s.store.InTx(ctx, func(tx store.Store) error {
		x.reset(tx)
		var err error
		if pc, err = s.preconditionsOf(ctx, tx, p.OrgID, act); err != nil {
			return err
		}
		if res, err = s.runAction(pctx, act); err != nil {
			return err
		}
		return errPlanned
	})
	if !errors.Is(err, errPlanned) {
		return ActionResult{}, Preconditions{}, err
	}
	res.secret = ""
	return res, pc, nil
}

// newApproval plans act (when there is one) and records the approval,
// pending. Its secret value, if any, is sealed to it.
func (s *Service) newApproval(ctx context.Context, p auth.Principal, title, detail string, act *Action, ttl *int) (Approval, error) {
	id := ids.New("ap")
	ev := &auditEvent{Action: "approval.requested", TargetKind: "approval", TargetID: id, WorkspaceID: p.CallerWorkspace(),
		Detail: map[string]any{"title": title}}
	pol, err := s.policyOf(ctx, s.store, p.OrgID)
	if err != nil {
		return Approval{}, err
	}
	life, err := ttlOf(pol, ttl)
	if err != nil {
		s.auditRefused(ctx, p, *ev, err)
		return Approval{}, err
	}
	now := s.clock.Now()
	row := store.Approval{ID: id, OrgID: p.OrgID, State: approvals.Pending, Title: title, Detail: detail,
		Preconditions: "{}", Quorum: pol.Quorum, Requester: requesterOf(p), ExpiresAt: now.Add(life), CreatedAt: now, UpdatedAt: now}
	if act != nil {
		planned, pc, err := s.plan(ctx, p, *act)
		if err != nil {
			// The action as asked would be refused (bad input, not allowed,
			// not found): so is the approval.
			s.auditRefused(ctx, p, *ev, err)
			return Approval{}, err
		}
		row.ActionType, row.Params, row.ParamsHash = act.Type, act.canonical(), s.actionHash(*act)
		pcb, _ := json.Marshal(pc)
		plb, _ := json.Marshal(planned)
		row.Preconditions, row.Plan = string(pcb), string(plb)
		if act.Params.Value != nil {
			if row.ValueKeyID, row.ValueCT, err = s.keys.sealFor(p.OrgID, sealApproval, id, *act.Params.Value); err != nil {
				return Approval{}, err
			}
		}
		ev.Detail["action"] = act.Type
		ev.Detail["restarts"] = planned.Restarts
	}
	err = s.mutate(ctx, p, ev, func(tx store.Store) error { return tx.InsertApproval(ctx, row) })
	if err != nil {
		return Approval{}, err
	}
	s.metrics.Approvals.WithLabelValues("approval", approvals.Pending).Inc()
	return s.approvalView(row, nil), nil
}

// askApproval turns a gated call into an approval: the answer the faces
// give with 202.
func (s *Service) askApproval(ctx context.Context, p auth.Principal, act Action, title string) error {
	a, err := s.newApproval(ctx, p, title, "", &act, nil)
	if err != nil {
		return err
	}
	return &ApprovalRequired{Approval: a}
}

// approvalView is the shown form of a stored approval.
func (s *Service) approvalView(row store.Approval, votes []store.ApprovalVote) Approval {
	a := Approval{Approval: row, Votes: votes}
	if a.Votes == nil {
		a.Votes = []store.ApprovalVote{}
	}
	if row.ActionType != "" {
		aa := &ApprovalAction{Type: row.ActionType, HasValue: len(row.ValueCT) > 0, Params: json.RawMessage("null")}
		if row.Params != "" {
			aa.Params = json.RawMessage(row.Params)
		}
		a.Action = aa
	}
	_ = json.Unmarshal([]byte(row.Preconditions), &a.Preconds)
	if row.Plan != "" {
		var r ActionResult
		if json.Unmarshal([]byte(row.Plan), &r) == nil {
			a.PlanAtRequest = &r
		}
	}
	if row.Result != "" {
		var r ActionResult
		if json.Unmarshal([]byte(row.Result), &r) == nil {
			a.Outcome = &r
		}
	}
	// Never shown: the sealed value and result.
	a.ValueCT, a.ResultCT, a.ValueKeyID, a.ResultKeyID = nil, nil, "", ""
	return a
}

// ApprovalFilter selects approvals (and requests) to list.
type ApprovalFilter struct {
	State  string
	Before string
	Limit  int
}

func (f ApprovalFilter) check(states []string, idPrefix string) (store.ListFilter, error) {
	out := store.ListFilter{State: f.State, Before: f.Before, Limit: f.Limit}
	if f.State != "" {
		ok := false
		for _, s := range states {
			ok = ok || s == f.State
		}
		if !ok {
			return out, Invalid("invalid_state", "state %q is not one of %v", f.State, states)
		}
	}
	if f.Before != "" && !ids.Valid(idPrefix, f.Before) {
		return out, Invalid("invalid_cursor", "before must be an id from a previous page")
	}
	switch {
	case out.Limit == 0:
		out.Limit = defListLimit
	case out.Limit < 0 || out.Limit > maxListLimit:
		return out, Invalid("invalid_limit", "limit must be between 1 and %d", maxListLimit)
	}
	return out, nil
}

var approvalStates = []string{approvals.Pending, approvals.Approved, approvals.Executing, approvals.Succeeded,
	approvals.Failed, approvals.Denied, approvals.Expired, approvals.Cancelled}

// ListApprovals lists approvals, newest first: the org's for people and
// admin tokens, its own workspace's for an agent.
func (s *Service) ListApprovals(ctx context.Context, f ApprovalFilter) ([]Approval, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	lf, err := f.check(approvalStates, "ap")
	if err != nil {
		return nil, err
	}
	if !p.CanReadOrg() {
		if p.CallerWorkspace() == "" {
			return nil, Forbidden("listing approvals requires a person, an admin token or a workspace's token")
		}
		lf.WorkspaceID = p.CallerWorkspace()
	}
	rows, err := s.store.ListApprovals(ctx, p.OrgID, lf)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, Invalid("invalid_cursor", "before names no approval of this org")
		}
		return nil, err
	}
	idList := make([]string, len(rows))
	for i, r := range rows {
		idList[i] = r.ID
	}
	votes, err := s.store.ListVotes(ctx, idList)
	if err != nil {
		return nil, err
	}
	out := make([]Approval, len(rows))
	for i, r := range rows {
		out[i] = s.approvalView(r, votes[r.ID])
	}
	return out, nil
}

// PendingCounts counts the pending approvals and requests the caller sees
// (the inboxes' counts), without reading them.
func (s *Service) PendingCounts(ctx context.Context) (approvals, requests int, err error) {
	p, err := principal(ctx)
	if err != nil {
		return 0, 0, err
	}
	ws := ""
	if !p.CanReadOrg() {
		if ws = p.CallerWorkspace(); ws == "" {
			return 0, 0, Forbidden("counting approvals requires a person, an admin token or a workspace's token")
		}
	}
	return s.store.CountPending(ctx, p.OrgID, ws)
}

// GetApproval shows one approval. A pending one with an action also shows
// its plan recomputed now (the one at request time is kept beside it). A
// credential the execution made for the requester is handed to the
// requester's own token, once.
func (s *Service) GetApproval(ctx context.Context, id string) (Approval, error) {
	p, err := principal(ctx)
	if err != nil {
		return Approval{}, err
	}
	row, err := s.store.GetApproval(ctx, p.OrgID, id)
	if err != nil || !canSee(p, row.Requester) {
		return Approval{}, notFoundAs(orNotFound(err), "approval", id)
	}
	votes, err := s.store.ListVotes(ctx, []string{id})
	if err != nil {
		return Approval{}, err
	}
	a := s.approvalView(row, votes[id])
	if row.State == approvals.Pending && row.ActionType != "" {
		if cur, err := s.replan(ctx, row); err != nil {
			a.CurrentPlanError = AsError(err).Message
		} else {
			a.CurrentPlan = &cur
		}
	}
	if len(row.ResultCT) > 0 && p.TokenID != "" && p.TokenID == row.Requester.TokenID {
		secret, err := s.deliverResult(ctx, p, row)
		switch {
		case err == nil:
			a.Secret = secret
		case AsError(err).Status == 409:
			// Another read of the requester's took it meanwhile: it is
			// handed over once, and this read shows the rest.
		default:
			return Approval{}, err
		}
	}
	return a, nil
}

// replan recomputes a pending approval's plan as its requester, now.
func (s *Service) replan(ctx context.Context, row store.Approval) (ActionResult, error) {
	rp, err := s.requesterPrincipal(ctx, row.OrgID, row.Requester)
	if err != nil {
		return ActionResult{}, err
	}
	act, err := s.storedAction(ctx, row)
	if err != nil {
		return ActionResult{}, err
	}
	res, _, err := s.plan(ctx, rp, act)
	return res, err
}

// deliverResult hands the requester the credential its approved action
// made, once: it is wiped in the same step.
func (s *Service) deliverResult(ctx context.Context, p auth.Principal, row store.Approval) (string, error) {
	secret, err := s.keys.openFor(ctx, s.store, row.OrgID, sealResultFor, row.ID, row.ResultKeyID, row.ResultCT)
	if err != nil {
		return "", err
	}
	ev := &auditEvent{Action: "approval.result_delivered", TargetKind: "approval", TargetID: row.ID, WorkspaceID: row.Requester.WorkspaceID}
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		cur, err := tx.GetApprovalForUpdate(ctx, row.OrgID, row.ID)
		if err != nil {
			return err
		}
		if len(cur.ResultCT) == 0 {
			return Conflict("the approval's result was already handed over")
		}
		cur.ResultCT, cur.ResultKeyID, cur.UpdatedAt = nil, "", s.clock.Now()
		return tx.UpdateApproval(ctx, cur, cur.State)
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// storedAction rebuilds an approval's action from its row: the canonical
// parameters and the sealed value.
func (s *Service) storedAction(ctx context.Context, row store.Approval) (Action, error) {
	if row.Params == "" {
		return Action{}, Refused("params_wiped", "the approval's parameters were wiped")
	}
	act, err := ParseAction(row.ActionType, json.RawMessage(row.Params))
	if err != nil && len(row.ValueCT) == 0 {
		return Action{}, err
	}
	if len(row.ValueCT) > 0 {
		v, err := s.keys.openFor(ctx, s.store, row.OrgID, sealApproval, row.ID, row.ValueKeyID, row.ValueCT)
		if err != nil {
			return Action{}, err
		}
		var params ActionParams
		if err := json.Unmarshal([]byte(row.Params), &params); err != nil {
			return Action{}, err
		}
		params.Value = &v
		act = Action{Type: row.ActionType, Params: params}
	}
	return act, nil
}

// requesterPrincipal is the requester as it is now: the execution acts as
// it, so its token must still work, and a person's role is read afresh.
func (s *Service) requesterPrincipal(ctx context.Context, orgID string, r store.Requester) (auth.Principal, error) {
	if r.Kind == auth.KindSystem {
		return systemPrincipal(orgID), nil
	}
	if r.Via == auth.ViaSession {
		// A person who asked from the canvas: their session must still
		// work (not signed out, not idle or past its lifetime, the person
		// not removed), as a token must.
		x, err := s.store.GetSession(ctx, r.TokenID)
		if errors.Is(err, store.ErrNotFound) || err == nil && x.OrgID != orgID {
			return auth.Principal{}, Unauthorized("the requester's session no longer exists")
		}
		if err != nil {
			return auth.Principal{}, err
		}
		u, err := s.sessionLive(ctx, x, s.clock.Now())
		if err != nil {
			return auth.Principal{}, err
		}
		return auth.Principal{Kind: auth.KindUser, OrgID: orgID, TokenID: r.TokenID, UserID: u.ID, Role: u.Role, Via: r.Via}, nil
	}
	t, err := s.store.GetToken(ctx, r.TokenID)
	if errors.Is(err, store.ErrNotFound) || err == nil && t.OrgID != orgID {
		return auth.Principal{}, Unauthorized("the requester's token no longer exists")
	}
	if err != nil {
		return auth.Principal{}, err
	}
	if err := s.tokenLive(ctx, t, s.clock.Now()); err != nil {
		return auth.Principal{}, err
	}
	p, err := s.principalOfToken(ctx, t)
	if err != nil {
		return auth.Principal{}, err
	}
	p.Via = r.Via
	return p, nil
}

// DecideApproval records one person's approve or deny. When it completes
// the quorum, the control plane executes the stored action at once (and
// the answer shows its outcome); one deny ends the approval.
func (s *Service) DecideApproval(ctx context.Context, id string, approve bool, note string) (Approval, error) {
	p, err := principal(ctx)
	if err != nil {
		return Approval{}, err
	}
	verdict := "deny"
	if approve {
		verdict = "approve"
	}
	ev := &auditEvent{Action: "approval.decision", TargetKind: "approval", TargetID: id,
		Detail: map[string]any{"verdict": verdict, "note": note}}
	if err := validText("note", note, maxNote, false); err != nil {
		s.auditRefused(ctx, p, *ev, err)
		return Approval{}, err
	}
	var row store.Approval
	var from string
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		var err error
		row, err = tx.GetApprovalForUpdate(ctx, p.OrgID, id)
		if err != nil || !canSee(p, row.Requester) {
			return notFoundAs(orNotFound(err), "approval", id)
		}
		ev.WorkspaceID = row.Requester.WorkspaceID
		votes, err := tx.ListVotes(ctx, []string{id})
		if err != nil {
			return err
		}
		var vs []approvals.Vote
		for _, v := range votes[id] {
			vs = append(vs, approvals.Vote{UserID: v.UserID, Approve: v.Verdict == "approve", At: v.At})
		}
		now := s.clock.Now()
		d, err := approvals.Decide(row.State, partyOfRequester(row.Requester), partyOf(p), vs, row.Quorum, row.ExpiresAt, now, approve)
		if err != nil {
			return ruleError(err)
		}
		via := p.Via
		if via == "" {
			via = auth.ViaToken
		}
		if err := tx.InsertVote(ctx, store.ApprovalVote{ApprovalID: id, UserID: p.UserID, TokenID: p.TokenID, Via: via,
			Verdict: verdict, Note: note, At: now}); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return ruleError(approvals.ErrAlreadyVoted)
			}
			return err
		}
		from = row.State
		if d.State == row.State {
			return nil
		}
		row.State, row.UpdatedAt = d.State, now
		if approvals.Final(row.State, row.ActionType != "") {
			wipe(&row, now)
		}
		ev.Detail["state"] = row.State
		return tx.UpdateApproval(ctx, row, from)
	})
	if err != nil {
		return Approval{}, err
	}
	if row.State != from {
		s.approvalMoved(row, from)
	}
	if row.State == approvals.Approved && row.ActionType != "" {
		s.executeApproval(ctx, row.OrgID, id)
	}
	return s.GetApproval(ctx, id)
}

// wipe forgets an ended approval's parameters and sealed value.
func wipe(row *store.Approval, now time.Time) {
	row.Params, row.ValueCT, row.ValueKeyID = "", nil, ""
	row.EndedAt = now
}

// approvalMoved publishes a state change and counts it.
func (s *Service) approvalMoved(row store.Approval, from string) {
	s.metrics.Approvals.WithLabelValues("approval", row.State).Inc()
	if from == approvals.Pending {
		s.metrics.DecisionSeconds.WithLabelValues("approval").Observe(row.UpdatedAt.Sub(row.CreatedAt).Seconds())
	}
	s.events.Publish(Event{OrgID: row.OrgID, Type: "approval." + row.State, WorkspaceID: row.Requester.WorkspaceID,
		TargetID: row.ID, Status: row.State, Reason: row.ErrorCode})
}

// CancelApproval withdraws a pending approval; only its requester may.
func (s *Service) CancelApproval(ctx context.Context, id string) (Approval, error) {
	p, err := principal(ctx)
	if err != nil {
		return Approval{}, err
	}
	ev := &auditEvent{Action: "approval.cancelled", TargetKind: "approval", TargetID: id}
	var row store.Approval
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		var err error
		row, err = tx.GetApprovalForUpdate(ctx, p.OrgID, id)
		if err != nil || !canSee(p, row.Requester) {
			return notFoundAs(orNotFound(err), "approval", id)
		}
		ev.WorkspaceID = row.Requester.WorkspaceID
		if !approvals.MayCancel(partyOfRequester(row.Requester), partyOf(p)) {
			return &Error{Status: 403, Code: "not_requester", Message: "only the requester may cancel an approval; people deny it"}
		}
		if row.State != approvals.Pending {
			return ruleError(fmt.Errorf("%w (it is %s)", approvals.ErrNotPending, row.State))
		}
		now := s.clock.Now()
		row.State, row.UpdatedAt = approvals.Cancelled, now
		wipe(&row, now)
		return tx.UpdateApproval(ctx, row, approvals.Pending)
	})
	if err != nil {
		return Approval{}, err
	}
	s.approvalMoved(row, approvals.Pending)
	return s.approvalView(row, nil), nil
}

// execFailure is a refusal of the execution: the approval ends failed.
type execFailure struct{ code, msg string }

func (e *execFailure) Error() string { return e.code + ": " + e.msg }

// transient reports an error after which the execution is tried again
// later (the approval stays approved): the store was away or lost a race.
func transient(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrConflict) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || AsError(err).Status == 503
}

// executeApproval runs an approved approval's action, once: the action, its audit
// entries and the approval's end state commit in one transaction that
// starts by moving the approval from approved (a compare-and-set: two
// executors give one execution). It re-checks that the requester's token
// still works, that the parameters are the ones approved, and that the
// world is the one the plan was made in. A refusal ends the approval
// failed with the reason; a store fault leaves it approved for the sweeper
// to try again.
func (s *Service) executeApproval(ctx context.Context, orgID, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), execTimeout)
	defer cancel()
	x := &execState{approvalID: id}
	var row store.Approval
	var res ActionResult
	ran := false
	err := s.store.InTx(ctx, func(tx store.Store) error {
		x.reset(tx)
		ran = false
		var err error
		if row, err = tx.GetApprovalForUpdate(ctx, orgID, id); err != nil {
			return err
		}
		if row.State != approvals.Approved || row.ActionType == "" {
			return nil // executed, or being executed, elsewhere
		}
		ran = true
		now := s.clock.Now()
		row.State, row.UpdatedAt = approvals.Executing, now
		if err := tx.UpdateApproval(ctx, row, approvals.Approved); err != nil {
			return err
		}
		rp, err := s.requesterPrincipal(ctx, orgID, row.Requester)
		if err != nil {
			if e := AsError(err); e.Status == 401 {
				return &execFailure{"requester_revoked", "the requester's credential no longer works: " + e.Message}
			}
			return err
		}
		act, err := s.storedAction(ctx, row)
		if err != nil {
			return err
		}
		if s.actionHash(act) != row.ParamsHash {
			return &execFailure{"params_changed", "the stored parameters do not match the ones approved"}
		}
		pc, err := s.preconditionsOf(ctx, tx, orgID, act)
		if err != nil {
			return err
		}
		var was Preconditions
		_ = json.Unmarshal([]byte(row.Preconditions), &was)
		if was.SecretVersion != nil && pc.SecretVersion != nil && *was.SecretVersion != *pc.SecretVersion {
			return &execFailure{"stale_precondition", fmt.Sprintf("secret %s changed since the approval was asked for (version %d, now %d)",
				act.Params.Key, *was.SecretVersion, *pc.SecretVersion)}
		}
		if res, err = s.runAction(withExec(auth.WithPrincipal(ctx, rp), x), act); err != nil {
			return err
		}
		if res.secret != "" {
			if row.ResultKeyID, row.ResultCT, err = s.keys.sealFor(orgID, sealResultFor, id, res.secret); err != nil {
				return err
			}
		}
		rb, _ := json.Marshal(res)
		row.Result, row.State, row.UpdatedAt = string(rb), approvals.Succeeded, s.clock.Now()
		wipe(&row, row.UpdatedAt)
		if err := tx.UpdateApproval(ctx, row, approvals.Executing); err != nil {
			return err
		}
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{Action: "approval.succeeded",
			TargetKind: "approval", TargetID: id, WorkspaceID: row.Requester.WorkspaceID,
			Detail: map[string]any{"action": row.ActionType, "restarts": res.Restarts, "counts": res.Counts}}, "ok"))
		return err
	})
	switch {
	case err == nil && ran:
		s.finishExec(x)
		s.approvalMoved(store.Approval{ID: id, OrgID: orgID, State: approvals.Executing, Requester: row.Requester, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt}, approvals.Approved)
		s.approvalMoved(row, approvals.Executing)
		return
	case err == nil:
		return
	case transient(err):
		s.log.Warn("approved action not executed yet; it will be tried again", "approval_id", id, "err", err)
		return
	}
	var f *execFailure
	if !errors.As(err, &f) {
		e := AsError(err)
		if e.Status >= 500 {
			s.log.Error("approved action failed", "approval_id", id, "err", err)
		}
		f = &execFailure{e.Code, e.Message}
	}
	s.failApproval(ctx, orgID, id, f)
}

// failApproval ends an approval whose execution was refused.
func (s *Service) failApproval(ctx context.Context, orgID, id string, f *execFailure) {
	var row store.Approval
	err := s.store.InTx(ctx, func(tx store.Store) error {
		var err error
		if row, err = tx.GetApprovalForUpdate(ctx, orgID, id); err != nil {
			return err
		}
		if row.State != approvals.Approved {
			return errPlanned // someone else got there
		}
		now := s.clock.Now()
		row.State, row.UpdatedAt = approvals.Executing, now
		if err := tx.UpdateApproval(ctx, row, approvals.Approved); err != nil {
			return err
		}
		row.State, row.ErrorCode, row.ErrorMessage = approvals.Failed, f.code, f.msg
		wipe(&row, now)
		if err := tx.UpdateApproval(ctx, row, approvals.Executing); err != nil {
			return err
		}
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{Action: "approval.failed",
			TargetKind: "approval", TargetID: id, WorkspaceID: row.Requester.WorkspaceID,
			Detail: map[string]any{"action": row.ActionType, "code": f.code, "message": f.msg}}, "error:"+f.code))
		return err
	})
	if err != nil {
		if !errors.Is(err, errPlanned) {
			s.log.Warn("record a failed approval; the sweeper tries again", "approval_id", id, "err", err)
		}
		return
	}
	s.approvalMoved(row, approvals.Executing)
}
