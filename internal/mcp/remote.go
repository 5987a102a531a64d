package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/orgplane/orgplane/internal/client"
)

// RemoteBackend calls the HTTP API, for `orgplane mcp`. Every call carries
// X-Orgplane-Via: mcp (client.ViaHeader), so the server treats it as an MCP
// call exactly as on /mcp: an agent principal, a person's token refused.
type RemoteBackend struct {
	c *client.Client
}

var _ Backend = (*RemoteBackend)(nil)

// NewRemoteBackend returns a backend over the API client c.
func NewRemoteBackend(c *client.Client) *RemoteBackend { return &RemoteBackend{c: c.ViaMCP()} }

// waitChunk bounds one long poll over HTTP: below the client's and the
// server's timeouts, and often enough to report progress.
const waitChunk = 20 * time.Second

func esc(s string) string { return url.PathEscape(s) }

// remote maps the API client's errors to the backend's: a held write is
// Gated, a refusal an Error with the API's status and code, anything else
// (the server unreachable, an answer that does not decode) a 502.
func remote(err error) error {
	var g *client.ApprovalRequiredError
	var ce *client.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &g):
		return &Gated{Approval: g.Approval}
	case errors.As(err, &ce):
		return &Error{Status: ce.Status, Code: ce.Code, Message: ce.Message}
	}
	return &Error{Status: http.StatusBadGateway, Code: "unreachable", Message: err.Error()}
}

// call sends one request and decodes a done answer into out. A 202 that
// holds an approval is a gated call.
func (b *RemoteBackend) call(ctx context.Context, method, path string, in, out any) error {
	status, raw, err := b.c.Send(ctx, method, path, in)
	if err != nil {
		var ce *client.Error
		if errors.As(err, &ce) {
			return &Error{Status: ce.Status, Code: ce.Code, Message: ce.Message}
		}
		return &Error{Status: http.StatusBadGateway, Code: "unreachable", Message: err.Error()}
	}
	if status == http.StatusAccepted {
		var g struct {
			Approval *client.Approval `json:"approval"`
		}
		if json.Unmarshal(raw, &g) == nil && g.Approval != nil {
			return &Gated{Approval: *g.Approval}
		}
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return &Error{Status: http.StatusBadGateway, Code: "bad_answer", Message: fmt.Sprintf("%s %s: decode answer: %v", method, path, err)}
	}
	return nil
}

func (b *RemoteBackend) Whoami(ctx context.Context) (client.Principal, error) {
	p, err := b.c.Whoami(ctx)
	return p, remote(err)
}

func (b *RemoteBackend) ListWorkspaces(ctx context.Context) ([]client.Workspace, error) {
	out, err := b.c.ListWorkspaces(ctx)
	return out, remote(err)
}

func (b *RemoteBackend) GetWorkspace(ctx context.Context, id string) (client.Workspace, error) {
	out, err := b.c.GetWorkspace(ctx, id)
	return out, remote(err)
}

func (b *RemoteBackend) CreateWorkspace(ctx context.Context, in client.CreateWorkspace) (client.Workspace, error) {
	out, err := b.c.CreateWorkspace(ctx, in)
	return out, remote(err)
}

func (b *RemoteBackend) UpdateWorkspace(ctx context.Context, id string, in client.PatchWorkspace) (client.Workspace, error) {
	out, err := b.c.PatchWorkspace(ctx, id, in)
	return out, remote(err)
}

func (b *RemoteBackend) DeleteWorkspace(ctx context.Context, id string, cascade bool) (client.DeleteWorkspaceResult, error) {
	out, err := b.c.DeleteWorkspace(ctx, id, cascade)
	return out, remote(err)
}

func (b *RemoteBackend) RestartWorkspace(ctx context.Context, id, reason string) (client.RestartJob, error) {
	out, err := b.c.RestartWorkspace(ctx, id, reason)
	return out, remote(err)
}

func (b *RemoteBackend) PauseWorkspace(ctx context.Context, id string) (client.Workspace, error) {
	out, err := b.c.PauseWorkspace(ctx, id)
	return out, remote(err)
}

func (b *RemoteBackend) ResumeWorkspace(ctx context.Context, id string) (client.Workspace, error) {
	out, err := b.c.ResumeWorkspace(ctx, id)
	return out, remote(err)
}

func (b *RemoteBackend) ListRestarts(ctx context.Context, workspaceID string, limit int) ([]client.RestartJob, error) {
	path := "/v1/restarts"
	if workspaceID != "" {
		path = "/v1/workspaces/" + esc(workspaceID) + "/restarts"
	}
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var out []client.RestartJob
	err := b.call(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

func (b *RemoteBackend) ListSecrets(ctx context.Context, workspaceID string) ([]client.SecretMeta, error) {
	out, err := b.c.ListSecrets(ctx, workspaceID)
	return out, remote(err)
}

func (b *RemoteBackend) SetSecret(ctx context.Context, workspaceID, key, value string, dryRun bool) (client.SecretWrite, error) {
	out, err := b.c.SetSecret(ctx, workspaceID, key, value, dryRun)
	return out, remote(err)
}

func (b *RemoteBackend) DeleteSecret(ctx context.Context, workspaceID, key string, dryRun bool) (client.SecretWrite, error) {
	out, err := b.c.DeleteSecret(ctx, workspaceID, key, dryRun)
	return out, remote(err)
}

func (b *RemoteBackend) ListAudit(ctx context.Context, workspaceID string, limit int, before int64) (client.AuditPage, error) {
	out, err := b.c.ListAudit(ctx, workspaceID, limit, before)
	return out, remote(err)
}

func (b *RemoteBackend) ListApprovals(ctx context.Context, f ListFilter) ([]client.Approval, error) {
	out, err := b.c.ListApprovals(ctx, f)
	return out, remote(err)
}

func (b *RemoteBackend) GetChange(ctx context.Context, id string) (client.Change, error) {
	out, err := b.c.GetChange(ctx, id)
	return out, remote(err)
}

func (b *RemoteBackend) GetApproval(ctx context.Context, id string) (client.Approval, error) {
	out, err := b.c.GetApproval(ctx, id)
	return out, remote(err)
}

func (b *RemoteBackend) CreateApproval(ctx context.Context, in client.CreateApproval) (client.Approval, error) {
	out, err := b.c.CreateApproval(ctx, in)
	return out, remote(err)
}

func (b *RemoteBackend) CancelApproval(ctx context.Context, id string) (client.Approval, error) {
	out, err := b.c.CancelApproval(ctx, id)
	return out, remote(err)
}

// wait long-polls path in chunks of at most waitChunk until done, timeout
// or ctx ends, telling progress each state seen.
func (b *RemoteBackend) wait(ctx context.Context, path string, timeout time.Duration, out any, look func() (string, bool), progress func(string)) error {
	if timeout <= 0 || timeout > time.Minute {
		timeout = time.Minute
	}
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		chunk := min(time.Until(deadline), waitChunk)
		secs := int(chunk.Round(time.Second) / time.Second)
		if secs < 1 {
			secs = 1
		}
		if err := b.call(ctx, http.MethodGet, path+"?timeout_seconds="+strconv.Itoa(secs), nil, out); err != nil {
			return err
		}
		state, done := look()
		if state != last && progress != nil {
			progress(state)
		}
		last = state
		if done || time.Until(deadline) < time.Second {
			return nil
		}
	}
}

func (b *RemoteBackend) WaitApproval(ctx context.Context, id string, timeout time.Duration, progress func(string)) (client.WaitedApproval, error) {
	var out client.WaitedApproval
	if progress != nil {
		// The state now, before the first long poll answers.
		a, err := b.GetApproval(ctx, id)
		if err != nil {
			return out, err
		}
		progress(a.State)
		progress = dedup(a.State, progress)
	}
	err := b.wait(ctx, "/v1/approvals/"+esc(id)+"/wait", timeout, &out,
		func() (string, bool) { return out.Approval.State, out.Done }, progress)
	return out, err
}

func (b *RemoteBackend) ListRequests(ctx context.Context, f ListFilter) ([]client.Request, error) {
	out, err := b.c.ListRequests(ctx, f)
	return out, remote(err)
}

func (b *RemoteBackend) GetRequest(ctx context.Context, id string) (client.Request, error) {
	out, err := b.c.GetRequest(ctx, id)
	return out, remote(err)
}

func (b *RemoteBackend) CreateRequest(ctx context.Context, in client.CreateRequest) (client.Request, error) {
	out, err := b.c.CreateRequest(ctx, in)
	return out, remote(err)
}

func (b *RemoteBackend) CancelRequest(ctx context.Context, id string) (client.Request, error) {
	out, err := b.c.CancelRequest(ctx, id)
	return out, remote(err)
}

func (b *RemoteBackend) WaitRequest(ctx context.Context, id string, timeout time.Duration, progress func(string)) (client.WaitedRequest, error) {
	var out client.WaitedRequest
	if progress != nil {
		r, err := b.GetRequest(ctx, id)
		if err != nil {
			return out, err
		}
		progress(r.State)
		progress = dedup(r.State, progress)
	}
	err := b.wait(ctx, "/v1/requests/"+esc(id)+"/wait", timeout, &out,
		func() (string, bool) { return out.Request.State, out.Done }, progress)
	return out, err
}

// dedup passes on the states that differ from the last one told.
func dedup(last string, progress func(string)) func(string) {
	return func(state string) {
		if state != last {
			last = state
			progress(state)
		}
	}
}
