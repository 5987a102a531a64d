package httpapi

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/store"
)

// viaHeader honours X-Orgplane-Via: mcp, which `orgplane mcp` sends on
// every call it relays: the call is then an MCP call, exactly as if it had
// come to /mcp (core.Service.EnterMCP: an agent principal; a person's
// credential refused). The header can only add restrictions, never remove
// them: a caller that leaves it out is what its credential says it is, and
// a caller that sends it only gives up what an MCP call may not do. Any
// other value is refused, so that a typo is not silently ignored.
func (s *Server) viaHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vals := r.Header.Values(client.ViaHeader)
		if len(vals) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if len(vals) != 1 || vals[0] != auth.ViaMCP {
			s.refuse(w, r, core.Invalid("invalid_via", "%s: the only value is %q", client.ViaHeader, auth.ViaMCP))
			return
		}
		p, _ := auth.FromContext(r.Context())
		p, err := s.svc.EnterMCP(r.Context(), p)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// waitRoutes are the long polls on one approval or request, for faces that
// cannot hold a core.Service (`orgplane mcp`): at most core.MaxWait.
func (s *Server) waitRoutes(r chi.Router) {
	s.handle(r, "GET", "/approvals/{id}/wait", s.waitApproval, "timeout_seconds")
	s.handle(r, "GET", "/requests/{id}/wait", s.waitRequest, "timeout_seconds")
}

// waitTimeout reads timeout_seconds (default and cap core.MaxWait) and
// gives the answer room past the server's write timeout.
func (s *Server) waitTimeout(w http.ResponseWriter, r *http.Request, q query) (time.Duration, bool) {
	secs, qerr := q.Int("timeout_seconds")
	if qerr == nil && (secs < 0 || secs > int64(core.MaxWait/time.Second)) {
		qerr = core.Invalid("invalid_timeout", "timeout_seconds must be between 1 and %d", int(core.MaxWait/time.Second))
	}
	if qerr != nil {
		s.refuse(w, r, qerr)
		return 0, false
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(core.MaxWait + 15*time.Second))
	return time.Duration(secs) * time.Second, true
}

func (s *Server) waitApproval(w http.ResponseWriter, r *http.Request, q query) {
	timeout, ok := s.waitTimeout(w, r, q)
	if !ok {
		return
	}
	a, err := s.svc.WaitApproval(ctx(r), chi.URLParam(r, "id"), timeout, nil)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, client.WaitedApproval{Done: a.Done(), Approval: ApprovalJSON(a)})
}

func (s *Server) waitRequest(w http.ResponseWriter, r *http.Request, q query) {
	timeout, ok := s.waitTimeout(w, r, q)
	if !ok {
		return
	}
	x, err := s.svc.WaitRequest(ctx(r), chi.URLParam(r, "id"), timeout, nil)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, client.WaitedRequest{Done: core.RequestDone(x), Request: RequestJSON(x)})
}

// Converters for the other faces (MCP): one API shape for every face.

// SecretsJSON converts secret metadata (never values) to its API shape.
func SecretsJSON(list []core.SecretMeta) []client.SecretMeta { return secretsJSON(list) }

// SecretWriteJSON converts a secret write's answer to its API shape.
func SecretWriteJSON(out core.SecretWrite) client.SecretWrite { return writeResult(out) }

// JobsJSON converts restart jobs to their API shape.
func JobsJSON(list []store.RestartJob) []client.RestartJob { return jobsJSON(list) }

// AuditJSON converts audit entries to their API shape.
func AuditJSON(e store.AuditEntry) client.AuditEntry {
	return client.AuditEntry{
		ID: e.ID, At: e.At, TokenID: e.TokenID, PrincipalKind: e.PrincipalKind,
		ActingWorkspaceID: e.ActingWorkspaceID, Action: e.Action, TargetKind: e.TargetKind,
		TargetID: e.TargetID, WorkspaceID: e.WorkspaceID, Outcome: e.Outcome,
		RequestID: e.RequestID, Detail: []byte(e.Detail),
	}
}

// PrincipalJSON converts a principal to its API shape (GET /v1/whoami).
func PrincipalJSON(p auth.Principal) client.Principal {
	return client.Principal{Kind: p.Kind, OrgID: p.OrgID, WorkspaceID: p.WorkspaceID,
		ActingWorkspaceID: p.ActingWorkspaceID, TokenID: p.TokenID, UserID: p.UserID, Role: p.Role}
}

// WriteError answers err in the API's error shape (with WWW-Authenticate
// on a 401), for other faces served beside the API (/mcp).
func WriteError(w http.ResponseWriter, err error) { writeError(w, core.AsError(err)) }
