// Package web is the canvas: server-rendered pages over the service layer,
// with a little plain JavaScript (ES modules) that adds live updates
// (/v1/events) and forms (the JSON API, with the session's CSRF token).
// Everything is embedded; there is no build step. Pages hold no rule: they
// show what the service answers for the signed-in person, and the service
// decides what that person may see and do.
package web

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/core"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CSP is the canvas's Content-Security-Policy: its own scripts, styles and
// connections only; no inline script, no inline style, no frames.
const CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

// Canvas serves the pages.
type Canvas struct {
	svc   *core.Service
	log   *slog.Logger
	pages map[string]*template.Template
}

// New parses the templates (a mistake in them is a programming error).
func New(svc *core.Service, log *slog.Logger) *Canvas {
	if log == nil {
		log = slog.Default()
	}
	c := &Canvas{svc: svc, log: log, pages: map[string]*template.Template{}}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" || base == "parts.html" {
			continue
		}
		t := template.Must(template.Must(layout.Clone()).ParseFS(templateFS, n))
		c.pages[strings.TrimSuffix(base, ".html")] = t
	}
	return c
}

// Mount adds the canvas's routes to r: the pages and /static/.
func (c *Canvas) Mount(r chi.Router) {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	r.Get("/static/*", func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	r.Get("/favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	r.Get("/", c.page("org", c.orgPage))
	r.Get("/workspaces/{id}", c.page("workspace", c.workspacePage))
	r.Get("/secrets", c.page("secrets", c.secretsPage))
	r.Get("/approvals", c.page("approvals", c.approvalsPage))
	r.Get("/requests", c.page("requests", c.requestsPage))
	r.Get("/audit", c.page("audit", c.auditPage))
	r.Get("/tokens", c.page("tokens", c.tokensPage))
	r.Get("/people", c.page("people", c.peoplePage))
	r.Get("/policy", c.page("policy", c.policyPage))
}

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
}

// principal authenticates a page request by its session cookie alone: the
// canvas is for people in a browser. No cookie, or a dead one: no
// principal (the page is the sign-in explanation).
func (c *Canvas) principal(r *http.Request) (auth.Principal, bool) {
	cookies := r.CookiesNamed(auth.SessionCookie)
	if len(cookies) == 0 {
		return auth.Principal{}, false
	}
	cred := core.Credentials{Method: http.MethodGet}
	for _, k := range cookies {
		cred.SessionCookie = append(cred.SessionCookie, k.Value)
	}
	p, err := c.svc.AuthenticateRequest(r.Context(), cred)
	if err != nil {
		return auth.Principal{}, false
	}
	return p, true
}

// pageFunc fills the page's data; an error is shown on the page.
type pageFunc func(r *http.Request, v *View) error

func (c *Canvas) page(name string, fill pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Cache-Control", "no-store")
		p, ok := c.principal(r)
		if !ok {
			c.render(w, "signin", &View{Title: "Sign in"})
			return
		}
		ctx := auth.WithPrincipal(r.Context(), p)
		r = r.WithContext(ctx)
		v := &View{Page: name, Me: p, CanWrite: p.IsAdmin(), IsOwner: p.Role == auth.RoleOwner}
		if x, err := c.svc.CurrentSession(ctx); err == nil {
			v.Name, v.CSRF = x.Name, x.CSRFToken
		} else {
			c.render(w, "signin", &View{Title: "Sign in"})
			return
		}
		c.chrome(r, v)
		if err := fill(r, v); err != nil {
			e := core.AsError(err)
			if e.Status >= 500 {
				c.log.Error("canvas page", "page", name, "err", err, "request_id", auth.RequestID(ctx))
			}
			v.Error = e
			if v.Title == "" {
				v.Title = "Error"
			}
		}
		c.render(w, name, v)
	}
}

func (c *Canvas) render(w http.ResponseWriter, name string, v *View) {
	securityHeaders(w)
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		c.log.Error("render canvas page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}
