package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/cli"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// Secret values never reach logs, errors, events, audit entries or list
// responses (STYLE "Secrets"): this test plants unique values, drives every
// face that touches secrets, and greps everything it saw. The only place a
// value may appear is GET .../secrets/values with the workspace's own
// token, and (encrypted, so not in plaintext) the database.

func canary(t *testing.T, what string) string {
	t.Helper()
	var b [12]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return "leak-canary-" + what + "-" + hex.EncodeToString(b[:])
}

// outputs collects everything the test saw, by where it came from.
type outputs struct {
	mu   sync.Mutex
	seen map[string][]byte // label -> bytes (everything but /values)
}

func (o *outputs) add(label string, b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen == nil {
		o.seen = map[string][]byte{}
	}
	o.seen[label] = append(o.seen[label], b...)
	o.seen[label] = append(o.seen[label], '\n')
}

func TestSecretValuesNeverLeak(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	logs := &lockedBuffer{}
	rt := fastRuntime()
	rt.LoopMax = 1000 // the test writes often; the loop breaker is not under test here
	e := newEnv(t, testenv.Options{Runtime: rt,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	a := newAPI(t, e)
	out := &outputs{}
	admin := e.AdminToken

	// Planted for real (they must show up in /values) ...
	planted := map[string]string{
		"LEAK_GLOBAL":    canary(t, "global-by-admin"),
		"LEAK_WS_ADMIN":  canary(t, "ws-by-admin"),
		"LEAK_WS_SELF":   canary(t, "ws-by-own-token"),
		"LEAK_OVERRIDE":  canary(t, "ws-override"),
		"LEAK_CLI":       canary(t, "ws-by-cli"),
		"LEAK_CLI_GLOBL": canary(t, "global-by-cli"),
	}
	// ... and never stored: dry runs, refusals, and a global value that a
	// workspace secret overrides (its box never sees it).
	shadowed := canary(t, "global-overridden")
	never := []string{canary(t, "dry-run"), canary(t, "refused"), canary(t, "cli-dry-run")}
	dry, refused, cliDry := never[0], never[1], never[2]

	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "leaky", Spec: boxSpec})
	require.NoError(t, err)
	waitStatus(t, e.Admin, w.ID, "running", 1)
	wsTok := mintWorkspaceToken(t, e.Admin, w.ID).Secret
	bystander, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "bystander", Spec: boxSpec})
	require.NoError(t, err)
	waitStatus(t, e.Admin, bystander.ID, "running", 1)

	// Events streams, open for the whole test (admin: the org; the
	// workspace: its own).
	stopStreams := openStreams(t, a, out, map[string]string{"events(admin)": admin, "events(workspace)": wsTok})

	do := func(label string, c call) result {
		t.Helper()
		r := a.send(t, c)
		out.add(label, r.Body)
		for k, vs := range r.Header {
			out.add(label+" header "+k, []byte(strings.Join(vs, ",")))
		}
		return r
	}
	put := func(label, tok, scope, key, value string, dryRun bool) result {
		t.Helper()
		path := "/v1/secrets/" + key
		if scope != "" {
			path = "/v1/workspaces/" + scope + "/secrets/" + key
		}
		if dryRun {
			path += "?dry_run=true"
		}
		return do(label, call{Method: "PUT", Path: path, Token: tok, Body: mustJSON(t, map[string]string{"value": value})})
	}
	del := func(label, tok, scope, key string, dryRun bool) result {
		t.Helper()
		path := "/v1/secrets/" + key
		if scope != "" {
			path = "/v1/workspaces/" + scope + "/secrets/" + key
		}
		if dryRun {
			path += "?dry_run=true"
		}
		return do(label, call{Method: "DELETE", Path: path, Token: tok})
	}
	okStatus := func(r result) { t.Helper(); require.Less(t, r.Status, 300, "%s", r) }

	// --- writes, through every path.
	okStatus(put("put global (dry run)", admin, "", "LEAK_GLOBAL", dry, true))
	okStatus(put("put global", admin, "", "LEAK_GLOBAL", planted["LEAK_GLOBAL"], false))
	okStatus(put("put global again (unchanged)", admin, "", "LEAK_GLOBAL", planted["LEAK_GLOBAL"], false))
	okStatus(put("put global to override", admin, "", "LEAK_OVERRIDE", shadowed, false))
	okStatus(put("put ws by admin (dry run)", admin, w.ID, "LEAK_WS_ADMIN", dry, true))
	okStatus(put("put ws by admin", admin, w.ID, "LEAK_WS_ADMIN", planted["LEAK_WS_ADMIN"], false))
	okStatus(put("put ws by own token (dry run)", wsTok, w.ID, "LEAK_WS_SELF", dry, true))
	okStatus(put("put ws by own token", wsTok, w.ID, "LEAK_WS_SELF", planted["LEAK_WS_SELF"], false))
	okStatus(put("put override by own token", wsTok, w.ID, "LEAK_OVERRIDE", planted["LEAK_OVERRIDE"], false))
	okStatus(put("temp global", admin, "", "LEAK_TEMP", planted["LEAK_GLOBAL"], false))
	okStatus(del("delete global (dry run)", admin, "", "LEAK_TEMP", true))
	okStatus(del("delete global", admin, "", "LEAK_TEMP", false))
	okStatus(put("temp ws", wsTok, w.ID, "LEAK_TEMP", planted["LEAK_WS_SELF"], false))
	okStatus(del("delete ws (dry run)", wsTok, w.ID, "LEAK_TEMP", true))
	okStatus(del("delete ws", wsTok, w.ID, "LEAK_TEMP", false))

	// --- refusals carrying a value: none may echo it.
	for _, c := range []struct {
		label string
		req   call
		code  int
	}{
		{"refused: ws token on a global", call{Method: "PUT", Path: "/v1/secrets/LEAK_X", Token: wsTok, Body: mustJSON(t, map[string]string{"value": refused})}, 403},
		{"refused: other workspace", call{Method: "PUT", Path: "/v1/workspaces/" + bystander.ID + "/secrets/LEAK_X", Token: wsTok, Body: mustJSON(t, map[string]string{"value": refused})}, 404},
		{"refused: bad key", call{Method: "PUT", Path: "/v1/secrets/bad-key", Token: admin, Body: mustJSON(t, map[string]string{"value": refused})}, 400},
		{"refused: reserved key", call{Method: "PUT", Path: "/v1/secrets/ORGPLANE_TOKEN", Token: admin, Body: mustJSON(t, map[string]string{"value": refused})}, 400},
		{"refused: value over 64 KiB", call{Method: "PUT", Path: "/v1/secrets/LEAK_X", Token: admin, Body: mustJSON(t, map[string]string{"value": strings.Repeat(refused, (64<<10)/len(refused)+1)})}, 400},
		{"refused: unknown field", call{Method: "PUT", Path: "/v1/secrets/LEAK_X", Token: admin, Body: []byte(`{"value":"` + refused + `","note":"` + refused + `"}`)}, 400},
		{"refused: misspelt field", call{Method: "PUT", Path: "/v1/secrets/LEAK_X", Token: admin, Body: []byte(`{"vaule":"` + refused + `"}`)}, 400},
		{"refused: value as a number", call{Method: "PUT", Path: "/v1/secrets/LEAK_X", Token: admin, Body: []byte(`{"value":918273645564738}`)}, 400},
		{"refused: wrong type", call{Method: "PUT", Path: "/v1/secrets/LEAK_X", Token: admin, Body: []byte(`{"value":["` + refused + `"]}`)}, 400},
		{"refused: malformed", call{Method: "PUT", Path: "/v1/secrets/LEAK_X", Token: admin, Body: []byte(`{"value":"` + refused + `"`)}, 400},
		{"refused: trailing data", call{Method: "PUT", Path: "/v1/secrets/LEAK_X", Token: admin, Body: []byte(`{"value":"x"}"` + refused + `"`)}, 400},
		{"refused: bad dry_run", call{Method: "PUT", Path: "/v1/secrets/LEAK_X?dry_run=maybe", Token: admin, Body: mustJSON(t, map[string]string{"value": refused})}, 400},
		{"refused: no token", call{Method: "PUT", Path: "/v1/secrets/LEAK_X", Body: mustJSON(t, map[string]string{"value": refused})}, 401},
		{"refused: over 1 MiB", call{Method: "PUT", Path: "/v1/secrets/LEAK_X", Token: admin, Body: mustJSON(t, map[string]string{"value": strings.Repeat(refused, (1<<20)/len(refused)+1)})}, 413},
		{"refused: admin reads values", call{Method: "GET", Path: "/v1/workspaces/" + w.ID + "/secrets/values", Token: admin}, 403},
		{"refused: other workspace reads values", call{Method: "GET", Path: "/v1/workspaces/" + w.ID + "/secrets/values", Token: mintWorkspaceToken(t, e.Admin, bystander.ID).Secret}, 404},
	} {
		r := do(c.label, c.req)
		requireErrorShape(t, r, c.code)
	}

	// --- approvals and requests: the value of an agent's gated write is
	// sealed to its approval, shown nowhere and wiped when it ends (denied
	// here); a secret answered to a request reaches the asking box's
	// /values and nothing else.
	gatedVal := canary(t, "gated-by-agent")
	never = append(never, gatedVal)
	pol, zero := defaultPutPolicy(), 0
	pol.RestartThreshold = &zero
	_, err = e.Owner.SetPolicy(ctx, pol)
	require.NoError(t, err)
	mgmt, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "concierge", ActingWorkspaceID: e.Org.Platform.ID})
	require.NoError(t, err)
	gr := put("gated global by an agent", mgmt.Secret, "", "LEAK_GATED", gatedVal, false)
	require.Equal(t, 202, gr.Status, "%s", gr)
	apID := decodeJSON[client.ApprovalRequired](t, gr).Approval.ID
	okStatus(do("approval (owner)", call{Method: "GET", Path: "/v1/approvals/" + apID, Token: e.OwnerToken}))
	okStatus(do("approval (requester)", call{Method: "GET", Path: "/v1/approvals/" + apID, Token: mgmt.Secret}))
	okStatus(do("approvals", call{Method: "GET", Path: "/v1/approvals", Token: e.OwnerToken}))
	okStatus(do("approval denied", call{Method: "POST", Path: "/v1/approvals/" + apID + "/decision", Token: e.OwnerToken,
		Body: mustJSON(t, map[string]string{"decision": "deny"})}))
	planted["LEAK_ASKED"] = canary(t, "asked-by-the-box")
	rr := do("request", call{Method: "POST", Path: "/v1/requests", Token: wsTok,
		Body: mustJSON(t, map[string]string{"title": "the key please", "ask": "secret", "key": "LEAK_ASKED"})})
	require.Equal(t, 201, rr.Status, "%s", rr)
	reqID := decodeJSON[client.Request](t, rr).ID
	okStatus(do("request answered", call{Method: "POST", Path: "/v1/requests/" + reqID + "/answer", Token: e.OwnerToken,
		Body: mustJSON(t, map[string]string{"value": planted["LEAK_ASKED"]})}))
	okStatus(do("request (own token)", call{Method: "GET", Path: "/v1/requests/" + reqID, Token: wsTok}))
	okStatus(do("requests", call{Method: "GET", Path: "/v1/requests", Token: e.OwnerToken}))

	// --- the CLI's secrets commands.
	runCLI := func(label, tok, stdin string, args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		argv := append([]string{"--server", e.URL, "--token", tok}, args...)
		code := cli.Main(ctx, argv, strings.NewReader(stdin), &stdout, &stderr)
		out.add("cli "+label+" stdout", stdout.Bytes())
		out.add("cli "+label+" stderr", stderr.Bytes())
		require.Equal(t, 0, code, "orgplane %s: %s%s", strings.Join(args, " "), stdout.String(), stderr.String())
	}
	runCLI("set ws", admin, planted["LEAK_CLI"]+"\n", "secrets", "set", "LEAK_CLI", "--workspace", w.ID)
	runCLI("set ws dry run", admin, cliDry+"\n", "secrets", "set", "LEAK_CLI", "--workspace", w.ID, "--dry-run")
	runCLI("set ws json", admin, planted["LEAK_CLI"], "--json", "secrets", "set", "LEAK_CLI", "--workspace", w.ID)
	runCLI("set global", admin, planted["LEAK_CLI_GLOBL"]+"\n", "secrets", "set", "LEAK_CLI_GLOBL")
	runCLI("set global dry run json", admin, cliDry, "--json", "secrets", "set", "LEAK_CLI_GLOBL", "--dry-run")
	runCLI("set by own token", wsTok, planted["LEAK_WS_SELF"]+"\n", "secrets", "set", "LEAK_WS_SELF", "--workspace", w.ID)
	runCLI("ls", admin, "", "secrets", "ls")
	runCLI("ls json", admin, "", "--json", "secrets", "ls")
	runCLI("ls ws", admin, "", "secrets", "ls", "--workspace", w.ID)
	runCLI("ls ws json by own token", wsTok, "", "--json", "secrets", "ls", "--workspace", w.ID)
	runCLI("set temp", admin, planted["LEAK_CLI"]+"\n", "secrets", "set", "LEAK_CLI_TMP", "--workspace", w.ID)
	runCLI("rm dry run", admin, "", "secrets", "rm", "LEAK_CLI_TMP", "--workspace", w.ID, "--dry-run")
	runCLI("rm", admin, "", "--json", "secrets", "rm", "LEAK_CLI_TMP", "--workspace", w.ID)
	{
		// A refused CLI write: the error line must not carry the value.
		var stdout, stderr bytes.Buffer
		code := cli.Main(ctx, []string{"--server", e.URL, "--token", wsTok, "secrets", "set", "LEAK_X"},
			strings.NewReader(refused+"\n"), &stdout, &stderr)
		require.Equal(t, 1, code)
		require.Contains(t, stderr.String(), "403")
		out.add("cli refused stdout", stdout.Bytes())
		out.add("cli refused stderr", stderr.Bytes())
	}

	// The planted global and workspace writes restarted the workspace
	// (auto policy): let that happen, so restarts and events have content.
	var cur client.Workspace
	eventually(t, 10*time.Second, func() bool {
		cur, err = e.Admin.GetWorkspace(ctx, w.ID)
		return err == nil && cur.Status == "running" && cur.Generation >= 2 && !cur.Stale
	}, "the workspace restarted with its new env")

	// --- every read that touches secrets or their effects.
	get := func(label, tok, path string) result {
		t.Helper()
		r := do(label, call{Method: "GET", Path: path, Token: tok})
		require.Equal(t, 200, r.Status, "%s: %s", path, r)
		return r
	}
	get("list globals", admin, "/v1/secrets")
	get("list ws secrets (admin)", admin, "/v1/workspaces/"+w.ID+"/secrets")
	get("list ws secrets (own token)", wsTok, "/v1/workspaces/"+w.ID+"/secrets")
	get("list bystander secrets", admin, "/v1/workspaces/"+bystander.ID+"/secrets")
	get("workspace", admin, "/v1/workspaces/"+w.ID)
	get("workspace (own token)", wsTok, "/v1/workspaces/"+w.ID)
	get("workspaces", admin, "/v1/workspaces")
	get("workspaces (own token)", wsTok, "/v1/workspaces")
	restarts := get("restarts", admin, "/v1/workspaces/"+w.ID+"/restarts")
	get("restarts (own token)", wsTok, "/v1/workspaces/"+w.ID+"/restarts")
	get("bystander restarts", admin, "/v1/workspaces/"+bystander.ID+"/restarts")
	jobs := decodeJSON[[]client.RestartJob](t, restarts)
	require.NotEmpty(t, jobs, "the writes restarted the workspace")
	for _, j := range jobs {
		if j.ID != "" {
			get("restart job", admin, "/v1/restarts/"+j.ID)
		}
		if j.ChangeID != "" {
			get("change", admin, "/v1/changes/"+j.ChangeID)
			get("change decisions", admin, "/v1/changes/"+j.ChangeID+"/decisions")
		}
	}
	get("logs", admin, "/v1/workspaces/"+w.ID+"/logs")
	get("audit", admin, "/v1/audit?limit=1000")
	get("audit of the workspace", admin, "/v1/audit?workspace_id="+w.ID)
	get("tokens", admin, "/v1/tokens")
	get("whoami", wsTok, "/v1/whoami")
	get("metrics", "", "/metrics")
	get("healthz", "", "/healthz")
	get("readyz", "", "/readyz")

	// --- the one place values are served: the workspace's own token.
	vr := a.send(t, call{Method: "GET", Path: "/v1/workspaces/" + w.ID + "/secrets/values", Token: wsTok})
	require.Equal(t, 200, vr.Status, "%s", vr)
	values := decodeJSON[map[string]string](t, vr)
	require.Equal(t, planted, values, "the box's effective env: its own secrets over the globals")
	require.NotContains(t, string(vr.Body), shadowed, "an overridden global is not in the effective env")

	// Let the streams see everything, then close them.
	time.Sleep(200 * time.Millisecond)
	stopStreams()
	// The captures are real: each saw what it should have.
	require.Contains(t, string(out.seen["events(admin)"]), "event: secret.set", "the admin's stream saw the writes")
	require.Contains(t, string(out.seen["events(workspace)"]), w.ID, "the workspace's stream saw its changes")
	require.Contains(t, string(out.seen["audit"]), `"action":"secret.set"`)
	require.Contains(t, string(out.seen["audit"]), `"outcome":"denied"`)
	require.Contains(t, string(out.seen["metrics"]), "orgplane_propagation_decisions_total")
	require.Contains(t, string(out.seen["cli ls ws stdout"]), "LEAK_CLI")

	out.add("service log", logs.Bytes())
	require.Contains(t, string(logs.Bytes()), `msg=http`, "the access log is at debug level and captured")
	require.Contains(t, string(logs.Bytes()), "/secrets/values", "the access log saw the values request")

	// --- the hunt.
	all := append(mapValues(planted), shadowed, "918273645564738")
	all = append(all, never...)
	for label, b := range out.seen {
		for _, v := range all {
			require.False(t, bytes.Contains(b, []byte(v)), "secret value %q leaked into %s:\n%s", v, label, excerpt(b, v))
		}
	}
	// Values that were never stored are nowhere, not even in /values.
	for _, v := range append(never, shadowed) {
		require.NotContains(t, string(vr.Body), v)
	}

	// Nor in plaintext in the database files (the .db, -wal and -shm, and
	// anything else SQLite keeps next to them).
	dbPath := strings.TrimPrefix(e.DBURL, "sqlite:")
	require.NotEqual(t, e.DBURL, dbPath, "the env runs on SQLite")
	files, err := filepath.Glob(dbPath + "*")
	require.NoError(t, err)
	require.Contains(t, files, dbPath)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, v := range all {
			require.False(t, bytes.Contains(b, []byte(v)), "secret value %q is in plaintext in %s", v, filepath.Base(f))
		}
	}
	// The positive control: the values really went through the system (the
	// box got them), so the absence above means something.
	found := false
	for _, sp := range e.Fake.Starts() {
		if sp.WorkspaceID == w.ID && sp.Env["LEAK_WS_SELF"] == planted["LEAK_WS_SELF"] && sp.Env["LEAK_GLOBAL"] == planted["LEAK_GLOBAL"] {
			found = true
		}
	}
	require.True(t, found, "a box of the workspace was started with the planted values")
}

// openStreams reads /v1/events with each token until the returned function
// is called, adding what it reads to out.
func openStreams(t *testing.T, a *api, out *outputs, tokens map[string]string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for label, tok := range tokens {
		req := a.request(ctx, t, call{Method: "GET", Path: "/v1/events", Token: tok})
		resp, err := a.hc.Do(req)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		wg.Go(func() {
			defer resp.Body.Close()
			buf := make([]byte, 4096)
			for {
				n, err := resp.Body.Read(buf)
				out.add(label, buf[:n])
				if err != nil {
					if err != io.EOF && ctx.Err() == nil {
						t.Errorf("read %s: %v", label, err)
					}
					return
				}
			}
		})
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// excerpt shows where v occurs in b.
func excerpt(b []byte, v string) string {
	i := bytes.Index(b, []byte(v))
	if i < 0 {
		return ""
	}
	lo, hi := max(i-300, 0), min(i+len(v)+300, len(b))
	return fmt.Sprintf("...%s...", b[lo:hi])
}
