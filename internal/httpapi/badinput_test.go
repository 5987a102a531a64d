package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// Bad input always gets a 4xx in the contract's error shape and changes
// nothing (DESIGN "HTTP API v1"). Every case below is checked against a
// snapshot of the org (workspaces, secrets of both scopes, tokens) taken
// before and after it; at the end, the audit log must hold nothing new but
// refusals.

type badCase struct {
	name   string
	method string
	path   string
	body   []byte
	raw    bool   // body is sent as is (else no body when nil)
	token  string // "" = the admin's
	status int
	code   string // expected error code; "" = any
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)

	// A small, still org: stopped workspaces only (no box to change state).
	ws, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "dup", Start: new(false)})
	require.NoError(t, err)
	sib, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "sibling", Start: new(false)})
	require.NoError(t, err)
	ext, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "ext", Runtime: "external"})
	require.NoError(t, err)
	_, err = e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "child", ParentID: ws.ID, Start: new(false)})
	require.NoError(t, err)
	_, err = e.Admin.SetSecret(ctx, "", "GLOBAL_ONE", "g1", false)
	require.NoError(t, err)
	_, err = e.Admin.SetSecret(ctx, ws.ID, "OWN_ONE", "w1", false)
	require.NoError(t, err)
	wsTok := mintWorkspaceToken(t, e.Admin, ws.ID).Secret
	audit0 := lastAuditID(t, e)

	W := "/v1/workspaces/" + ws.ID
	unknownWS := "wzzzzzzzzzzzzzzzz" // well-formed, not there
	bigBody := []byte(`{"value":"` + strings.Repeat("x", (1<<20)+16) + `"}`)
	bigCreate := []byte(`{"name":"big","spec":{"command":["` + strings.Repeat("y", 1<<20) + `"]}}`)
	over64K := strings.Repeat("v", (64<<10)+1)
	long257 := strings.Repeat("K", 257)
	js := func(s string) []byte { return []byte(s) }

	cases := []badCase{
		// --- JSON decoding: one object, known fields, right types.
		{name: "create/unknown-field", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x1","bogus":1}`), status: 400, code: "unknown_field"},
		{name: "create/unknown-field-case", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x1","Start":false,"nmae":"y"}`), status: 400, code: "unknown_field"},
		{name: "create/wrong-type-name", method: "POST", path: "/v1/workspaces", body: js(`{"name":5}`), status: 400, code: "invalid_type"},
		{name: "create/spec-field-case", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x1","spec":{"Command":["box"]}}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-field-twice", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x1","spec":{"command":["a"],"command":["b"]}}`), status: 400},
		{name: "update/spec-field-case", method: "PATCH", path: W, body: js(`{"spec":{"READY_AFTER_SECONDS":1}}`), status: 400, code: "invalid_spec"},
		{name: "create/wrong-type-protected", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x2","protected":"yes"}`), status: 400, code: "invalid_type"},
		{name: "create/wrong-type-start", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x2","start":"no"}`), status: 400, code: "invalid_type"},
		{name: "create/body-is-array", method: "POST", path: "/v1/workspaces", body: js(`[{"name":"x3"}]`), status: 400, code: "invalid_json"},
		{name: "create/body-is-string", method: "POST", path: "/v1/workspaces", body: js(`"x3"`), status: 400, code: "invalid_json"},
		{name: "create/malformed", method: "POST", path: "/v1/workspaces", body: js(`{"name":`), status: 400, code: "invalid_json"},
		{name: "create/malformed-syntax", method: "POST", path: "/v1/workspaces", body: js(`{name: "x"}`), status: 400, code: "invalid_json"},
		{name: "create/empty-body", method: "POST", path: "/v1/workspaces", body: js(``), raw: true, status: 400, code: "invalid_json"},
		{name: "create/whitespace-body", method: "POST", path: "/v1/workspaces", body: js(" \n\t"), raw: true, status: 400, code: "invalid_json"},
		{name: "create/no-body", method: "POST", path: "/v1/workspaces", status: 400, code: "invalid_json"},
		{name: "create/trailing-object", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x4"} {"name":"x5"}`), status: 400, code: "trailing_data"},
		{name: "create/trailing-garbage", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x4"}garbage`), status: 400, code: "trailing_data"},
		{name: "create/trailing-brace", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x4"}}`), status: 400, code: "trailing_data"},
		{name: "create/over-1MiB", method: "POST", path: "/v1/workspaces", body: bigCreate, status: 413, code: "too_large"},
		{name: "patch/over-1MiB", method: "PATCH", path: W, body: bigCreate, status: 413, code: "too_large"},
		{name: "secret-put/over-1MiB", method: "PUT", path: W + "/secrets/BIG", body: bigBody, status: 413, code: "too_large"},
		{name: "global-put/over-1MiB", method: "PUT", path: "/v1/secrets/BIG", body: bigBody, status: 413, code: "too_large"},

		// --- names, policies, runtimes, specs.
		{name: "create/duplicate-sibling", method: "POST", path: "/v1/workspaces", body: js(`{"name":"dup","start":false}`), status: 409, code: "conflict"},
		{name: "create/duplicate-sibling-explicit-parent", method: "POST", path: "/v1/workspaces", body: js(`{"name":"child","parent_id":"` + ws.ID + `","start":false}`), status: 409, code: "conflict"},
		{name: "create/name-empty", method: "POST", path: "/v1/workspaces", body: js(`{"name":""}`), status: 400, code: "invalid_name"},
		{name: "create/name-missing", method: "POST", path: "/v1/workspaces", body: js(`{"start":false}`), status: 400, code: "invalid_name"},
		{name: "create/name-leading-dash", method: "POST", path: "/v1/workspaces", body: js(`{"name":"-x"}`), status: 400, code: "invalid_name"},
		{name: "create/name-space", method: "POST", path: "/v1/workspaces", body: js(`{"name":"a b"}`), status: 400, code: "invalid_name"},
		{name: "create/name-slash", method: "POST", path: "/v1/workspaces", body: js(`{"name":"a/b"}`), status: 400, code: "invalid_name"},
		{name: "create/name-unicode", method: "POST", path: "/v1/workspaces", body: js(`{"name":"héllo"}`), status: 400, code: "invalid_name"},
		{name: "create/name-64-chars", method: "POST", path: "/v1/workspaces", body: js(`{"name":"` + strings.Repeat("n", 64) + `"}`), status: 400, code: "invalid_name"},
		{name: "create/bad-restart-policy", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x6","restart_policy":"sometimes"}`), status: 400, code: "invalid_restart_policy"},
		{name: "create/bad-runtime", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x7","runtime":"vm"}`), status: 400, code: "invalid_runtime"},
		{name: "create/runtime-wrong-case", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x7","runtime":"Docker","spec":{"image":"a"}}`), status: 400, code: "invalid_runtime"},
		{name: "create/runtime-unavailable", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x7","runtime":"kubernetes"}`), status: 422, code: "runtime_unavailable"},
		{name: "create/spec-unknown-field", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","spec":{"cmd":["box"]}}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-docker-field-on-process", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","spec":{"image":"alpine"}}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-docker-without-image", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","runtime":"docker","spec":{"command":["sh"]}}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-docker-empty", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","runtime":"docker"}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-external-not-empty", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","runtime":"external","spec":{"command":["x"]}}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-not-object", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","spec":"box"}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-wrong-type", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","spec":{"command":"box"}}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-ready-after-negative", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","spec":{"ready_after_seconds":-1}}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-env-bad-key", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","spec":{"command":["box"],"env":{"lower":"x"}}}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-env-reserved-key", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","spec":{"command":["box"],"env":{"LD_PRELOAD":"x"}}}`), status: 400, code: "invalid_spec"},
		{name: "create/spec-empty-program", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x8","spec":{"command":[""]}}`), status: 400, code: "invalid_spec"},
		{name: "create/unknown-parent", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x9","parent_id":"` + unknownWS + `"}`), status: 404, code: "not_found"},
		{name: "create/junk-parent", method: "POST", path: "/v1/workspaces", body: js(`{"name":"x9","parent_id":"../etc"}`), status: 404, code: "not_found"},

		{name: "patch/unknown-field", method: "PATCH", path: W, body: js(`{"kind":"platform"}`), status: 400, code: "unknown_field"},
		{name: "patch/status-not-patchable", method: "PATCH", path: W, body: js(`{"status":"running"}`), status: 400, code: "unknown_field"},
		{name: "patch/wrong-type", method: "PATCH", path: W, body: js(`{"protected":1}`), status: 400, code: "invalid_type"},
		{name: "patch/malformed", method: "PATCH", path: W, body: js(`{"protected":tru}`), status: 400, code: "invalid_json"},
		{name: "patch/empty-body", method: "PATCH", path: W, body: js(``), raw: true, status: 400, code: "invalid_json"},
		{name: "patch/trailing", method: "PATCH", path: W, body: js(`{"protected":true}[]`), status: 400, code: "trailing_data"},
		{name: "patch/invalid-name", method: "PATCH", path: W, body: js(`{"name":"no spaces"}`), status: 400, code: "invalid_name"},
		{name: "patch/duplicate-sibling-name", method: "PATCH", path: W, body: js(`{"name":"sibling"}`), status: 409, code: "conflict"},
		{name: "patch/bad-restart-policy", method: "PATCH", path: W, body: js(`{"restart_policy":"never"}`), status: 400, code: "invalid_restart_policy"},
		{name: "patch/spec-unknown-field", method: "PATCH", path: W, body: js(`{"spec":{"commnd":["x"]}}`), status: 400, code: "invalid_spec"},
		{name: "patch/spec-external-not-empty", method: "PATCH", path: "/v1/workspaces/" + ext.ID, body: js(`{"spec":{"image":"x"}}`), status: 400, code: "invalid_spec"},
		{name: "patch/unknown-parent", method: "PATCH", path: W, body: js(`{"parent_id":"` + unknownWS + `"}`), status: 404, code: "not_found"},
		{name: "patch/empty-parent", method: "PATCH", path: W, body: js(`{"parent_id":""}`), status: 422, code: "parent_required"},
		{name: "patch/unknown-id", method: "PATCH", path: "/v1/workspaces/" + unknownWS, body: js(`{"protected":true}`), status: 404, code: "not_found"},

		// --- unknown and junk ids.
		{name: "get/unknown-id", method: "GET", path: "/v1/workspaces/" + unknownWS, status: 404, code: "not_found"},
		{name: "get/junk-id", method: "GET", path: "/v1/workspaces/nope", status: 404, code: "not_found"},
		{name: "get/other-prefix-id", method: "GET", path: "/v1/workspaces/" + "t" + unknownWS[1:], status: 404, code: "not_found"},
		{name: "delete/unknown-id", method: "DELETE", path: "/v1/workspaces/" + unknownWS, status: 404, code: "not_found"},
		{name: "restart/unknown-id", method: "POST", path: "/v1/workspaces/" + unknownWS + "/restart", status: 404, code: "not_found"},
		{name: "pause/unknown-id", method: "POST", path: "/v1/workspaces/" + unknownWS + "/pause", status: 404, code: "not_found"},
		{name: "resume/unknown-id", method: "POST", path: "/v1/workspaces/" + unknownWS + "/resume", status: 404, code: "not_found"},
		{name: "restarts/unknown-id", method: "GET", path: "/v1/workspaces/" + unknownWS + "/restarts", status: 404, code: "not_found"},
		{name: "logs/unknown-id", method: "GET", path: "/v1/workspaces/" + unknownWS + "/logs", status: 404, code: "not_found"},
		{name: "secrets/unknown-id", method: "GET", path: "/v1/workspaces/" + unknownWS + "/secrets", status: 404, code: "not_found"},
		{name: "secret-put/unknown-id", method: "PUT", path: "/v1/workspaces/" + unknownWS + "/secrets/KEY", body: js(`{"value":"v"}`), status: 404, code: "not_found"},
		{name: "secret-delete/unknown-id", method: "DELETE", path: "/v1/workspaces/" + unknownWS + "/secrets/OWN_ONE", status: 404, code: "not_found"},
		{name: "secret-delete/unknown-key", method: "DELETE", path: W + "/secrets/NOT_THERE", status: 404, code: "not_found"},
		{name: "global-delete/unknown-key", method: "DELETE", path: "/v1/secrets/NOT_THERE", status: 404, code: "not_found"},
		{name: "restart-job/unknown-id", method: "GET", path: "/v1/restarts/jzzzzzzzzzzzzzzzz", status: 404, code: "not_found"},
		{name: "restart-job/junk-id", method: "GET", path: "/v1/restarts/%2e%2e", status: 404, code: "not_found"},
		{name: "token-revoke/unknown-id", method: "DELETE", path: "/v1/tokens/tzzzzzzzzzzzzzzzz", status: 404, code: "not_found"},
		{name: "token-revoke/junk-id", method: "DELETE", path: "/v1/tokens/xyz", status: 404, code: "not_found"},
		{name: "no-such-endpoint", method: "GET", path: "/v1/nothing-here", status: 404, code: "not_found"},

		// --- tokens.
		{name: "token/unknown-kind", method: "POST", path: "/v1/tokens", body: js(`{"kind":"root","name":"t"}`), status: 400, code: "invalid_kind"},
		{name: "token/bad-name", method: "POST", path: "/v1/tokens", body: js(`{"kind":"admin","name":"has space"}`), status: 400, code: "invalid_name"},
		{name: "token/workspace-without-id", method: "POST", path: "/v1/tokens", body: js(`{"kind":"workspace","name":"t"}`), status: 400, code: "missing_field"},
		{name: "token/admin-with-workspace-id", method: "POST", path: "/v1/tokens", body: js(`{"kind":"admin","name":"t","workspace_id":"` + ws.ID + `"}`), status: 400, code: "invalid_field"},
		{name: "token/workspace-with-acting", method: "POST", path: "/v1/tokens", body: js(`{"kind":"workspace","name":"t","workspace_id":"` + ws.ID + `","acting_workspace_id":"` + ws.ID + `"}`), status: 400, code: "invalid_field"},
		{name: "token/unknown-workspace", method: "POST", path: "/v1/tokens", body: js(`{"kind":"workspace","name":"t","workspace_id":"` + unknownWS + `"}`), status: 404, code: "not_found"},
		{name: "token/expiry-in-past", method: "POST", path: "/v1/tokens", body: js(`{"kind":"admin","name":"t","expires_at":"2001-01-01T00:00:00Z"}`), status: 400, code: "invalid_expiry"},
		{name: "token/expiry-not-a-time", method: "POST", path: "/v1/tokens", body: js(`{"kind":"admin","name":"t","expires_at":"tomorrow"}`), status: 400, code: "invalid_timestamp"},
		{name: "token/expiry-wrong-type", method: "POST", path: "/v1/tokens", body: js(`{"kind":"admin","name":"t","expires_at":12}`), status: 400, code: "invalid_timestamp"},
		{name: "token/unknown-field", method: "POST", path: "/v1/tokens", body: js(`{"kind":"admin","name":"t","scopes":["all"]}`), status: 400, code: "unknown_field"},

		// --- restart, heartbeat bodies.
		{name: "restart/unknown-field", method: "POST", path: W + "/restart", body: js(`{"why":"x"}`), status: 400, code: "unknown_field"},
		{name: "restart/reason-too-long", method: "POST", path: W + "/restart", body: js(`{"reason":"` + strings.Repeat("r", 1001) + `"}`), status: 400, code: "invalid_reason"},
		{name: "restart/external", method: "POST", path: "/v1/workspaces/" + ext.ID + "/restart", status: 422, code: "external_runtime"},
		{name: "resume/not-paused", method: "POST", path: W + "/resume", status: 409, code: "conflict"},
		{name: "heartbeat/zero-generation", method: "POST", path: W + "/heartbeat", token: wsTok, body: js(`{"generation":0}`), status: 400, code: "invalid_generation"},
		{name: "heartbeat/wrong-type", method: "POST", path: W + "/heartbeat", token: wsTok, body: js(`{"generation":"1"}`), status: 400, code: "invalid_type"},
		{name: "heartbeat/unknown-field", method: "POST", path: W + "/heartbeat", token: wsTok, body: js(`{"generation":1,"gen":1}`), status: 400, code: "unknown_field"},
		{name: "heartbeat/stale-generation", method: "POST", path: W + "/heartbeat", token: wsTok, body: js(`{"generation":7}`), status: 409, code: "conflict"},

		// --- query parameters.
		{name: "secret-put/dry_run=maybe", method: "PUT", path: W + "/secrets/NEW_KEY?dry_run=maybe", body: js(`{"value":"v"}`), status: 400, code: "invalid_query"},
		{name: "secret-delete/dry_run=maybe", method: "DELETE", path: W + "/secrets/OWN_ONE?dry_run=maybe", status: 400, code: "invalid_query"},
		{name: "global-put/dry_run=maybe", method: "PUT", path: "/v1/secrets/NEW_KEY?dry_run=maybe", body: js(`{"value":"v"}`), status: 400, code: "invalid_query"},
		{name: "global-delete/dry_run=maybe", method: "DELETE", path: "/v1/secrets/GLOBAL_ONE?dry_run=maybe", status: 400, code: "invalid_query"},
		{name: "delete/cascade=x", method: "DELETE", path: W + "?cascade=x", status: 400, code: "invalid_query"},
		{name: "delete/cascade-empty", method: "DELETE", path: W + "?cascade=", status: 400, code: "invalid_query"},
		{name: "audit/limit=-1", method: "GET", path: "/v1/audit?limit=-1", status: 400, code: "invalid_query"},
		{name: "audit/limit=abc", method: "GET", path: "/v1/audit?limit=abc", status: 400, code: "invalid_query"},
		{name: "audit/limit=1001", method: "GET", path: "/v1/audit?limit=1001", status: 400, code: "invalid_limit"},
		{name: "audit/before=-5", method: "GET", path: "/v1/audit?before=-5", status: 400, code: "invalid_query"},
		{name: "restarts/limit=-1", method: "GET", path: W + "/restarts?limit=-1", status: 400, code: "invalid_query"},
		{name: "restarts/limit=5000", method: "GET", path: W + "/restarts?limit=5000", status: 400, code: "invalid_limit"},
		{name: "logs/tail=-1", method: "GET", path: W + "/logs?tail=-1", status: 400, code: "invalid_query"},
		{name: "logs/tail=x", method: "GET", path: W + "/logs?tail=x", status: 400, code: "invalid_query"},
	}

	// --- secrets: keys, values, bodies; in both scopes.
	for _, scope := range []struct{ name, prefix string }{{"workspace", W + "/secrets/"}, {"global", "/v1/secrets/"}} {
		add := func(name, key string, body []byte, status int, code string) {
			cases = append(cases, badCase{name: scope.name + "-secret/" + name, method: "PUT",
				path: scope.prefix + url.PathEscape(key), body: body, status: status, code: code})
		}
		ok := js(`{"value":"v"}`)
		add("key-lowercase", "lower", ok, 400, "invalid_key")
		add("key-mixed-case", "Api_Key", ok, 400, "invalid_key")
		add("key-leading-digit", "1ABC", ok, 400, "invalid_key")
		add("key-dash", "A-B", ok, 400, "invalid_key")
		add("key-dot", "A.B", ok, 400, "invalid_key")
		add("key-space", "A B", ok, 400, "invalid_key")
		add("key-equals", "A=B", ok, 400, "invalid_key")
		add("key-unicode", "KÉY", ok, 400, "invalid_key")
		add("key-newline", "A\nB", ok, 400, "invalid_key")
		add("key-257-chars", long257, ok, 400, "invalid_key")
		add("key-reserved-prefix", "ORGPLANE_X", ok, 400, "reserved_key")
		add("key-reserved-token", "ORGPLANE_TOKEN", ok, 400, "reserved_key")
		add("key-reserved-PATH", "PATH", ok, 400, "reserved_key")
		add("key-reserved-HOME", "HOME", ok, 400, "reserved_key")
		add("key-reserved-LD_PRELOAD", "LD_PRELOAD", ok, 400, "reserved_key")
		add("key-reserved-LD_LIBRARY_PATH", "LD_LIBRARY_PATH", ok, 400, "reserved_key")
		add("value-over-64KiB", "BIG_VALUE", mustJSON(t, map[string]string{"value": over64K}), 400, "value_too_large")
		add("value-number", "NUM", js(`{"value":12345}`), 400, "invalid_type")
		add("value-bool", "NUM", js(`{"value":true}`), 400, "invalid_type")
		add("value-object", "NUM", js(`{"value":{"a":"b"}}`), 400, "invalid_type")
		add("value-array", "NUM", js(`{"value":["a"]}`), 400, "invalid_type")
		add("value-null", "NUM", js(`{"value":null}`), 400, "missing_field")
		add("value-missing", "NUM", js(`{}`), 400, "missing_field")
		add("unknown-field", "NUM", js(`{"value":"v","scope":"global"}`), 400, "unknown_field")
		add("malformed", "NUM", js(`{"value":"v"`), 400, "invalid_json")
		add("trailing", "NUM", js(`{"value":"v"}{"value":"w"}`), 400, "trailing_data")
		add("body-is-string", "NUM", js(`"v"`), 400, "invalid_json")
		cases = append(cases,
			badCase{name: scope.name + "-secret/empty-body", method: "PUT", path: scope.prefix + "NUM", body: js(``), raw: true, status: 400, code: "invalid_json"},
			badCase{name: scope.name + "-secret/delete-bad-key", method: "DELETE", path: scope.prefix + "lower", status: 400, code: "invalid_key"},
			badCase{name: scope.name + "-secret/delete-reserved", method: "DELETE", path: scope.prefix + "PATH", status: 400, code: "reserved_key"},
			badCase{name: scope.name + "-secret/dry-run-bad-key", method: "PUT", path: scope.prefix + "lower?dry_run=true", body: ok, status: 400, code: "invalid_key"},
		)
	}

	snap := func() string { return orgSnapshot(t, e, ws.ID) }
	before := snap()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := c.token
			if tok == "" {
				tok = e.AdminToken
			}
			req := call{Method: c.method, Path: c.path, Token: tok, Body: c.body}
			if c.raw && c.body == nil {
				req.Body = []byte{}
			}
			r := a.send(t, req)
			code, msg := requireErrorShape(t, r, c.status)
			if c.code != "" {
				require.Equal(t, c.code, code, "message: %s", msg)
			}
			require.Equal(t, before, snap(), "a refused %s %s changed the org", c.method, c.path)
		})
	}

	// Nothing but refusals reached the audit log (boxes are the system's).
	refusals := map[string]int{}
	for _, en := range auditSince(t, e, audit0) {
		if en.PrincipalKind == "system" {
			continue
		}
		require.NotEqual(t, "ok", en.Outcome, "bad input left a successful audit entry: %+v", en)
		refusals[en.Outcome]++
	}
	// Refusals by the service layer are audited (those of the HTTP decoder
	// never reach it).
	require.NotZero(t, refusals["error:invalid_key"], "refusals: %v", refusals)
	require.NotZero(t, refusals["error:conflict"], "refusals: %v", refusals)

	// The limits are limits, not off by one: the largest valid inputs pass.
	t.Run("boundaries-accepted", func(t *testing.T) {
		key256 := "K" + strings.Repeat("_", 255)
		_, err := e.Admin.SetSecret(ctx, ws.ID, key256, strings.Repeat("v", 64<<10), false)
		require.NoError(t, err, "a 256-char key and a 64 KiB value are valid")
		_, err = e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: strings.Repeat("n", 63), Start: new(false)})
		require.NoError(t, err, "a 63-char name is valid")
		r := a.send(t, call{Method: "DELETE", Path: W + "?cascade=false", Token: e.AdminToken})
		requireErrorShape(t, r, http.StatusConflict) // it still has a child
		_, err = e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "dup", ParentID: sib.ID, Start: new(false)})
		require.NoError(t, err, "the same name under another parent is not a duplicate")
	})
	t.Logf("%d bad-input cases", len(cases))
}

// orgSnapshot is everything a bad request could change, as the admin sees
// it: the workspaces (all fields), both scopes' secrets, and the tokens.
func orgSnapshot(t *testing.T, e *testenv.Env, wsID string) string {
	t.Helper()
	ctx := context.Background()
	var b bytes.Buffer
	list, err := e.Admin.ListWorkspaces(ctx)
	require.NoError(t, err)
	for _, w := range list {
		fmt.Fprintf(&b, "ws %s\n", mustJSON(t, w))
	}
	for _, scope := range []string{"", wsID} {
		secs, err := e.Admin.ListSecrets(ctx, scope)
		require.NoError(t, err)
		for _, s := range secs {
			fmt.Fprintf(&b, "secret %q %s %s %d %s\n", scope, s.Key, s.Scope, s.Version, s.UpdatedAt)
		}
	}
	toks, err := e.Admin.ListTokens(ctx)
	require.NoError(t, err)
	var lines []string
	for _, tok := range toks {
		tok.LastUsedAt = nil // touched by use, by design
		lines = append(lines, "token "+string(mustJSON(t, tok)))
	}
	sort.Strings(lines)
	b.WriteString(strings.Join(lines, "\n"))
	return b.String()
}

func lastAuditID(t *testing.T, e *testenv.Env) int64 {
	t.Helper()
	p, err := e.Admin.ListAudit(context.Background(), "", 1, 0)
	require.NoError(t, err)
	if len(p.Entries) == 0 {
		return 0
	}
	return p.Entries[0].ID
}

// auditSince returns the org's audit entries after id, newest first.
func auditSince(t *testing.T, e *testenv.Env, id int64) []client.AuditEntry {
	t.Helper()
	var out []client.AuditEntry
	var before int64
	for {
		p, err := e.Admin.ListAudit(context.Background(), "", 1000, before)
		require.NoError(t, err)
		for _, en := range p.Entries {
			if en.ID <= id {
				return out
			}
			out = append(out, en)
		}
		if p.NextBefore == 0 {
			return out
		}
		before = p.NextBefore
	}
}
