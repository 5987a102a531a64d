package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// ApprovalRequiredError is the answer (202) to a write the org's policy
// holds for people to decide: nothing changed, and Approval (pending) says
// what waits. Every call that may be gated returns it instead of a result,
// so that a held write is never mistaken for a done one.
type ApprovalRequiredError struct {
	Approval Approval
}

func (e *ApprovalRequiredError) Error() string {
	return fmt.Sprintf("approval required: approval %s is %s; nothing changed until a person approves it", e.Approval.ID, e.Approval.State)
}

// approvalRequired reads a 202 answer: a gated write's {"approval": ...},
// or nil for any other accepted answer (a restart's {"job": ...}).
func approvalRequired(raw []byte) *ApprovalRequiredError {
	var body struct {
		Approval *Approval `json:"approval"`
	}
	if json.Unmarshal(raw, &body) != nil || body.Approval == nil || body.Approval.ID == "" {
		return nil
	}
	return &ApprovalRequiredError{Approval: *body.Approval}
}

// ListFilter pages approvals or requests: by state ("" for all), at most
// Limit (0: the server's default), older than the id Before.
type ListFilter struct {
	State  string
	Limit  int
	Before string
}

func (f ListFilter) query() string {
	q := url.Values{}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Before != "" {
		q.Set("before", f.Before)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// ListApprovals lists approvals, newest first: the org's for people and
// admin tokens, its own for a workspace.
func (c *Client) ListApprovals(ctx context.Context, f ListFilter) ([]Approval, error) {
	var out []Approval
	err := c.Do(ctx, http.MethodGet, "/v1/approvals"+f.query(), nil, &out)
	return out, err
}

// CreateApproval asks people to approve an action, or a free-form approval
// (no action).
func (c *Client) CreateApproval(ctx context.Context, in CreateApproval) (Approval, error) {
	var out Approval
	err := c.Do(ctx, http.MethodPost, "/v1/approvals", in, &out)
	return out, err
}

// GetApproval returns one approval; a pending one with an action also
// carries its plan recomputed now (CurrentPlan).
func (c *Client) GetApproval(ctx context.Context, id string) (Approval, error) {
	var out Approval
	err := c.Do(ctx, http.MethodGet, "/v1/approvals/"+esc(id), nil, &out)
	return out, err
}

// DecideApproval records a person's verdict ("approve" or "deny"). The
// answer is the approval after it: once approved, its action has run and
// the state is succeeded or failed (with Error).
func (c *Client) DecideApproval(ctx context.Context, id, decision, note string) (Approval, error) {
	var out Approval
	err := c.Do(ctx, http.MethodPost, "/v1/approvals/"+esc(id)+"/decision", Decide{Decision: decision, Note: note}, &out)
	return out, err
}

// CancelApproval withdraws a pending approval (its requester only).
func (c *Client) CancelApproval(ctx context.Context, id string) (Approval, error) {
	var out Approval
	err := c.Do(ctx, http.MethodPost, "/v1/approvals/"+esc(id)+"/cancel", nil, &out)
	return out, err
}

// ListRequests lists requests, newest first, as ListApprovals.
func (c *Client) ListRequests(ctx context.Context, f ListFilter) ([]Request, error) {
	var out []Request
	err := c.Do(ctx, http.MethodGet, "/v1/requests"+f.query(), nil, &out)
	return out, err
}

// CreateRequest asks people for an answer, or for a secret to be set.
func (c *Client) CreateRequest(ctx context.Context, in CreateRequest) (Request, error) {
	var out Request
	err := c.Do(ctx, http.MethodPost, "/v1/requests", in, &out)
	return out, err
}

// GetRequest returns one request.
func (c *Client) GetRequest(ctx context.Context, id string) (Request, error) {
	var out Request
	err := c.Do(ctx, http.MethodGet, "/v1/requests/"+esc(id), nil, &out)
	return out, err
}

// AnswerRequest answers a request: text, or for a secret request the value,
// which the server writes as a secret and never shows again.
func (c *Client) AnswerRequest(ctx context.Context, id string, in Answer) (Request, error) {
	var out Request
	err := c.Do(ctx, http.MethodPost, "/v1/requests/"+esc(id)+"/answer", in, &out)
	return out, err
}

// DeclineRequest declines a request (a person).
func (c *Client) DeclineRequest(ctx context.Context, id, note string) (Request, error) {
	var out Request
	err := c.Do(ctx, http.MethodPost, "/v1/requests/"+esc(id)+"/decline", Decline{Note: note}, &out)
	return out, err
}

// CancelRequest withdraws a pending request (its requester only).
func (c *Client) CancelRequest(ctx context.Context, id string) (Request, error) {
	var out Request
	err := c.Do(ctx, http.MethodPost, "/v1/requests/"+esc(id)+"/cancel", nil, &out)
	return out, err
}
