package httpapi

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"github.com/orgplane/orgplane/internal/core"
)

// Paging of list endpoints: ?limit=N&after=CURSOR, and the next page's URL
// in a Link header (RFC 8288) when more rows may follow. The body keeps the
// list's own shape; a client that sends neither parameter gets what it got
// before paging existed.
//
// A handler pages a list in four steps:
//
//	p, qerr := parsePage(q, "ws", 0, validKey) // kind tags this list's cursors
//	rows := query "key > p.After ORDER BY key LIMIT p.Fetch()" // 0: no LIMIT
//	rows = trimPage(w, r, p, rows, func(x T) string { return x.ID })
//	encode rows
//
// or, when the service fetches the extra row itself and reports whether
// more follow (as ListWorkspacesPage and ListAuditPage do), it passes
// p.Limit down and calls p.setNext(w, r, key of the last row) when more.
//
// A cursor is opaque to clients: base64url of "<kind>:<key>", where key is
// the sort key of the last row of a page. The handler decides what the key
// is (an id, or a composite key it encodes into one string) and checks it
// after decoding with a validator; a cursor of another list is refused.

// Page is what a list request asked for.
type Page struct {
	// Limit is the page size; 0 when the request gave none and the list has
	// no default (the whole list, as before paging).
	Limit int
	// After is the decoded sort key of the previous page's last row; "" for
	// the first page.
	After string

	kind string
}

// parsePage reads ?limit= and ?after= for a list whose cursors carry kind.
// def is the limit when none is given (0: none). validKey, if not nil,
// checks a decoded key (so that junk never reaches the store). Refusals are
// 400: a limit that is not digits is invalid_query (as for every number of a
// query), one outside 1..core.MaxPageLimit invalid_limit, a cursor that is not one
// of this list invalid_after.
func parsePage(q query, kind string, def int, validKey func(string) bool) (Page, *core.Error) {
	p := Page{Limit: def, kind: kind}
	if q.Has("limit") {
		n, qerr := q.Int("limit")
		if qerr != nil {
			return Page{}, qerr
		}
		if n < 1 || n > core.MaxPageLimit {
			return Page{}, core.Invalid("invalid_limit", "limit must be between 1 and %d; got %d", core.MaxPageLimit, n)
		}
		p.Limit = int(n)
	}
	if q.Has("after") {
		key, ok := decodeCursor(kind, q.values.Get("after"))
		if !ok || (validKey != nil && !validKey(key)) {
			return Page{}, core.Invalid("invalid_after", "after must be a cursor from this list's Link header; got %s", quoteShort(q.values.Get("after")))
		}
		p.After = key
	}
	return p, nil
}

// Fetch is how many rows to ask the store for: one more than the limit, so
// that a full page tells whether another follows; 0 (no limit) when the
// request has none.
func (p Page) Fetch() int {
	if p.Limit == 0 {
		return 0
	}
	return p.Limit + 1
}

// More reports whether rows, fetched with Fetch, hold more than a page.
func (p Page) More(n int) bool { return p.Limit > 0 && n > p.Limit }

// encodeCursor makes the opaque cursor of key in the list of kind.
func encodeCursor(kind, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + key))
}

// decodeCursor undoes encodeCursor; false for anything that is not a
// cursor of kind.
func decodeCursor(kind, cursor string) (string, bool) {
	if cursor == "" || len(cursor) > 512 {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", false
	}
	key, ok := strings.CutPrefix(string(raw), kind+":")
	if !ok || key == "" {
		return "", false
	}
	return key, true
}

// nextURL is the request's own path and query with after set to cursor:
// the filters of the page are kept, a before (an older way to page) is
// dropped as after supersedes it.
func nextURL(r *http.Request, cursor string) string {
	v := r.URL.Query()
	v.Del("before")
	v.Set("after", cursor)
	u := url.URL{Path: r.URL.Path, RawQuery: v.Encode()}
	return u.String()
}

// setNext sets the Link header to the next page, whose cursor is of key.
func (p Page) setNext(w http.ResponseWriter, r *http.Request, key string) {
	w.Header().Set("Link", "<"+nextURL(r, encodeCursor(p.kind, key))+`>; rel="next"`)
}

// trimPage cuts rows, fetched with p.Fetch(), to the page and, when more
// follow, sets the Link header to the next page (after the last row kept,
// whose sort key is key of it).
func trimPage[T any](w http.ResponseWriter, r *http.Request, p Page, rows []T, key func(T) string) []T {
	if !p.More(len(rows)) {
		return rows
	}
	rows = rows[:p.Limit]
	p.setNext(w, r, key(rows[len(rows)-1]))
	return rows
}
