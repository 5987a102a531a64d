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
	"github.com/orgplane/orgplane/internal/store"
)

func (s *Server) routes(r chi.Router) {
	r.Get("/whoami", s.whoami)
	r.Get("/workspaces", s.listWorkspaces)
	r.Post("/workspaces", s.createWorkspace)
	r.Get("/workspaces/{id}", s.getWorkspace)
	r.Patch("/workspaces/{id}", s.patchWorkspace)
	r.Delete("/workspaces/{id}", s.deleteWorkspace)
	r.Get("/tokens", s.listTokens)
	r.Post("/tokens", s.createToken)
	r.Delete("/tokens/{id}", s.revokeToken)
	r.Get("/audit", s.listAudit)
	s.boxRoutes(r)
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	writeJSON(w, 200, client.Whoami{Principal: client.Principal{
		Kind: p.Kind, OrgID: p.OrgID, WorkspaceID: p.WorkspaceID,
		ActingWorkspaceID: p.ActingWorkspaceID, TokenID: p.TokenID,
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

func (s *Server) listWorkspaces(w http.ResponseWriter, r *http.Request) {
	list, err := s.svc.ListWorkspaces(ctx(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]client.Workspace, len(list))
	for i, x := range list {
		out[i] = WorkspaceJSON(x)
	}
	writeJSON(w, 200, out)
}

func (s *Server) createWorkspace(w http.ResponseWriter, r *http.Request) {
	var in client.CreateWorkspace
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
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

func (s *Server) getWorkspace(w http.ResponseWriter, r *http.Request) {
	ws, err := s.svc.GetWorkspace(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, WorkspaceJSON(ws))
}

func (s *Server) patchWorkspace(w http.ResponseWriter, r *http.Request) {
	var in client.PatchWorkspace
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
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

func boolQuery(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, core.Invalid("invalid_query", "%s must be true or false; got %q", name, v)
	}
	return b, nil
}

func (s *Server) deleteWorkspace(w http.ResponseWriter, r *http.Request) {
	if err := noBody(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	cascade, err := boolQuery(r, "cascade")
	if err != nil {
		s.fail(w, r, err)
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
		ActingWorkspaceID: t.ActingWorkspaceID, CreatedAt: t.CreatedAt, ExpiresAt: timePtr(t.ExpiresAt),
		RevokedAt: timePtr(t.RevokedAt), LastUsedAt: timePtr(t.LastUsedAt),
	}
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
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

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var in client.CreateToken
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
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

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	if err := noBody(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.svc.RevokeToken(ctx(r), chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func intQuery(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, core.Invalid("invalid_query", "%s must be a non-negative integer; got %q", name, v)
	}
	return n, nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	limit, err := intQuery(r, "limit")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	before, err := intQuery(r, "before")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if limit == 0 {
		limit = 100
	}
	list, err := s.svc.ListAudit(ctx(r), store.AuditFilter{
		WorkspaceID: r.URL.Query().Get("workspace_id"), Before: before, Limit: int(limit),
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
	if len(list) == int(limit) {
		page.NextBefore = list[len(list)-1].ID
	}
	writeJSON(w, 200, page)
}
