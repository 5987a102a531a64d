package httpapi

import (
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/ids"
)

func TestPagingParse(t *testing.T) {
	t.Parallel()
	wsKey := func(k string) bool { return ids.Valid("w", k) }
	id := ids.New("w")
	good := encodeCursor("ws", id)
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		name  string
		query string
		def   int
		want  Page // kind aside
		code  string
	}{
		{name: "none", query: "", want: Page{}},
		{name: "none, with a default", query: "", def: 100, want: Page{Limit: 100}},
		{name: "limit", query: "limit=7", def: 100, want: Page{Limit: 7}},
		{name: "limit 1", query: "limit=1", want: Page{Limit: 1}},
		{name: "limit max", query: "limit=1000", want: Page{Limit: 1000}},
		{name: "limit leading zeros", query: "limit=007", want: Page{Limit: 7}},
		{name: "after", query: "after=" + good, want: Page{After: id}},
		{name: "after and limit", query: "limit=3&after=" + good, want: Page{Limit: 3, After: id}},

		{name: "limit 0", query: "limit=0", code: "invalid_limit"},
		{name: "limit 00", query: "limit=00", code: "invalid_limit"},
		{name: "limit over max", query: "limit=1001", code: "invalid_limit"},
		{name: "limit huge", query: "limit=999999999999999999", code: "invalid_limit"},
		{name: "limit too long", query: "limit=9999999999999999999999", code: "invalid_query"},
		{name: "limit negative", query: "limit=-1", code: "invalid_query"},
		{name: "limit plus", query: "limit=%2B5", code: "invalid_query"},
		{name: "limit empty", query: "limit=", code: "invalid_query"},
		{name: "limit word", query: "limit=ten", code: "invalid_query"},
		{name: "limit hex", query: "limit=0x10", code: "invalid_query"},
		{name: "limit decimal", query: "limit=1.5", code: "invalid_query"},
		{name: "limit space", query: "limit=%205", code: "invalid_query"},

		{name: "after empty", query: "after=", code: "invalid_after"},
		{name: "after not base64", query: "after=%21%21%21", code: "invalid_after"},
		{name: "after padded base64", query: "after=" + base64.URLEncoding.EncodeToString([]byte("ws:"+id)), code: "invalid_after"},
		{name: "after std base64", query: "after=" + strings.ReplaceAll(base64.StdEncoding.EncodeToString([]byte("ws:"+id+"??>")), "=", ""), code: "invalid_after"},
		{name: "after raw id", query: "after=" + id, code: "invalid_after"},
		{name: "after of another list", query: "after=" + encodeCursor("audit", id), code: "invalid_after"},
		{name: "after without kind", query: "after=" + b64(id), code: "invalid_after"},
		{name: "after empty key", query: "after=" + b64("ws:"), code: "invalid_after"},
		{name: "after junk key", query: "after=" + b64("ws:../../etc"), code: "invalid_after"},
		{name: "after key of another prefix", query: "after=" + encodeCursor("ws", ids.New("t")), code: "invalid_after"},
		{name: "after too long", query: "after=" + strings.Repeat("A", 600), code: "invalid_after"},
		{name: "after truncated", query: "after=" + good[:len(good)-3], code: "invalid_after"},
		{name: "bad after, good limit", query: "limit=5&after=zz", code: "invalid_after"},
		{name: "good after, bad limit", query: "limit=0&after=" + good, code: "invalid_limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			q, qerr := parseQuery(c.query, "limit", "after")
			require.Nil(t, qerr)
			p, perr := parsePage(q, "ws", c.def, wsKey)
			if c.code != "" {
				require.NotNil(t, perr, "%+v", p)
				require.Equal(t, c.code, perr.Code)
				require.Equal(t, 400, perr.Status)
				require.NotEmpty(t, perr.Message)
				return
			}
			require.Nil(t, perr)
			c.want.kind = "ws"
			require.Equal(t, c.want, p)
		})
	}
}

func TestPagingCursorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"w", ids.New("w"), "12345", "a:b:c", "é/?&=#"} {
		c := encodeCursor("k", key)
		require.False(t, strings.ContainsAny(c, "=+/"), "URL-safe, unpadded: %s", c)
		got, ok := decodeCursor("k", c)
		require.True(t, ok, key)
		require.Equal(t, key, got)
		_, ok = decodeCursor("j", c)
		require.False(t, ok, "a cursor of another kind")
	}
}

func TestPagingTrimAndLink(t *testing.T) {
	t.Parallel()
	rows := []string{"a", "b", "c", "d"}
	key := func(s string) string { return s }
	for _, c := range []struct {
		name   string
		target string
		page   Page
		n      int
		want   []string
		link   string
	}{
		{name: "no limit: everything, no link", target: "/v1/x", page: Page{}, n: 4, want: rows},
		{name: "fewer than the limit", target: "/v1/x?limit=5", page: Page{Limit: 5}, n: 4, want: rows},
		{name: "exactly the limit: no more", target: "/v1/x?limit=4", page: Page{Limit: 4}, n: 4, want: rows},
		{name: "one more than the limit", target: "/v1/x?limit=3", page: Page{Limit: 3}, n: 4, want: rows[:3],
			link: "</v1/x?after=" + encodeCursor("k", "c") + `&limit=3>; rel="next"`},
		{name: "filters kept, after replaced, before dropped",
			target: "/v1/x?workspace_id=wabc&limit=2&before=10&after=" + encodeCursor("k", "zz"), page: Page{Limit: 2}, n: 3, want: rows[:2],
			link: "</v1/x?after=" + encodeCursor("k", "b") + `&limit=2&workspace_id=wabc>; rel="next"`},
		{name: "default limit, none in the query", target: "/v1/x?workspace_id=wabc", page: Page{Limit: 1}, n: 2, want: rows[:1],
			link: "</v1/x?after=" + encodeCursor("k", "a") + `&workspace_id=wabc>; rel="next"`},
		{name: "empty", target: "/v1/x?limit=3", page: Page{Limit: 3}, n: 0, want: []string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.page.kind = "k"
			w := httptest.NewRecorder()
			r := httptest.NewRequest("GET", c.target, nil)
			got := trimPage(w, r, c.page, append([]string{}, rows[:c.n]...), key)
			require.Equal(t, c.want, got)
			require.Equal(t, c.link, w.Header().Get("Link"))
		})
	}
}

func TestPagingFetch(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0, Page{}.Fetch(), "no limit: no LIMIT")
	require.Equal(t, 101, Page{Limit: 100}.Fetch())
}
