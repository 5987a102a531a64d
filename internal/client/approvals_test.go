package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func serve(t *testing.T, status int, body string, seen *[]string) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*seen = append(*seen, r.Method+" "+r.URL.RequestURI()+" "+string(b))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return New(srv.URL, "tok")
}

const held = `{"approval":{"id":"ap2b3c4d5e6f7g2h3i","state":"pending","title":"Set the global secret K",
	"action":{"type":"secret.set","params":{"key":"K"},"has_value":true},"quorum":1,
	"requester":{"kind":"admin","token_id":"tok_m","workspace_id":"ws_p"},"decisions":[],
	"plan":{"counts":{"restart_queued":11},"restarts":11}}}`

// A gated write's 202 {"approval": ...} is an *ApprovalRequiredError from
// every call that may be gated: never a result, never a decode failure.
func TestGatedWriteIsApprovalRequiredError(t *testing.T) {
	ctx := context.Background()
	var seen []string
	c := serve(t, http.StatusAccepted, held, &seen)
	calls := map[string]func() error{
		"SetSecret":        func() error { _, err := c.SetSecret(ctx, "", "K", "v", false); return err },
		"DeleteSecret":     func() error { _, err := c.DeleteSecret(ctx, "ws_a", "K", false); return err },
		"RestartWorkspace": func() error { _, err := c.RestartWorkspace(ctx, "ws_p", "why"); return err },
		"DeleteWorkspace":  func() error { _, err := c.DeleteWorkspace(ctx, "ws_a", true); return err },
		"PatchWorkspace": func() error {
			_, err := c.PatchWorkspace(ctx, "ws_a", PatchWorkspace{Protected: new(bool)})
			return err
		},
		"CreateToken": func() error { _, err := c.CreateToken(ctx, CreateToken{Kind: "admin", Name: "x"}); return err },
	}
	for name, call := range calls {
		err := call()
		var gated *ApprovalRequiredError
		require.True(t, errors.As(err, &gated), "%s: %v", name, err)
		require.Equal(t, "ap2b3c4d5e6f7g2h3i", gated.Approval.ID, name)
		require.Equal(t, "pending", gated.Approval.State, name)
		require.Equal(t, 11, gated.Approval.Plan.Restarts, name)
		require.Contains(t, err.Error(), "approval ap2b3c4d5e6f7g2h3i is pending", name)
		var ce *Error
		require.False(t, errors.As(err, &ce), "%s: not an API error", name)
	}
	require.Len(t, seen, len(calls))
}

// A restart's own 202 {"job": ...} is its result.
func TestAcceptedJobIsAResult(t *testing.T) {
	var seen []string
	c := serve(t, http.StatusAccepted, `{"job":{"id":"job_1","state":"queued"}}`, &seen)
	job, err := c.RestartWorkspace(context.Background(), "ws_a", "")
	require.NoError(t, err)
	require.Equal(t, "job_1", job.ID)
}

func TestApprovalsAndRequestsCalls(t *testing.T) {
	ctx := context.Background()
	var seen []string
	c := serve(t, http.StatusOK, `{"id":"x","state":"succeeded"}`, &seen)
	_, err := c.DecideApproval(ctx, "ap1", "approve", "ok")
	require.NoError(t, err)
	_, err = c.CancelApproval(ctx, "ap/1")
	require.NoError(t, err)
	_, err = c.GetApproval(ctx, "ap1")
	require.NoError(t, err)
	_, err = c.CreateApproval(ctx, CreateApproval{Title: "t"})
	require.NoError(t, err)
	v := "s3cret"
	_, err = c.AnswerRequest(ctx, "rq1", Answer{Value: &v})
	require.NoError(t, err)
	_, err = c.DeclineRequest(ctx, "rq1", "")
	require.NoError(t, err)
	_, err = c.CancelRequest(ctx, "rq1")
	require.NoError(t, err)
	_, err = c.GetRequest(ctx, "rq1")
	require.NoError(t, err)
	_, err = c.CreateRequest(ctx, CreateRequest{Title: "t", Ask: "secret", Key: "K"})
	require.NoError(t, err)
	require.Equal(t, []string{
		`POST /v1/approvals/ap1/decision {"decision":"approve","note":"ok"}`,
		`POST /v1/approvals/ap%2F1/cancel `,
		`GET /v1/approvals/ap1 `,
		`POST /v1/approvals {"title":"t"}`,
		`POST /v1/requests/rq1/answer {"value":"s3cret"}`,
		`POST /v1/requests/rq1/decline {}`,
		`POST /v1/requests/rq1/cancel `,
		`GET /v1/requests/rq1 `,
		`POST /v1/requests {"title":"t","ask":"secret","key":"K"}`,
	}, seen)

	seen = nil
	lc := serve(t, http.StatusOK, `[]`, &seen)
	_, err = lc.ListApprovals(ctx, ListFilter{})
	require.NoError(t, err)
	_, err = lc.ListApprovals(ctx, ListFilter{State: "pending", Limit: 5, Before: "ap2"})
	require.NoError(t, err)
	_, err = lc.ListRequests(ctx, ListFilter{State: "answered"})
	require.NoError(t, err)
	require.Equal(t, []string{
		"GET /v1/approvals ",
		"GET /v1/approvals?before=ap2&limit=5&state=pending ",
		"GET /v1/requests?state=answered ",
	}, seen)
}
