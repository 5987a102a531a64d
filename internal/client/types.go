// Package client holds orgplane's HTTP API types and a Go client for them.
// The CLI, the MCP tests and the end-to-end tests speak the API through it.
package client

import (
	"encoding/json"
	"time"
)

// Principal is who the server thinks is calling.
type Principal struct {
	Kind              string `json:"kind"`
	OrgID             string `json:"org_id"`
	WorkspaceID       string `json:"workspace_id,omitempty"`
	ActingWorkspaceID string `json:"acting_workspace_id,omitempty"`
	TokenID           string `json:"token_id"`
	UserID            string `json:"user_id,omitempty"`
	Role              string `json:"role,omitempty"`
}

// Whoami is the body of GET /v1/whoami.
type Whoami struct {
	Principal Principal `json:"principal"`
}

// Workspace is the workspace object of the contract.
type Workspace struct {
	ID            string          `json:"id"`
	OrgID         string          `json:"org_id"`
	ParentID      *string         `json:"parent_id"`
	Name          string          `json:"name"`
	Kind          string          `json:"kind"`
	Runtime       string          `json:"runtime"`
	Spec          json.RawMessage `json:"spec"`
	Status        string          `json:"status"`
	RestartPolicy string          `json:"restart_policy"`
	Protected     bool            `json:"protected"`
	Generation    int64           `json:"generation"`
	Stale         bool            `json:"stale"`
	LastError     string          `json:"last_error"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
}

// CreateWorkspace is the body of POST /v1/workspaces.
type CreateWorkspace struct {
	Name          string          `json:"name"`
	ParentID      string          `json:"parent_id,omitempty"`
	Runtime       string          `json:"runtime,omitempty"`
	Spec          json.RawMessage `json:"spec,omitempty"`
	RestartPolicy string          `json:"restart_policy,omitempty"`
	Protected     bool            `json:"protected,omitempty"`
	// Start: false creates the workspace without starting its box.
	Start *bool `json:"start,omitempty"`
}

// PatchWorkspace is the body of PATCH /v1/workspaces/{id}.
type PatchWorkspace struct {
	Name          *string         `json:"name,omitempty"`
	ParentID      *string         `json:"parent_id,omitempty"`
	Spec          json.RawMessage `json:"spec,omitempty"`
	RestartPolicy *string         `json:"restart_policy,omitempty"`
	Protected     *bool           `json:"protected,omitempty"`
}

// DeleteWorkspaceResult is the body of DELETE /v1/workspaces/{id}.
type DeleteWorkspaceResult struct {
	Removed []string `json:"removed"`
}

// Token is a token's metadata; its secret is never returned after creation.
type Token struct {
	ID                string     `json:"id"`
	OrgID             string     `json:"org_id"`
	Kind              string     `json:"kind"`
	Name              string     `json:"name"`
	WorkspaceID       string     `json:"workspace_id,omitempty"`
	ActingWorkspaceID string     `json:"acting_workspace_id,omitempty"`
	UserID            string     `json:"user_id,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	ExpiresAt         *time.Time `json:"expires_at,omitempty"`
	RevokedAt         *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt        *time.Time `json:"last_used_at,omitempty"`
}

// CreateToken is the body of POST /v1/tokens.
type CreateToken struct {
	Kind              string     `json:"kind"`
	Name              string     `json:"name"`
	WorkspaceID       string     `json:"workspace_id,omitempty"`
	ActingWorkspaceID string     `json:"acting_workspace_id,omitempty"`
	ExpiresAt         *time.Time `json:"expires_at,omitempty"`
}

// CreatedToken is the answer to POST /v1/tokens: the secret, shown once.
type CreatedToken struct {
	Token  Token  `json:"token"`
	Secret string `json:"secret"`
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID                int64           `json:"id"`
	At                time.Time       `json:"at"`
	TokenID           string          `json:"token_id,omitempty"`
	PrincipalKind     string          `json:"principal_kind"`
	ActingWorkspaceID string          `json:"acting_workspace_id,omitempty"`
	Action            string          `json:"action"`
	TargetKind        string          `json:"target_kind,omitempty"`
	TargetID          string          `json:"target_id,omitempty"`
	WorkspaceID       string          `json:"workspace_id,omitempty"`
	Outcome           string          `json:"outcome"`
	RequestID         string          `json:"request_id,omitempty"`
	Detail            json.RawMessage `json:"detail"`
}

// AuditPage is the body of GET /v1/audit. NextBefore, when set, is the
// `before` value of the next (older) page.
type AuditPage struct {
	Entries    []AuditEntry `json:"entries"`
	NextBefore int64        `json:"next_before,omitempty"`
}

// Decision is what propagation decided for one workspace.
type Decision struct {
	WorkspaceID string `json:"workspace_id"`
	Action      string `json:"action"`
	Reason      string `json:"reason"`
}

// SecretMeta lists a secret without its value.
type SecretMeta struct {
	Key             string    `json:"key"`
	Scope           string    `json:"scope"`
	WorkspaceID     string    `json:"workspace_id,omitempty"`
	OverridesGlobal bool      `json:"overrides_global"`
	Version         int64     `json:"version"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// SetSecret is the body of a secret PUT.
type SetSecret struct {
	Value string `json:"value"`
}

// SecretWrite is the answer to a secret PUT or DELETE.
type SecretWrite struct {
	Key     string `json:"key"`
	Scope   string `json:"scope"`
	Version int64  `json:"version,omitempty"`
	DryRun  bool   `json:"dry_run,omitempty"`
	// ChangeID names the change's record (GET /v1/changes/{id}); absent
	// for a dry run.
	ChangeID string `json:"change_id,omitempty"`
	// Summary counts every decision by reason.
	Summary map[string]int `json:"summary,omitempty"`
	// Decisions holds at most the first 1,000 (by workspace id); with
	// DecisionsTruncated the rest are paged from the change.
	Decisions          []Decision `json:"decisions"`
	DecisionsTruncated bool       `json:"decisions_truncated,omitempty"`
}

// Change is a secret change's record and the state of its restarts
// (GET /v1/changes/{id}).
type Change struct {
	ID          string         `json:"id"`
	OrgID       string         `json:"org_id"`
	Key         string         `json:"key"`
	Scope       string         `json:"scope"`
	WorkspaceID string         `json:"workspace_id,omitempty"`
	Op          string         `json:"op"`
	CreatedAt   time.Time      `json:"created_at"`
	FinishedAt  *time.Time     `json:"finished_at"`
	State       string         `json:"state"`
	Total       int            `json:"total"`
	Counts      map[string]int `json:"counts"`
	Restarts    ChangeRestarts `json:"restarts"`
}

// ChangeRestarts is where a change's restarts stand.
type ChangeRestarts struct {
	Queued    int `json:"queued"`
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
}

// ErrorBody is the error shape of the contract.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// User is a person of the org.
type User struct {
	ID        string    `json:"id"`
	OrgID     string    `json:"org_id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateUser is the body of POST /v1/users.
type CreateUser struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// PolicyGates are the agent actions gated behind an approval.
type PolicyGates struct {
	PlatformRestart     bool `json:"platform_restart"`
	GlobalSecret        bool `json:"global_secret"`
	WorkspaceDelete     bool `json:"workspace_delete"`
	AdminToken          bool `json:"admin_token"`
	WorkspaceProtection bool `json:"workspace_protection"`
}

// Policy is the org's approval policy (GET /v1/policy).
type Policy struct {
	Gates             PolicyGates `json:"gates"`
	RestartThreshold  int         `json:"restart_threshold"`
	Quorum            int         `json:"quorum"`
	DefaultTTLSeconds int         `json:"default_ttl_seconds"`
	MaxTTLSeconds     int         `json:"max_ttl_seconds"`
	UpdatedAt         *time.Time  `json:"updated_at,omitempty"`
}

// PutPolicyGates is the gates of PUT /v1/policy: every one is required, so
// that a forgotten field never silently ungates an action.
type PutPolicyGates struct {
	PlatformRestart     *bool `json:"platform_restart"`
	GlobalSecret        *bool `json:"global_secret"`
	WorkspaceDelete     *bool `json:"workspace_delete"`
	AdminToken          *bool `json:"admin_token"`
	WorkspaceProtection *bool `json:"workspace_protection"`
}

// PutPolicy is the body of PUT /v1/policy: the whole policy, every field
// required.
type PutPolicy struct {
	Gates             *PutPolicyGates `json:"gates"`
	RestartThreshold  *int            `json:"restart_threshold"`
	Quorum            *int            `json:"quorum"`
	DefaultTTLSeconds *int            `json:"default_ttl_seconds"`
	MaxTTLSeconds     *int            `json:"max_ttl_seconds"`
}

// ApprovalAction is an approval's action: its type and canonical
// parameters (never a secret value; has_value says one is sealed with the
// approval). Params is null once the approval has ended (wiped).
type ApprovalAction struct {
	Type     string          `json:"type"`
	Params   json.RawMessage `json:"params"`
	HasValue bool            `json:"has_value,omitempty"`
}

// Requester is who asked for an approval or a request.
type Requester struct {
	Kind        string `json:"kind"`
	TokenID     string `json:"token_id,omitempty"`
	UserID      string `json:"user_id,omitempty"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	Via         string `json:"via,omitempty"`
}

// Plan is what an action would do (or did): decisions (at most 1000, then
// truncated), counts by reason over all of them, and the action's own
// results.
type Plan struct {
	Decisions []Decision     `json:"decisions,omitempty"`
	Counts    map[string]int `json:"counts,omitempty"`
	Restarts  int            `json:"restarts"`
	Truncated bool           `json:"truncated,omitempty"`
	Version   int64          `json:"version,omitempty"`
	JobID     string         `json:"job_id,omitempty"`
	Removed   []string       `json:"removed,omitempty"`
	TokenID   string         `json:"token_id,omitempty"`
}

// Vote is one person's decision on an approval.
type Vote struct {
	UserID  string    `json:"user_id"`
	TokenID string    `json:"token_id"`
	Via     string    `json:"via"`
	Verdict string    `json:"verdict"`
	Note    string    `json:"note,omitempty"`
	At      time.Time `json:"at"`
}

// Approval is an approval (GET /v1/approvals/{id}).
type Approval struct {
	ID               string          `json:"id"`
	OrgID            string          `json:"org_id"`
	State            string          `json:"state"`
	Title            string          `json:"title"`
	Detail           string          `json:"detail,omitempty"`
	Action           *ApprovalAction `json:"action"`
	ParamsHash       string          `json:"params_hash,omitempty"`
	Preconditions    json.RawMessage `json:"preconditions,omitempty"`
	Plan             *Plan           `json:"plan,omitempty"`
	CurrentPlan      *Plan           `json:"current_plan,omitempty"`
	CurrentPlanError string          `json:"current_plan_error,omitempty"`
	Quorum           int             `json:"quorum"`
	Requester        Requester       `json:"requester"`
	Decisions        []Vote          `json:"decisions"`
	Result           *Plan           `json:"result,omitempty"`
	Error            *ErrorDetail    `json:"error,omitempty"`
	Secret           string          `json:"secret,omitempty"`
	ExpiresAt        time.Time       `json:"expires_at"`
	CreatedAt        time.Time       `json:"created_at"`
	UpdatedAt        time.Time       `json:"updated_at"`
	EndedAt          *time.Time      `json:"ended_at,omitempty"`
}

// ErrorDetail is why an approval's execution failed.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ApprovalRequired is the 202 answer to a gated write.
type ApprovalRequired struct {
	Approval Approval `json:"approval"`
}

// CreateApproval is the body of POST /v1/approvals.
type CreateApproval struct {
	Title      string               `json:"title"`
	Detail     string               `json:"detail,omitempty"`
	Action     *CreateApprovalParts `json:"action,omitempty"`
	TTLSeconds *int                 `json:"ttl_seconds,omitempty"`
}

// CreateApprovalParts is the action of a new approval.
type CreateApprovalParts struct {
	Type   string          `json:"type"`
	Params json.RawMessage `json:"params"`
}

// Decide is the body of POST /v1/approvals/{id}/decision.
type Decide struct {
	Decision string `json:"decision"`
	Note     string `json:"note,omitempty"`
}

// Request is a request (GET /v1/requests/{id}).
type Request struct {
	ID            string     `json:"id"`
	OrgID         string     `json:"org_id"`
	State         string     `json:"state"`
	Title         string     `json:"title"`
	Detail        string     `json:"detail,omitempty"`
	Ask           string     `json:"ask"`
	Key           string     `json:"key,omitempty"`
	WorkspaceID   string     `json:"workspace_id,omitempty"`
	Requester     Requester  `json:"requester"`
	Answer        string     `json:"answer,omitempty"`
	SecretVersion int64      `json:"secret_version,omitempty"`
	Responder     *Responder `json:"responder,omitempty"`
	Note          string     `json:"note,omitempty"`
	ExpiresAt     time.Time  `json:"expires_at"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	EndedAt       *time.Time `json:"ended_at,omitempty"`
}

// Responder is the person who answered or declined a request.
type Responder struct {
	UserID  string `json:"user_id"`
	TokenID string `json:"token_id"`
	Via     string `json:"via"`
}

// CreateRequest is the body of POST /v1/requests.
type CreateRequest struct {
	Title       string `json:"title"`
	Detail      string `json:"detail,omitempty"`
	Ask         string `json:"ask"`
	Key         string `json:"key,omitempty"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	TTLSeconds  *int   `json:"ttl_seconds,omitempty"`
}

// Answer is the body of POST /v1/requests/{id}/answer: text, or for a
// secret request its value.
type Answer struct {
	Text  *string `json:"text,omitempty"`
	Value *string `json:"value,omitempty"`
}

// Decline is the body of POST /v1/requests/{id}/decline.
type Decline struct {
	Note string `json:"note,omitempty"`
}
