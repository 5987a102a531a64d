// Package httpapi is the HTTP/JSON face of the service layer. Handlers
// decode, call one service method, and encode; they hold no rule.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/ids"
)

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// Server serves the API.
type Server struct {
	svc     *core.Service
	log     *slog.Logger
	router  chi.Router
	metrics http.Handler
}

// Options configure the server.
type Options struct {
	Logger *slog.Logger
	// Metrics serves /metrics; nil: 404.
	Metrics http.Handler
	// Extra mounts more routes on the router (e.g. the MCP endpoint, the
	// canvas) behind the same middleware.
	Extra func(r chi.Router, authn func(http.Handler) http.Handler)
}

// New returns the API handler over svc.
func New(svc *core.Service, opts Options) *Server {
	s := &Server{svc: svc, log: opts.Logger, metrics: opts.Metrics}
	if s.log == nil {
		s.log = slog.Default()
	}
	r := chi.NewRouter()
	r.Use(s.requestID, s.recoverer, s.accessLog)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &core.Error{Status: 404, Code: "not_found", Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &core.Error{Status: 405, Code: "method_not_allowed", Message: r.Method + " is not allowed on " + r.URL.Path})
	})
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	r.Get("/readyz", s.readyz)
	if s.metrics != nil {
		r.Handle("/metrics", s.metrics)
	}
	r.Route("/v1", func(r chi.Router) {
		r.Use(s.authenticate, dryRunOnlyOnSecrets)
		s.routes(r)
	})
	if opts.Extra != nil {
		opts.Extra(r, s.authenticate)
	}
	s.router = r
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.svc.Ready(r.Context()); err != nil {
		s.log.Warn("not ready", "err", err)
		writeError(w, core.Unavailable("the store does not answer"))
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

type ctxKey int

const statusKey ctxKey = iota

func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if id == "" || len(id) > 64 || strings.ContainsAny(id, "\r\n\t ") {
			id = ids.New("r")
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(auth.WithRequestID(r.Context(), id)))
	})
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", fmt.Sprint(v), "request_id", auth.RequestID(r.Context()))
				writeError(w, &core.Error{Status: 500, Code: "internal", Message: "internal error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = 200
		}
		// The path only: queries and bodies could carry secret values.
		s.log.Debug("http", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"dur_ms", time.Since(start).Milliseconds(), "request_id", auth.RequestID(r.Context()))
	})
}

// authenticate derives the principal from the bearer token, once. A
// X-Workspace-ID header never establishes identity; one that disagrees with
// the token is refused.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		scheme, token, ok := strings.Cut(h, " ")
		if h == "" {
			writeError(w, core.Unauthorized("missing bearer token"))
			return
		}
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			writeError(w, core.Unauthorized("malformed Authorization header: want \"Bearer <token>\""))
			return
		}
		p, err := s.svc.Authenticate(r.Context(), strings.TrimSpace(token))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if hdr := r.Header.Values("X-Workspace-ID"); len(hdr) > 0 {
			if len(hdr) > 1 || hdr[0] == "" || hdr[0] != p.CallerWorkspace() {
				writeError(w, core.Forbidden("X-Workspace-ID does not match the token's workspace; identity comes from the token alone"))
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *core.Error) {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = e.Code, e.Message
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="orgplane"`)
	}
	writeJSON(w, e.Status, body)
}

// fail writes err; internal errors are logged with the request id and
// answered without detail.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := core.AsError(err)
	if e.Status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", e.Status,
			"request_id", auth.RequestID(r.Context()), "err", err)
	}
	writeError(w, e)
}

// decode reads a JSON body strictly: one object, no unknown fields, at most
// MaxBody bytes.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &core.Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
				Message: fmt.Sprintf("request body is over %d bytes", MaxBody)}
		}
		return core.BadRequest("read body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return core.Invalid("invalid_json", "request body is empty; want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return core.Invalid("invalid_json", "%s", jsonErr(err))
	}
	if dec.More() {
		return core.Invalid("invalid_json", "request body has data after the JSON object")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return core.Invalid("invalid_json", "request body has data after the JSON object")
	}
	return nil
}

func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", te.Field, jsonType(te.Type.Kind().String()), te.Value)
		}
		return fmt.Sprintf("body must be a JSON object, not %s", te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of body"
	}
	return "malformed JSON"
}

func jsonType(kind string) string {
	switch kind {
	case "int", "int64", "int32", "float64", "uint", "uint64":
		return "a number"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return kind
}

// noBody refuses a body on an endpoint that takes none: a body there is a
// caller's mistake (perhaps a field it thinks is honoured), never ignored.
func noBody(w http.ResponseWriter, r *http.Request) error {
	if r.Body == nil {
		return nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &core.Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
				Message: fmt.Sprintf("request body is over %d bytes", MaxBody)}
		}
		return core.BadRequest("read body: %v", err)
	}
	if len(bytes.TrimSpace(b)) > 0 {
		return core.Invalid("unexpected_body", "%s %s takes no request body", r.Method, r.URL.Path)
	}
	return nil
}

// dryRunOnlyOnSecrets refuses ?dry_run on writes that cannot honour it:
// silently carrying out a write the caller meant as a rehearsal would be
// the worst answer.
func dryRunOnlyOnSecrets(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.URL.Query()["dry_run"]; ok && r.Method != http.MethodGet && !strings.Contains(r.URL.Path, "/secrets/") {
			writeError(w, core.Invalid("dry_run_unsupported", "dry_run is supported on secret writes (PUT/DELETE .../secrets/{key}); %s %s would really change things", r.Method, r.URL.Path))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ctx is a shorthand for handlers.
func ctx(r *http.Request) context.Context { return r.Context() }
