package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// RestartJob is a durable restart of one workspace's box.
type RestartJob struct {
	ID              string     `json:"id"`
	WorkspaceID     string     `json:"workspace_id"`
	OrgID           string     `json:"org_id"`
	Automatic       bool       `json:"automatic"`
	State           string     `json:"state"`
	Reason          string     `json:"reason"`
	RequestedReason string     `json:"requested_reason"`
	Attempts        int        `json:"attempts"`
	MaxAttempts     int        `json:"max_attempts"`
	Generation      int64      `json:"generation"`
	Error           string     `json:"error"`
	ChangeID        string     `json:"change_id"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	StartedAt       *time.Time `json:"started_at"`
	FinishedAt      *time.Time `json:"finished_at"`
}

// RestartRequest is the body of POST /v1/workspaces/{id}/restart.
type RestartRequest struct {
	Reason string `json:"reason,omitempty"`
}

// RestartAccepted is the answer (202) to POST /v1/workspaces/{id}/restart.
type RestartAccepted struct {
	Job RestartJob `json:"job"`
}

// Logs returns the recent output of a workspace's box, as the server sends
// it. tail <= 0 leaves the number of lines to the server.
func (c *Client) Logs(ctx context.Context, id string, tail int) ([]byte, error) {
	path := "/v1/workspaces/" + esc(id) + "/logs"
	if tail > 0 {
		path += "?tail=" + strconv.Itoa(tail)
	}
	var out []byte
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// RestartWorkspace asks for an explicit, audited restart of a workspace.
func (c *Client) RestartWorkspace(ctx context.Context, id, reason string) (RestartJob, error) {
	var out RestartAccepted
	err := c.Do(ctx, http.MethodPost, "/v1/workspaces/"+esc(id)+"/restart", RestartRequest{Reason: reason}, &out)
	return out.Job, err
}

// PauseWorkspace stops a workspace's box and keeps it stopped.
func (c *Client) PauseWorkspace(ctx context.Context, id string) (Workspace, error) {
	var out Workspace
	err := c.Do(ctx, http.MethodPost, "/v1/workspaces/"+esc(id)+"/pause", nil, &out)
	return out, err
}

// ResumeWorkspace starts a paused workspace again.
func (c *Client) ResumeWorkspace(ctx context.Context, id string) (Workspace, error) {
	var out Workspace
	err := c.Do(ctx, http.MethodPost, "/v1/workspaces/"+esc(id)+"/resume", nil, &out)
	return out, err
}

// ListRestarts lists a workspace's restart jobs, newest first.
// An empty workspaceID lists the org's (admins only).
func (c *Client) ListRestarts(ctx context.Context, workspaceID string) ([]RestartJob, error) {
	var out []RestartJob
	path := "/v1/restarts"
	if workspaceID != "" {
		path = "/v1/workspaces/" + esc(workspaceID) + "/restarts"
	}
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// secretsPath is the collection of global secrets (workspaceID "") or of one
// workspace's secrets.
func secretsPath(workspaceID string) string {
	if workspaceID == "" {
		return "/v1/secrets"
	}
	return "/v1/workspaces/" + esc(workspaceID) + "/secrets"
}

func secretPath(workspaceID, key string, dryRun bool) string {
	p := secretsPath(workspaceID) + "/" + esc(key)
	if dryRun {
		p += "?" + url.Values{"dry_run": {"true"}}.Encode()
	}
	return p
}

// ListSecrets lists the global secrets (workspaceID "") or a workspace's
// secrets, never their values.
func (c *Client) ListSecrets(ctx context.Context, workspaceID string) ([]SecretMeta, error) {
	var out []SecretMeta
	err := c.Do(ctx, http.MethodGet, secretsPath(workspaceID), nil, &out)
	return out, err
}

// SetSecret writes a global secret (workspaceID "") or a workspace secret,
// and returns what propagation decided. With dryRun nothing changes.
func (c *Client) SetSecret(ctx context.Context, workspaceID, key, value string, dryRun bool) (SecretWrite, error) {
	var out SecretWrite
	err := c.Do(ctx, http.MethodPut, secretPath(workspaceID, key, dryRun), SetSecret{Value: value}, &out)
	return out, err
}

// DeleteSecret deletes a global secret (workspaceID "") or a workspace
// secret, and returns what propagation decided. With dryRun nothing changes.
func (c *Client) DeleteSecret(ctx context.Context, workspaceID, key string, dryRun bool) (SecretWrite, error) {
	var out SecretWrite
	err := c.Do(ctx, http.MethodDelete, secretPath(workspaceID, key, dryRun), nil, &out)
	return out, err
}
