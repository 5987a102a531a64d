package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
)

// handler is an endpoint: it gets the request's query string, already
// checked against the parameters the route declares.
type handler func(w http.ResponseWriter, r *http.Request, q query)

// handle registers h; params are the query parameters the route takes,
// exactly: any other name, a repeated one, or a query string that does not
// parse is refused before h runs.
func (s *Server) handle(r chi.Router, method, pattern string, h handler, params ...string) {
	r.Method(method, pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, ok := s.q(w, r, params...)
		if !ok {
			return
		}
		h(w, r, q)
	}))
}

func (s *Server) routes(r chi.Router) {
	s.handle(r, "GET", "/whoami", s.whoami)
	s.handle(r, "GET", "/workspaces", s.listWorkspaces, "limit", "after")
	s.handle(r, "POST", "/workspaces", s.createWorkspace)
	s.handle(r, "GET", "/workspaces/{id}", s.getWorkspace)
	s.handle(r, "PATCH", "/workspaces/{id}", s.patchWorkspace)
	s.handle(r, "DELETE", "/workspaces/{id}", s.deleteWorkspace, "cascade")
	s.handle(r, "GET", "/tokens", s.listTokens)
	s.handle(r, "POST", "/tokens", s.createToken)
	s.handle(r, "DELETE", "/tokens/{id}", s.revokeToken)
	s.handle(r, "GET", "/audit", s.listAudit, "workspace_id", "limit", "before", "after")
	s.handle(r, "GET", "/policy", s.getPolicy)
	s.handle(r, "PUT", "/policy", s.putPolicy)
	s.handle(r, "GET", "/users", s.listUsers)
	s.handle(r, "POST", "/users", s.createUser)
	s.handle(r, "DELETE", "/users/{id}", s.deleteUser)
	s.boxRoutes(r)
	s.approvalRoutes(r)
	s.sessionRoutes(r)
	s.waitRoutes(r)
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, q query) {
	p, _ := auth.FromContext(r.Context())
	writeJSON(w, 200, client.Whoami{Principal: client.Principal{
		Kind: p.Kind, OrgID: p.OrgID, WorkspaceID: p.WorkspaceID,
		ActingWorkspaceID: p.ActingWorkspaceID, TokenID: p.TokenID, UserID: p.UserID, Role: p.Role,
	}})
}

// WorkspaceJSON converts a workspace to its API shape.
func WorkspaceJSON(w core.Workspace) client.Workspace {
	out := client.Workspace{
		ID: w.ID, OrgID: w.OrgID, Name: w.Name, Kind: w.Kind, Runtime: w.Runtime,
		Spec: json.RawMessage(w.Spec), Status: w.Status, RestartPolicy: w.RestartPolicy,
		Protected: w.Protected, Generation: w.Generation, Stale: w.Stale, LastError: w.LastError,
		CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt,
	}
	if w.ParentID != "" {
		pid := w.ParentID
		out.ParentID = &pid
	}
	if len(out.Spec) == 0 {
		out.Spec = json.RawMessage("{}")
	}
	return out
}

// listWorkspaces pages by id; without a limit it answers the whole list,
// as it did before paging.
func (s *Server) listWorkspaces(w http.ResponseWriter, r *http.Request, q query) {
	p, qerr := parsePage(q, "ws", 0, func(key string) bool { return ids.Valid("w", key) })
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	list, more, err := s.svc.ListWorkspacesPage(ctx(r), store.ListParams{After: p.After, Limit: p.Limit})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if more {
		p.setNext(w, r, list[len(list)-1].ID)
	}
	s.writeWorkspaces(w, r, list)
}

func (s *Server) createWorkspace(w http.ResponseWriter, r *http.Request, q query) {
	var in client.CreateWorkspace
	if !s.decode(w, r, &in) {
		return
	}
	ws, err := s.svc.CreateWorkspace(ctx(r), core.CreateWorkspaceInput{
		Name: in.Name, ParentID: in.ParentID, Runtime: in.Runtime, Spec: in.Spec,
		RestartPolicy: in.RestartPolicy, Protected: in.Protected, Start: in.Start,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, WorkspaceJSON(ws))
}

func (s *Server) getWorkspace(w http.ResponseWriter, r *http.Request, q query) {
	ws, err := s.svc.GetWorkspace(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, WorkspaceJSON(ws))
}

func (s *Server) patchWorkspace(w http.ResponseWriter, r *http.Request, q query) {
	var in client.PatchWorkspace
	if !s.decode(w, r, &in) {
		return
	}
	ws, err := s.svc.UpdateWorkspace(ctx(r), chi.URLParam(r, "id"), core.PatchWorkspaceInput{
		Name: in.Name, ParentID: in.ParentID, Spec: in.Spec, RestartPolicy: in.RestartPolicy, Protected: in.Protected,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, WorkspaceJSON(ws))
}

func (s *Server) deleteWorkspace(w http.ResponseWriter, r *http.Request, q query) {
	if !s.noBody(w, r) {
		return
	}
	cascade, qerr := q.Bool("cascade")
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	removed, err := s.svc.DeleteWorkspace(ctx(r), chi.URLParam(r, "id"), cascade)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, client.DeleteWorkspaceResult{Removed: removed})
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// TokenJSON converts a token to its API shape (never its hash).
func TokenJSON(t store.Token) client.Token {
	return client.Token{
		ID: t.ID, OrgID: t.OrgID, Kind: t.Kind, Name: t.Name, WorkspaceID: t.WorkspaceID,
		ActingWorkspaceID: t.ActingWorkspaceID, UserID: t.UserID, CreatedAt: t.CreatedAt, ExpiresAt: timePtr(t.ExpiresAt),
		RevokedAt: timePtr(t.RevokedAt), LastUsedAt: timePtr(t.LastUsedAt),
	}
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, q query) {
	list, err := s.svc.ListTokens(ctx(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]client.Token, len(list))
	for i, t := range list {
		out[i] = TokenJSON(t)
	}
	writeJSON(w, 200, out)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, q query) {
	var in client.CreateToken
	if !s.decode(w, r, &in) {
		return
	}
	ci := core.CreateTokenInput{Kind: in.Kind, Name: in.Name, WorkspaceID: in.WorkspaceID, ActingWorkspaceID: in.ActingWorkspaceID}
	if in.ExpiresAt != nil {
		ci.ExpiresAt = in.ExpiresAt.UTC()
	}
	t, secret, err := s.svc.CreateToken(ctx(r), ci)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, client.CreatedToken{Token: TokenJSON(t), Secret: secret})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, q query) {
	if !s.noBody(w, r) {
		return
	}
	if err := s.svc.RevokeToken(ctx(r), chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listAudit pages newest first: after (a cursor) and before (an entry id,
// the older way) both mean "older than".
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, q query) {
	p, qerr := parsePage(q, "audit", 100, func(key string) bool {
		n, err := strconv.ParseInt(key, 10, 64)
		return err == nil && n > 0 && strconv.FormatInt(n, 10) == key
	})
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	before, qerr := q.Int("before")
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	if q.Has("before") && q.Has("after") {
		s.refuse(w, r, core.Invalid("invalid_query", "give after or before, not both: both page to older entries"))
		return
	}
	if p.After != "" {
		before, _ = strconv.ParseInt(p.After, 10, 64)
	}
	wsID, qerr := q.ID("workspace_id", "w")
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	list, more, err := s.svc.ListAuditPage(ctx(r), store.AuditFilter{
		WorkspaceID: wsID, Before: before, Limit: p.Limit,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page := client.AuditPage{Entries: make([]client.AuditEntry, len(list))}
	for i, e := range list {
		page.Entries[i] = client.AuditEntry{
			ID: e.ID, At: e.At, TokenID: e.TokenID, PrincipalKind: e.PrincipalKind,
			ActingWorkspaceID: e.ActingWorkspaceID, Action: e.Action, TargetKind: e.TargetKind,
			TargetID: e.TargetID, WorkspaceID: e.WorkspaceID, Outcome: e.Outcome,
			RequestID: e.RequestID, Detail: json.RawMessage(e.Detail),
		}
	}
	if more {
		last := list[len(list)-1].ID
		page.NextBefore = last
		p.setNext(w, r, strconv.FormatInt(last, 10))
	}
	writeJSON(w, 200, page)
}

// UserJSON converts a person to their API shape.
func UserJSON(u store.User) client.User {
	return client.User{ID: u.ID, OrgID: u.OrgID, Name: u.Name, Role: u.Role, CreatedAt: u.CreatedAt}
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, q query) {
	list, err := s.svc.ListUsers(ctx(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]client.User, len(list))
	for i, u := range list {
		out[i] = UserJSON(u)
	}
	writeJSON(w, 200, out)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, q query) {
	var in client.CreateUser
	if !s.decode(w, r, &in) {
		return
	}
	u, err := s.svc.CreateUser(ctx(r), in.Name, in.Role)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, UserJSON(u))
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, q query) {
	if !s.noBody(w, r) {
		return
	}
	if _, err := s.svc.DeleteUser(ctx(r), chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// PolicyJSON converts a policy to its API shape.
func PolicyJSON(p core.Policy) client.Policy {
	return client.Policy{
		Gates: client.PolicyGates{PlatformRestart: p.Gates.PlatformRestart, GlobalSecret: p.Gates.GlobalSecret,
			WorkspaceDelete: p.Gates.WorkspaceDelete, AdminToken: p.Gates.AdminToken, WorkspaceProtection: p.Gates.WorkspaceProtection},
		RestartThreshold: p.RestartThreshold, Quorum: p.Quorum, DefaultTTLSeconds: p.DefaultTTLSeconds,
		MaxTTLSeconds: p.MaxTTLSeconds, UpdatedAt: timePtr(p.UpdatedAt),
	}
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, q query) {
	p, err := s.svc.GetPolicy(ctx(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, PolicyJSON(p))
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request, q query) {
	var in client.PutPolicy
	if !s.decode(w, r, &in) {
		return
	}
	pi := core.PolicyInput{RestartThreshold: in.RestartThreshold, Quorum: in.Quorum,
		DefaultTTLSeconds: in.DefaultTTLSeconds, MaxTTLSeconds: in.MaxTTLSeconds}
	if g := in.Gates; g != nil {
		pi.PlatformRestart, pi.GlobalSecret, pi.WorkspaceDelete = g.PlatformRestart, g.GlobalSecret, g.WorkspaceDelete
		pi.AdminToken, pi.WorkspaceProtection = g.AdminToken, g.WorkspaceProtection
	}
	p, err := s.svc.SetPolicy(ctx(r), pi)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, PolicyJSON(p))
}
