package mcp

import (
	"context"
	"encoding/json"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orgplane/orgplane/internal/client"
)

var (
	both     = []Mode{Management, Workspace}
	mgmtOnly = []Mode{Management}
)

// hints are a tool's annotations; every tool acts on the org alone
// (open world: false).
func hints(title string, readOnly, destructive, idempotent bool) *sdk.ToolAnnotations {
	closed := false
	return &sdk.ToolAnnotations{Title: title, ReadOnlyHint: readOnly, DestructiveHint: &destructive,
		IdempotentHint: idempotent, OpenWorldHint: &closed}
}

func read(title string) *sdk.ToolAnnotations { return hints(title, true, false, true) }

// rawJSON turns an object argument into the API's raw JSON (nil: absent).
func rawJSON(m map[string]any) json.RawMessage {
	if m == nil {
		return nil
	}
	b, _ := json.Marshal(m)
	return b
}

// Arguments and results. Field names are the API's.

type noArgs struct{}

type workspaceArg struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"the workspace's id"`
}

type whoamiOut struct {
	Principal client.Principal `json:"principal" jsonschema:"who the token is: kind (admin or workspace), org, token, and the workspace it acts from"`
}

type workspacesOut struct {
	Workspaces []client.Workspace `json:"workspaces" jsonschema:"the workspaces the caller may see"`
}

type createWorkspaceArgs struct {
	Name          string         `json:"name" jsonschema:"the new workspace's name"`
	ParentID      string         `json:"parent_id,omitempty" jsonschema:"its parent workspace; default: the platform workspace"`
	Runtime       string         `json:"runtime,omitempty" jsonschema:"process (default), docker or external"`
	Spec          map[string]any `json:"spec,omitempty" jsonschema:"the runtime's spec, e.g. {\"command\":[...]} for process, {\"image\":\"...\"} for docker"`
	RestartPolicy string         `json:"restart_policy,omitempty" jsonschema:"auto (default): restarted when its secrets change; manual: never restarted automatically"`
	Protected     bool           `json:"protected,omitempty" jsonschema:"true: never restarted automatically"`
	Start         *bool          `json:"start,omitempty" jsonschema:"false: create it without starting its box (default true)"`
}

type updateWorkspaceArgs struct {
	WorkspaceID   string         `json:"workspace_id" jsonschema:"the workspace to change"`
	Name          *string        `json:"name,omitempty" jsonschema:"a new name"`
	ParentID      *string        `json:"parent_id,omitempty" jsonschema:"a new parent workspace"`
	Spec          map[string]any `json:"spec,omitempty" jsonschema:"a new spec for its runtime (its box restarts with it)"`
	RestartPolicy *string        `json:"restart_policy,omitempty" jsonschema:"auto or manual"`
	Protected     *bool          `json:"protected,omitempty" jsonschema:"true: never restarted automatically"`
}

type deleteWorkspaceArgs struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"the workspace to remove (never the platform workspace)"`
	Cascade     bool   `json:"cascade,omitempty" jsonschema:"true: remove its whole subtree too"`
}

type restartArgs struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"the workspace whose box restarts"`
	Reason      string `json:"reason,omitempty" jsonschema:"why, for the audit log"`
}

type restartsArgs struct {
	WorkspaceID string `json:"workspace_id,omitempty" jsonschema:"the workspace; omitted: the org's restarts (admin tokens only)"`
	Limit       int    `json:"limit,omitempty" jsonschema:"at most this many, newest first"`
}

type restartsOut struct {
	Restarts []client.RestartJob `json:"restarts" jsonschema:"restart jobs, newest first, with their reasons and errors"`
}

type secretsArgs struct {
	WorkspaceID string `json:"workspace_id,omitempty" jsonschema:"the workspace; omitted: the org's global secrets"`
}

type secretsOut struct {
	Secrets []client.SecretMeta `json:"secrets" jsonschema:"secrets by key and version, never their values"`
}

type setSecretArgs struct {
	WorkspaceID string `json:"workspace_id,omitempty" jsonschema:"the workspace; omitted: a global secret (org-wide)"`
	Key         string `json:"key" jsonschema:"an env var name: ^[A-Z_][A-Z0-9_]*$, not reserved (ORGPLANE_*, PATH, HOME, ...)"`
	Value       string `json:"value" jsonschema:"the value (at most 64 KiB); stored encrypted, never shown back"`
	DryRun      bool   `json:"dry_run,omitempty" jsonschema:"true: return the decisions and change nothing"`
}

type deleteSecretArgs struct {
	WorkspaceID string `json:"workspace_id,omitempty" jsonschema:"the workspace; omitted: a global secret"`
	Key         string `json:"key" jsonschema:"the secret's key"`
	DryRun      bool   `json:"dry_run,omitempty" jsonschema:"true: return the decisions and change nothing"`
}

type changeArg struct {
	ChangeID string `json:"change_id" jsonschema:"the change's id (change_id of a secret write, or of a restart)"`
}

type auditArgs struct {
	WorkspaceID string `json:"workspace_id,omitempty" jsonschema:"only entries about this workspace"`
	Limit       int    `json:"limit,omitempty" jsonschema:"at most this many entries (default 100)"`
	Before      int64  `json:"before,omitempty" jsonschema:"entries older than this id (next_before of the previous page)"`
}

type listArgs struct {
	State  string `json:"state,omitempty" jsonschema:"only those in this state"`
	Limit  int    `json:"limit,omitempty" jsonschema:"at most this many, newest first (default 100)"`
	Before string `json:"before,omitempty" jsonschema:"those older than this id (the last one of the previous page)"`
}

type approvalsOut struct {
	Approvals []client.Approval `json:"approvals" jsonschema:"approvals, newest first"`
}

type approvalArg struct {
	ApprovalID string `json:"approval_id" jsonschema:"the approval's id"`
}

type actionArg struct {
	Type   string         `json:"type" jsonschema:"secret.set, secret.delete, workspace.restart, workspace.delete, workspace.update or token.create"`
	Params map[string]any `json:"params,omitempty" jsonschema:"the action's parameters, as its API call takes them (e.g. {\"key\":\"K\",\"value\":\"...\"} for secret.set)"`
}

type createApprovalArgs struct {
	Title      string     `json:"title" jsonschema:"what people are asked to approve, in one line"`
	Detail     string     `json:"detail,omitempty" jsonschema:"why, at more length"`
	Action     *actionArg `json:"action,omitempty" jsonschema:"the action orgplane executes once approved; omitted: a free-form question"`
	TTLSeconds *int       `json:"ttl_seconds,omitempty" jsonschema:"how long it stays pending (default 24 h; within the policy's maximum)"`
}

type waitApprovalArgs struct {
	ApprovalID     string `json:"approval_id" jsonschema:"the approval's id"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"wait at most this long (at most and by default 60)"`
}

type waitApprovalOut struct {
	Done     bool            `json:"done" jsonschema:"true: it has ended (or a free-form one was approved); false: still undecided when the wait ended"`
	Approval client.Approval `json:"approval" jsonschema:"the approval as it is now"`
}

type requestsOut struct {
	Requests []client.Request `json:"requests" jsonschema:"requests, newest first"`
}

type requestArg struct {
	RequestID string `json:"request_id" jsonschema:"the request's id"`
}

type createRequestArgs struct {
	Title       string `json:"title" jsonschema:"what people are asked, in one line"`
	Detail      string `json:"detail,omitempty" jsonschema:"more context"`
	Ask         string `json:"ask" jsonschema:"text: a written answer; secret: a person sets a secret's value (it never passes through the agent)"`
	Key         string `json:"key,omitempty" jsonschema:"for ask=secret: the secret's key"`
	WorkspaceID string `json:"workspace_id,omitempty" jsonschema:"for ask=secret: the workspace the secret is for (default the caller's)"`
	TTLSeconds  *int   `json:"ttl_seconds,omitempty" jsonschema:"how long it stays pending (default 24 h; within the policy's maximum)"`
}

type waitRequestArgs struct {
	RequestID      string `json:"request_id" jsonschema:"the request's id"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"wait at most this long (at most and by default 60)"`
}

type waitRequestOut struct {
	Done    bool           `json:"done" jsonschema:"true: it has ended; false: still pending when the wait ended"`
	Request client.Request `json:"request" jsonschema:"the request as it is now"`
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// allTools is every tool, in the order tools/list shows them.
var allTools = []toolDef{
	newTool(sdk.Tool{Name: "whoami", Description: "Who this token is: its kind, org, and the workspace it acts from.",
		Annotations: read("Who am I")}, both,
		func(ctx context.Context, c call, _ noArgs) (whoamiOut, error) {
			p, err := c.b.Whoami(ctx)
			return whoamiOut{Principal: p}, err
		}),
	newTool(sdk.Tool{Name: "list_workspaces", Description: "List the org's workspaces (status, generation, stale).",
		Annotations: read("List workspaces")}, mgmtOnly,
		func(ctx context.Context, c call, _ noArgs) (workspacesOut, error) {
			list, err := c.b.ListWorkspaces(ctx)
			return workspacesOut{Workspaces: list}, err
		}),
	newTool(sdk.Tool{Name: "get_workspace", Description: "Get one workspace: its box's status, generation, whether it is stale, its last error.",
		Annotations: read("Get a workspace")}, both,
		func(ctx context.Context, c call, in workspaceArg) (client.Workspace, error) {
			return c.b.GetWorkspace(ctx, in.WorkspaceID)
		}),
	newTool(sdk.Tool{Name: "create_workspace", Description: "Create a workspace under a parent (default: the platform workspace); its box starts.",
		Annotations: hints("Create a workspace", false, false, false)}, mgmtOnly,
		func(ctx context.Context, c call, in createWorkspaceArgs) (client.Workspace, error) {
			return c.b.CreateWorkspace(ctx, client.CreateWorkspace{Name: in.Name, ParentID: in.ParentID, Runtime: in.Runtime,
				Spec: rawJSON(in.Spec), RestartPolicy: in.RestartPolicy, Protected: in.Protected, Start: in.Start})
		}),
	newTool(sdk.Tool{Name: "update_workspace", Description: "Change a workspace's name, parent, spec, restart policy or protection. Changing protection or the restart policy may need people's approval.",
		Annotations: hints("Update a workspace", false, true, true)}, mgmtOnly,
		func(ctx context.Context, c call, in updateWorkspaceArgs) (Outcome[client.Workspace], error) {
			return gated(c.b.UpdateWorkspace(ctx, in.WorkspaceID, client.PatchWorkspace{Name: in.Name, ParentID: in.ParentID,
				Spec: rawJSON(in.Spec), RestartPolicy: in.RestartPolicy, Protected: in.Protected}))
		}),
	newTool(sdk.Tool{Name: "delete_workspace", Description: "Remove a workspace and stop its box (with cascade, its subtree). May need people's approval.",
		Annotations: hints("Delete a workspace", false, true, true)}, mgmtOnly,
		func(ctx context.Context, c call, in deleteWorkspaceArgs) (Outcome[client.DeleteWorkspaceResult], error) {
			return gated(c.b.DeleteWorkspace(ctx, in.WorkspaceID, in.Cascade))
		}),
	newTool(sdk.Tool{Name: "restart_workspace", Description: "Restart a workspace's box, explicitly and audited. The platform workspace's restart needs people's approval.",
		Annotations: hints("Restart a workspace", false, true, false)}, mgmtOnly,
		func(ctx context.Context, c call, in restartArgs) (Outcome[client.RestartJob], error) {
			return gated(c.b.RestartWorkspace(ctx, in.WorkspaceID, in.Reason))
		}),
	newTool(sdk.Tool{Name: "pause_workspace", Description: "Stop a workspace's box and keep it stopped (not the platform workspace).",
		Annotations: hints("Pause a workspace", false, true, true)}, mgmtOnly,
		func(ctx context.Context, c call, in workspaceArg) (client.Workspace, error) {
			return c.b.PauseWorkspace(ctx, in.WorkspaceID)
		}),
	newTool(sdk.Tool{Name: "resume_workspace", Description: "Start a paused workspace's box again.",
		Annotations: hints("Resume a workspace", false, false, true)}, mgmtOnly,
		func(ctx context.Context, c call, in workspaceArg) (client.Workspace, error) {
			return c.b.ResumeWorkspace(ctx, in.WorkspaceID)
		}),
	newTool(sdk.Tool{Name: "list_restarts", Description: "List a workspace's restart jobs (or the org's), newest first, with their reasons and errors.",
		Annotations: read("List restarts")}, both,
		func(ctx context.Context, c call, in restartsArgs) (restartsOut, error) {
			list, err := c.b.ListRestarts(ctx, in.WorkspaceID, in.Limit)
			return restartsOut{Restarts: list}, err
		}),
	newTool(sdk.Tool{Name: "list_secrets", Description: "List secrets by key (a workspace's, or the global ones): scope, version, overrides. Never values: a box reads its own from its environment.",
		Annotations: read("List secret keys")}, both,
		func(ctx context.Context, c call, in secretsArgs) (secretsOut, error) {
			list, err := c.b.ListSecrets(ctx, in.WorkspaceID)
			return secretsOut{Secrets: list}, err
		}),
	newTool(sdk.Tool{Name: "set_secret", Description: "Set a secret (a workspace's, or global without workspace_id) and return what propagation decided for every affected workspace. The value is never shown back. A global write that restarts many workspaces needs people's approval; dry_run shows the decisions first.",
		Annotations: hints("Set a secret", false, true, true)}, mgmtOnly,
		func(ctx context.Context, c call, in setSecretArgs) (Outcome[client.SecretWrite], error) {
			return gated(c.b.SetSecret(ctx, in.WorkspaceID, in.Key, in.Value, in.DryRun))
		}),
	newTool(sdk.Tool{Name: "delete_secret", Description: "Delete a secret (a workspace's, or global without workspace_id) and return what propagation decided. May need people's approval, like set_secret.",
		Annotations: hints("Delete a secret", false, true, true)}, mgmtOnly,
		func(ctx context.Context, c call, in deleteSecretArgs) (Outcome[client.SecretWrite], error) {
			return gated(c.b.DeleteSecret(ctx, in.WorkspaceID, in.Key, in.DryRun))
		}),
	newTool(sdk.Tool{Name: "get_change", Description: "Get a secret change: its decisions counted by reason, and where its restarts stand (state in_progress, succeeded or failed; queued, pending, running, succeeded, failed, cancelled). A workspace token sees the changes of its own workspace's secrets.",
		Annotations: read("Get a secret change")}, both,
		func(ctx context.Context, c call, in changeArg) (client.Change, error) {
			return c.b.GetChange(ctx, in.ChangeID)
		}),
	newTool(sdk.Tool{Name: "list_audit", Description: "Read the org's audit log, newest first.",
		Annotations: read("Read the audit log")}, mgmtOnly,
		func(ctx context.Context, c call, in auditArgs) (client.AuditPage, error) {
			return c.b.ListAudit(ctx, in.WorkspaceID, in.Limit, in.Before)
		}),
	newTool(sdk.Tool{Name: "list_approvals", Description: "List approvals, newest first: the org's for an admin token, the caller's workspace's for a workspace token.",
		Annotations: read("List approvals")}, both,
		func(ctx context.Context, c call, in listArgs) (approvalsOut, error) {
			list, err := c.b.ListApprovals(ctx, ListFilter{State: in.State, Before: in.Before, Limit: in.Limit})
			return approvalsOut{Approvals: list}, err
		}),
	newTool(sdk.Tool{Name: "get_approval", Description: "Get one approval: its state, action, plan, and people's decisions.",
		Annotations: read("Get an approval")}, both,
		func(ctx context.Context, c call, in approvalArg) (client.Approval, error) {
			return c.b.GetApproval(ctx, in.ApprovalID)
		}),
	newTool(sdk.Tool{Name: "create_approval", Description: "Ask people to approve an action (orgplane executes it once approved, never the agent) or a free-form question.",
		Annotations: hints("Ask for an approval", false, false, false)}, both,
		func(ctx context.Context, c call, in createApprovalArgs) (client.Approval, error) {
			ca := client.CreateApproval{Title: in.Title, Detail: in.Detail, TTLSeconds: in.TTLSeconds}
			if in.Action != nil {
				ca.Action = &client.CreateApprovalParts{Type: in.Action.Type, Params: rawJSON(in.Action.Params)}
			}
			return c.b.CreateApproval(ctx, ca)
		}),
	newTool(sdk.Tool{Name: "cancel_approval", Description: "Withdraw a pending approval the caller asked for.",
		Annotations: hints("Cancel an approval", false, true, true)}, both,
		func(ctx context.Context, c call, in approvalArg) (client.Approval, error) {
			return c.b.CancelApproval(ctx, in.ApprovalID)
		}),
	newTool(sdk.Tool{Name: "wait_approval", Description: "Wait (at most 60 s) for people to decide an approval and for its action to finish; sends progress notifications when asked for. Call again while done is false.",
		Annotations: read("Wait for an approval")}, both,
		func(ctx context.Context, c call, in waitApprovalArgs) (waitApprovalOut, error) {
			w, err := c.b.WaitApproval(ctx, in.ApprovalID, seconds(in.TimeoutSeconds), c.progress(ctx))
			return waitApprovalOut(w), err
		}),
	newTool(sdk.Tool{Name: "list_requests", Description: "List requests, newest first: the org's for an admin token, the caller's workspace's for a workspace token.",
		Annotations: read("List requests")}, both,
		func(ctx context.Context, c call, in listArgs) (requestsOut, error) {
			list, err := c.b.ListRequests(ctx, ListFilter{State: in.State, Before: in.Before, Limit: in.Limit})
			return requestsOut{Requests: list}, err
		}),
	newTool(sdk.Tool{Name: "get_request", Description: "Get one request: its state and, once answered, the answer (for ask=secret, the version written, never the value).",
		Annotations: read("Get a request")}, both,
		func(ctx context.Context, c call, in requestArg) (client.Request, error) {
			return c.b.GetRequest(ctx, in.RequestID)
		}),
	newTool(sdk.Tool{Name: "create_request", Description: "Ask people for a written answer (ask=text) or to set a secret's value (ask=secret): the value goes from the person to the store, and the asking box is not restarted for it; it reads it from its /values.",
		Annotations: hints("Ask people", false, false, false)}, both,
		func(ctx context.Context, c call, in createRequestArgs) (client.Request, error) {
			return c.b.CreateRequest(ctx, client.CreateRequest{Title: in.Title, Detail: in.Detail, Ask: in.Ask, Key: in.Key,
				WorkspaceID: in.WorkspaceID, TTLSeconds: in.TTLSeconds})
		}),
	newTool(sdk.Tool{Name: "cancel_request", Description: "Withdraw a pending request the caller asked.",
		Annotations: hints("Cancel a request", false, true, true)}, both,
		func(ctx context.Context, c call, in requestArg) (client.Request, error) {
			return c.b.CancelRequest(ctx, in.RequestID)
		}),
	newTool(sdk.Tool{Name: "wait_request", Description: "Wait (at most 60 s) for people to answer a request; sends progress notifications when asked for. Call again while done is false.",
		Annotations: read("Wait for a request")}, both,
		func(ctx context.Context, c call, in waitRequestArgs) (waitRequestOut, error) {
			w, err := c.b.WaitRequest(ctx, in.RequestID, seconds(in.TimeoutSeconds), c.progress(ctx))
			return waitRequestOut(w), err
		}),
}
