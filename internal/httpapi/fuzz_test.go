package httpapi

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/ids"
)

// fuzzBody has a field of every kind the request bodies use. Pointers and
// omitempty make a decoded value re-encode to exactly the fields it got.
type fuzzBody struct {
	S *string           `json:"s,omitempty"`
	N *int64            `json:"n,omitempty"`
	B *bool             `json:"b,omitempty"`
	T *time.Time        `json:"t,omitempty"`
	L []string          `json:"l,omitempty"`
	M map[string]string `json:"m,omitempty"`
	R json.RawMessage   `json:"r,omitempty"`
}

var codeRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// FuzzDecodeJSON: the body decoder either refuses with a 400 in the
// contract's shape, or returns a value that re-encodes to a document
// equivalent to the one sent: no key dropped or merged (duplicates, other
// cases), no character replaced (invalid UTF-8, lone surrogates), no
// timestamp but RFC 3339, and only for a JSON content type.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []struct{ ct, body string }{
		{"application/json", `{"s":"x","n":1,"b":true,"t":"2026-01-02T15:04:05Z","l":["a"],"m":{"k":"v"},"r":{"any":[1,2.5,null]}}`},
		{"application/json; charset=utf-8", `{"s":"smile \ud83d\ude00"}`},
		{"application/json", `{"s":"a","s":"b"}`},
		{"application/json", `{"S":"a"}`},
		{"application/json", "{\"s\":\"\xff\"}"},
		{"application/json", `{"s":"\ud800"}`},
		{"application/json", `{"t":"tomorrow"}`},
		{"application/json", `{"n":"1"}`},
		{"application/json", `{"r":{"k":1,"k":2}}`},
		{"application/json", `{"s":"a"} {}`},
		{"text/plain", `{"s":"a"}`},
		{"", `{"s":"a"}`},
		{"application/json", `[]`},
		{"application/json", ``},
	} {
		f.Add(seed.ct, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		var v fuzzBody
		err := decodeJSON(ct, body, &v)
		if err != nil {
			require.Equal(t, 400, err.Status)
			require.Regexp(t, codeRE, err.Code)
			require.NotEmpty(t, err.Message)
			return
		}
		mt, _, perr := mime.ParseMediaType(ct)
		require.NoError(t, perr)
		require.Equal(t, "application/json", mt)
		require.True(t, utf8.Valid(body), "accepted invalid UTF-8")
		require.True(t, json.Valid(body))

		out, merr := json.Marshal(v)
		require.NoError(t, merr)
		sent, got := generic(t, body), generic(t, out)
		// Timestamps are equal as instants; their text may differ ("+00:00", "Z").
		if ts, ok := sent["t"].(string); ok {
			at, perr := time.Parse(time.RFC3339, ts)
			require.NoError(t, perr, "accepted a timestamp that is not RFC 3339: %q", ts)
			require.True(t, at.Equal(*v.T))
			delete(sent, "t")
			delete(got, "t")
		}
		require.Equal(t, sent, got, "sent %s, decoded to %s", body, out)
		if !bytes.Contains(body, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`)) {
			require.NotContains(t, string(out), "\uFFFD", "a character was replaced")
		}
	})
}

// generic decodes a JSON object into maps, dropping top-level nulls and
// empty arrays and objects (omitempty leaves those out).
func generic(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case []any:
			if len(x) == 0 {
				delete(m, k)
			}
		case map[string]any:
			if len(x) == 0 {
				delete(m, k)
			}
		}
	}
	return m
}

var digits = regexp.MustCompile(`^[0-9]+$`)

// FuzzParseQuery: a query string is accepted only when every name is one
// the route takes, given once; flags then read exactly "true" or "false",
// numbers digits only, ids ids. Anything else is a 400 with a code.
func FuzzParseQuery(f *testing.F) {
	for _, seed := range []string{
		"", "dry_run=true", "dry_run=false", "dry_run", "dry_run=", "dryrun=true", "dry-run=true",
		"DRY_RUN=true", "dry_run=true&dry_run=true", "dry_run=true;x", "dry_run=%zz", "limit=10",
		"limit=+1", "limit=0x10", "workspace_id=wabcdefghijklmnop", "limit=1&workspace_id=x",
	} {
		f.Add(seed)
	}
	allowed := []string{"dry_run", "limit", "workspace_id"}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseQuery(raw, allowed...)
		if err != nil {
			require.Equal(t, 400, err.Status)
			require.Contains(t, []string{"malformed_query", "unknown_query_param", "repeated_query_param"}, err.Code)
			return
		}
		parsed, perr := url.ParseQuery(raw)
		require.NoError(t, perr)
		for name, vals := range parsed {
			require.Contains(t, allowed, name)
			require.Len(t, vals, 1, name)
		}
		b, berr := q.Bool("dry_run")
		switch {
		case !q.Has("dry_run"):
			require.Nil(t, berr)
			require.False(t, b)
		case berr == nil:
			val := parsed.Get("dry_run")
			require.Contains(t, []string{"true", "false"}, val)
			require.Equal(t, val == "true", b)
		default:
			require.Equal(t, "invalid_query", berr.Code)
			require.NotContains(t, []string{"true", "false"}, parsed.Get("dry_run"))
		}
		n, nerr := q.Int("limit")
		if q.Has("limit") && nerr == nil {
			val := parsed.Get("limit")
			require.Regexp(t, digits, val)
			want, _ := strconv.ParseInt(val, 10, 64)
			require.Equal(t, want, n)
		}
		id, ierr := q.ID("workspace_id", "w")
		if q.Has("workspace_id") && ierr == nil {
			require.True(t, ids.Valid("w", id))
		}
		// A query this route accepts never names a dry run it would ignore.
		if mentionsDryRun(raw) {
			require.True(t, q.Has("dry_run"), raw)
		}
	})
}
