package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/pgtest"
	"github.com/orgplane/orgplane/internal/testenv"
)

// TestStoreGoesAwayAndComesBack: while the store does not answer, /readyz
// and the API say 503 with the contract's error; once it is back, the
// server serves again by itself.
func TestStoreGoesAwayAndComesBack(t *testing.T) {
	t.Parallel()
	proxy := pgtest.NewProxy(t, pgtest.URL(t))
	e := testenv.New(t, testenv.Options{DBURL: proxy.URL})
	n, admin := e.NewOrg("acme")
	ctx := context.Background()
	_, err := admin.ListWorkspaces(ctx)
	require.NoError(t, err)

	status := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, e.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+n.Secret)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body client.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error.Code
	}
	code, _ := status("/readyz")
	require.Equal(t, 200, code)

	proxy.Stop()
	code, ecode := status("/readyz")
	require.Equal(t, 503, code)
	require.Equal(t, "store_unavailable", ecode)
	code, ecode = status("/v1/workspaces")
	require.Equal(t, 503, code)
	require.Equal(t, "store_unavailable", ecode)
	code, _ = status("/healthz")
	require.Equal(t, 200, code, "the process still serves")

	proxy.Start()
	require.Eventually(t, func() bool {
		c, _ := status("/readyz")
		return c == 200
	}, 15*time.Second, 50*time.Millisecond)
	ws, err := admin.ListWorkspaces(ctx)
	require.NoError(t, err)
	require.Len(t, ws, 1)
}
