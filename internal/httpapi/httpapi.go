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
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/ids"
)

// Server serves the API.
type Server struct {
	svc     *core.Service
	log     *slog.Logger
	router  chi.Router
	metrics http.Handler
	limits  Limits
	streams *streams
}

// Options configure the server.
type Options struct {
	Logger *slog.Logger
	// Metrics serves /metrics; nil: 404.
	Metrics http.Handler
	// Extra mounts more routes on the router (e.g. the MCP endpoint, the
	// canvas) behind the same middleware.
	Extra func(r chi.Router, authn func(http.Handler) http.Handler)
	// Limits bound connections and event streams.
	Limits Limits
}

// New returns the API handler over svc.
func New(svc *core.Service, opts Options) *Server {
	s := &Server{svc: svc, log: opts.Logger, metrics: opts.Metrics, limits: opts.Limits, streams: newStreams()}
	s.limits.defaults()
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
	r.Get("/login", s.login) // a browser opening a sign-in link: no credential yet
	r.Route("/v1", func(r chi.Router) {
		r.Use(s.authenticate, s.viaHeader, dryRunOnlyOnSecrets)
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

// authenticate derives the principal from the request's credentials, once
// (the rules are the service's: core.Service.AuthenticateRequest).
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := core.Credentials{
			Authorization:    r.Header.Values("Authorization"),
			ClaimedWorkspace: r.Header.Values("X-Workspace-ID"),
		}
		if cookies := r.CookiesNamed(auth.SessionCookie); len(cookies) > 0 {
			for _, k := range cookies {
				c.SessionCookie = append(c.SessionCookie, k.Value)
			}
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			c.Method, c.Origin, c.CSRFToken = r.Method, r.Header.Values("Origin"), r.Header.Values("X-CSRF-Token")
			c.RequestOrigin = scheme + "://" + r.Host
		}
		p, err := s.svc.AuthenticateRequest(r.Context(), c)
		if err != nil {
			// An unauthenticated caller gets its answer and the connection
			// is not kept for it: its body (perhaps trickling) is not read.
			w.Header().Set("Connection", "close")
			if c.SessionCookie != nil && core.AsError(err).Status == http.StatusUnauthorized {
				s.clearSessionCookie(w, r) // a dead session: the browser may forget it
			}
			s.fail(w, r, err)
			return
		}
		ctx := core.WithAuditMark(auth.WithPrincipal(r.Context(), p))
		next.ServeHTTP(w, r.WithContext(ctx))
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
// answered without detail. A refusal of an authenticated call that the
// service did not audit (the edge's own, a read's, a heartbeat's) is
// audited here, through the service: every refused call is in the log.
// Not-found answers are left out: they are how other orgs' objects look,
// and every write's are audited by the service already.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var gated *core.ApprovalRequired
	if errors.As(err, &gated) {
		// Not a failure: the org's policy holds the call for people to
		// decide, and nothing else changed.
		writeJSON(w, http.StatusAccepted, client.ApprovalRequired{Approval: ApprovalJSON(gated.Approval)})
		return
	}
	e := core.AsError(err)
	if e.Status >= 400 && e.Status < 500 && e.Status != http.StatusNotFound {
		route := r.URL.Path
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern() // ids and keys stay out of the entry
		}
		s.svc.AuditRefusal(r.Context(), r.Method, route, e)
	}
	if e.Status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", e.Status,
			"request_id", auth.RequestID(r.Context()), "err", err)
	}
	writeError(w, e)
}

// refuse answers a call the edge refuses (its body or query string); fail
// has it audited.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) { s.fail(w, r, err) }

// readBody reads at most MaxBody bytes of the request body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *core.Error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &core.Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
				Message: fmt.Sprintf("request body is over %d bytes", MaxBody)}
		}
		return nil, core.BadRequest("read body: %v", err)
	}
	return b, nil
}

// decode reads the JSON body into v strictly (see decodeJSON); on refusal
// it answers and returns false.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := readBody(w, r)
	if err == nil {
		err = decodeJSON(r.Header.Get("Content-Type"), body, v)
	}
	if err != nil {
		s.refuse(w, r, err)
		return false
	}
	return true
}

// noBody refuses a body on an endpoint that takes none: a body there is a
// caller's mistake (perhaps a field it thinks is honoured), never ignored.
// On refusal it answers and returns false.
func (s *Server) noBody(w http.ResponseWriter, r *http.Request) bool {
	b, err := readBody(w, r)
	if err == nil && len(bytes.TrimSpace(b)) > 0 {
		err = core.Invalid("unexpected_body", "%s %s takes no request body", r.Method, r.URL.Path)
	}
	if err != nil {
		s.refuse(w, r, err)
		return false
	}
	return true
}

// dryRunOnlyOnSecrets refuses ?dry_run on writes that cannot honour it:
// silently carrying out a write the caller meant as a rehearsal would be
// the worst answer.
func dryRunOnlyOnSecrets(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && !strings.Contains(r.URL.Path, "/secrets/") && mentionsDryRun(r.URL.RawQuery) {
			writeError(w, core.Invalid("dry_run_unsupported", "dry_run is supported on secret writes (PUT/DELETE .../secrets/{key}); %s %s would really change things", r.Method, r.URL.Path))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// mentionsDryRun reports whether a query string names dry_run in any
// spelling ("dryrun", "dry-run", "DRY_RUN"): what matters is what the
// caller meant.
func mentionsDryRun(raw string) bool {
	for part := range strings.SplitSeq(raw, "&") {
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil && fold(n) == "dryrun" {
			return true
		}
	}
	return false
}

// ctx is a shorthand for handlers.
func ctx(r *http.Request) context.Context { return r.Context() }
