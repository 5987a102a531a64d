package cli

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
)

const testRequestID = "rq2b3c4d5e6f7g2h3i"

func secretRequest() client.Request {
	return client.Request{ID: testRequestID, OrgID: "org_1", State: "pending", Title: "I need the Stripe key",
		Detail: "for the billing report", Ask: "secret", Key: "STRIPE_KEY", WorkspaceID: "ws_a",
		Requester: client.Requester{Kind: "workspace", TokenID: "tok_w", WorkspaceID: "ws_a", Via: "token"},
		ExpiresAt: testTime.Add(24 * time.Hour), CreatedAt: testTime, UpdatedAt: testTime}
}

func textRequest() client.Request {
	return client.Request{ID: "rq7777777777777777", OrgID: "org_1", State: "pending", Title: "Which bucket?", Ask: "text",
		Requester: client.Requester{Kind: "admin", TokenID: "tok_mgmt", WorkspaceID: "ws_plat", Via: "mcp"},
		ExpiresAt: testTime.Add(time.Hour), CreatedAt: testTime, UpdatedAt: testTime}
}

func answeredSecret() client.Request {
	r := secretRequest()
	ended := testTime.Add(time.Minute)
	r.State, r.SecretVersion, r.EndedAt = "answered", 3, &ended
	r.Responder = &client.Responder{UserID: "usr_owner", TokenID: "tok_owner", Via: "token"}
	return r
}

func TestRequestsLs(t *testing.T) {
	t.Parallel()
	list := []client.Request{secretRequest(), textRequest()}
	f := newFakeAPI(t)
	f.handle("GET /v1/requests", 200, list)

	r := f.run("", "requests", "ls", "--state", "pending")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "/v1/requests", req.Path)
	require.Equal(t, "state=pending", req.Query)
	require.Equal(t, ""+
		"ID                  STATE    ASK                     TITLE                  REQUESTER                         CREATED               EXPIRES\n"+
		"rq2b3c4d5e6f7g2h3i  pending  secret STRIPE_KEY@ws_a  I need the Stripe key  workspace@ws_a (tok_w)            2025-03-01T12:00:00Z  2025-03-02T12:00:00Z\n"+
		"rq7777777777777777  pending  text                    Which bucket?          admin@ws_plat (tok_mgmt) via mcp  2025-03-01T12:00:00Z  2025-03-01T13:00:00Z\n", r.stdout)
	require.Empty(t, r.stderr)

	r = f.run("", "requests", "ls", "--json", "--limit", "2", "--before", "rq9999999999999999")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "before=rq9999999999999999&limit=2", f.requests()[1].Query)
	require.JSONEq(t, mustJSON(t, list), r.stdout)
	require.Empty(t, r.stderr, "JSON output has no hint")

	r = f.run("", "requests", "ls", "--limit", "2")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "maybe more: orgplane requests ls --limit 2 --before rq7777777777777777\n", r.stderr)
}

func TestRequestsShow(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/requests/"+testRequestID, 200, secretRequest())
	f.handle("GET /v1/requests/rq3333333333333333", 200, answeredSecret())

	r := f.run("", "requests", "show", testRequestID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, `id:           rq2b3c4d5e6f7g2h3i
state:        pending
title:        I need the Stripe key
detail:       for the billing report
ask:          secret
secret:       STRIPE_KEY
scope:        workspace ws_a
requested by: workspace ws_a, token tok_w, via token
created:      2025-03-01T12:00:00Z
expires:      2025-03-02T12:00:00Z

answer: orgplane requests answer rq2b3c4d5e6f7g2h3i (the value on stdin, or typed at the prompt)
decline: orgplane requests decline rq2b3c4d5e6f7g2h3i [--note TEXT]
`, r.stdout)

	r = f.run("", "requests", "show", "rq3333333333333333")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "responder:      person usr_owner, token tok_owner, via token\n")
	require.Contains(t, r.stdout, "secret version: 3\n")
	require.NotContains(t, r.stdout, "answer:")

	r = f.run("", "requests", "show", "rq3333333333333333", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, answeredSecret()), r.stdout)
}

// A secret answer is read from stdin and posted as {value}; nothing the
// command prints holds it.
func TestRequestsAnswerSecretFromStdin(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/requests/{id}", 200, secretRequest())
	f.handle("POST /v1/requests/{id}/answer", 200, answeredSecret())

	r := f.run(plantedSecret+"\n", "requests", "answer", testRequestID)
	require.Equal(t, 0, r.code, r.stderr)
	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "GET", reqs[0].Method)
	require.Equal(t, "/v1/requests/"+testRequestID, reqs[0].Path)
	require.Equal(t, "POST", reqs[1].Method)
	require.Equal(t, "/v1/requests/"+testRequestID+"/answer", reqs[1].Path)
	require.JSONEq(t, mustJSON(t, map[string]string{"value": plantedSecret}), string(reqs[1].Body))
	require.Equal(t, "answered rq2b3c4d5e6f7g2h3i: set STRIPE_KEY (workspace ws_a, version 3); the value is not shown again\n", r.stdout)
	require.Empty(t, r.stderr)
	requireNoValue(t, r)

	r = f.run(plantedSecret, "requests", "answer", testRequestID, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, mustJSON(t, answeredSecret()), r.stdout)
	requireNoValue(t, r)
}

func TestRequestsAnswerSecretRefusals(t *testing.T) {
	t.Parallel()
	declined := secretRequest()
	declined.State = "declined"
	for _, tc := range []struct {
		name, stdin string
		req         client.Request
		args        []string
		want        string
	}{
		{"text for a secret", "", secretRequest(), []string{"--text", plantedSecret},
			"error: request rq2b3c4d5e6f7g2h3i asks for the secret STRIPE_KEY: its value comes from stdin or the prompt, not --text\n"},
		{"empty value", "\n", secretRequest(), nil, "error: empty value for STRIPE_KEY: nothing sent\n"},
		{"not pending", plantedSecret, declined, nil, "error: request rq2b3c4d5e6f7g2h3i is declined, not pending: nothing to answer\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.handle("GET /v1/requests/{id}", 200, tc.req)
			r := f.run(tc.stdin, append([]string{"requests", "answer", testRequestID}, tc.args...)...)
			require.Equal(t, 1, r.code)
			require.Equal(t, tc.want, r.stderr)
			require.Len(t, f.requests(), 1, "only the request was read; nothing answered")
			requireNoValue(t, r)
		})
	}
}

func TestRequestsAnswerText(t *testing.T) {
	t.Parallel()
	done := textRequest()
	done.State, done.Answer = "answered", "the staging one"
	f := newFakeAPI(t)
	f.handle("GET /v1/requests/{id}", 200, textRequest())
	f.handle("POST /v1/requests/{id}/answer", 200, done)

	r := f.run("", "requests", "answer", "rq7777777777777777", "--text", "the staging one")
	require.Equal(t, 0, r.code, r.stderr)
	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.JSONEq(t, `{"text":"the staging one"}`, string(reqs[1].Body))
	require.Equal(t, "answered rq7777777777777777\n", r.stdout)

	r = f.run("", "requests", "answer", "rq7777777777777777")
	require.Equal(t, 1, r.code)
	require.Equal(t, "error: request rq7777777777777777 asks for text: pass --text\n", r.stderr)
	r = f.run("", "requests", "answer", "rq7777777777777777", "--text", " ")
	require.Equal(t, 1, r.code)
	require.Equal(t, "error: --text must not be empty\n", r.stderr)
	require.Len(t, f.requests(), 4, "the refused answers sent nothing but the reads")
}

func TestRequestsAnswerRefusedByServer(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("GET /v1/requests/{id}", 200, secretRequest())
	f.handle("POST /v1/requests/{id}/answer", 403, errBody("not_a_person", "only people answer requests"))
	r := f.run(plantedSecret, "requests", "answer", testRequestID)
	require.Equal(t, 1, r.code)
	require.Equal(t, "error: only people answer requests (403 not_a_person)\n", r.stderr)
	requireNoValue(t, r)
}

func TestRequestsUnknownID(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	nf := errBody("not_found", `request "rqzzzzzzzzzzzzzzzz" not found`)
	f.handle("GET /v1/requests/{id}", 404, nf)
	f.handle("POST /v1/requests/{id}/decline", 404, nf)
	f.handle("POST /v1/requests/{id}/cancel", 404, nf)
	for _, args := range [][]string{{"show", "rqzzzzzzzzzzzzzzzz"}, {"answer", "rqzzzzzzzzzzzzzzzz"},
		{"decline", "rqzzzzzzzzzzzzzzzz"}, {"cancel", "rqzzzzzzzzzzzzzzzz"}} {
		r := f.run(plantedSecret, append([]string{"requests"}, args...)...)
		require.Equal(t, 1, r.code, args)
		require.Empty(t, r.stdout, args)
		require.Equal(t, "error: request \"rqzzzzzzzzzzzzzzzz\" not found (404 not_found)\n", r.stderr, args)
	}
	require.Len(t, f.requests(), 4, "an unknown request reads no value")
}

func TestRequestsDeclineCancel(t *testing.T) {
	t.Parallel()
	declined := textRequest()
	declined.State, declined.Note = "declined", "ask the data team"
	cancelled := textRequest()
	cancelled.State = "cancelled"
	f := newFakeAPI(t)
	f.handle("POST /v1/requests/{id}/decline", 200, declined)
	f.handle("POST /v1/requests/{id}/cancel", 200, cancelled)

	r := f.run("", "requests", "decline", "rq7777777777777777", "--note", "ask the data team")
	require.Equal(t, 0, r.code, r.stderr)
	req := f.only()
	require.Equal(t, "/v1/requests/rq7777777777777777/decline", req.Path)
	require.JSONEq(t, `{"note":"ask the data team"}`, string(req.Body))
	require.Equal(t, "declined rq7777777777777777 (Which bucket?): now declined\n", r.stdout)

	r = f.run("", "requests", "cancel", "rq7777777777777777", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	reqs := f.requests()
	require.Equal(t, "/v1/requests/rq7777777777777777/cancel", reqs[1].Path)
	require.Empty(t, reqs[1].Body)
	var got client.Request
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Equal(t, "cancelled", got.State)

	r = f.run("", "requests", "cancel", "rq7777777777777777")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "cancelled rq7777777777777777 (Which bucket?): now cancelled\n", r.stdout)
}
