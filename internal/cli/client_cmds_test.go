package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orgplane/orgplane/internal/client"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// -update rewrites the golden files under testdata.
var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

const testToken = "adm_t0k_s3cr3t"

// fakeRequest is one request the fake API received.
type fakeRequest struct {
	Method, Path, Query, Auth, ContentType string
	Body                                   []byte
}

// fakeAPI fakes the routes a test registers and records every request.
// Anything else answers 404 in the API's error shape, so a wrong path shows
// up as a failing command.
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server
	mux *http.ServeMux

	mu   sync.Mutex
	reqs []fakeRequest
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{t: t, mux: http.NewServeMux()}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, fakeRequest{
			Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"), Body: body,
		})
		f.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		if _, pattern := f.mux.Handler(r); pattern == "" {
			writeTestJSON(w, 404, errBody("not_found", "no such endpoint: "+r.Method+" "+r.URL.Path))
			return
		}
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// handle answers pattern (e.g. "GET /v1/workspaces") with status and the
// JSON of body.
func (f *fakeAPI) handle(pattern string, status int, body any) {
	f.mux.HandleFunc(pattern, func(w http.ResponseWriter, _ *http.Request) {
		writeTestJSON(w, status, body)
	})
}

func (f *fakeAPI) requests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.reqs...)
}

// only returns the single request received, checking its bearer token.
func (f *fakeAPI) only() fakeRequest {
	f.t.Helper()
	reqs := f.requests()
	require.Len(f.t, reqs, 1, "requests: %+v", reqs)
	require.Equal(f.t, "Bearer "+testToken, reqs[0].Auth)
	return reqs[0]
}

func writeTestJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if body != nil {
		_ = json.NewEncoder(w).Encode(body)
	}
}

func errBody(code, msg string) client.ErrorBody {
	var b client.ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	return b
}

type cliResult struct {
	stdout, stderr string
	code           int
}

// run runs the command line against the fake API with the test token.
func (f *fakeAPI) run(stdin string, args ...string) cliResult {
	f.t.Helper()
	return runCLI(f.t, stdin, append([]string{"--server", f.srv.URL, "--token", testToken}, args...)...)
}

func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return cliResult{stdout: out.String(), stderr: errb.String(), code: code}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

var (
	testTime   = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	wsPlatform = client.Workspace{
		ID: "ws_plat", OrgID: "org_1", Name: "platform", Kind: "platform", Runtime: "process",
		Spec: json.RawMessage(`{}`), Status: "running", RestartPolicy: "manual", Protected: true,
		Generation: 3, Stale: true, CreatedAt: testTime, UpdatedAt: testTime,
	}
	wsResearcher = client.Workspace{
		ID: "ws_res", OrgID: "org_1", ParentID: ptrTo("ws_plat"), Name: "researcher", Kind: "workspace",
		Runtime: "docker", Spec: json.RawMessage(`{"image":"example/agent:1"}`), Status: "failed",
		RestartPolicy: "auto", Generation: 7, LastError: "health check\ttimed out\n\x1b[31mred\x1b[0m",
		CreatedAt: testTime, UpdatedAt: testTime.Add(time.Hour),
	}
)

func ptrTo[T any](v T) *T { return &v }

func TestWorkspacesLs(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/workspaces", 200, []client.Workspace{wsPlatform, wsResearcher})

	r := f.run("", "workspaces", "ls")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "GET", req.Method)
	require.Equal(t, "/v1/workspaces", req.Path)
	require.Equal(t, ""+
		"ID       NAME        KIND       RUNTIME  STATUS   GEN  STALE  PARENT\n"+
		"ws_plat  platform    platform   process  running  3    yes    -\n"+
		"ws_res   researcher  workspace  docker   failed   7    no     ws_plat\n", r.stdout)

	r = f.run("", "ws", "ls", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, []client.Workspace{wsPlatform, wsResearcher}), r.stdout)
	require.True(t, strings.HasPrefix(r.stdout, "[\n  {"), "indented JSON: %s", r.stdout)
}

func TestWorkspacesLsEmptyJSON(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/workspaces", 200, []client.Workspace{})
	r := f.run("", "--json", "workspaces", "list")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "[]\n", r.stdout)
}

func TestWorkspacesGet(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/workspaces/{id}", 200, wsResearcher)

	r := f.run("", "workspaces", "get", "ws_res")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "/v1/workspaces/ws_res", f.only().Path)
	require.Equal(t, `id:             ws_res
name:           researcher
org:            org_1
parent:         ws_plat
kind:           workspace
runtime:        docker
status:         failed
restart policy: auto
protected:      no
generation:     7
stale:          no
last error:     health check timed out  [31mred [0m
spec:           {"image":"example/agent:1"}
created:        2025-03-01T12:00:00Z
updated:        2025-03-01T13:00:00Z
`, r.stdout)
	require.NotContains(t, r.stdout, "\x1b", "terminal escapes from the server are neutralized")

	r = f.run("", "workspaces", "get", "ws_res", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, wsResearcher), r.stdout)
}

func TestWorkspacesGetEscapesID(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	r := f.run("", "workspaces", "get", "../tokens")
	require.Equal(t, 1, r.code)
	require.Equal(t, "/v1/workspaces/..%2Ftokens", f.only().Path)
}

func TestWorkspacesCreate(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("POST /v1/workspaces", 201, wsResearcher)

	r := f.run("", "workspaces", "create", "researcher", "--parent", "ws_plat", "--runtime", "docker",
		"--spec", `{"image": "example/agent:1"}`, "--restart-policy", "manual", "--protected", "--no-start")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "POST", req.Method)
	require.Equal(t, "/v1/workspaces", req.Path)
	require.Equal(t, "application/json", req.ContentType)
	require.JSONEq(t, `{"name":"researcher","parent_id":"ws_plat","runtime":"docker",
		"spec":{"image":"example/agent:1"},"restart_policy":"manual","protected":true,"start":false}`, string(req.Body))
	require.Contains(t, r.stdout, "id:             ws_res\n")
}

func TestWorkspacesCreateMinimal(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("POST /v1/workspaces", 201, wsResearcher)

	r := f.run("", "workspaces", "create", "researcher", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"name":"researcher"}`, string(f.only().Body))
	require.JSONEq(t, mustJSON(t, wsResearcher), r.stdout)
}

func TestWorkspacesCreateSpecFile(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("POST /v1/workspaces", 201, wsResearcher)
	file := filepath.Join(t.TempDir(), "spec.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"command": ["./agent", "--x"]}`), 0o600))

	r := f.run("", "workspaces", "create", "a", "--spec-file", file)
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"name":"a","spec":{"command":["./agent","--x"]}}`, string(f.only().Body))

	f2 := newFakeAPI(t)
	f2.handle("POST /v1/workspaces", 201, wsResearcher)
	r = f2.run(`{"image":"x"}`, "workspaces", "create", "b", "--spec-file", "-")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"name":"b","spec":{"image":"x"}}`, string(f2.only().Body))
}

// Bad input is refused with a clear one-line error, exit 1, and nothing is
// sent to the server.
func TestClientSideBadInput(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nope.json")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"create no name", []string{"workspaces", "create"}, "accepts 1 arg(s), received 0"},
		{"create two names", []string{"workspaces", "create", "a", "b"}, "accepts 1 arg(s), received 2"},
		{"create empty name", []string{"workspaces", "create", ""}, "the workspace name must not be empty"},
		{"create bad policy", []string{"workspaces", "create", "a", "--restart-policy", "sometimes"}, `--restart-policy must be auto or manual; got "sometimes"`},
		{"create bad spec", []string{"workspaces", "create", "a", "--spec", "{nope"}, "the spec must be a JSON object"},
		{"create array spec", []string{"workspaces", "create", "a", "--spec", "[1]"}, "the spec must be a JSON object"},
		{"create null spec", []string{"workspaces", "create", "a", "--spec", "null"}, "the spec must be a JSON object"},
		{"create both specs", []string{"workspaces", "create", "a", "--spec", "{}", "--spec-file", "x"}, "none of the others can be"},
		{"create missing spec file", []string{"workspaces", "create", "a", "--spec-file", missing}, "read --spec-file"},
		{"create bad bool", []string{"workspaces", "create", "a", "--protected=maybe"}, `invalid argument "maybe"`},
		{"get no id", []string{"workspaces", "get"}, "accepts 1 arg(s), received 0"},
		{"update nothing", []string{"workspaces", "update", "ws_1"}, "nothing to change"},
		{"update empty name", []string{"workspaces", "update", "ws_1", "--name", ""}, "--name must not be empty"},
		{"update empty parent", []string{"workspaces", "update", "ws_1", "--parent="}, "--parent must not be empty"},
		{"update bad policy", []string{"workspaces", "update", "ws_1", "--restart-policy", "x"}, "--restart-policy must be auto or manual"},
		{"logs negative tail", []string{"workspaces", "logs", "ws_1", "--tail", "-3"}, "--tail must be a positive number"},
		{"logs bad tail", []string{"workspaces", "logs", "ws_1", "--tail", "ten"}, `invalid argument "ten"`},
		{"unknown subcommand", []string{"workspaces", "frobnicate"}, `unknown command "frobnicate" for "orgplane workspaces"`},
		{"unknown flag", []string{"workspaces", "ls", "--all"}, "unknown flag: --all"},
		{"token no kind", []string{"tokens", "create", "--name", "x"}, "--kind is required"},
		{"token bad kind", []string{"tokens", "create", "--kind", "root", "--name", "x"}, `--kind must be admin, workspace or user; got "root"`},
		{"token no name", []string{"tokens", "create", "--kind", "admin"}, "--name is required"},
		{"workspace token no workspace", []string{"tokens", "create", "--kind", "workspace", "--name", "x"}, "a workspace token needs --workspace"},
		{"admin token with workspace", []string{"tokens", "create", "--kind", "admin", "--name", "x", "--workspace", "ws_1"}, "--workspace is for workspace tokens"},
		{"workspace token acting", []string{"tokens", "create", "--kind", "workspace", "--name", "x", "--workspace", "ws_1", "--acting-workspace", "ws_2"}, "--acting-workspace is for admin tokens only"},
		{"token bad expiry", []string{"tokens", "create", "--kind", "admin", "--name", "x", "--expires-in", "soon"}, "--expires-in must be a duration"},
		{"token negative expiry", []string{"tokens", "create", "--kind", "admin", "--name", "x", "--expires-in", "-5m"}, "--expires-in must be positive"},
		{"token zero days", []string{"tokens", "create", "--kind", "admin", "--name", "x", "--expires-in", "0d"}, "--expires-in must be positive"},
		{"revoke no id", []string{"tokens", "revoke"}, "accepts 1 arg(s), received 0"},
		{"audit negative limit", []string{"audit", "--limit", "-1"}, "--limit must be a positive number"},
		{"audit bad before", []string{"audit", "--before", "abc"}, `invalid argument "abc"`},
		{"audit args", []string{"audit", "now"}, `unknown command "now" for "orgplane audit"`},
		{"secret set no key", []string{"secrets", "set"}, "accepts 1 arg(s), received 0"},
		{"secret set empty value", []string{"secrets", "set", "K", "--value", ""}, "empty value for K: nothing sent"},
		{"secret rm no key", []string{"secrets", "rm"}, "accepts 1 arg(s), received 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			r := f.run("", tc.args...)
			require.Equal(t, 1, r.code, "stdout: %s", r.stdout)
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			for _, l := range lines[:len(lines)-1] {
				require.True(t, strings.HasPrefix(l, "warning: "), "only warnings before the error: %q", r.stderr)
			}
			last := lines[len(lines)-1]
			require.True(t, strings.HasPrefix(last, "error: "), "one error line: %q", r.stderr)
			require.Contains(t, last, tc.want)
			require.Empty(t, f.requests(), "nothing is sent")
		})
	}
}

func TestNoTokenSendsNothing(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	r := runCLI(t, "", "--server", f.srv.URL, "--token", "", "--data-dir", t.TempDir(), "workspaces", "ls")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "error: no token: pass --token or set ORGPLANE_TOKEN")
	require.Empty(t, f.requests())
}

func TestServerErrorIsOneLine(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("POST /v1/workspaces/{id}/pause", 422, errBody("rule_refused", "the platform workspace cannot be paused"))
	r := f.run("", "workspaces", "pause", "ws_plat")
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stdout)
	require.Equal(t, "error: the platform workspace cannot be paused (422 rule_refused)\n", r.stderr)

	// Not the API's error shape (a proxy in the way): its text, on one line.
	f2 := newFakeAPI(t)
	f2.mux.HandleFunc("GET /v1/workspaces", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	})
	r = f2.run("", "workspaces", "ls")
	require.Equal(t, 1, r.code)
	require.Equal(t, "error: bad gateway (502 http_error)\n", r.stderr)
}

func TestWorkspacesUpdate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		body string
	}{
		{"protected false", []string{"--protected=false"}, `{"protected":false}`},
		{"protected true", []string{"--protected"}, `{"protected":true}`},
		{"all", []string{"--name", "n", "--parent", "ws_p", "--spec", `{"a":1}`, "--restart-policy", "auto"},
			`{"name":"n","parent_id":"ws_p","spec":{"a":1},"restart_policy":"auto"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.handle("PATCH /v1/workspaces/{id}", 200, wsResearcher)
			r := f.run("", append([]string{"workspaces", "update", "ws_res"}, tc.args...)...)
			require.Equal(t, 0, r.code, r.stderr)
			req := f.only()
			require.Equal(t, "PATCH", req.Method)
			require.Equal(t, "/v1/workspaces/ws_res", req.Path)
			require.JSONEq(t, tc.body, string(req.Body))
			require.Contains(t, r.stdout, "name:           researcher\n")
		})
	}
}

func TestWorkspacesRm(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("DELETE /v1/workspaces/{id}", 200, client.DeleteWorkspaceResult{Removed: []string{"ws_res", "ws_child"}})

	r := f.run("", "workspaces", "rm", "ws_res", "--cascade")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "DELETE", req.Method)
	require.Equal(t, "cascade=true", req.Query)
	require.Equal(t, "removed ws_res\nremoved ws_child\n", r.stdout)

	r = f.run("", "workspaces", "rm", "ws_res", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "cascade=false", f.requests()[1].Query)
	require.JSONEq(t, `{"removed":["ws_res","ws_child"]}`, r.stdout)
}

func TestWorkspacesLogs(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	logs := "line one\nline two\n"
	f.mux.HandleFunc("GET /v1/workspaces/{id}/logs", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, logs)
	})

	r := f.run("", "workspaces", "logs", "ws_res", "--tail", "50")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "/v1/workspaces/ws_res/logs", req.Path)
	require.Equal(t, "tail=50", req.Query)
	require.Equal(t, logs, r.stdout)

	r = f.run("", "workspaces", "logs", "ws_res")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, f.requests()[1].Query)
}

var testJob = client.RestartJob{
	ID: "job_1", WorkspaceID: "ws_res", OrgID: "org_1", State: "queued", Reason: "manual",
	RequestedReason: "rotate creds", MaxAttempts: 3, Generation: 7, CreatedAt: testTime, UpdatedAt: testTime,
}

func TestWorkspacesRestart(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("POST /v1/workspaces/{id}/restart", 202, client.RestartAccepted{Job: testJob})

	r := f.run("", "workspaces", "restart", "ws_res", "--reason", "rotate creds")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "POST", req.Method)
	require.Equal(t, "/v1/workspaces/ws_res/restart", req.Path)
	require.JSONEq(t, `{"reason":"rotate creds"}`, string(req.Body))
	require.Equal(t, "restart of ws_res accepted: job job_1 (queued)\n", r.stdout)

	r = f.run("", "workspaces", "restart", "ws_res", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{}`, string(f.requests()[1].Body))
	require.JSONEq(t, mustJSON(t, client.RestartAccepted{Job: testJob}), r.stdout)
}

func TestWorkspacesPauseResume(t *testing.T) {
	t.Parallel()
	paused := wsResearcher
	paused.Status = "paused"
	f := newFakeAPI(t)
	f.handle("POST /v1/workspaces/{id}/pause", 200, paused)
	f.handle("POST /v1/workspaces/{id}/resume", 200, wsResearcher)

	r := f.run("", "workspaces", "pause", "ws_res")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "paused ws_res (researcher), status paused\n", r.stdout)
	r = f.run("", "ws", "resume", "ws_res", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, wsResearcher), r.stdout)

	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "/v1/workspaces/ws_res/pause", reqs[0].Path)
	require.Equal(t, "/v1/workspaces/ws_res/resume", reqs[1].Path)
	require.Equal(t, "POST", reqs[1].Method)
}

func TestTokens(t *testing.T) {
	t.Parallel()
	exp := testTime.Add(24 * time.Hour)
	revoked := testTime.Add(time.Minute)
	tokens := []client.Token{
		{ID: "tok_a", OrgID: "org_1", Kind: "admin", Name: "concierge", ActingWorkspaceID: "ws_plat", CreatedAt: testTime, LastUsedAt: &revoked},
		{ID: "tok_w", OrgID: "org_1", Kind: "workspace", Name: "res", WorkspaceID: "ws_res", CreatedAt: testTime, ExpiresAt: &exp},
		{ID: "tok_r", OrgID: "org_1", Kind: "admin", Name: "old", CreatedAt: testTime, RevokedAt: &revoked},
	}
	f := newFakeAPI(t)
	f.handle("GET /v1/tokens", 200, tokens)

	r := f.run("", "tokens", "ls")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "GET", f.only().Method)
	require.Equal(t, ""+
		"ID     KIND       NAME       WORKSPACE  ACTING   STATE    CREATED               EXPIRES               LAST USED\n"+
		"tok_a  admin      concierge  -          ws_plat  active   2025-03-01T12:00:00Z  -                     2025-03-01T12:01:00Z\n"+
		"tok_w  workspace  res        ws_res     -        expired  2025-03-01T12:00:00Z  2025-03-02T12:00:00Z  -\n"+
		"tok_r  admin      old        -          -        revoked  2025-03-01T12:00:00Z  -                     -\n", r.stdout)

	r = f.run("", "tokens", "ls", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, tokens), r.stdout)
}

func TestTokensCreate(t *testing.T) {
	t.Parallel()
	created := client.CreatedToken{
		Token:  client.Token{ID: "tok_n", OrgID: "org_1", Kind: "workspace", Name: "res", WorkspaceID: "ws_res", CreatedAt: testTime},
		Secret: "ws_tok_n_VerySecret",
	}
	f := newFakeAPI(t)
	f.handle("POST /v1/tokens", 201, created)

	before := time.Now()
	r := f.run("", "tokens", "create", "--kind", "workspace", "--name", "res", "--workspace", "ws_res", "--expires-in", "30d")
	after := time.Now()
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "POST", req.Method)
	require.Equal(t, "/v1/tokens", req.Path)
	var body client.CreateToken
	require.NoError(t, json.Unmarshal(req.Body, &body))
	require.Equal(t, client.CreateToken{Kind: "workspace", Name: "res", WorkspaceID: "ws_res", ExpiresAt: body.ExpiresAt}, body)
	require.NotNil(t, body.ExpiresAt)
	month := 30 * 24 * time.Hour
	require.WithinRange(t, *body.ExpiresAt, before.Add(month).Add(-time.Second), after.Add(month))
	require.Equal(t, "created workspace token res (tok_n)\n\n    ws_tok_n_VerySecret\n\nThis secret will not be shown again: store it now.\n", r.stdout)
	require.Equal(t, 1, strings.Count(r.stdout, created.Secret))

	r = f.run("", "tokens", "create", "--kind", "admin", "--name", "ci", "--acting-workspace", "ws_plat", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"kind":"admin","name":"ci","acting_workspace_id":"ws_plat"}`, string(f.requests()[1].Body))
	require.JSONEq(t, mustJSON(t, created), r.stdout)
}

func TestParseExpiresIn(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"30d": 720 * time.Hour, "1d": 24 * time.Hour, "90m": 90 * time.Minute, "12h": 12 * time.Hour} {
		got, err := parseExpiresIn(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "1.5d", "-1d", "0", "0s", "x", "99999999d"} {
		_, err := parseExpiresIn(in)
		require.Error(t, err, in)
	}
}

func TestTokensRevoke(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("DELETE /v1/tokens/{id}", 204, nil)
	r := f.run("", "tokens", "revoke", "tok_a")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "DELETE", req.Method)
	require.Equal(t, "/v1/tokens/tok_a", req.Path)
	require.Equal(t, "revoked token tok_a\n", r.stdout)

	r = f.run("", "tokens", "revoke", "tok_a", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"id":"tok_a","revoked":true}`, r.stdout)
}

func TestAudit(t *testing.T) {
	t.Parallel()
	page := client.AuditPage{
		Entries: []client.AuditEntry{
			{ID: 42, At: testTime, TokenID: "tok_a", PrincipalKind: "admin", ActingWorkspaceID: "ws_plat", Action: "secret.set",
				TargetKind: "secret", TargetID: "API_KEY", WorkspaceID: "ws_res", Outcome: "ok", Detail: json.RawMessage(`{"version":2}`)},
			{ID: 41, At: testTime.Add(-time.Minute), PrincipalKind: "workspace", Action: "heartbeat", Outcome: "denied", Detail: json.RawMessage(`{}`)},
		},
		NextBefore: 41,
	}
	f := newFakeAPI(t)
	f.handle("GET /v1/audit", 200, page)

	r := f.run("", "audit", "--workspace", "ws_res", "--limit", "2", "--before", "43")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "/v1/audit", req.Path)
	require.Equal(t, "before=43&limit=2&workspace_id=ws_res", req.Query)
	require.Equal(t, ""+
		"ID  TIME                  PRINCIPAL              ACTION      TARGET          OUTCOME\n"+
		"42  2025-03-01T12:00:00Z  admin@ws_plat (tok_a)  secret.set  secret API_KEY  ok\n"+
		"41  2025-03-01T11:59:00Z  workspace              heartbeat   -               denied\n", r.stdout)
	require.Equal(t, "more entries: orgplane audit --workspace ws_res --limit 2 --before 41\n", r.stderr)

	r = f.run("", "audit", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, f.requests()[1].Query)
	require.Empty(t, r.stderr)
	require.JSONEq(t, mustJSON(t, page), r.stdout)
}

// workspaces ls walks pages of 500 through the Link header, and prints
// them as one list.
func TestWorkspacesLsWalksPages(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	var all []client.Workspace
	for i := range 1203 {
		w := wsResearcher
		w.ID, w.Name = fmt.Sprintf("ws_%04d", i), fmt.Sprintf("w%04d", i)
		all = append(all, w)
	}
	f.mux.HandleFunc("GET /v1/workspaces", func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "500", r.URL.Query().Get("limit"))
		from := 0
		if a := r.URL.Query().Get("after"); a != "" {
			from, _ = strconv.Atoi(a)
		}
		to := min(from+500, len(all))
		if to < len(all) {
			w.Header().Set("Link", fmt.Sprintf(`</v1/workspaces?after=%d&limit=500>; rel="next"`, to))
		}
		writeTestJSON(w, 200, all[from:to])
	})
	r := f.run("", "workspaces", "ls", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var got []client.Workspace
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Len(t, got, len(all))
	for i := range all {
		require.Equal(t, all[i].ID, got[i].ID)
	}
	var queries []string
	for _, q := range f.requests() {
		queries = append(queries, q.Query)
	}
	require.Equal(t, []string{"limit=500", "after=500&limit=500", "after=1000&limit=500"}, queries)

	r = f.run("", "workspaces", "ls")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, 1204, strings.Count(r.stdout, "\n"), "a header and every workspace")
}

// A server from before paging refuses the limit: the whole list is asked
// for instead.
func TestWorkspacesLsOldServer(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.mux.HandleFunc("GET /v1/workspaces", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			writeTestJSON(w, 400, errBody("unknown_query_param", "unknown query parameter \"limit\": this endpoint takes none"))
			return
		}
		writeTestJSON(w, 200, []client.Workspace{wsPlatform, wsResearcher})
	})
	r := f.run("", "workspaces", "ls", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, []client.Workspace{wsPlatform, wsResearcher}), r.stdout)
	require.Len(t, f.requests(), 2)
}

// A --limit above 500, or --all, reads the log in pages of 500.
func TestAuditWalksPages(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.mux.HandleFunc("GET /v1/audit", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
		if before == 0 {
			before = 1301
		}
		page := client.AuditPage{Entries: []client.AuditEntry{}}
		for id := before - 1; id >= 1 && len(page.Entries) < limit; id-- {
			page.Entries = append(page.Entries, client.AuditEntry{ID: id, At: testTime, PrincipalKind: "admin", Action: "x", Outcome: "ok", Detail: json.RawMessage(`{}`)})
		}
		if last := page.Entries[len(page.Entries)-1].ID; last > 1 {
			page.NextBefore = last
		}
		writeTestJSON(w, 200, page)
	})
	queries := func() []string {
		var out []string
		for _, q := range f.requests() {
			out = append(out, q.Query)
		}
		f.mu.Lock()
		f.reqs = nil
		f.mu.Unlock()
		return out
	}

	r := f.run("", "audit", "--limit", "1200", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var page client.AuditPage
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &page))
	require.Len(t, page.Entries, 1200)
	require.EqualValues(t, 1300, page.Entries[0].ID)
	require.EqualValues(t, 101, page.Entries[1199].ID)
	require.EqualValues(t, 101, page.NextBefore)
	require.Equal(t, []string{"limit=500", "before=801&limit=500", "before=301&limit=200"}, queries())

	r = f.run("", "audit", "--all", "--before", "1000")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, 1000, strings.Count(r.stdout, "\n"), "a header and entries 999 to 1")
	require.Empty(t, r.stderr, "no hint after the last entry")
	require.Equal(t, []string{"before=1000&limit=500", "before=500&limit=500"}, queries())

	r = f.run("", "audit", "--all", "--limit", "5")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "--all reads every entry")
}

func TestAuditLastPageNoHint(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/audit", 200, client.AuditPage{Entries: []client.AuditEntry{}})
	r := f.run("", "audit")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "ID  TIME  PRINCIPAL  ACTION  TARGET  OUTCOME\n", r.stdout)
	require.Empty(t, r.stderr)
}

func TestWhoami(t *testing.T) {
	t.Parallel()
	who := client.Whoami{Principal: client.Principal{Kind: "admin", OrgID: "org_1", ActingWorkspaceID: "ws_plat", TokenID: "tok_a"}}
	f := newFakeAPI(t)
	f.handle("GET /v1/whoami", 200, who)

	r := f.run("", "whoami")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "/v1/whoami", f.only().Path)
	require.Equal(t, "kind:             admin\norg:              org_1\nacting workspace: ws_plat\ntoken:            tok_a\n", r.stdout)

	r = f.run("", "whoami", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, who), r.stdout)
}

func TestSecretsLs(t *testing.T) {
	t.Parallel()
	globals := []client.SecretMeta{{Key: "API_KEY", Scope: "global", Version: 2, UpdatedAt: testTime}}
	own := []client.SecretMeta{
		{Key: "API_KEY", Scope: "workspace", WorkspaceID: "ws_res", OverridesGlobal: true, Version: 1, UpdatedAt: testTime},
		{Key: "DB_URL", Scope: "global", Version: 4, UpdatedAt: testTime},
	}
	f := newFakeAPI(t)
	f.handle("GET /v1/secrets", 200, globals)
	f.handle("GET /v1/workspaces/{id}/secrets", 200, own)

	r := f.run("", "secrets", "ls")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "/v1/secrets", f.only().Path)
	require.Equal(t, "KEY      SCOPE   VERSION  UPDATED\nAPI_KEY  global  2        2025-03-01T12:00:00Z\n", r.stdout)

	r = f.run("", "secrets", "ls", "--workspace", "ws_res")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "/v1/workspaces/ws_res/secrets", f.requests()[1].Path)
	require.Equal(t, ""+
		"KEY      SCOPE      OVERRIDES GLOBAL  VERSION  UPDATED\n"+
		"API_KEY  workspace  yes               1        2025-03-01T12:00:00Z\n"+
		"DB_URL   global     no                4        2025-03-01T12:00:00Z\n", r.stdout)

	r = f.run("", "secrets", "ls", "--workspace", "ws_res", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, own), r.stdout)
}

const plantedSecret = "pl4nted-S3CRET-value"

// requireNoValue checks that a secret value appears in no output.
func requireNoValue(t *testing.T, r cliResult) {
	t.Helper()
	require.NotContains(t, r.stdout, plantedSecret)
	require.NotContains(t, r.stderr, plantedSecret)
	require.NotContains(t, r.stdout, "pl4nted")
	require.NotContains(t, r.stderr, "pl4nted")
}

func TestSecretsSetFromStdin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, stdin, want string
	}{
		{"newline dropped", plantedSecret + "\n", plantedSecret},
		{"crlf dropped", plantedSecret + "\r\n", plantedSecret},
		{"only one newline dropped", plantedSecret + "\n\n", plantedSecret + "\n"},
		{"no newline", plantedSecret, plantedSecret},
		{"inner newlines kept", "a\n" + plantedSecret + "\n", "a\n" + plantedSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.handle("PUT /v1/secrets/{key}", 200, client.SecretWrite{Key: "API_KEY", Scope: "global", Version: 3, Decisions: []client.Decision{}})
			r := f.run(tc.stdin, "secrets", "set", "API_KEY")
			require.Equal(t, 0, r.code, r.stderr)
			req := f.only()
			require.Equal(t, "PUT", req.Method)
			require.Equal(t, "/v1/secrets/API_KEY", req.Path)
			require.Empty(t, req.Query)
			var body client.SetSecret
			require.NoError(t, json.Unmarshal(req.Body, &body))
			require.Equal(t, tc.want, body.Value)
			require.Equal(t, "set API_KEY (global, version 3)\n", r.stdout)
			require.Empty(t, r.stderr)
			requireNoValue(t, r)
		})
	}
}

func TestSecretsSetWorkspaceImpact(t *testing.T) {
	t.Parallel()
	res := client.SecretWrite{Key: "API_KEY", Scope: "workspace", Version: 1, Decisions: []client.Decision{
		{WorkspaceID: "ws_res", Action: "restart", Reason: "restart_queued"},
		{WorkspaceID: "ws_plat", Action: "skip", Reason: "platform_root"},
	}}
	f := newFakeAPI(t)
	f.handle("PUT /v1/workspaces/{id}/secrets/{key}", 200, res)

	r := f.run(plantedSecret, "secrets", "set", "API_KEY", "--workspace", "ws_res")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "/v1/workspaces/ws_res/secrets/API_KEY", req.Path)
	require.JSONEq(t, mustJSON(t, client.SetSecret{Value: plantedSecret}), string(req.Body))
	require.Equal(t, ""+
		"set API_KEY (workspace, version 1)\n"+
		"WORKSPACE  ACTION   REASON\n"+
		"ws_res     restart  restart_queued\n"+
		"ws_plat    skip     platform_root\n", r.stdout)
	requireNoValue(t, r)

	r = f.run(plantedSecret, "secrets", "set", "API_KEY", "--workspace", "ws_res", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, res), r.stdout)
	requireNoValue(t, r)
}

func TestSecretsSetDryRun(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("PUT /v1/secrets/{key}", 200, client.SecretWrite{Key: "API_KEY", Scope: "global", Version: 4, DryRun: true,
		Decisions: []client.Decision{{WorkspaceID: "ws_res", Action: "skip", Reason: "overridden"}}})

	r := f.run(plantedSecret, "secrets", "set", "API_KEY", "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "dry_run=true", req.Query)
	require.Equal(t, ""+
		"dry run: would have set API_KEY (global, version 4)\n"+
		"WORKSPACE  ACTION  REASON\n"+
		"ws_res     skip    overridden\n"+
		"dry run: nothing was changed\n", r.stdout)
	requireNoValue(t, r)

	f2 := newFakeAPI(t)
	f2.handle("PUT /v1/secrets/{key}", 200, client.SecretWrite{Key: "API_KEY", Scope: "global", DryRun: true})
	r = f2.run(plantedSecret, "secrets", "set", "API_KEY", "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "dry run: would have set API_KEY (global)\nno workspace is affected\ndry run: nothing was changed\n", r.stdout)
}

func TestSecretsSetValueFlagWarns(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("PUT /v1/secrets/{key}", 200, client.SecretWrite{Key: "K", Scope: "global", Version: 1})

	r := f.run("ignored stdin", "secrets", "set", "K", "--value", plantedSecret)
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, client.SetSecret{Value: plantedSecret}), string(f.only().Body))
	require.Contains(t, r.stderr, "warning: --value leaves the secret in your shell history")
	require.Equal(t, "set K (global, version 1)\n", r.stdout)
	requireNoValue(t, r)
}

func TestSecretsSetEmptyStdinSendsNothing(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	r := f.run("\n", "secrets", "set", "K")
	require.Equal(t, 1, r.code)
	require.Equal(t, "error: empty value for K: nothing sent (to remove a secret: orgplane secrets rm K)\n", r.stderr)
	require.Empty(t, f.requests())
}

func TestSecretsSetTooLargeSendsNothing(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	r := f.run(strings.Repeat("x", maxValueRead+1), "secrets", "set", "K")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "is over 1048576 bytes: nothing sent")
	require.Empty(t, f.requests())
}

// A refused write shows the server's message and never the value.
func TestSecretsSetRefusedHidesValue(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("PUT /v1/secrets/{key}", 400, errBody("invalid_key", "the key must be an env var name"))
	r := f.run(plantedSecret, "secrets", "set", "bad-key")
	require.Equal(t, 1, r.code)
	require.Equal(t, "error: the key must be an env var name (400 invalid_key)\n", r.stderr)
	require.Equal(t, "/v1/secrets/bad-key", f.only().Path)
	requireNoValue(t, r)
}

func TestSecretsRm(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("DELETE /v1/workspaces/{id}/secrets/{key}", 200, client.SecretWrite{Key: "API_KEY",
		Decisions: []client.Decision{{WorkspaceID: "ws_res", Action: "restart", Reason: "coalesced"}}})
	f.handle("DELETE /v1/secrets/{key}", 200, client.SecretWrite{Key: "API_KEY", Scope: "global", DryRun: true})

	r := f.run("", "secrets", "rm", "API_KEY", "--workspace", "ws_res")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "DELETE", req.Method)
	require.Equal(t, "/v1/workspaces/ws_res/secrets/API_KEY", req.Path)
	require.Empty(t, req.Query)
	require.Empty(t, req.Body)
	require.Equal(t, ""+
		"removed API_KEY (workspace ws_res)\n"+
		"WORKSPACE  ACTION   REASON\n"+
		"ws_res     restart  coalesced\n", r.stdout)

	r = f.run("", "secrets", "rm", "API_KEY", "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	req = f.requests()[1]
	require.Equal(t, "/v1/secrets/API_KEY", req.Path)
	require.Equal(t, "dry_run=true", req.Query)
	require.Equal(t, "dry run: would have removed API_KEY (global)\nno workspace is affected\ndry run: nothing was changed\n", r.stdout)

	r = f.run("", "secrets", "rm", "API_KEY", "--dry-run", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"key":"API_KEY","scope":"global","dry_run":true,"decisions":[]}`, r.stdout)
}

func TestRestartsLs(t *testing.T) {
	t.Parallel()
	started := testTime.Add(time.Second)
	failed := client.RestartJob{
		ID: "job_0", WorkspaceID: "ws_res", OrgID: "org_1", Automatic: true, State: "failed", Reason: "restart_queued",
		Attempts: 3, MaxAttempts: 3, Generation: 6, ChangeID: "chg_1",
		Error: "box not healthy with generation 6 within 2m0s:\nexit status 1", CreatedAt: testTime.Add(-time.Hour),
		UpdatedAt: testTime, StartedAt: &started, FinishedAt: &started,
	}
	jobs := []client.RestartJob{testJob, failed}
	f := newFakeAPI(t)
	f.handle("GET /v1/workspaces/{id}/restarts", 200, jobs)

	r := f.run("", "restarts", "ls", "--workspace", "ws_res")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "GET", req.Method)
	require.Equal(t, "/v1/workspaces/ws_res/restarts", req.Path)
	require.Equal(t, ""+
		"ID     WORKSPACE  STATE   REASON                ATTEMPTS  ERROR                                                         CREATED\n"+
		"job_1  ws_res     queued  manual: rotate creds  0/3       -                                                             2025-03-01T12:00:00Z\n"+
		"job_0  ws_res     failed  restart_queued        3/3       box not healthy with generation 6 within 2m0s: exit status 1  2025-03-01T11:00:00Z\n", r.stdout)

	r = f.run("", "restarts", "ls", "--workspace", "ws_res", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, jobs), r.stdout)
}

func TestRestartsLsOrg(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/restarts", 200, []client.RestartJob{testJob})
	r := f.run("", "restarts", "ls", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "/v1/restarts", req.Path)
	require.JSONEq(t, mustJSON(t, []client.RestartJob{testJob}), r.stdout)
}

func TestGroupWithoutSubcommandShowsHelp(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	r := f.run("", "secrets")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "orgplane secrets [command]")
	require.Empty(t, f.requests())
}

// TestHelpGolden pins the --help of every client command. Refresh with
// go test ./internal/cli -update.
func TestHelpGolden(t *testing.T) {
	// The global flags' defaults come from the environment.
	t.Setenv("ORGPLANE_SERVER", "")
	t.Setenv("ORGPLANE_TOKEN", "")
	t.Setenv("ORGPLANE_DATA_DIR", "")
	for _, args := range [][]string{
		{"workspaces"},
		{"workspaces", "ls"},
		{"workspaces", "get"},
		{"workspaces", "create"},
		{"workspaces", "update"},
		{"workspaces", "rm"},
		{"workspaces", "logs"},
		{"workspaces", "restart"},
		{"workspaces", "pause"},
		{"workspaces", "resume"},
		{"tokens"},
		{"tokens", "ls"},
		{"tokens", "create"},
		{"tokens", "revoke"},
		{"policy"},
		{"policy", "show"},
		{"policy", "set"},
		{"users"},
		{"users", "ls"},
		{"users", "add"},
		{"users", "rm"},
		{"users", "login-link"},
		{"secrets"},
		{"secrets", "ls"},
		{"secrets", "set"},
		{"secrets", "rm"},
		{"restarts"},
		{"restarts", "ls"},
		{"changes"},
		{"changes", "show"},
		{"changes", "watch"},
		{"changes", "decisions"},
		{"audit"},
		{"whoami"},
	} {
		name := strings.Join(args, "_")
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, "", append(args, "--help")...)
			require.Equal(t, 0, r.code, r.stderr)
			require.Empty(t, r.stderr)
			golden := filepath.Join("testdata", name+".golden")
			if *updateGolden {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(golden, []byte(r.stdout), 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./internal/cli -update to create it")
			require.Equal(t, string(want), r.stdout, "run go test ./internal/cli -update to refresh it")
		})
	}
}
