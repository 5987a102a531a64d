package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// edgeFixture is an org with a running box (so that a real secret write
// would queue a restart), a secret in each scope, and a workspace token.
type edgeFixture struct {
	e     *testenv.Env
	a     *api
	ws    client.Workspace
	wsTok client.CreatedToken
}

func newEdgeFixture(t *testing.T) *edgeFixture {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t, testenv.Options{})
	f := &edgeFixture{e: e, a: newAPI(t, e)}
	ws, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("edge"), Spec: boxSpec})
	require.NoError(t, err)
	f.ws = waitStatus(t, e.Admin, ws.ID, "running", 1)
	w1, err := e.Admin.SetSecret(ctx, "", "GLOBAL_ONE", "g1", false)
	require.NoError(t, err)
	w2, err := e.Admin.SetSecret(ctx, ws.ID, "OWN_ONE", "w1", false)
	require.NoError(t, err)
	f.wsTok = mintWorkspaceToken(t, e.Admin, ws.ID)
	// Let the restarts of the writes above settle (those still queued in
	// their changes included), so that the state compared below is still.
	eventually(t, 10*time.Second, func() bool {
		for _, id := range []string{w1.ChangeID, w2.ChangeID} {
			if c, err := e.Admin.GetChange(ctx, id); err != nil || !c.Done() {
				return false
			}
		}
		jobs, err := e.Admin.ListRestarts(ctx, "")
		if err != nil {
			return false
		}
		for _, j := range jobs {
			if j.State == "pending" || j.State == "running" {
				return false
			}
		}
		w, err := e.Admin.GetWorkspace(ctx, ws.ID)
		return err == nil && w.Status == "running" && !w.Stale
	}, "restarts settle")
	return f
}

// state is everything a refused call must leave alone: the org snapshot
// (workspaces, secrets of both scopes, tokens) and the restart jobs.
func (f *edgeFixture) state(t *testing.T) string {
	t.Helper()
	jobs, err := f.e.Admin.ListRestarts(context.Background(), "")
	require.NoError(t, err)
	return orgSnapshot(t, f.e, f.ws.ID) + "\njobs " + string(mustJSON(t, jobs))
}

// requireNoSuccessSince fails if any non-system audit entry after id is a
// success.
func requireNoSuccessSince(t *testing.T, e *testenv.Env, id int64) {
	t.Helper()
	for _, en := range auditSince(t, e, id) {
		if en.PrincipalKind == "system" {
			continue
		}
		require.NotEqual(t, "ok", en.Outcome, "a refused call left a successful audit entry: %+v", en)
	}
}

// Finding: dry-run spellings that did the real write. Only dry_run=true
// and dry_run=false are honoured; every other spelling, value, repetition
// or unknown parameter is refused, and nothing changes.
func TestDryRunSpellingsAreRefused(t *testing.T) {
	t.Parallel()
	f := newEdgeFixture(t)
	W := "/v1/workspaces/" + f.ws.ID
	body := []byte(`{"value":"would-be-written"}`)
	type qcase struct {
		query, code string
	}
	spellings := []qcase{
		{"dry_run", "invalid_query"},
		{"dry_run=", "invalid_query"},
		{"dryrun=true", "unknown_query_param"},
		{"dry-run=true", "unknown_query_param"},
		{"DRY_RUN=true", "unknown_query_param"},
		{"Dry_Run=true", "unknown_query_param"},
		{"dry_run=1", "invalid_query"},
		{"dry_run=TRUE", "invalid_query"},
		{"dry_run=yes", "invalid_query"},
		{"dry_run=true&dry_run=true", "repeated_query_param"},
		{"dry_run=false&dry_run=true", "repeated_query_param"},
		{"dry_run=true&force=1", "unknown_query_param"},
		{"dry_run=true;x=1", "malformed_query"},
		{"dry_run=%zz", "malformed_query"},
	}
	before := f.state(t)
	audit0 := lastAuditID(t, f.e)
	for _, target := range []struct{ name, path string }{
		{"global", "/v1/secrets/GLOBAL_ONE"},
		{"workspace", W + "/secrets/OWN_ONE"},
	} {
		for _, method := range []string{"PUT", "DELETE"} {
			for _, c := range spellings {
				t.Run(fmt.Sprintf("%s/%s?%s", target.name, method, c.query), func(t *testing.T) {
					req := call{Method: method, Path: target.path + "?" + c.query, Token: f.e.AdminToken}
					if method == "PUT" {
						req.Body = body
					}
					code, msg := requireErrorShape(t, f.a.send(t, req), http.StatusBadRequest)
					require.Equal(t, c.code, code, msg)
					require.Equal(t, before, f.state(t), "a refused %s ?%s changed something", method, c.query)
				})
			}
		}
	}
	// A misspelling names what was meant.
	r := f.a.send(t, call{Method: "PUT", Path: "/v1/secrets/GLOBAL_ONE?dryrun=true", Token: f.e.AdminToken, Body: body})
	_, msg := requireErrorShape(t, r, http.StatusBadRequest)
	require.Contains(t, msg, `"dry_run"`)

	// On writes that cannot honour a dry run, every spelling is refused as
	// unsupported, and the box keeps running.
	for _, q := range []string{"dry_run=true", "dry_run", "dryrun=true", "DRY-RUN=1"} {
		r := f.a.send(t, call{Method: "POST", Path: W + "/pause?" + q, Token: f.e.AdminToken})
		code, _ := requireErrorShape(t, r, http.StatusBadRequest)
		require.Equal(t, "dry_run_unsupported", code, q)
	}
	require.Equal(t, before, f.state(t))
	requireNoSuccessSince(t, f.e, audit0)
	// The edge's refusals are audited like the service's.
	refused := 0
	for _, en := range auditSince(t, f.e, audit0) {
		if en.Action == "request.refused" {
			refused++
			require.NotContains(t, string(en.Detail), "would-be-written")
		}
	}
	require.GreaterOrEqual(t, refused, 4*len(spellings))

	// The honoured spellings still work: true changes nothing, false writes.
	r = f.a.send(t, call{Method: "PUT", Path: "/v1/secrets/GLOBAL_ONE?dry_run=true", Token: f.e.AdminToken, Body: body})
	require.Equal(t, 200, r.Status, "%s", r)
	require.True(t, decodeJSON[client.SecretWrite](t, r).DryRun)
	require.Equal(t, before, f.state(t))
	r = f.a.send(t, call{Method: "DELETE", Path: W + "/secrets/OWN_ONE?dry_run=false", Token: f.e.AdminToken})
	require.Equal(t, 200, r.Status, "%s", r)
	require.NotEqual(t, before, f.state(t), "dry_run=false is a real write")
}

// Every route's query string is strict: unknown names, repeated names and
// malformed values are refused; list parameters are validated.
func TestQueryParametersAreStrict(t *testing.T) {
	t.Parallel()
	f := newEdgeFixture(t)
	W := "/v1/workspaces/" + f.ws.ID
	before := f.state(t)
	for _, c := range []struct {
		method, path, code string
	}{
		{"GET", "/v1/workspaces?limt=5", "unknown_query_param"},
		{"GET", "/v1/workspaces?limit=0", "invalid_limit"},
		{"GET", "/v1/workspaces?after=x", "invalid_after"},
		{"GET", "/v1/whoami?as=admin", "unknown_query_param"},
		{"GET", W + "?x", "unknown_query_param"},
		{"GET", "/v1/secrets?dry_run=true", "unknown_query_param"},
		{"GET", "/v1/events?workspace_id=" + f.ws.ID, "unknown_query_param"},
		{"GET", "/v1/audit?limit=1&limit=2", "repeated_query_param"},
		{"GET", "/v1/audit?Limit=1", "unknown_query_param"},
		{"GET", "/v1/audit?limit=", "invalid_query"},
		{"GET", "/v1/audit?limit=+5", "invalid_query"},
		{"GET", "/v1/audit?limit=0x10", "invalid_query"},
		{"GET", "/v1/audit?limit=1001", "invalid_limit"},
		{"GET", "/v1/audit?before=", "invalid_query"},
		{"GET", "/v1/audit?before=1.5", "invalid_query"},
		{"GET", "/v1/audit?workspace_id=", "invalid_query"},
		{"GET", "/v1/audit?workspace_id=../etc", "invalid_query"},
		{"GET", "/v1/audit?workspace_id=" + strings.ToUpper(f.ws.ID), "invalid_query"},
		{"GET", "/v1/restarts?limit=-1", "invalid_query"},
		{"GET", "/v1/restarts?limt=5", "unknown_query_param"},
		{"GET", W + "/restarts?limit=99999999999999999999", "invalid_query"},
		{"GET", W + "/logs?tail=", "invalid_query"},
		{"GET", W + "/logs?tail=10&tail=20", "repeated_query_param"},
		{"GET", W + "/logs?lines=10", "unknown_query_param"},
		{"DELETE", W + "?cascade", "invalid_query"},
		{"DELETE", W + "?cascade=1", "invalid_query"},
		{"DELETE", W + "?Cascade=true", "unknown_query_param"},
		{"DELETE", W + "?cascade=true&cascade=true", "repeated_query_param"},
		{"POST", W + "/restart?reason=x", "unknown_query_param"},
		{"POST", "/v1/tokens?kind=admin", "unknown_query_param"},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			req := call{Method: c.method, Path: c.path, Token: f.e.AdminToken}
			if c.method == "POST" {
				req.Body = []byte(`{"kind":"admin","name":"nope"}`)
				if strings.HasSuffix(strings.Split(c.path, "?")[0], "/restart") {
					req.Body = []byte(`{}`)
				}
			}
			code, msg := requireErrorShape(t, f.a.send(t, req), http.StatusBadRequest)
			require.Equal(t, c.code, code, msg)
		})
	}
	require.Equal(t, before, f.state(t))
	// Well-formed parameters still work.
	for _, p := range []string{"/v1/audit?limit=5&before=100000&workspace_id=" + f.ws.ID, "/v1/restarts?limit=5", W + "/restarts?limit=1", W + "/logs?tail=5"} {
		r := f.a.send(t, call{Method: "GET", Path: p, Token: f.e.AdminToken})
		require.Equal(t, 200, r.Status, "%s: %s", p, r)
	}
}

// Finding: JSON looser than documented. One strict decoder: what is
// stored is what was sent, and a field named is the field meant.
func TestStrictJSONBodies(t *testing.T) {
	t.Parallel()
	f := newEdgeFixture(t)
	W := "/v1/workspaces/" + f.ws.ID
	put := W + "/secrets/OWN_ONE"
	js := func(s string) []byte { return []byte(s) }
	type bcase struct {
		name        string
		method      string
		path        string
		body        []byte
		contentType string // "" = application/json; "-" = none
		status      int
		code        string
		msgHas      []string
	}
	cases := []bcase{
		{"duplicate-key", "PUT", put, js(`{"value":"a","value":"b"}`), "", 400, "duplicate_key", []string{`"value"`}},
		{"duplicate-key-nested", "POST", "/v1/workspaces", js(`{"name":"dupe","start":false,"spec":{"command":["a"],"command":["b"]}}`), "", 400, "duplicate_key", []string{"spec.command"}},
		{"duplicate-key-escaped", "PUT", put, js(`{"value":"a","\u0076alue":"b"}`), "", 400, "duplicate_key", nil},
		{"field-case-mismatch", "PUT", put, js(`{"Value":"a"}`), "", 400, "unknown_field", []string{`"Value"`, `"value"`}},
		{"field-case-mismatch-upper", "POST", "/v1/tokens", js(`{"KIND":"admin","name":"x"}`), "", 400, "unknown_field", []string{`"kind"`}},
		{"unknown-field", "PUT", put, js(`{"value":"a","scope":"global"}`), "", 400, "unknown_field", []string{`"scope"`}},
		{"invalid-utf8", "PUT", put, js("{\"value\":\"a\xffb\"}"), "", 400, "invalid_utf8", nil},
		{"invalid-utf8-in-key", "PUT", put, js("{\"v\xc3\":\"a\"}"), "", 400, "invalid_utf8", nil},
		{"lone-high-surrogate", "PUT", put, js(`{"value":"a\ud800b"}`), "", 400, "invalid_utf8", nil},
		{"lone-low-surrogate", "PUT", put, js(`{"value":"\udc00"}`), "", 400, "invalid_utf8", nil},
		{"reversed-surrogates", "PUT", put, js(`{"value":"\udc00\ud800"}`), "", 400, "invalid_utf8", nil},
		{"text-plain", "PUT", put, js(`{"value":"a"}`), "text/plain", 400, "unsupported_content_type", nil},
		{"form", "PUT", put, js(`{"value":"a"}`), "application/x-www-form-urlencoded", 400, "unsupported_content_type", nil},
		{"no-content-type", "PUT", put, js(`{"value":"a"}`), "-", 400, "unsupported_content_type", nil},
		{"json-latin1", "PUT", put, js(`{"value":"a"}`), "application/json; charset=latin1", 400, "unsupported_content_type", nil},
		{"json-extra-param", "PUT", put, js(`{"value":"a"}`), "application/json; boundary=x", 400, "unsupported_content_type", nil},
		{"json-suffix", "PUT", put, js(`{"value":"a"}`), "application/jsonx", 400, "unsupported_content_type", nil},
		{"trailing-object", "PUT", put, js(`{"value":"a"}{"value":"b"}`), "", 400, "trailing_data", nil},
		{"trailing-garbage", "PUT", put, js(`{"value":"a"} x`), "", 400, "trailing_data", nil},
		{"wrong-type", "PUT", put, js(`{"value":5}`), "", 400, "invalid_type", []string{`"value"`, "a string", "number"}},
		{"wrong-type-nested", "POST", "/v1/workspaces/" + f.ws.ID + "/heartbeat", js(`{"generation":"1"}`), "", 400, "invalid_type", []string{`"generation"`, "an integer"}},
		{"wrong-type-fraction", "POST", "/v1/workspaces/" + f.ws.ID + "/heartbeat", js(`{"generation":1.5}`), "", 400, "invalid_type", []string{`"generation"`}},
		{"timestamp-word", "POST", "/v1/tokens", js(`{"kind":"admin","name":"t","expires_at":"tomorrow"}`), "", 400, "invalid_timestamp", []string{`"expires_at"`, "RFC 3339"}},
		{"timestamp-no-zone", "POST", "/v1/tokens", js(`{"kind":"admin","name":"t","expires_at":"2099-01-01T00:00:00"}`), "", 400, "invalid_timestamp", []string{`"expires_at"`}},
		{"timestamp-number", "POST", "/v1/tokens", js(`{"kind":"admin","name":"t","expires_at":4102444800}`), "", 400, "invalid_timestamp", []string{`"expires_at"`}},
		{"not-an-object", "PUT", put, js(`["value"]`), "", 400, "invalid_json", nil},
		{"malformed", "PUT", put, js(`{"value":"a"`), "", 400, "invalid_json", nil},
		{"over-1MiB", "PUT", put, js(`{"value":"` + strings.Repeat("x", 1<<20) + `"}`), "", 413, "too_large", nil},
	}
	before := f.state(t)
	audit0 := lastAuditID(t, f.e)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := f.e.AdminToken
			if strings.Contains(c.path, "/heartbeat") || strings.HasPrefix(c.path, W+"/secrets") {
				tok = f.wsTok.Secret // the workspace's own token: its refusals are audited too
			}
			req := call{Method: c.method, Path: c.path, Token: tok, Body: c.body, ContentType: c.contentType}
			if c.contentType == "-" {
				req.ContentType = ""
				req.Header = http.Header{"Content-Type": nil}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			hr := f.a.request(ctx, t, req)
			if c.contentType == "-" {
				hr.Header.Del("Content-Type")
			}
			resp, err := f.a.hc.Do(hr)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			code, msg := requireErrorShape(t, result{Status: resp.StatusCode, Body: b, Header: resp.Header}, c.status)
			require.Equal(t, c.code, code, msg)
			for _, s := range c.msgHas {
				require.Contains(t, msg, s)
			}
			require.Equal(t, before, f.state(t), "a refused body changed something")
		})
	}
	// Refused bodies from the workspace token are in the audit log, with
	// the route and the code, never the body.
	var wsRefusals int
	for _, en := range auditSince(t, f.e, audit0) {
		require.NotEqual(t, "ok", en.Outcome, "%+v", en)
		if en.Action == "request.refused" && en.TokenID == f.wsTok.Token.ID {
			wsRefusals++
			require.Contains(t, string(en.Detail), `"route":"/v1/workspaces/{id}`)
			require.NotContains(t, string(en.Detail), `"value"`)
		}
	}
	require.GreaterOrEqual(t, wsRefusals, 15)

	// What passes is stored exactly as sent: a surrogate pair, a charset
	// parameter in any case, the media type in any case.
	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON;charset=UTF-8", "application/json"} {
		r := f.a.send(t, call{Method: "PUT", Path: put, Token: f.wsTok.Secret, Body: js(`{"value":"smile \ud83d\ude00 \u00e9"}`), ContentType: ct})
		require.Equal(t, 200, r.Status, "%s: %s", ct, r)
	}
	r := f.a.send(t, call{Method: "GET", Path: W + "/secrets/values", Token: f.wsTok.Secret})
	require.Equal(t, 200, r.Status, "%s", r)
	require.Equal(t, "smile \U0001F600 é", decodeJSON[map[string]string](t, r)["OWN_ONE"])
	r = f.a.send(t, call{Method: "POST", Path: "/v1/tokens", Token: f.e.AdminToken,
		Body: js(`{"kind":"admin","name":"dated","expires_at":"2099-01-02T03:04:05+02:00"}`)})
	require.Equal(t, 201, r.Status, "%s", r)
}

// Finding: tokens. Ambiguous or malformed Authorization is refused before
// any token is used; a token whose workspace or acting workspace was
// removed stops working.
func TestTokenAmbiguityAndRemovedWorkspaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newEdgeFixture(t)
	other, err := f.e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "second"})
	require.NoError(t, err)
	put := call{Method: "PUT", Path: "/v1/secrets/GLOBAL_ONE", Body: []byte(`{"value":"changed"}`)}
	before := f.state(t)
	for _, c := range []struct {
		name   string
		values []string
		status int
		code   string
	}{
		{"two-headers-same", []string{"Bearer " + f.e.AdminToken, "Bearer " + f.e.AdminToken}, 400, "ambiguous_credentials"},
		{"two-headers-different", []string{"Bearer " + f.wsTok.Secret, "Bearer " + other.Secret}, 400, "ambiguous_credentials"},
		{"two-headers-one-junk", []string{"Bearer junk", "Bearer " + f.e.AdminToken}, 400, "ambiguous_credentials"},
		{"two-tokens-one-header", []string{"Bearer " + f.e.AdminToken + ", Bearer " + other.Secret}, 401, "malformed_authorization"},
		{"double-space", []string{"Bearer  " + f.e.AdminToken}, 401, "malformed_authorization"},
		{"basic", []string{"Basic " + f.e.AdminToken}, 401, "malformed_authorization"},
		{"no-scheme", []string{f.e.AdminToken}, 401, "malformed_authorization"},
		{"empty", []string{""}, 401, "malformed_authorization"},
		{"token-uppercased", []string{"Bearer " + strings.ToUpper(f.e.AdminToken)}, 401, "unauthorized"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := put
			req.Header = http.Header{"Authorization": c.values}
			code, msg := requireErrorShape(t, f.a.send(t, req), c.status)
			require.Equal(t, c.code, code, msg)
			require.Equal(t, before, f.state(t))
		})
	}

	// An admin token bound to a workspace that is then removed: it can
	// neither act nor mint unbound admin tokens.
	bound, err := f.e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("bound"), Start: new(false)})
	require.NoError(t, err)
	acting, err := f.e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "acting", ActingWorkspaceID: bound.ID})
	require.NoError(t, err)
	wsOfBound := mintWorkspaceToken(t, f.e.Admin, bound.ID)
	r := f.a.send(t, call{Method: "GET", Path: "/v1/whoami", Token: acting.Secret})
	require.Equal(t, 200, r.Status, "%s", r)
	_, err = f.e.Admin.DeleteWorkspace(ctx, bound.ID, false)
	require.NoError(t, err)
	before = f.state(t)
	for _, c := range []struct {
		tok, what string
		req       call
	}{
		{acting.Secret, "acting workspace", call{Method: "GET", Path: "/v1/whoami"}},
		{acting.Secret, "acting workspace", call{Method: "POST", Path: "/v1/tokens", Body: []byte(`{"kind":"admin","name":"escape"}`)}},
		{acting.Secret, "acting workspace", put},
		{wsOfBound.Secret, "workspace", call{Method: "GET", Path: "/v1/whoami"}},
		{wsOfBound.Secret, "workspace", call{Method: "GET", Path: "/v1/workspaces/" + bound.ID + "/secrets/values"}},
	} {
		c.req.Token = c.tok
		code, msg := requireErrorShape(t, f.a.send(t, c.req), http.StatusUnauthorized)
		require.Equal(t, "unauthorized", code)
		require.Contains(t, msg, c.what+" was removed")
		require.Equal(t, before, f.state(t))
	}
}

// Finding: audit gaps. Refusals the docs say are audited are; every read
// of /values is, with its keys and never its values.
func TestRefusalsAndValueReadsAreAudited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newEdgeFixture(t)
	W := "/v1/workspaces/" + f.ws.ID
	audit0 := lastAuditID(t, f.e)
	find := func(since int64, action, tokenID string) []client.AuditEntry {
		var out []client.AuditEntry
		for _, en := range auditSince(t, f.e, since) {
			if en.Action == action && en.TokenID == tokenID {
				out = append(out, en)
			}
		}
		return out
	}

	// An X-Workspace-ID spoof.
	other, err := f.e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("other"), Start: new(false)})
	require.NoError(t, err)
	r := f.a.send(t, call{Method: "GET", Path: W, Token: f.wsTok.Secret, Header: http.Header{"X-Workspace-Id": {other.ID}}})
	requireErrorShape(t, r, http.StatusForbidden)
	spoofs := find(audit0, "auth.workspace_mismatch", f.wsTok.Token.ID)
	require.Len(t, spoofs, 1)
	require.Equal(t, "denied", spoofs[0].Outcome)
	require.Equal(t, f.ws.ID, spoofs[0].ActingWorkspaceID)
	require.Contains(t, string(spoofs[0].Detail), other.ID)

	// A 403 on /values (an admin is not the workspace).
	r = f.a.send(t, call{Method: "GET", Path: W + "/secrets/values", Token: f.e.AdminToken})
	requireErrorShape(t, r, http.StatusForbidden)
	adminID := tokenIDOf(t, f, f.e.AdminToken)
	denied := find(audit0, "secret.values_read", adminID)
	require.Len(t, denied, 1)
	require.Equal(t, "denied", denied[0].Outcome)
	require.Equal(t, f.ws.ID, denied[0].WorkspaceID)

	// An admin mints a workspace token and reads the values with it: the
	// read is recorded (who, which workspace, which keys), not only the mint.
	minted := mintWorkspaceToken(t, f.e.Admin, f.ws.ID)
	r = f.a.send(t, call{Method: "GET", Path: W + "/secrets/values", Token: minted.Secret})
	require.Equal(t, 200, r.Status, "%s", r)
	reads := find(audit0, "secret.values_read", minted.Token.ID)
	require.Len(t, reads, 1)
	require.Equal(t, "ok", reads[0].Outcome)
	require.Equal(t, "workspace", reads[0].PrincipalKind)
	require.Equal(t, f.ws.ID, reads[0].WorkspaceID)
	require.JSONEq(t, `{"keys":["GLOBAL_ONE","OWN_ONE"]}`, string(reads[0].Detail))
	require.Len(t, find(audit0, "token.create", adminID), 1)

	// A refused body from a workspace token.
	r = f.a.send(t, call{Method: "PUT", Path: W + "/secrets/OWN_ONE", Token: f.wsTok.Secret, Body: []byte(`{"value":"v","value":"w"}`)})
	requireErrorShape(t, r, http.StatusBadRequest)
	refused := find(audit0, "request.refused", f.wsTok.Token.ID)
	require.Len(t, refused, 1)
	require.Equal(t, "error:duplicate_key", refused[0].Outcome)

	// Every refused call is in the log exactly once: the service's own
	// entry when it audits the call, else the edge's request.refused.
	for _, c := range []struct {
		req            call
		status         int
		action, result string
	}{
		{call{Method: "GET", Path: "/v1/tokens"}, 403, "request.refused", "denied"},
		{call{Method: "GET", Path: "/v1/audit"}, 403, "request.refused", "denied"},
		{call{Method: "GET", Path: W + "/logs"}, 403, "request.refused", "denied"},
		{call{Method: "PUT", Path: "/v1/secrets/GLOBAL_ONE", Body: []byte(`{"value":"x"}`)}, 403, "secret.set", "denied"},
		{call{Method: "POST", Path: "/v1/tokens", Body: []byte(`{"kind":"admin","name":"up"}`)}, 403, "token.create", "denied"},
		{call{Method: "POST", Path: W + "/heartbeat", Body: []byte(`{"generation":99}`)}, 409, "request.refused", "error:conflict"},
		{call{Method: "GET", Path: W + "/secrets/values?x=1"}, 400, "request.refused", "error:unknown_query_param"},
	} {
		since := lastAuditID(t, f.e)
		c.req.Token = f.wsTok.Secret
		requireErrorShape(t, f.a.send(t, c.req), c.status)
		var mine []client.AuditEntry
		for _, en := range auditSince(t, f.e, since) {
			if en.TokenID == f.wsTok.Token.ID {
				mine = append(mine, en)
			}
		}
		require.Len(t, mine, 1, "%s %s: %+v", c.req.Method, c.req.Path, mine)
		require.Equal(t, c.action, mine[0].Action, "%s %s", c.req.Method, c.req.Path)
		require.Equal(t, c.result, mine[0].Outcome, "%s %s", c.req.Method, c.req.Path)
	}

	// Never a value anywhere in the log.
	page, err := f.e.Admin.ListAudit(ctx, "", 1000, 0)
	require.NoError(t, err)
	all := string(mustJSON(t, page))
	for _, v := range []string{`"g1"`, `"w1"`} {
		require.NotContains(t, all, v)
	}
}

func tokenIDOf(t *testing.T, f *edgeFixture, tok string) string {
	t.Helper()
	r := f.a.send(t, call{Method: "GET", Path: "/v1/whoami", Token: tok})
	require.Equal(t, 200, r.Status)
	return decodeJSON[client.Whoami](t, r).Principal.TokenID
}
