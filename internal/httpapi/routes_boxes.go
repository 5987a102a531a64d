package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/store"
)

func (s *Server) boxRoutes(r chi.Router) {
	s.handle(r, "POST", "/workspaces/{id}/restart", s.restartWorkspace)
	s.handle(r, "POST", "/workspaces/{id}/pause", s.pauseWorkspace)
	s.handle(r, "POST", "/workspaces/{id}/resume", s.resumeWorkspace)
	s.handle(r, "GET", "/workspaces/{id}/restarts", s.listRestarts, "limit")
	s.handle(r, "POST", "/workspaces/{id}/heartbeat", s.heartbeat)
	s.handle(r, "GET", "/workspaces/{id}/logs", s.logs, "tail")
	s.handle(r, "GET", "/restarts", s.listOrgRestarts, "limit", "after")
	s.handle(r, "GET", "/restarts/{id}", s.getRestart)
	s.handle(r, "GET", "/changes/{id}", s.getChange)
	s.handle(r, "GET", "/changes/{id}/decisions", s.listChangeDecisions, "limit", "after")

	s.handle(r, "GET", "/workspaces/{id}/secrets", s.listWorkspaceSecrets)
	s.handle(r, "GET", "/workspaces/{id}/secrets/values", s.secretValues)
	s.handle(r, "PUT", "/workspaces/{id}/secrets/{key}", s.putWorkspaceSecret, "dry_run")
	s.handle(r, "DELETE", "/workspaces/{id}/secrets/{key}", s.deleteWorkspaceSecret, "dry_run")
	s.handle(r, "GET", "/secrets", s.listGlobalSecrets)
	s.handle(r, "PUT", "/secrets/{key}", s.putGlobalSecret, "dry_run")
	s.handle(r, "DELETE", "/secrets/{key}", s.deleteGlobalSecret, "dry_run")

	s.handle(r, "GET", "/events", s.eventsStream)
}

// JobJSON converts a restart job to its API shape.
func JobJSON(j store.RestartJob) client.RestartJob {
	return client.RestartJob{
		ID: j.ID, OrgID: j.OrgID, WorkspaceID: j.WorkspaceID, Automatic: j.Automatic, State: j.State,
		Reason: j.Reason, RequestedReason: j.Note, Attempts: j.Attempts, MaxAttempts: j.MaxAttempts,
		Generation: j.Generation, Error: j.Error, ChangeID: j.ChangeID, CreatedAt: j.CreatedAt,
		UpdatedAt: j.UpdatedAt, StartedAt: timePtr(j.StartedAt), FinishedAt: timePtr(j.FinishedAt),
	}
}

func jobsJSON(list []store.RestartJob) []client.RestartJob {
	out := make([]client.RestartJob, len(list))
	for i, j := range list {
		out[i] = JobJSON(j)
	}
	return out
}

type restartBody struct {
	Reason string `json:"reason"`
}

func (s *Server) restartWorkspace(w http.ResponseWriter, r *http.Request, q query) {
	var in restartBody
	if r.ContentLength != 0 {
		if !s.decode(w, r, &in) {
			return
		}
	}
	j, err := s.svc.RestartWorkspace(ctx(r), chi.URLParam(r, "id"), in.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]client.RestartJob{"job": JobJSON(j)})
}

func (s *Server) pauseWorkspace(w http.ResponseWriter, r *http.Request, q query) {
	if !s.noBody(w, r) {
		return
	}
	ws, err := s.svc.PauseWorkspace(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, WorkspaceJSON(ws))
}

func (s *Server) resumeWorkspace(w http.ResponseWriter, r *http.Request, q query) {
	if !s.noBody(w, r) {
		return
	}
	ws, err := s.svc.ResumeWorkspace(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, WorkspaceJSON(ws))
}

func (s *Server) listRestarts(w http.ResponseWriter, r *http.Request, q query) {
	limit, qerr := q.Int("limit")
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	list, err := s.svc.ListRestarts(ctx(r), chi.URLParam(r, "id"), int(limit))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, jobsJSON(list))
}

// listOrgRestarts lists the org's restart jobs newest first, paged by
// (created_at, id) with an after cursor from the Link header.
func (s *Server) listOrgRestarts(w http.ResponseWriter, r *http.Request, q query) {
	pg, qerr := parsePage(q, "restarts", 0, func(k string) bool { _, ok := jobCursor(k); return ok })
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	before, _ := jobCursor(pg.After)
	list, err := s.svc.ListOrgRestarts(ctx(r), pg.Fetch(), before)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list = trimPage(w, r, pg, list, func(j store.RestartJob) string {
		return strconv.FormatInt(j.CreatedAt.UnixMicro(), 10) + "." + j.ID
	})
	writeJSON(w, 200, jobsJSON(list))
}

// jobCursor reads a restarts cursor key: "<created_at µs>.<job id>".
func jobCursor(key string) (store.JobCursor, bool) {
	if key == "" {
		return store.JobCursor{}, true
	}
	at, id, ok := strings.Cut(key, ".")
	us, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || us <= 0 || !ids.Valid("j", id) {
		return store.JobCursor{}, false
	}
	return store.JobCursor{CreatedAt: time.UnixMicro(us).UTC(), ID: id}, true
}

func (s *Server) getRestart(w http.ResponseWriter, r *http.Request, q query) {
	j, err := s.svc.GetRestart(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, JobJSON(j))
}

type heartbeatBody struct {
	Generation  int64  `json:"generation"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Status      string `json:"status,omitempty"`
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, q query) {
	var in heartbeatBody
	if !s.decode(w, r, &in) {
		return
	}
	ws, err := s.svc.Heartbeat(ctx(r), chi.URLParam(r, "id"), in.Generation, in.Fingerprint)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, map[string]any{"workspace_id": ws.ID, "generation": ws.Generation, "status": ws.Status})
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request, q query) {
	tail, qerr := q.Int("tail")
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	b, err := s.svc.Logs(ctx(r), chi.URLParam(r, "id"), int(tail))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}

func secretsJSON(list []core.SecretMeta) []client.SecretMeta {
	out := make([]client.SecretMeta, len(list))
	for i, m := range list {
		out[i] = client.SecretMeta{Key: m.Key, Scope: m.Scope(), WorkspaceID: m.WorkspaceID,
			OverridesGlobal: m.OverridesGlobal, Version: m.Version, UpdatedAt: m.UpdatedAt}
	}
	return out
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request, wsID string) {
	list, err := s.svc.ListSecrets(ctx(r), wsID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, secretsJSON(list))
}

func (s *Server) listWorkspaceSecrets(w http.ResponseWriter, r *http.Request, q query) {
	s.listSecrets(w, r, chi.URLParam(r, "id"))
}

func (s *Server) listGlobalSecrets(w http.ResponseWriter, r *http.Request, q query) {
	s.listSecrets(w, r, "")
}

func (s *Server) secretValues(w http.ResponseWriter, r *http.Request, q query) {
	env, err := s.svc.SecretValues(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, env)
}

type secretBody struct {
	Value *string `json:"value"`
}

func writeResult(out core.SecretWrite) client.SecretWrite {
	res := client.SecretWrite{Key: out.Key, Scope: out.Scope, Version: out.Version, DryRun: out.DryRun,
		ChangeID: out.ChangeID, Summary: out.Summary}
	ds := out.Decisions
	if len(ds) > core.InlineDecisions {
		ds, res.DecisionsTruncated = ds[:core.InlineDecisions], true
	}
	res.Decisions = decisionsJSON(ds)
	if res.Decisions == nil {
		res.Decisions = []client.Decision{}
	}
	return res
}

// ChangeJSON converts a change to its API shape.
func ChangeJSON(c core.ChangeStatus) client.Change {
	out := client.Change{ID: c.ID, OrgID: c.OrgID, Key: c.Key, Scope: "global", WorkspaceID: c.WorkspaceID, Op: c.Op,
		CreatedAt: c.CreatedAt, FinishedAt: timePtr(c.FinishedAt), State: c.State, Total: c.Total, Counts: c.Counts,
		Restarts: client.ChangeRestarts{Queued: c.Restarts, Pending: c.Pending, Running: c.Running,
			Succeeded: c.Succeeded, Failed: c.Failed, Cancelled: c.Cancelled}}
	if c.WorkspaceID != "" {
		out.Scope = "workspace"
	}
	if out.Counts == nil {
		out.Counts = map[string]int{}
	}
	return out
}

func (s *Server) getChange(w http.ResponseWriter, r *http.Request, q query) {
	c, err := s.svc.GetChange(ctx(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, ChangeJSON(c))
}

// listChangeDecisions pages a change's decisions by workspace id (limit:
// default and most 1,000; after: a cursor from the Link header).
func (s *Server) listChangeDecisions(w http.ResponseWriter, r *http.Request, q query) {
	pg, qerr := parsePage(q, "decisions", core.InlineDecisions, func(k string) bool { return ids.Valid("w", k) })
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	list, err := s.svc.ListChangeDecisions(ctx(r), chi.URLParam(r, "id"), pg.After, pg.Fetch())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list = trimPage(w, r, pg, list, func(d propagation.Decision) string { return d.WorkspaceID })
	out := decisionsJSON(list)
	if out == nil {
		out = []client.Decision{}
	}
	writeJSON(w, 200, out)
}

func (s *Server) putSecret(w http.ResponseWriter, r *http.Request, q query, wsID string) {
	dry, qerr := q.Bool("dry_run")
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	var in secretBody
	if !s.decode(w, r, &in) {
		return
	}
	if in.Value == nil {
		s.refuse(w, r, core.Invalid("missing_field", "value is required (a string)"))
		return
	}
	out, err := s.svc.SetSecret(ctx(r), wsID, chi.URLParam(r, "key"), *in.Value, dry)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, writeResult(out))
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request, q query, wsID string) {
	if !s.noBody(w, r) {
		return
	}
	dry, qerr := q.Bool("dry_run")
	if qerr != nil {
		s.refuse(w, r, qerr)
		return
	}
	out, err := s.svc.DeleteSecret(ctx(r), wsID, chi.URLParam(r, "key"), dry)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, writeResult(out))
}

func (s *Server) putWorkspaceSecret(w http.ResponseWriter, r *http.Request, q query) {
	s.putSecret(w, r, q, chi.URLParam(r, "id"))
}
func (s *Server) deleteWorkspaceSecret(w http.ResponseWriter, r *http.Request, q query) {
	s.deleteSecret(w, r, q, chi.URLParam(r, "id"))
}
func (s *Server) putGlobalSecret(w http.ResponseWriter, r *http.Request, q query) {
	s.putSecret(w, r, q, "")
}
func (s *Server) deleteGlobalSecret(w http.ResponseWriter, r *http.Request, q query) {
	s.deleteSecret(w, r, q, "")
}
