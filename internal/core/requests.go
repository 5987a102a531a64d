package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/orgplane/orgplane/internal/approvals"
	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
)

// Request asks.
const (
	AskText   = "text"
	AskSecret = "secret"
)

// CreateRequestInput is an agent's request for information or a secret.
type CreateRequestInput struct {
	Title       string
	Detail      string
	Ask         string
	Key         string // ask secret: the secret's key
	WorkspaceID string // ask secret: whose secret (default: the caller's workspace)
	TTLSeconds  *int
}

var requestStates = []string{approvals.Pending, approvals.Answered, approvals.Declined, approvals.Expired, approvals.Cancelled}

// CreateRequest asks people for a text answer or a secret. A secret is
// asked for a workspace the caller may manage the secrets of (an agent:
// its own); the answer is written there, never stored in the request.
func (s *Service) CreateRequest(ctx context.Context, in CreateRequestInput) (store.Request, error) {
	p, err := principal(ctx)
	if err != nil {
		return store.Request{}, err
	}
	id := ids.New("rq")
	ev := &auditEvent{Action: "request.created", TargetKind: "request", TargetID: id, WorkspaceID: p.CallerWorkspace(),
		Detail: map[string]any{"title": in.Title, "ask": in.Ask}}
	var row store.Request
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		if err := mayAsk(p, "asking people"); err != nil {
			return err
		}
		if err := validText("title", in.Title, maxTitle, true); err != nil {
			return err
		}
		if err := validText("detail", in.Detail, maxDetail, false); err != nil {
			return err
		}
		ws := in.WorkspaceID
		switch in.Ask {
		case AskText:
			if in.Key != "" || in.WorkspaceID != "" {
				return Invalid("invalid_field", "key and workspace_id are for ask \"secret\"")
			}
		case AskSecret:
			if err := ValidateSecretKey(in.Key); err != nil {
				return err
			}
			if ws == "" {
				ws = p.CallerWorkspace()
			}
			if ws == "" {
				return Invalid("missing_field", "workspace_id is required: a secret is asked for a workspace (the caller has none of its own)")
			}
			w, err := s.visibleWorkspace(ctx, tx, p, ws)
			if err != nil {
				return err
			}
			if w.Status == StatusRemoved {
				return NotFound("workspace", ws)
			}
			ev.Detail["key"] = in.Key
		default:
			return Invalid("invalid_ask", "ask must be \"text\" or \"secret\"")
		}
		pol, err := s.policyOf(ctx, tx, p.OrgID)
		if err != nil {
			return err
		}
		life, err := ttlOf(pol, in.TTLSeconds)
		if err != nil {
			return err
		}
		now := s.clock.Now()
		row = store.Request{ID: id, OrgID: p.OrgID, State: approvals.Pending, Title: in.Title, Detail: in.Detail,
			Ask: in.Ask, SecretKey: in.Key, WorkspaceID: ws, Requester: requesterOf(p),
			ExpiresAt: now.Add(life), CreatedAt: now, UpdatedAt: now}
		return tx.InsertRequest(ctx, row)
	})
	if err != nil {
		return store.Request{}, err
	}
	s.metrics.Approvals.WithLabelValues("request", approvals.Pending).Inc()
	return row, nil
}

// ListRequests lists requests, newest first, seen as approvals are.
func (s *Service) ListRequests(ctx context.Context, f ApprovalFilter) ([]store.Request, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	lf, err := f.check(requestStates, "rq")
	if err != nil {
		return nil, err
	}
	if !p.CanReadOrg() {
		if p.CallerWorkspace() == "" {
			return nil, Forbidden("listing requests requires a person, an admin token or a workspace's token")
		}
		lf.WorkspaceID = p.CallerWorkspace()
	}
	out, err := s.store.ListRequests(ctx, p.OrgID, lf)
	if errors.Is(err, store.ErrNotFound) {
		return nil, Invalid("invalid_cursor", "before names no request of this org")
	}
	return out, err
}

// GetRequest shows one request.
func (s *Service) GetRequest(ctx context.Context, id string) (store.Request, error) {
	p, err := principal(ctx)
	if err != nil {
		return store.Request{}, err
	}
	r, err := s.store.GetRequest(ctx, p.OrgID, id)
	if err != nil || !canSee(p, r.Requester) {
		return store.Request{}, notFoundAs(orNotFound(err), "request", id)
	}
	return r, nil
}

// mayRespond is the rule for answering or declining a request: a person
// who is an owner or admin, and not the one who asked.
func mayRespond(p auth.Principal, r store.Request) error {
	return ruleError(approvals.MayDecide(partyOfRequester(r.Requester), partyOf(p)))
}

// respond moves a pending request to its end state on behalf of a person,
// in one transaction with what the answer writes.
func (s *Service) respond(ctx context.Context, id string, ev *auditEvent, fn func(ctx context.Context, p auth.Principal, r *store.Request) error) (store.Request, error) {
	p, err := principal(ctx)
	if err != nil {
		return store.Request{}, err
	}
	x := &execState{}
	var row store.Request
	err = s.store.InTx(ctx, func(tx store.Store) error {
		x.reset(tx)
		var err error
		row, err = tx.GetRequestForUpdate(ctx, p.OrgID, id)
		if err != nil || !canSee(p, row.Requester) {
			return notFoundAs(orNotFound(err), "request", id)
		}
		ev.WorkspaceID = row.Requester.WorkspaceID
		now := s.clock.Now()
		if row.State == approvals.Pending && !now.Before(row.ExpiresAt) {
			return ruleError(approvals.ErrExpiredByTime)
		}
		if err := fn(withExec(ctx, x), p, &row); err != nil {
			return err
		}
		if row.State == approvals.Pending {
			return ruleError(fmt.Errorf("%w (it is %s)", approvals.ErrNotPending, row.State))
		}
		row.UpdatedAt, row.EndedAt = now, now
		ev.Detail["state"] = row.State
		if err := tx.UpdateRequest(ctx, row, approvals.Pending); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return ruleError(approvals.ErrNotPending)
			}
			return err
		}
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, p, *ev, "ok"))
		return err
	})
	if err != nil {
		s.auditRefused(ctx, p, *ev, err)
		return store.Request{}, AsError(err)
	}
	markAudited(ctx, p)
	s.finishExec(x)
	s.requestMoved(row)
	return row, nil
}

func (s *Service) requestMoved(r store.Request) {
	s.metrics.Approvals.WithLabelValues("request", r.State).Inc()
	if r.State == approvals.Answered || r.State == approvals.Declined {
		s.metrics.DecisionSeconds.WithLabelValues("request").Observe(r.UpdatedAt.Sub(r.CreatedAt).Seconds())
	}
	s.events.Publish(Event{OrgID: r.OrgID, Type: "request." + r.State, WorkspaceID: r.Requester.WorkspaceID,
		TargetID: r.ID, Status: r.State})
}

// AnswerRequest answers a pending request: text for ask "text"; for ask
// "secret" a value, written as a normal secret write by the person, in the
// same transaction, with propagation treating the asking workspace as the
// caller's (self_write: the agent that asked is not restarted; it reads
// the value from /values). The value is never stored in the request.
func (s *Service) AnswerRequest(ctx context.Context, id string, text, value *string) (store.Request, error) {
	ev := &auditEvent{Action: "request.answered", TargetKind: "request", TargetID: id, Detail: map[string]any{}}
	return s.respond(ctx, id, ev, func(ctx context.Context, p auth.Principal, r *store.Request) error {
		if err := mayRespond(p, *r); err != nil {
			return err
		}
		if r.State != approvals.Pending {
			return ruleError(fmt.Errorf("%w (it is %s)", approvals.ErrNotPending, r.State))
		}
		switch r.Ask {
		case AskText:
			if value != nil || text == nil {
				return Invalid("invalid_answer", "this request asks for text: answer with {\"text\": ...}")
			}
			if err := validText("text", *text, MaxSecretValue, true); err != nil {
				return err
			}
			r.AnswerText = *text
			ev.Detail["bytes"] = len(*text)
		case AskSecret:
			if text != nil || value == nil {
				return Invalid("invalid_answer", "this request asks for a secret: answer with {\"value\": ...}")
			}
			w, err := s.SetSecret(withCallerWorkspace(ctx, r.Requester.WorkspaceID), r.WorkspaceID, r.SecretKey, *value, false)
			if err != nil {
				return err
			}
			r.SecretVersion = w.Version
			ev.Detail["key"], ev.Detail["version"] = r.SecretKey, w.Version
		}
		r.State = approvals.Answered
		r.ResponderUser, r.ResponderTok, r.ResponderVia = p.UserID, p.TokenID, viaOf(p)
		return nil
	})
}

func viaOf(p auth.Principal) string {
	if p.Via == "" {
		return auth.ViaToken
	}
	return p.Via
}

// DeclineRequest declines a pending request, with a note for the agent.
func (s *Service) DeclineRequest(ctx context.Context, id, note string) (store.Request, error) {
	ev := &auditEvent{Action: "request.declined", TargetKind: "request", TargetID: id, Detail: map[string]any{"note": note}}
	return s.respond(ctx, id, ev, func(ctx context.Context, p auth.Principal, r *store.Request) error {
		if err := validText("note", note, maxNote, false); err != nil {
			return err
		}
		if err := mayRespond(p, *r); err != nil {
			return err
		}
		if r.State != approvals.Pending {
			return ruleError(fmt.Errorf("%w (it is %s)", approvals.ErrNotPending, r.State))
		}
		r.State, r.Note = approvals.Declined, note
		r.ResponderUser, r.ResponderTok, r.ResponderVia = p.UserID, p.TokenID, viaOf(p)
		return nil
	})
}

// CancelRequest withdraws a pending request; only its requester may.
func (s *Service) CancelRequest(ctx context.Context, id string) (store.Request, error) {
	ev := &auditEvent{Action: "request.cancelled", TargetKind: "request", TargetID: id, Detail: map[string]any{}}
	return s.respond(ctx, id, ev, func(ctx context.Context, p auth.Principal, r *store.Request) error {
		if !approvals.MayCancel(partyOfRequester(r.Requester), partyOf(p)) {
			return &Error{Status: 403, Code: "not_requester", Message: "only the requester may cancel a request; people decline it"}
		}
		if r.State != approvals.Pending {
			return ruleError(fmt.Errorf("%w (it is %s)", approvals.ErrNotPending, r.State))
		}
		r.State = approvals.Cancelled
		return nil
	})
}
