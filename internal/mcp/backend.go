// Package mcp is the MCP face of orgplane: one definition of each tool,
// served over streamable HTTP on /mcp (in process, over the service layer)
// and over stdio by `orgplane mcp` (relaying to the HTTP API). Tools decode
// their arguments, call one Backend method and encode its answer; every
// rule is the service layer's.
package mcp

import (
	"context"
	"time"

	"github.com/orgplane/orgplane/internal/client"
)

// Backend is what the tools call: the service layer in process
// (ServiceBackend) or the HTTP API (RemoteBackend). Both answer in the
// API's shapes, so that a tool's result is the API's view of the same
// state. Errors are *Error, or *Gated for a call the org's policy holds
// for people to approve.
type Backend interface {
	Whoami(ctx context.Context) (client.Principal, error)

	ListWorkspaces(ctx context.Context) ([]client.Workspace, error)
	GetWorkspace(ctx context.Context, id string) (client.Workspace, error)
	CreateWorkspace(ctx context.Context, in client.CreateWorkspace) (client.Workspace, error)
	UpdateWorkspace(ctx context.Context, id string, in client.PatchWorkspace) (client.Workspace, error)
	DeleteWorkspace(ctx context.Context, id string, cascade bool) (client.DeleteWorkspaceResult, error)
	RestartWorkspace(ctx context.Context, id, reason string) (client.RestartJob, error)
	PauseWorkspace(ctx context.Context, id string) (client.Workspace, error)
	ResumeWorkspace(ctx context.Context, id string) (client.Workspace, error)
	// ListRestarts lists a workspace's restart jobs, or the org's when
	// workspaceID is "".
	ListRestarts(ctx context.Context, workspaceID string, limit int) ([]client.RestartJob, error)

	// ListSecrets, SetSecret and DeleteSecret: the global secrets when
	// workspaceID is "". No method returns a value.
	ListSecrets(ctx context.Context, workspaceID string) ([]client.SecretMeta, error)
	SetSecret(ctx context.Context, workspaceID, key, value string, dryRun bool) (client.SecretWrite, error)
	DeleteSecret(ctx context.Context, workspaceID, key string, dryRun bool) (client.SecretWrite, error)
	// GetChange returns a secret change and how its restarts stand.
	GetChange(ctx context.Context, id string) (client.Change, error)

	ListAudit(ctx context.Context, workspaceID string, limit int, before int64) (client.AuditPage, error)

	ListApprovals(ctx context.Context, f ListFilter) ([]client.Approval, error)
	GetApproval(ctx context.Context, id string) (client.Approval, error)
	CreateApproval(ctx context.Context, in client.CreateApproval) (client.Approval, error)
	CancelApproval(ctx context.Context, id string) (client.Approval, error)
	// WaitApproval waits at most timeout (capped by the service at 60 s)
	// for the approval to end; progress, if not nil, is told the states
	// seen.
	WaitApproval(ctx context.Context, id string, timeout time.Duration, progress func(state string)) (client.WaitedApproval, error)

	ListRequests(ctx context.Context, f ListFilter) ([]client.Request, error)
	GetRequest(ctx context.Context, id string) (client.Request, error)
	CreateRequest(ctx context.Context, in client.CreateRequest) (client.Request, error)
	CancelRequest(ctx context.Context, id string) (client.Request, error)
	WaitRequest(ctx context.Context, id string, timeout time.Duration, progress func(state string)) (client.WaitedRequest, error)
}

// ListFilter selects approvals or requests to list.
type ListFilter = client.ListFilter

// Error is a refusal or failure as the API reports it: its status, its
// stable code and a message that never holds a secret value.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Gated is the answer to a call the org's policy holds for people to
// approve: nothing changed; Approval is pending.
type Gated struct {
	Approval client.Approval
}

func (g *Gated) Error() string { return "approval required: approval " + g.Approval.ID + " is pending" }
