package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/pgtest"
	"github.com/orgplane/orgplane/internal/testenv"
)

func TestMain(m *testing.M) {
	// pgtest.Wrap stops the throwaway PostgreSQL cluster after the tests,
	// before goleak looks for goroutines left behind.
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

// boxSpec is a process box that is healthy as soon as it is alive: the fake
// provisioner never heartbeats, so the reference agent would never be.
var boxSpec = json.RawMessage(`{"command":["box"],"ready_after_seconds":0}`)

// fastRuntime keeps restarts quick. The long provision timeout keeps the
// platform workspace's agent box (which never heartbeats under the fake)
// quietly "provisioning" instead of failing mid-test, so that snapshots of
// the org stay still.
func fastRuntime() core.RuntimeConfig {
	return core.RuntimeConfig{
		CoalesceWindow: 50 * time.Millisecond, Jitter: time.Millisecond, PollInterval: 20 * time.Millisecond,
		RetryBackoff: 20 * time.Millisecond, ProvisionTimeout: 10 * time.Minute,
	}
}

// newEnv starts an Env and waits until the platform workspace's bootstrap
// box has been provisioned (generation 1), so that tests which snapshot
// the org do not race with it. Under the fake its agent never heartbeats:
// it then stays provisioning (see fastRuntime).
func newEnv(t testing.TB, opts testenv.Options) *testenv.Env {
	t.Helper()
	if opts.Runtime.PollInterval == 0 {
		opts.Runtime = fastRuntime()
	}
	e := testenv.New(t, opts)
	waitStatus(t, e.Admin, e.Org.Platform.ID, "provisioning", 1)
	return e
}

var nameSeq atomic.Int64

// uniq returns a name no other call in this test binary returns.
func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, nameSeq.Add(1))
}

// api sends raw HTTP requests to an Env, with its own transport so that
// idle connections are closed when the test ends.
type api struct {
	url string
	hc  *http.Client
}

func newAPI(t testing.TB, e *testenv.Env) *api {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &api{url: e.URL, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// call is one request. Token "" sends no Authorization header unless Auth
// (the raw header value) is set.
type call struct {
	Method, Path string
	Token        string
	Auth         string
	Header       http.Header
	Body         []byte // nil: no body
	ContentType  string // default application/json when there is a body
}

type result struct {
	Status int
	Body   []byte
	Header http.Header
}

func (r result) String() string {
	b := r.Body
	if len(b) > 600 {
		b = append(b[:600:600], "..."...)
	}
	return fmt.Sprintf("%d %s", r.Status, b)
}

func (a *api) request(ctx context.Context, t testing.TB, c call) *http.Request {
	t.Helper()
	var body io.Reader
	if c.Body != nil {
		body = bytes.NewReader(c.Body)
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, a.url+c.Path, body)
	require.NoError(t, err)
	switch {
	case c.Auth != "":
		req.Header.Set("Authorization", c.Auth)
	case c.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, vs := range c.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if c.Body != nil {
		ct := c.ContentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	return req
}

// send does c and reads the whole answer.
func (a *api) send(t testing.TB, c call) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := a.hc.Do(a.request(ctx, t, c))
	require.NoError(t, err, "%s %s", c.Method, c.Path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return result{Status: resp.StatusCode, Body: b, Header: resp.Header}
}

// sendStream does c against a streaming endpoint: it returns the status of
// the first response and what the body carried within d of the headers
// (all of it when the status is an error, since errors are not streamed).
// The headers themselves may take longer on a busy machine.
func (a *api) sendStream(t testing.TB, c call, d time.Duration) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := a.hc.Do(a.request(ctx, t, c))
	require.NoError(t, err, "%s %s", c.Method, c.Path)
	defer resp.Body.Close()
	stop := time.AfterFunc(d, cancel)
	defer stop.Stop()
	b, _ := io.ReadAll(resp.Body) // ends with the context's deadline for a stream
	return result{Status: resp.StatusCode, Body: b, Header: resp.Header}
}

var codeRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// requireErrorShape checks the contract's error answer: the status, JSON,
// and exactly {"error":{"code","message"}} with both non-empty.
func requireErrorShape(t testing.TB, r result, status int) (code, message string) {
	t.Helper()
	require.Equal(t, status, r.Status, "answer: %s", r)
	require.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"),
		"error answers are JSON; Content-Type %q", r.Header.Get("Content-Type"))
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&body), "error body must be exactly {error:{code,message}}: %s", r.Body)
	require.Regexp(t, codeRE, body.Error.Code, "error code is snake_case: %s", r.Body)
	require.NotEmpty(t, strings.TrimSpace(body.Error.Message), "error message is empty: %s", r.Body)
	return body.Error.Code, body.Error.Message
}

// decodeJSON decodes a success body.
func decodeJSON[T any](t testing.TB, r result) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(r.Body, &v), "body: %s", r)
	return v
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// waitStatus waits until the workspace has the status (and, if gen > 0,
// at least that generation).
func waitStatus(t testing.TB, c *client.Client, id, status string, gen int64) client.Workspace {
	t.Helper()
	var last client.Workspace
	eventually(t, 10*time.Second, func() bool {
		w, err := c.GetWorkspace(context.Background(), id)
		last = w
		return err == nil && w.Status == status && w.Generation >= gen
	}, "workspace %s %s (gen >= %d); last seen %+v", id, status, gen, &last)
	return last
}

// eventually polls cond every 20ms until it holds or the timeout passes.
// Unlike Env.Eventually it fails the calling (sub)test, so it is safe in
// subtests that share an Env.
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

// mintWorkspaceToken mints a workspace token for id with the admin client.
func mintWorkspaceToken(t testing.TB, admin *client.Client, id string) client.CreatedToken {
	t.Helper()
	tok, err := admin.CreateToken(context.Background(), client.CreateToken{Kind: "workspace", Name: uniq("ws-tok"), WorkspaceID: id})
	require.NoError(t, err)
	return tok
}

// lockedBuffer is an io.Writer safe for concurrent use (the service log).
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
