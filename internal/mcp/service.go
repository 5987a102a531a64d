package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/httpapi"
	"github.com/orgplane/orgplane/internal/store"
)

// ServiceBackend calls the service layer in process, as the principal in
// the call's context: the /mcp handler puts it there, after
// core.Service.EnterMCP made it an agent principal (Via = mcp).
type ServiceBackend struct {
	Svc *core.Service
	Log *slog.Logger
}

var _ Backend = ServiceBackend{}

// fail maps a service error to the backend's: a gated call, or the API's
// error (internal detail stays in the log).
func (b ServiceBackend) fail(ctx context.Context, err error) error {
	var gated *core.ApprovalRequired
	if errors.As(err, &gated) {
		return &Gated{Approval: httpapi.ApprovalJSON(gated.Approval)}
	}
	e := core.AsError(err)
	if e.Status >= 500 && b.Log != nil {
		b.Log.Error("mcp call failed", "request_id", auth.RequestID(ctx), "err", err)
	}
	return &Error{Status: e.Status, Code: e.Code, Message: e.Message}
}

func (b ServiceBackend) Whoami(ctx context.Context) (client.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.OrgID == "" {
		return client.Principal{}, b.fail(ctx, core.Unauthorized("authentication required"))
	}
	return httpapi.PrincipalJSON(p), nil
}

func (b ServiceBackend) ListWorkspaces(ctx context.Context) ([]client.Workspace, error) {
	list, err := b.Svc.ListWorkspaces(ctx)
	if err != nil {
		return nil, b.fail(ctx, err)
	}
	out := make([]client.Workspace, len(list))
	for i, w := range list {
		out[i] = httpapi.WorkspaceJSON(w)
	}
	return out, nil
}

func (b ServiceBackend) workspace(ctx context.Context, w core.Workspace, err error) (client.Workspace, error) {
	if err != nil {
		return client.Workspace{}, b.fail(ctx, err)
	}
	return httpapi.WorkspaceJSON(w), nil
}

func (b ServiceBackend) GetWorkspace(ctx context.Context, id string) (client.Workspace, error) {
	w, err := b.Svc.GetWorkspace(ctx, id)
	return b.workspace(ctx, w, err)
}

func (b ServiceBackend) CreateWorkspace(ctx context.Context, in client.CreateWorkspace) (client.Workspace, error) {
	w, err := b.Svc.CreateWorkspace(ctx, core.CreateWorkspaceInput{
		Name: in.Name, ParentID: in.ParentID, Runtime: in.Runtime, Spec: in.Spec,
		RestartPolicy: in.RestartPolicy, Protected: in.Protected, Start: in.Start,
	})
	return b.workspace(ctx, w, err)
}

func (b ServiceBackend) UpdateWorkspace(ctx context.Context, id string, in client.PatchWorkspace) (client.Workspace, error) {
	w, err := b.Svc.UpdateWorkspace(ctx, id, core.PatchWorkspaceInput{
		Name: in.Name, ParentID: in.ParentID, Spec: in.Spec, RestartPolicy: in.RestartPolicy, Protected: in.Protected,
	})
	return b.workspace(ctx, w, err)
}

func (b ServiceBackend) DeleteWorkspace(ctx context.Context, id string, cascade bool) (client.DeleteWorkspaceResult, error) {
	removed, err := b.Svc.DeleteWorkspace(ctx, id, cascade)
	if err != nil {
		return client.DeleteWorkspaceResult{}, b.fail(ctx, err)
	}
	return client.DeleteWorkspaceResult{Removed: removed}, nil
}

func (b ServiceBackend) RestartWorkspace(ctx context.Context, id, reason string) (client.RestartJob, error) {
	j, err := b.Svc.RestartWorkspace(ctx, id, reason)
	if err != nil {
		return client.RestartJob{}, b.fail(ctx, err)
	}
	return httpapi.JobJSON(j), nil
}

func (b ServiceBackend) PauseWorkspace(ctx context.Context, id string) (client.Workspace, error) {
	w, err := b.Svc.PauseWorkspace(ctx, id)
	return b.workspace(ctx, w, err)
}

func (b ServiceBackend) ResumeWorkspace(ctx context.Context, id string) (client.Workspace, error) {
	w, err := b.Svc.ResumeWorkspace(ctx, id)
	return b.workspace(ctx, w, err)
}

func (b ServiceBackend) ListRestarts(ctx context.Context, workspaceID string, limit int) ([]client.RestartJob, error) {
	var list []store.RestartJob
	var err error
	if workspaceID == "" {
		list, err = b.Svc.ListOrgRestarts(ctx, limit, store.JobCursor{})
	} else {
		list, err = b.Svc.ListRestarts(ctx, workspaceID, limit)
	}
	if err != nil {
		return nil, b.fail(ctx, err)
	}
	return httpapi.JobsJSON(list), nil
}

func (b ServiceBackend) GetChange(ctx context.Context, id string) (client.Change, error) {
	c, err := b.Svc.GetChange(ctx, id)
	if err != nil {
		return client.Change{}, b.fail(ctx, err)
	}
	return httpapi.ChangeJSON(c), nil
}

func (b ServiceBackend) ListSecrets(ctx context.Context, workspaceID string) ([]client.SecretMeta, error) {
	list, err := b.Svc.ListSecrets(ctx, workspaceID)
	if err != nil {
		return nil, b.fail(ctx, err)
	}
	return httpapi.SecretsJSON(list), nil
}

func (b ServiceBackend) SetSecret(ctx context.Context, workspaceID, key, value string, dryRun bool) (client.SecretWrite, error) {
	out, err := b.Svc.SetSecret(ctx, workspaceID, key, value, dryRun)
	if err != nil {
		return client.SecretWrite{}, b.fail(ctx, err)
	}
	return httpapi.SecretWriteJSON(out), nil
}

func (b ServiceBackend) DeleteSecret(ctx context.Context, workspaceID, key string, dryRun bool) (client.SecretWrite, error) {
	out, err := b.Svc.DeleteSecret(ctx, workspaceID, key, dryRun)
	if err != nil {
		return client.SecretWrite{}, b.fail(ctx, err)
	}
	return httpapi.SecretWriteJSON(out), nil
}

// defaultAuditLimit is the API's page size when none is asked for.
const defaultAuditLimit = 100

func (b ServiceBackend) ListAudit(ctx context.Context, workspaceID string, limit int, before int64) (client.AuditPage, error) {
	if limit == 0 {
		limit = defaultAuditLimit
	}
	list, err := b.Svc.ListAudit(ctx, store.AuditFilter{WorkspaceID: workspaceID, Before: before, Limit: limit})
	if err != nil {
		return client.AuditPage{}, b.fail(ctx, err)
	}
	page := client.AuditPage{Entries: make([]client.AuditEntry, len(list))}
	for i, e := range list {
		page.Entries[i] = httpapi.AuditJSON(e)
	}
	if len(list) == limit {
		page.NextBefore = list[len(list)-1].ID
	}
	return page, nil
}

func (b ServiceBackend) ListApprovals(ctx context.Context, f ListFilter) ([]client.Approval, error) {
	list, err := b.Svc.ListApprovals(ctx, core.ApprovalFilter{State: f.State, Before: f.Before, Limit: f.Limit})
	if err != nil {
		return nil, b.fail(ctx, err)
	}
	out := make([]client.Approval, len(list))
	for i, a := range list {
		out[i] = httpapi.ApprovalJSON(a)
	}
	return out, nil
}

func (b ServiceBackend) approval(ctx context.Context, a core.Approval, err error) (client.Approval, error) {
	if err != nil {
		return client.Approval{}, b.fail(ctx, err)
	}
	return httpapi.ApprovalJSON(a), nil
}

func (b ServiceBackend) GetApproval(ctx context.Context, id string) (client.Approval, error) {
	a, err := b.Svc.GetApproval(ctx, id)
	return b.approval(ctx, a, err)
}

func (b ServiceBackend) CreateApproval(ctx context.Context, in client.CreateApproval) (client.Approval, error) {
	ci := core.CreateApprovalInput{Title: in.Title, Detail: in.Detail, TTLSeconds: in.TTLSeconds}
	if in.Action != nil {
		ci.ActionType, ci.Params = in.Action.Type, in.Action.Params
		if len(ci.Params) == 0 {
			ci.Params = json.RawMessage("{}")
		}
	}
	a, err := b.Svc.CreateApproval(ctx, ci)
	return b.approval(ctx, a, err)
}

func (b ServiceBackend) CancelApproval(ctx context.Context, id string) (client.Approval, error) {
	a, err := b.Svc.CancelApproval(ctx, id)
	return b.approval(ctx, a, err)
}

func (b ServiceBackend) WaitApproval(ctx context.Context, id string, timeout time.Duration, progress func(string)) (client.WaitedApproval, error) {
	a, err := b.Svc.WaitApproval(ctx, id, timeout, progress)
	if err != nil {
		return client.WaitedApproval{}, b.fail(ctx, err)
	}
	return client.WaitedApproval{Done: a.Done(), Approval: httpapi.ApprovalJSON(a)}, nil
}

func (b ServiceBackend) ListRequests(ctx context.Context, f ListFilter) ([]client.Request, error) {
	list, err := b.Svc.ListRequests(ctx, core.ApprovalFilter{State: f.State, Before: f.Before, Limit: f.Limit})
	if err != nil {
		return nil, b.fail(ctx, err)
	}
	out := make([]client.Request, len(list))
	for i, x := range list {
		out[i] = httpapi.RequestJSON(x)
	}
	return out, nil
}

func (b ServiceBackend) request(ctx context.Context, x store.Request, err error) (client.Request, error) {
	if err != nil {
		return client.Request{}, b.fail(ctx, err)
	}
	return httpapi.RequestJSON(x), nil
}

func (b ServiceBackend) GetRequest(ctx context.Context, id string) (client.Request, error) {
	x, err := b.Svc.GetRequest(ctx, id)
	return b.request(ctx, x, err)
}

func (b ServiceBackend) CreateRequest(ctx context.Context, in client.CreateRequest) (client.Request, error) {
	x, err := b.Svc.CreateRequest(ctx, core.CreateRequestInput{Title: in.Title, Detail: in.Detail, Ask: in.Ask,
		Key: in.Key, WorkspaceID: in.WorkspaceID, TTLSeconds: in.TTLSeconds})
	return b.request(ctx, x, err)
}

func (b ServiceBackend) CancelRequest(ctx context.Context, id string) (client.Request, error) {
	x, err := b.Svc.CancelRequest(ctx, id)
	return b.request(ctx, x, err)
}

func (b ServiceBackend) WaitRequest(ctx context.Context, id string, timeout time.Duration, progress func(string)) (client.WaitedRequest, error) {
	x, err := b.Svc.WaitRequest(ctx, id, timeout, progress)
	if err != nil {
		return client.WaitedRequest{}, b.fail(ctx, err)
	}
	return client.WaitedRequest{Done: core.RequestDone(x), Request: httpapi.RequestJSON(x)}, nil
}
