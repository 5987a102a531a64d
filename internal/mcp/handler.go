package mcp

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/httpapi"
)

// Handler serves /mcp: MCP over streamable HTTP, stateless.
//
// Stateless because every request carries its bearer token and is
// authenticated on its own (a token revoked between two calls is refused
// at the next), and because nothing of a session lives in one replica's
// memory: behind a reverse proxy, with several replicas on one Postgres,
// any replica answers any request. Progress notifications still reach the
// client: they travel on the stream of the call they belong to.
type Handler struct {
	svc    *core.Service
	log    *slog.Logger
	mcp    http.Handler
	byMode map[Mode]*sdk.Server
}

// NewHandler returns the /mcp handler over svc. It expects the principal in
// the request's context (the API's authentication middleware puts it
// there; see Mount).
func NewHandler(svc *core.Service, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	b := ServiceBackend{Svc: svc, Log: log}
	h := &Handler{svc: svc, log: log, byMode: map[Mode]*sdk.Server{
		Management: NewServer(Management, b),
		Workspace:  NewServer(Workspace, b),
	}}
	h.mcp = sdk.NewStreamableHTTPHandler(func(r *http.Request) *sdk.Server {
		p, _ := auth.FromContext(r.Context())
		return h.byMode[ModeOf(p)]
	}, &sdk.StreamableHTTPOptions{
		Stateless: true,
		// The SDK's DNS-rebinding guard refuses a loopback connection whose
		// Host is not loopback: exactly what a reverse proxy on the same
		// host sends. A rebinding page cannot hold a bearer token, and
		// every request here needs one, so the guard adds nothing.
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        1 << 20,
	})
	return h
}

// ModeOf is the tool set a principal is offered (see ModeFor).
func ModeOf(p auth.Principal) Mode { return ModeFor(p.Kind) }

// ModeFor is the tool set of a principal kind: workspace tokens get the
// workspace tools, admin tokens the management tools.
func ModeFor(kind string) Mode {
	if kind == auth.KindWorkspace {
		return Workspace
	}
	return Management
}

// ServeHTTP makes the caller an MCP (agent) principal, refusing people's
// credentials, and serves the call.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		httpapi.WriteError(w, core.Unauthorized("authentication required"))
		return
	}
	p, err := h.svc.EnterMCP(r.Context(), p)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	// A wait_approval may take its full 60 s; the server's write timeout
	// would cut it.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(core.MaxWait + 15*time.Second))
	h.mcp.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
}

// Mount returns the httpapi Extra hook that serves /mcp behind the API's
// authentication (bearer tokens, 401 with WWW-Authenticate otherwise).
func Mount(svc *core.Service, log *slog.Logger) func(r chi.Router, authn func(http.Handler) http.Handler) {
	return func(r chi.Router, authn func(http.Handler) http.Handler) {
		h := authn(NewHandler(svc, log))
		r.Handle("/mcp", h)
	}
}
