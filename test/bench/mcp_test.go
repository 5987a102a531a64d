package bench

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

type bearerRT struct{ token string }

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// BenchmarkMCPvsAPI: whoami and the list of 100 workspaces over /mcp
// (stateless streamable HTTP, the SDK's client) beside the same calls over
// the plain HTTP API (internal/client), loopback, SQLite store. Each
// sub-benchmark reports its median latency (p50-ms).
func BenchmarkMCPvsAPI(b *testing.B) {
	e := testenv.New(b, testenv.Options{})
	ctx := context.Background()
	start := false
	for i := range 99 { // and the platform workspace: 100
		_, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("w%03d", i), Start: &start})
		require.NoError(b, err)
	}
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "bench"}, nil).Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint: e.URL + "/mcp", MaxRetries: -1, HTTPClient: &http.Client{Transport: bearerRT{e.AdminToken}}}, nil)
	require.NoError(b, err)
	b.Cleanup(func() { cs.Close() })
	tool := func(name string) func() error {
		return func() error {
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: map[string]any{}})
			if err == nil && res.IsError {
				err = fmt.Errorf("%s: tool error", name)
			}
			return err
		}
	}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"whoami/api", func() error { _, err := e.Admin.Whoami(ctx); return err }},
		{"whoami/mcp", tool("whoami")},
		{"list_workspaces_100/api", func() error {
			l, err := e.Admin.ListWorkspaces(ctx)
			if err == nil && len(l) != 100 {
				err = fmt.Errorf("%d workspaces", len(l))
			}
			return err
		}},
		{"list_workspaces_100/mcp", tool("list_workspaces")},
	} {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				if err := c.call(); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
		})
	}
}
