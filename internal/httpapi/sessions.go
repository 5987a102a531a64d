package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
)

// Canvas sign-in: one-time links, GET /login, the session cookie. The
// rules are the service's (core/sessions.go); this is their HTTP face.

func (s *Server) sessionRoutes(r chi.Router) {
	s.handle(r, "POST", "/users/{id}/login-links", s.createLoginLink)
	s.handle(r, "GET", "/session", s.getSession)
	s.handle(r, "DELETE", "/session", s.deleteSession)
}

func (s *Server) createLoginLink(w http.ResponseWriter, r *http.Request, q query) {
	if !s.noBody(w, r) {
		return
	}
	l, err := s.svc.CreateLoginLink(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, client.LoginLink{URL: l.URL, ExpiresAt: l.ExpiresAt, UserID: l.UserID})
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request, q query) {
	x, err := s.svc.CurrentSession(ctx(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, client.Session{ID: x.ID, UserID: x.UserID, Name: x.Name, Role: x.Role, CSRFToken: x.CSRFToken,
		CreatedAt: x.CreatedAt, ExpiresAt: x.ExpiresAt, IdleExpiresAt: x.IdleExpiresAt})
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request, q query) {
	if !s.noBody(w, r) {
		return
	}
	if err := s.svc.SignOut(ctx(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	s.clearSessionCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

// secureCookie: the cookie is Secure when the browser reached orgplane
// over TLS, here or at a proxy in front of it (an https advertise URL).
func (s *Server) secureCookie(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(strings.ToLower(s.svc.AdvertiseURL()), "https://")
}

func (s *Server) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: auth.SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookie(r), SameSite: http.SameSiteStrictMode})
}

// login serves GET /login?code=: a browser opening a sign-in link. It
// answers a person, not a program: a redirect to the canvas with the
// session cookie set, or a plain-text page saying what went wrong.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	// The URL holds the code: no page may pass it on as a Referer.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	code, err := loginCode(r.URL.RawQuery)
	if err == nil {
		var in core.SignedIn
		if in, err = s.svc.SignIn(ctx(r), code); err == nil {
			http.SetCookie(w, &http.Cookie{Name: auth.SessionCookie, Value: in.Cookie, Path: "/",
				MaxAge:   int(in.Session.ExpiresAt.Sub(in.Session.CreatedAt) / time.Second),
				HttpOnly: true, Secure: s.secureCookie(r), SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
	}
	e := core.AsError(err)
	if e.Status >= 500 {
		s.log.Error("sign-in failed", "status", e.Status, "request_id", auth.RequestID(r.Context()), "err", err)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(e.Status)
	fmt.Fprintf(w, "orgplane: sign-in failed (%s)\n\n%s\n\nA person who is an owner or admin of the org can make a new link with\n`orgplane users login-link NAME`; `orgplane up` prints one for the owner at every start.\n",
		e.Code, e.Message)
}

// loginCode reads the query of GET /login: exactly one code and nothing
// else.
func loginCode(raw string) (string, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return "", core.Invalid("malformed_query", "the link's query string does not parse; copy the whole link")
	}
	for name, vals := range v {
		if name != "code" {
			return "", core.Invalid("unknown_query_param", "a sign-in link has one parameter, code; this one has %q too", trimParam(name))
		}
		if len(vals) != 1 {
			return "", core.Invalid("repeated_query_param", "a sign-in link has one code; this one has %d", len(vals))
		}
	}
	if v.Get("code") == "" {
		return "", core.Invalid("missing_field", "the link has no code: copy the whole link")
	}
	return v.Get("code"), nil
}

func trimParam(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
