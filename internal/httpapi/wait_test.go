package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// GET /v1/approvals/{id}/wait answers when the approval ends, or when its
// timeout passes with done false; bad timeouts and other orgs' ids are
// refused.
func TestWaitEndpoints(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	ctx := context.Background()
	var ap client.Approval
	require.NoError(t, e.Admin.Do(ctx, http.MethodPost, "/v1/approvals", client.CreateApproval{Title: "q"}, &ap))

	var w client.WaitedApproval
	require.NoError(t, e.Admin.Do(ctx, http.MethodGet, "/v1/approvals/"+ap.ID+"/wait?timeout_seconds=1", nil, &w))
	require.False(t, w.Done)
	require.Equal(t, "pending", w.Approval.State)

	done := make(chan client.WaitedApproval, 1)
	go func() {
		var w client.WaitedApproval
		_ = e.Admin.Do(ctx, http.MethodGet, "/v1/approvals/"+ap.ID+"/wait?timeout_seconds=30", nil, &w)
		done <- w
	}()
	require.NoError(t, e.Owner.Do(ctx, http.MethodPost, "/v1/approvals/"+ap.ID+"/decision", client.Decide{Decision: "approve"}, nil))
	select {
	case w = <-done:
		require.True(t, w.Done)
		require.Equal(t, "approved", w.Approval.State)
	case <-time.After(20 * time.Second):
		t.Fatal("the wait did not end with the decision")
	}

	var rq client.Request
	require.NoError(t, e.Admin.Do(ctx, http.MethodPost, "/v1/requests", client.CreateRequest{Title: "q", Ask: "text"}, &rq))
	var wr client.WaitedRequest
	require.NoError(t, e.Admin.Do(ctx, http.MethodGet, "/v1/requests/"+rq.ID+"/wait?timeout_seconds=1", nil, &wr))
	require.False(t, wr.Done)

	for _, q := range []string{"?timeout_seconds=61", "?timeout_seconds=x", "?other=1"} {
		err := e.Admin.Do(ctx, http.MethodGet, "/v1/requests/"+rq.ID+"/wait"+q, nil, nil)
		var ce *client.Error
		require.ErrorAs(t, err, &ce)
		require.Equal(t, 400, ce.Status, q)
	}
	_, other := e.NewOrg("other")
	err := other.Do(ctx, http.MethodGet, "/v1/approvals/"+ap.ID+"/wait?timeout_seconds=1", nil, nil)
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 404, ce.Status)
}
