package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/store"
)

// The hand-written encoding of workspace lists is byte for byte what
// encoding/json writes for []client.Workspace.
func TestWriteWorkspacesMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 29, 12, 34, 56, 789_000_000, time.UTC)
	base := core.Workspace{Workspace: store.Workspace{
		ID: "wabcdefghijklmnop", OrgID: "oabcdefghijklmnop", ParentID: "wqrstuvwxyz234567", Name: "researcher",
		Kind: "workspace", Runtime: "process", Spec: `{"command":["agent","--flag"],"env":{"A":"b c"}}`,
		Status: "running", RestartPolicy: "auto", Protected: true, Generation: 42, LastError: "",
		CreatedAt: t0, UpdatedAt: t0.Add(time.Microsecond),
	}, Stale: true}
	mod := func(f func(w *core.Workspace)) core.Workspace { w := base; f(&w); return w }
	cases := map[string]core.Workspace{
		"plain":      base,
		"platform":   mod(func(w *core.Workspace) { w.ParentID, w.Kind, w.Stale, w.Protected = "", "platform", false, false }),
		"empty spec": mod(func(w *core.Workspace) { w.Spec = "" }),
		"spec as written": mod(func(w *core.Workspace) {
			w.Spec = mustMarshal(t, map[string]any{"command": []string{"sh", "-c", "a && b > c < d"}})
		}),
		"spec spaced":   mod(func(w *core.Workspace) { w.Spec = "{ \"command\" : [\"x\"],\n\t\"env\": {} }" }),
		"spec html raw": mod(func(w *core.Workspace) { w.Spec = `{"command":["a && b"]}` }),
		"spec unicode":  mod(func(w *core.Workspace) { w.Spec = `{"env":{"A":"é ☃ \u2028 ` + "\u2028\u2029" + `"}}` }),
		"spec escapes":  mod(func(w *core.Workspace) { w.Spec = `{"env":{"A":"q\"uote \\ back\\\\","B":"\n"}}` }),
		"last error":    mod(func(w *core.Workspace) { w.LastError = "exit 1: <boom> & \"quoted\"\n\ttab \x1b[31m é \u2028 \xff" }),
		"zero times":    mod(func(w *core.Workspace) { w.CreatedAt, w.UpdatedAt = time.Time{}, time.Time{} }),
		"whole seconds": mod(func(w *core.Workspace) { w.CreatedAt = t0.Truncate(time.Second) }),
		"nanoseconds":   mod(func(w *core.Workspace) { w.CreatedAt = t0.Add(1) }),
		"local time":    mod(func(w *core.Workspace) { w.CreatedAt = t0.In(time.FixedZone("X", 5*3600+1800)) }),
		"negative gen":  mod(func(w *core.Workspace) { w.Generation = -3 }),
	}
	all := []core.Workspace{}
	for name, w := range cases {
		all = append(all, w)
		t.Run(name, func(t *testing.T) {
			got, err := appendWorkspace(nil, w)
			require.NoError(t, err)
			want, err := json.Marshal(WorkspaceJSON(w))
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
		})
	}
	for _, list := range [][]core.Workspace{nil, {}, all} {
		s := &Server{}
		rec := httptest.NewRecorder()
		s.writeWorkspaces(rec, httptest.NewRequest("GET", "/v1/workspaces", nil), list)
		want := httptest.NewRecorder()
		out := make([]any, len(list))
		for i, w := range list {
			out[i] = WorkspaceJSON(w)
		}
		writeJSON(want, 200, out)
		require.Equal(t, want.Body.String(), rec.Body.String())
		require.Equal(t, want.Header(), rec.Header())
	}
}

func TestAppendTimeMatchesMarshalJSON(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()/1e9, time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	for i := 0; i < 20000; i++ {
		sec := lo + r.Int64N(hi-lo)
		ns := r.Int64N(1e9)
		switch i % 4 {
		case 0:
			ns = 0
		case 1:
			ns -= ns % 1000 // micros, as the store keeps them
		case 2:
			ns -= ns % 1e6
		}
		tm := time.Unix(sec, ns).UTC()
		want, err := tm.MarshalJSON()
		require.NoError(t, err)
		got, err := appendTime(nil, tm)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "%v", tm)
	}
	_, err := appendTime(nil, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
	require.Error(t, err, "as MarshalJSON, a year past 9999 is refused")
}

func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]bool{
		`{}`: true, `{"a":"b c"}`: true, `{"a":["x",1,true,null]}`: true, `{"a":"q\"u"}`: true, `{"a":"\\"}`: true,
		`{"a":"é"}`: true, `{ }`: false, "{\n}": false, `{"a":"<"}`: false, `{"a":"&"}`: false, `{"a":1} `: false,
		`{"a":"` + "\u2028" + `"}`: false, `{"a":"unterminated}`: false,
	} {
		require.Equal(t, want, canonicalJSON(raw), raw)
		if want {
			var b bytes.Buffer
			require.NoError(t, json.Compact(&b, []byte(raw)))
			require.Equal(t, raw, b.String(), "canonical means compact")
		}
	}
}

func mustMarshal(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// BenchmarkEncodeWorkspaces10k: the answer's encoding alone, for 10,000
// workspaces: through encoding/json as before ("encoding_json"), and as
// written now ("by_hand").
func BenchmarkEncodeWorkspaces10k(b *testing.B) {
	now := time.Now().UTC()
	list := make([]core.Workspace, 10_000)
	for i := range list {
		list[i] = core.Workspace{Workspace: store.Workspace{
			ID: fmt.Sprintf("w%016d", i), OrgID: "oabcdefghijklmnop", ParentID: "wplatformplatform", Name: fmt.Sprintf("w%05d", i),
			Kind: "workspace", Runtime: "process", Spec: `{"command":["agent","--serve"],"env":{"MODE":"fast"},"ready_after_seconds":2}`,
			Status: "running", RestartPolicy: "auto", Generation: 3, CreatedAt: now, UpdatedAt: now.Add(time.Duration(i) * time.Microsecond),
		}}
	}
	req := httptest.NewRequest("GET", "/v1/workspaces", nil)
	b.Run("encoding_json", func(b *testing.B) {
		for b.Loop() {
			out := make([]client.Workspace, len(list))
			for i, x := range list {
				out[i] = WorkspaceJSON(x)
			}
			writeJSON(discardWriter{}, 200, out)
		}
	})
	b.Run("by_hand", func(b *testing.B) {
		s := &Server{}
		for b.Loop() {
			s.writeWorkspaces(discardWriter{}, req, list)
		}
	})
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (discardWriter) WriteHeader(int)             {}
