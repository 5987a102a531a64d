package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/store"
)

func (s *Server) approvalRoutes(r chi.Router) {
	s.handle(r, "GET", "/approvals", s.listApprovals, "state", "limit", "before")
	s.handle(r, "POST", "/approvals", s.createApproval)
	s.handle(r, "GET", "/approvals/{id}", s.getApproval)
	s.handle(r, "POST", "/approvals/{id}/decision", s.decideApproval)
	s.handle(r, "POST", "/approvals/{id}/cancel", s.cancelApproval)
	s.handle(r, "GET", "/requests", s.listRequests, "state", "limit", "before")
	s.handle(r, "POST", "/requests", s.createRequest)
	s.handle(r, "GET", "/requests/{id}", s.getRequest)
	s.handle(r, "POST", "/requests/{id}/answer", s.answerRequest)
	s.handle(r, "POST", "/requests/{id}/decline", s.declineRequest)
	s.handle(r, "POST", "/requests/{id}/cancel", s.cancelRequest)
}

func decisionsJSON(ds []propagation.Decision) []client.Decision {
	if ds == nil {
		return nil
	}
	out := make([]client.Decision, len(ds))
	for i, d := range ds {
		out[i] = client.Decision{WorkspaceID: d.WorkspaceID, Action: d.Action, Reason: d.Reason}
	}
	return out
}

func planJSON(r *core.ActionResult) *client.Plan {
	if r == nil {
		return nil
	}
	return &client.Plan{Decisions: decisionsJSON(r.Decisions), Counts: r.Counts, Restarts: r.Restarts,
		Truncated: r.Truncated, Version: r.Version, JobID: r.JobID, Removed: r.Removed, TokenID: r.TokenID}
}

func requesterJSON(r store.Requester) client.Requester {
	return client.Requester{Kind: r.Kind, TokenID: r.TokenID, UserID: r.UserID, WorkspaceID: r.WorkspaceID, Via: r.Via}
}

// ApprovalJSON converts an approval to its API shape.
func ApprovalJSON(a core.Approval) client.Approval {
	out := client.Approval{ID: a.ID, OrgID: a.OrgID, State: a.State, Title: a.Title, Detail: a.Detail,
		ParamsHash: a.ParamsHash, Plan: planJSON(a.PlanAtRequest), CurrentPlan: planJSON(a.CurrentPlan),
		CurrentPlanError: a.CurrentPlanError, Quorum: a.Quorum, Requester: requesterJSON(a.Requester),
		Decisions: make([]client.Vote, len(a.Votes)), Result: planJSON(a.Outcome), Secret: a.Secret,
		ExpiresAt: a.ExpiresAt, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, EndedAt: timePtr(a.EndedAt)}
	if a.Action != nil {
		out.Action = &client.ApprovalAction{Type: a.Action.Type, Params: a.Action.Params, HasValue: a.Action.HasValue}
		if b, err := json.Marshal(a.Preconds); err == nil {
			out.Preconditions = b
		}
	}
	for i, v := range a.Votes {
		out.Decisions[i] = client.Vote{UserID: v.UserID, TokenID: v.TokenID, Via: v.Via, Verdict: v.Verdict, Note: v.Note, At: v.At}
	}
	if a.ErrorCode != "" {
		out.Error = &client.ErrorDetail{Code: a.ErrorCode, Message: a.ErrorMessage}
	}
	return out
}

// RequestJSON converts a request to its API shape.
func RequestJSON(r store.Request) client.Request {
	out := client.Request{ID: r.ID, OrgID: r.OrgID, State: r.State, Title: r.Title, Detail: r.Detail, Ask: r.Ask,
		Key: r.SecretKey, WorkspaceID: r.WorkspaceID, Requester: requesterJSON(r.Requester), Answer: r.AnswerText,
		SecretVersion: r.SecretVersion, Note: r.Note, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt,
		UpdatedAt: r.UpdatedAt, EndedAt: timePtr(r.EndedAt)}
	if r.ResponderTok != "" {
		out.Responder = &client.Responder{UserID: r.ResponderUser, TokenID: r.ResponderTok, Via: r.ResponderVia}
	}
	return out
}

func (s *Server) listFilter(w http.ResponseWriter, r *http.Request, q query, prefix string) (core.ApprovalFilter, bool) {
	limit, qerr := q.Int("limit")
	if qerr != nil {
		s.refuse(w, r, qerr)
		return core.ApprovalFilter{}, false
	}
	before, qerr := q.ID("before", prefix)
	if qerr != nil {
		s.refuse(w, r, qerr)
		return core.ApprovalFilter{}, false
	}
	if q.Has("limit") && limit == 0 {
		s.refuse(w, r, core.Invalid("invalid_limit", "limit must be at least 1"))
		return core.ApprovalFilter{}, false
	}
	return core.ApprovalFilter{State: q.values.Get("state"), Before: before, Limit: int(min(limit, 1<<20))}, true
}

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request, q query) {
	f, ok := s.listFilter(w, r, q, "ap")
	if !ok {
		return
	}
	list, err := s.svc.ListApprovals(ctx(r), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]client.Approval, len(list))
	for i, a := range list {
		out[i] = ApprovalJSON(a)
	}
	writeJSON(w, 200, out)
}

func (s *Server) createApproval(w http.ResponseWriter, r *http.Request, q query) {
	var in client.CreateApproval
	if !s.decode(w, r, &in) {
		return
	}
	ci := core.CreateApprovalInput{Title: in.Title, Detail: in.Detail, TTLSeconds: in.TTLSeconds}
	if in.Action != nil {
		if in.Action.Type == "" {
			s.refuse(w, r, core.Invalid("missing_field", "action.type is required"))
			return
		}
		ci.ActionType, ci.Params = in.Action.Type, in.Action.Params
	}
	a, err := s.svc.CreateApproval(ctx(r), ci)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ApprovalJSON(a))
}

func (s *Server) getApproval(w http.ResponseWriter, r *http.Request, q query) {
	a, err := s.svc.GetApproval(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, ApprovalJSON(a))
}

func (s *Server) decideApproval(w http.ResponseWriter, r *http.Request, q query) {
	var in client.Decide
	if !s.decode(w, r, &in) {
		return
	}
	var approve bool
	switch in.Decision {
	case "approve":
		approve = true
	case "deny":
	default:
		s.refuse(w, r, core.Invalid("invalid_decision", "decision must be \"approve\" or \"deny\""))
		return
	}
	a, err := s.svc.DecideApproval(ctx(r), chi.URLParam(r, "id"), approve, in.Note)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, ApprovalJSON(a))
}

func (s *Server) cancelApproval(w http.ResponseWriter, r *http.Request, q query) {
	if !s.noBody(w, r) {
		return
	}
	a, err := s.svc.CancelApproval(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, ApprovalJSON(a))
}

func (s *Server) listRequests(w http.ResponseWriter, r *http.Request, q query) {
	f, ok := s.listFilter(w, r, q, "rq")
	if !ok {
		return
	}
	list, err := s.svc.ListRequests(ctx(r), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]client.Request, len(list))
	for i, x := range list {
		out[i] = RequestJSON(x)
	}
	writeJSON(w, 200, out)
}

func (s *Server) createRequest(w http.ResponseWriter, r *http.Request, q query) {
	var in client.CreateRequest
	if !s.decode(w, r, &in) {
		return
	}
	x, err := s.svc.CreateRequest(ctx(r), core.CreateRequestInput{Title: in.Title, Detail: in.Detail, Ask: in.Ask,
		Key: in.Key, WorkspaceID: in.WorkspaceID, TTLSeconds: in.TTLSeconds})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, RequestJSON(x))
}

func (s *Server) getRequest(w http.ResponseWriter, r *http.Request, q query) {
	x, err := s.svc.GetRequest(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, RequestJSON(x))
}

func (s *Server) answerRequest(w http.ResponseWriter, r *http.Request, q query) {
	var in client.Answer
	if !s.decode(w, r, &in) {
		return
	}
	x, err := s.svc.AnswerRequest(ctx(r), chi.URLParam(r, "id"), in.Text, in.Value)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, RequestJSON(x))
}

func (s *Server) declineRequest(w http.ResponseWriter, r *http.Request, q query) {
	var in client.Decline
	if !s.decode(w, r, &in) {
		return
	}
	x, err := s.svc.DeclineRequest(ctx(r), chi.URLParam(r, "id"), in.Note)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, RequestJSON(x))
}

func (s *Server) cancelRequest(w http.ResponseWriter, r *http.Request, q query) {
	if !s.noBody(w, r) {
		return
	}
	x, err := s.svc.CancelRequest(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, RequestJSON(x))
}
