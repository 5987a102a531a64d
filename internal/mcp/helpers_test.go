package mcp_test

import (
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/mcp"
	"github.com/orgplane/orgplane/internal/pgtest"
	"github.com/orgplane/orgplane/internal/testenv"
)

// -update rewrites the golden files under testdata.
var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

// boxSpec is a process box healthy as soon as it is alive (the fake
// provisioner never heartbeats).
var boxSpec = json.RawMessage(`{"command":["box"],"ready_after_seconds":0}`)

func fastRuntime() core.RuntimeConfig {
	return core.RuntimeConfig{
		CoalesceWindow: 50 * time.Millisecond, Jitter: time.Millisecond, PollInterval: 20 * time.Millisecond,
		RetryBackoff: 20 * time.Millisecond, ProvisionTimeout: 10 * time.Minute,
	}
}

func eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// transport is how a test reaches the tools.
type transport string

const (
	inMemory  transport = "memory"
	overHTTP  transport = "http"
	overStdio transport = "stdio"
)

// session is an MCP client session with the progress notifications it got.
type session struct {
	*sdk.ClientSession
	mu       sync.Mutex
	progress []string
}

func (s *session) progressSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.progress...)
}

// bearer adds a token to every request.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// connect opens a session with token over tr.
func connect(t testing.TB, e *testenv.Env, tr transport, token string) *session {
	t.Helper()
	ctx := context.Background()
	s := &session{}
	c := sdk.NewClient(&sdk.Implementation{Name: "orgplane-test", Version: "1"}, &sdk.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
			s.mu.Lock()
			s.progress = append(s.progress, r.Params.Message)
			s.mu.Unlock()
		},
	})
	var ct sdk.Transport
	switch tr {
	case inMemory:
		p, err := e.Service.AuthenticateRequest(ctx, core.Credentials{Authorization: []string{"Bearer " + token}})
		require.NoError(t, err)
		p, err = e.Service.EnterMCP(ctx, p)
		require.NoError(t, err)
		srv := mcp.NewServer(mcp.ModeOf(p), mcp.ServiceBackend{Svc: e.Service})
		st, cli := sdk.NewInMemoryTransports()
		ss, err := srv.Connect(auth.WithPrincipal(ctx, p), st, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = ss.Close() })
		ct = cli
	case overHTTP:
		ct = &sdk.StreamableClientTransport{Endpoint: e.URL + "/mcp", MaxRetries: -1,
			HTTPClient: &http.Client{Transport: bearer{token: token, base: http.DefaultTransport}}}
	case overStdio:
		ct = stdioTransport(t, e, token)
	}
	cs, err := c.Connect(ctx, ct, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.Close() })
	s.ClientSession = cs
	return s
}

// result is a tool call's outcome, decoded.
type result struct {
	IsError bool
	Text    string
	Err     struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
}

// call calls a tool and decodes its structured result into out (when not
// an error). A protocol error fails the test.
func (s *session) call(t testing.TB, name string, args any, out any) result {
	t.Helper()
	res, err := s.CallTool(context.Background(), &sdk.CallToolParams{Name: name, Arguments: args})
	require.NoError(t, err, "tools/call %s", name)
	return decodeResult(t, name, res, out)
}

func decodeResult(t testing.TB, name string, res *sdk.CallToolResult, out any) result {
	t.Helper()
	var r result
	r.IsError = res.IsError
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			r.Text += tc.Text
		}
	}
	if r.IsError {
		var body struct {
			Error json.RawMessage `json:"error"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.Text), &body), "%s: error text %s", name, r.Text)
		require.NoError(t, json.Unmarshal(body.Error, &r.Err))
		require.NotEmpty(t, r.Err.Code, "%s: %s", name, r.Text)
		return r
	}
	require.NotNil(t, res.StructuredContent, "%s: no structured content", name)
	b, err := json.Marshal(res.StructuredContent)
	require.NoError(t, err)
	require.JSONEq(t, string(b), r.Text, "%s: text and structured content differ", name)
	if out != nil {
		dec := json.NewDecoder(strings.NewReader(r.Text))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(out), "%s: %s", name, r.Text)
	}
	return r
}

// callRaw calls a tool and returns the protocol error, if any.
func (s *session) callRaw(name string, args any) (*sdk.CallToolResult, error) {
	return s.CallTool(context.Background(), &sdk.CallToolParams{Name: name, Arguments: args})
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./internal/mcp -update to create it")
	require.Equal(t, string(want), string(got), "tools/list changed: review the diff, then go test ./internal/mcp -update")
}

// outcome is a gateable write's result.
type outcome[T any] struct {
	Status   string           `json:"status"`
	Result   *T               `json:"result"`
	Approval *client.Approval `json:"approval"`
}
