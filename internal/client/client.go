package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Client calls the orgplane HTTP API with one bearer token.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the server at baseURL.
func New(baseURL, token string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{Timeout: 60 * time.Second}}
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

// Do sends a request with a JSON body (if in is not nil) and decodes a JSON
// answer into out (if not nil). A write the org's policy holds for people
// (202 {"approval": ...}) is an *ApprovalRequiredError, never a result.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	_, err := c.do(ctx, method, path, in, out)
	return err
}

// do is Do that also returns the answer's headers (nil when there is no
// answer).
func (c *Client) do(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.Header, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		var eb ErrorBody
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
			return resp.Header, &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return resp.Header, &Error{Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(raw))}
	}
	if resp.StatusCode == http.StatusAccepted {
		if gated := approvalRequired(raw); gated != nil {
			return resp.Header, gated
		}
	}
	if out == nil || len(raw) == 0 {
		return resp.Header, nil
	}
	if s, ok := out.(*[]byte); ok {
		*s = raw
		return resp.Header, nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return resp.Header, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return resp.Header, nil
}

func esc(s string) string { return url.PathEscape(s) }

// Whoami returns the caller's principal.
func (c *Client) Whoami(ctx context.Context) (Principal, error) {
	var w Whoami
	err := c.Do(ctx, http.MethodGet, "/v1/whoami", nil, &w)
	return w.Principal, err
}

// ListWorkspaces lists the workspaces the caller may see.
func (c *Client) ListWorkspaces(ctx context.Context) ([]Workspace, error) {
	var out []Workspace
	err := c.Do(ctx, http.MethodGet, "/v1/workspaces", nil, &out)
	return out, err
}

// ListWorkspacesPage lists one page of the workspaces the caller may see,
// by id: at most limit (1-1000) after the cursor after ("" for the first
// page). next is the cursor of the following page, "" after the last one.
//
//	for after := ""; ; {
//		page, next, err := c.ListWorkspacesPage(ctx, 500, after)
//		...
//		if next == "" { break }
//		after = next
//	}
func (c *Client) ListWorkspacesPage(ctx context.Context, limit int, after string) (list []Workspace, next string, err error) {
	q := url.Values{}
	q.Set("limit", strconv.Itoa(limit))
	if after != "" {
		q.Set("after", after)
	}
	h, err := c.do(ctx, http.MethodGet, "/v1/workspaces?"+q.Encode(), nil, &list)
	if err != nil {
		return nil, "", err
	}
	return list, NextCursor(h), nil
}

// NextCursor is the after cursor of the next page named by an answer's
// Link header (RFC 8288, rel="next"); "" when there is none.
func NextCursor(h http.Header) string {
	for _, v := range h.Values("Link") {
		for _, link := range strings.Split(v, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(link), ";")
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			next := false
			for _, p := range strings.Split(params, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "rel") && slices.Contains(strings.Fields(strings.ToLower(strings.Trim(v, `"`))), "next") {
					next = true
				}
			}
			if !next {
				continue
			}
			u, err := url.Parse(target[1 : len(target)-1])
			if err != nil {
				continue
			}
			return u.Query().Get("after")
		}
	}
	return ""
}

// GetWorkspace returns one workspace.
func (c *Client) GetWorkspace(ctx context.Context, id string) (Workspace, error) {
	var out Workspace
	err := c.Do(ctx, http.MethodGet, "/v1/workspaces/"+esc(id), nil, &out)
	return out, err
}

// CreateWorkspace creates a workspace.
func (c *Client) CreateWorkspace(ctx context.Context, in CreateWorkspace) (Workspace, error) {
	var out Workspace
	err := c.Do(ctx, http.MethodPost, "/v1/workspaces", in, &out)
	return out, err
}

// PatchWorkspace changes a workspace.
func (c *Client) PatchWorkspace(ctx context.Context, id string, in PatchWorkspace) (Workspace, error) {
	var out Workspace
	err := c.Do(ctx, http.MethodPatch, "/v1/workspaces/"+esc(id), in, &out)
	return out, err
}

// DeleteWorkspace removes a workspace (and its subtree with cascade).
func (c *Client) DeleteWorkspace(ctx context.Context, id string, cascade bool) (DeleteWorkspaceResult, error) {
	var out DeleteWorkspaceResult
	err := c.Do(ctx, http.MethodDelete, "/v1/workspaces/"+esc(id)+"?cascade="+strconv.FormatBool(cascade), nil, &out)
	return out, err
}

// ListTokens lists the org's tokens.
func (c *Client) ListTokens(ctx context.Context) ([]Token, error) {
	var out []Token
	err := c.Do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
	return out, err
}

// CreateToken mints a token; the secret is in the answer, once.
func (c *Client) CreateToken(ctx context.Context, in CreateToken) (CreatedToken, error) {
	var out CreatedToken
	err := c.Do(ctx, http.MethodPost, "/v1/tokens", in, &out)
	return out, err
}

// RevokeToken revokes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/tokens/"+esc(id), nil, nil)
}

// ListUsers lists the org's people.
func (c *Client) ListUsers(ctx context.Context) ([]User, error) {
	var out []User
	err := c.Do(ctx, http.MethodGet, "/v1/users", nil, &out)
	return out, err
}

// CreateUser adds a person.
func (c *Client) CreateUser(ctx context.Context, in CreateUser) (User, error) {
	var out User
	err := c.Do(ctx, http.MethodPost, "/v1/users", in, &out)
	return out, err
}

// DeleteUser removes a person (by id or name).
func (c *Client) DeleteUser(ctx context.Context, ref string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/users/"+esc(ref), nil, nil)
}

// GetPolicy reads the org's approval policy.
func (c *Client) GetPolicy(ctx context.Context) (Policy, error) {
	var out Policy
	err := c.Do(ctx, http.MethodGet, "/v1/policy", nil, &out)
	return out, err
}

// SetPolicy replaces the org's approval policy (owners only).
func (c *Client) SetPolicy(ctx context.Context, in PutPolicy) (Policy, error) {
	var out Policy
	err := c.Do(ctx, http.MethodPut, "/v1/policy", in, &out)
	return out, err
}

// ListAudit pages the audit log.
func (c *Client) ListAudit(ctx context.Context, workspaceID string, limit int, before int64) (AuditPage, error) {
	q := url.Values{}
	if workspaceID != "" {
		q.Set("workspace_id", workspaceID)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	var out AuditPage
	err := c.Do(ctx, http.MethodGet, "/v1/audit?"+q.Encode(), nil, &out)
	return out, err
}

// ListAuditPage lists one page of the audit log, newest first: at most
// limit entries (1-1000; 0: the server's 100) older than the cursor after
// ("" for the newest). next is the cursor of the next, older page, "" after
// the last one.
func (c *Client) ListAuditPage(ctx context.Context, workspaceID string, limit int, after string) (page AuditPage, next string, err error) {
	q := url.Values{}
	if workspaceID != "" {
		q.Set("workspace_id", workspaceID)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if after != "" {
		q.Set("after", after)
	}
	h, err := c.do(ctx, http.MethodGet, "/v1/audit?"+q.Encode(), nil, &page)
	if err != nil {
		return AuditPage{}, "", err
	}
	return page, NextCursor(h), nil
}
