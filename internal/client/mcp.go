package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// ViaHeader tells the server how a call reached it. Its one value, "mcp",
// makes the call an MCP call (an agent's, as if made on /mcp): `orgplane
// mcp` sends it on every call it relays. The server honours it only to add
// restrictions; it never grants anything.
const ViaHeader = "X-Orgplane-Via"

// WaitedApproval is the answer of GET /v1/approvals/{id}/wait: the
// approval as it is when it ended or the wait timed out (Done false).
type WaitedApproval struct {
	Done     bool     `json:"done"`
	Approval Approval `json:"approval"`
}

// WaitedRequest is the answer of GET /v1/requests/{id}/wait.
type WaitedRequest struct {
	Done    bool    `json:"done"`
	Request Request `json:"request"`
}

// ViaMCP returns a copy of c whose calls are MCP calls (see ViaHeader).
func (c *Client) ViaMCP() *Client {
	cp := *c
	hc := *c.http
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = viaTransport{base: base}
	cp.http = &hc
	return &cp
}

type viaTransport struct{ base http.RoundTripper }

func (t viaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(ViaHeader, "mcp")
	return t.base.RoundTrip(r)
}

// Send sends a request with a JSON body (if in is not nil) and returns the
// answer's status and body as they are, for callers that must tell a 202
// (a gated call: {"approval": ...}) from a done one. An error answer
// (>= 400) is returned as an *Error.
func (c *Client) Send(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		var eb ErrorBody
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
			return resp.StatusCode, nil, &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return resp.StatusCode, nil, &Error{Status: resp.StatusCode, Code: "http_error", Message: fmt.Sprintf("%s %s: %s", method, path, http.StatusText(resp.StatusCode))}
	}
	return resp.StatusCode, raw, nil
}
