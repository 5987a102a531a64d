package core

import (
	"context"

	"github.com/orgplane/orgplane/internal/approvals"
	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/store"
)

// EnterMCP is the rule for a call that comes through MCP (the /mcp
// endpoint, or `orgplane mcp` relaying over the API): MCP is for agents,
// so a person's credential (a user token, a canvas session) is refused,
// and whatever is let in becomes an agent principal (Via = mcp), which
// the policy's gates and the approval rules treat as such. It only ever
// adds restrictions to the credential's principal.
func (s *Service) EnterMCP(ctx context.Context, p auth.Principal) (auth.Principal, error) {
	if p.IsPerson() || p.Via == auth.ViaSession || p.Kind != auth.KindAdmin && p.Kind != auth.KindWorkspace {
		err := &Error{Status: 403, Code: "not_an_agent",
			Message: "MCP is for agents: use an admin token or a workspace token, not a person's credential"}
		if p.OrgID != "" {
			s.appendAudit(ctx, p, auditEvent{Action: "mcp.refused", TargetKind: "route",
				WorkspaceID: p.CallerWorkspace()}, outcomeOf(err))
		}
		return auth.Principal{}, err
	}
	p.Via = auth.ViaMCP
	return p, nil
}

// Done reports whether an approval has ended: an end state, or approved
// for a free-form one (which has nothing to execute). A wait stops there.
func (a Approval) Done() bool { return approvals.Final(a.State, a.Action != nil) }

// RequestDone reports whether a request has ended.
func RequestDone(r store.Request) bool { return r.State != approvals.Pending }
