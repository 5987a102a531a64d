package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/core"
)

// Lists of workspaces are written by hand rather than through encoding/json,
// byte for byte as it would write []client.Workspace (a test holds the two
// together). encoding/json re-compacts every json.RawMessage and every
// time.Time it is given (their MarshalJSON output goes through its
// scanner), and the spec is copied into a RawMessage first: for 10,000
// workspaces that was a third of the encoding. The spec is stored as
// json.Marshal wrote it when the write was validated (compact, HTML
// escaped), so it goes out as stored; a spec that is not in that form (none
// is written so) takes the slow path, which gives what encoding/json gives.

// writeWorkspaces writes list as a JSON array of workspace objects.
func (s *Server) writeWorkspaces(w http.ResponseWriter, r *http.Request, list []core.Workspace) {
	buf := make([]byte, 0, 64+len(list)*420)
	buf = append(buf, '[')
	for i, ws := range list {
		if i > 0 {
			buf = append(buf, ',')
		}
		var err error
		if buf, err = appendWorkspace(buf, ws); err != nil {
			// Only a spec that is not JSON gets here: let encoding/json
			// answer as it always did.
			s.log.Warn("encode workspaces", "workspace", ws.ID, "err", err, "request_id", auth.RequestID(r.Context()))
			out := make([]any, len(list))
			for i, x := range list {
				out[i] = WorkspaceJSON(x)
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
	}
	buf = append(buf, ']', '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf)
}

// appendWorkspace appends the JSON of WorkspaceJSON(w), as encoding/json
// writes it (HTML-escaped strings, RFC 3339 times).
func appendWorkspace(b []byte, w core.Workspace) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendString(b, w.ID)
	b = append(b, `,"org_id":`...)
	b = appendString(b, w.OrgID)
	b = append(b, `,"parent_id":`...)
	if w.ParentID == "" {
		b = append(b, "null"...)
	} else {
		b = appendString(b, w.ParentID)
	}
	b = append(b, `,"name":`...)
	b = appendString(b, w.Name)
	b = append(b, `,"kind":`...)
	b = appendString(b, w.Kind)
	b = append(b, `,"runtime":`...)
	b = appendString(b, w.Runtime)
	b = append(b, `,"spec":`...)
	var err error
	if b, err = appendRawJSON(b, w.Spec); err != nil {
		return b, err
	}
	b = append(b, `,"status":`...)
	b = appendString(b, w.Status)
	b = append(b, `,"restart_policy":`...)
	b = appendString(b, w.RestartPolicy)
	b = append(b, `,"protected":`...)
	b = strconv.AppendBool(b, w.Protected)
	b = append(b, `,"generation":`...)
	b = strconv.AppendInt(b, w.Generation, 10)
	b = append(b, `,"stale":`...)
	b = strconv.AppendBool(b, w.Stale)
	b = append(b, `,"last_error":`...)
	b = appendString(b, w.LastError)
	b = append(b, `,"created_at":`...)
	if b, err = appendTime(b, w.CreatedAt); err != nil {
		return b, err
	}
	b = append(b, `,"updated_at":`...)
	if b, err = appendTime(b, w.UpdatedAt); err != nil {
		return b, err
	}
	return append(b, '}'), nil
}

// plainASCII reports whether s is printable ASCII that encoding/json writes
// as is (with HTML escaping on, as writeJSON has it).
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	if plainASCII(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// appendRawJSON appends a stored JSON value ("" is {}), as is when it is in
// the form encoding/json would write it.
func appendRawJSON(b []byte, raw string) ([]byte, error) {
	if raw == "" {
		return append(b, "{}"...), nil
	}
	if canonicalJSON(raw) {
		return append(b, raw...), nil
	}
	q, err := json.Marshal(json.RawMessage(raw))
	if err != nil {
		return b, err
	}
	return append(b, q...), nil
}

// canonicalJSON reports whether raw, taken to be JSON, has nothing that
// encoding/json would change in a json.RawMessage: no whitespace between
// tokens, no byte that its HTML escaping rewrites (<, >, &, and U+2028 and
// U+2029, which begin with 0xE2), no control byte. It does not validate
// raw: json.Marshal did that when it was written.
func canonicalJSON(raw string) bool {
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c < 0x20, c == '<', c == '>', c == '&', c == 0xE2:
			return false
		case inString:
			switch c {
			case '\\':
				i++ // the escaped byte is never a quote that ends the string
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ':
			return false
		}
	}
	return !inString
}

// appendTime appends t as time.Time's MarshalJSON writes it (RFC 3339 with
// nanoseconds, trailing zeros trimmed). Store times are UTC: those are
// formatted by hand, others by the time package.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	y, mo, d := t.Date()
	if t.Location() != time.UTC || y < 0 || y > 9999 {
		q, err := t.MarshalJSON()
		return append(b, q...), err
	}
	h, mi, s := t.Clock()
	b = append(b, '"')
	b = append4(b, y)
	b = append(b, '-')
	b = append2(b, int(mo))
	b = append(b, '-')
	b = append2(b, d)
	b = append(b, 'T')
	b = append2(b, h)
	b = append(b, ':')
	b = append2(b, mi)
	b = append(b, ':')
	b = append2(b, s)
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z', '"'), nil
}

func append2(b []byte, n int) []byte { return append(b, byte('0'+n/10), byte('0'+n%10)) }

func append4(b []byte, n int) []byte {
	return append(b, byte('0'+n/1000), byte('0'+n/100%10), byte('0'+n/10%10), byte('0'+n%10))
}
