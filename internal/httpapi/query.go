package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/ids"
)

// query is a request's query string, parsed strictly against the names a
// route accepts. A parameter the route does not know, one sent twice, or a
// query string that does not parse is refused before the handler runs: a
// caller's misspelled "dryrun=true" must never be read as "no dry run".
type query struct {
	values url.Values
}

// parseQuery parses raw (the URL's RawQuery) and checks it against allowed.
func parseQuery(raw string, allowed ...string) (query, *core.Error) {
	if raw == "" {
		return query{values: url.Values{}}, nil
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return query{}, core.Invalid("malformed_query", "the query string does not parse as name=value pairs joined by &")
	}
	for name, vals := range v {
		if !contains(allowed, name) {
			return query{}, unknownParam(name, allowed)
		}
		if len(vals) > 1 {
			return query{}, core.Invalid("repeated_query_param", "query parameter %q is given %d times; give it once", name, len(vals))
		}
	}
	return query{values: v}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// unknownParam names the parameters the route takes, and the one the
// caller probably meant when it is a misspelling of one of them.
func unknownParam(name string, allowed []string) *core.Error {
	shown := name
	if len(shown) > 40 {
		shown = shown[:40] + "..."
	}
	for _, a := range allowed {
		if fold(a) == fold(name) {
			return core.Invalid("unknown_query_param", "unknown query parameter %q: did you mean %q? (names are exact)", shown, a)
		}
	}
	if len(allowed) == 0 {
		return core.Invalid("unknown_query_param", "unknown query parameter %q: this endpoint takes none", shown)
	}
	return core.Invalid("unknown_query_param", "unknown query parameter %q: this endpoint takes %s", shown, strings.Join(allowed, ", "))
}

// fold maps the spellings a person might try for one name ("dry-run",
// "DryRun", "DRY_RUN") to one form.
func fold(s string) string {
	return strings.NewReplacer("_", "", "-", "", ".", "").Replace(strings.ToLower(s))
}

// Has reports whether the parameter was given (with any value).
func (q query) Has(name string) bool {
	_, ok := q.values[name]
	return ok
}

// Bool is a flag: absent is false; present it must be exactly "true" or
// "false" ("?dry_run" alone, "?dry_run=" and "?dry_run=1" are refused).
func (q query) Bool(name string) (bool, *core.Error) {
	if !q.Has(name) {
		return false, nil
	}
	switch v := q.values.Get(name); v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, core.Invalid("invalid_query", "%s must be true or false; got %s", name, quoteShort(v))
	}
}

// Int is a non-negative decimal integer; absent is 0 (the default is the
// service's to pick). Present, it must have digits only.
func (q query) Int(name string) (int64, *core.Error) {
	if !q.Has(name) {
		return 0, nil
	}
	v := q.values.Get(name)
	if v == "" || len(v) > 18 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, core.Invalid("invalid_query", "%s must be a non-negative integer; got %s", name, quoteShort(v))
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, core.Invalid("invalid_query", "%s must be a non-negative integer; got %s", name, quoteShort(v))
	}
	return n, nil
}

// ID is an object id with the given prefix; absent is "".
func (q query) ID(name, prefix string) (string, *core.Error) {
	if !q.Has(name) {
		return "", nil
	}
	v := q.values.Get(name)
	if !ids.Valid(prefix, v) {
		return "", core.Invalid("invalid_query", "%s must be an id; got %s", name, quoteShort(v))
	}
	return v, nil
}

func quoteShort(v string) string {
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return strconv.Quote(v)
}

// q parses the request's query for a handler; on refusal it answers and
// returns false.
func (s *Server) q(w http.ResponseWriter, r *http.Request, allowed ...string) (query, bool) {
	q, err := parseQuery(r.URL.RawQuery, allowed...)
	if err != nil {
		s.refuse(w, r, err)
		return query{}, false
	}
	return q, true
}
