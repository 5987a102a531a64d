package core

import (
	"context"
	"errors"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
)

// touchEvery bounds how often last_used_at is written: a write per request
// would make every read a write.
const touchEvery = time.Minute

// Credentials are what a request presents to say who is calling: every
// Authorization header value, and every X-Workspace-ID value (which never
// establishes identity, but must agree with it).
type Credentials struct {
	Authorization    []string
	ClaimedWorkspace []string

	// SessionCookie holds every value of the canvas session cookie
	// (auth.SessionCookie). A session caller's state-changing calls are
	// checked against cross-site use with the rest: the method, every
	// Origin and X-CSRF-Token header value, and the request's own origin
	// (scheme://host it was sent to).
	SessionCookie []string
	Method        string
	Origin        []string
	CSRFToken     []string
	RequestOrigin string
}

// AuthenticateRequest is authentication, in one place for every face: it
// takes the one bearer token of the request (ambiguous or malformed
// Authorization headers are refused before any lookup), or its canvas
// session cookie (never both: which one counts would be a guess), turns
// it into its principal, and refuses an X-Workspace-ID that disagrees
// with it. That refusal is audited: it is a caller pretending to be
// another workspace. A session's state-changing calls must also pass the
// CSRF checks (see checkSameSite).
func (s *Service) AuthenticateRequest(ctx context.Context, c Credentials) (auth.Principal, error) {
	if len(c.SessionCookie) > 0 {
		if len(c.Authorization) > 0 {
			return auth.Principal{}, Invalid("ambiguous_credentials", "a session cookie and an Authorization header: send one credential")
		}
		p, err := s.authenticateSession(ctx, c)
		if err != nil {
			return auth.Principal{}, err
		}
		return p, s.checkClaimedWorkspace(ctx, p, c.ClaimedWorkspace)
	}
	// A bearer token.
	bearer, err := auth.BearerToken(c.Authorization)
	switch {
	case errors.Is(err, auth.ErrAmbiguousCredentials):
		return auth.Principal{}, Invalid("ambiguous_credentials", "%s", err.Error())
	case errors.Is(err, auth.ErrMalformedAuthorization):
		return auth.Principal{}, &Error{Status: 401, Code: "malformed_authorization", Message: err.Error()}
	case err != nil:
		return auth.Principal{}, Unauthorized("%s", err.Error())
	}
	p, err := s.Authenticate(ctx, bearer)
	if err != nil {
		return auth.Principal{}, err
	}
	return p, s.checkClaimedWorkspace(ctx, p, c.ClaimedWorkspace)
}

// checkClaimedWorkspace refuses an X-Workspace-ID that disagrees with the
// principal, and audits it: it is a caller pretending to be another
// workspace.
func (s *Service) checkClaimedWorkspace(ctx context.Context, p auth.Principal, hdr []string) error {
	if hdr != nil {
		if len(hdr) > 1 || hdr[0] == "" || hdr[0] != p.CallerWorkspace() {
			claimed := make([]string, len(hdr))
			for i, v := range hdr {
				if !ids.Valid("w", v) {
					v = "(not a workspace id)"
				}
				claimed[i] = v
			}
			s.appendAudit(ctx, p, auditEvent{Action: "auth.workspace_mismatch", TargetKind: "workspace",
				WorkspaceID: p.CallerWorkspace(), Detail: map[string]any{"claimed": claimed}}, "denied")
			return Forbidden("X-Workspace-ID does not match the token's workspace; identity comes from the token alone")
		}
	}
	return nil
}

// Authenticate turns a bearer token into its principal. Every failure is
// the same 401 so that a caller learns nothing about which part was wrong,
// except for the states its holder may need to know about: revoked,
// expired, and a workspace (the token's own, or the acting one of an admin
// token) that was removed. A token acts from its workspace; once that is
// gone, so is the token's power.
func (s *Service) Authenticate(ctx context.Context, bearer string) (auth.Principal, error) {
	kind, id, secret, err := auth.Parse(bearer)
	if err != nil {
		return auth.Principal{}, Unauthorized("invalid token")
	}
	t, err := s.store.GetToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return auth.Principal{}, Unauthorized("invalid token")
	}
	if err != nil {
		return auth.Principal{}, err
	}
	if !auth.Verify(secret, t.SecretHash) || t.Kind != kind {
		return auth.Principal{}, Unauthorized("invalid token")
	}
	now := s.clock.Now()
	if err := s.tokenLive(ctx, t, now); err != nil {
		return auth.Principal{}, err
	}
	if now.Sub(t.LastUsedAt) > touchEvery {
		if err := s.store.TouchToken(ctx, t.ID, now); err != nil {
			s.log.Warn("record token use", "token_id", t.ID, "err", err)
		}
	}
	return s.principalOfToken(ctx, t)
}

// principalOfToken is the principal a live token stands for.
func (s *Service) principalOfToken(ctx context.Context, t store.Token) (auth.Principal, error) {
	p := auth.Principal{
		Kind:              t.Kind,
		OrgID:             t.OrgID,
		WorkspaceID:       t.WorkspaceID,
		ActingWorkspaceID: t.ActingWorkspaceID,
		TokenID:           t.ID,
		ExpiresAt:         t.ExpiresAt,
		Via:               auth.ViaToken,
	}
	if t.Kind == store.TokenUser {
		// The role is read at every call: a person's role changes take
		// effect at once.
		u, err := s.store.GetUser(ctx, t.OrgID, t.UserID)
		if err != nil {
			return auth.Principal{}, err
		}
		p.UserID, p.Role = u.ID, u.Role
	}
	return p, nil
}

// tokenLive is the rule for a token that authenticated once to keep
// working: not revoked, not expired, its workspaces not removed.
func (s *Service) tokenLive(ctx context.Context, t store.Token, now time.Time) error {
	if !t.RevokedAt.IsZero() {
		return Unauthorized("token revoked")
	}
	if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
		return Unauthorized("token expired")
	}
	if t.UserID != "" {
		u, err := s.store.GetUser(ctx, t.OrgID, t.UserID)
		if errors.Is(err, store.ErrNotFound) || err == nil && !u.RemovedAt.IsZero() {
			return Unauthorized("the person this token belongs to was removed; the token no longer works")
		}
		if err != nil {
			return err
		}
	}
	for _, ws := range []struct{ id, what string }{{t.WorkspaceID, "workspace"}, {t.ActingWorkspaceID, "acting workspace"}} {
		if ws.id == "" {
			continue
		}
		w, err := s.store.GetWorkspace(ctx, t.OrgID, ws.id)
		if errors.Is(err, store.ErrNotFound) || err == nil && w.Status == StatusRemoved {
			return Unauthorized("token's %s was removed; the token no longer works", ws.what)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Recheck reports whether the principal's token still works, for calls
// that outlive their authentication (event streams): nil, or the 401 that
// a new request with the token would get. Store failures are returned as
// they are; the caller decides whether to wait for the store.
func (s *Service) Recheck(ctx context.Context, p auth.Principal) error {
	if p.Kind == auth.KindSystem {
		return nil
	}
	if p.Via == auth.ViaSession {
		x, err := s.store.GetSession(ctx, p.TokenID)
		if errors.Is(err, store.ErrNotFound) {
			return Unauthorized("invalid session")
		}
		if err != nil {
			return err
		}
		_, err = s.sessionLive(ctx, x, s.clock.Now())
		return err
	}
	t, err := s.store.GetToken(ctx, p.TokenID)
	if errors.Is(err, store.ErrNotFound) {
		return Unauthorized("invalid token")
	}
	if err != nil {
		return err
	}
	return s.tokenLive(ctx, t, s.clock.Now())
}

// CreateTokenInput is a request to mint a token.
type CreateTokenInput struct {
	Kind              string
	Name              string
	WorkspaceID       string
	ActingWorkspaceID string
	ExpiresAt         time.Time // zero: never
}

// CreateToken mints a token. Admin and workspace tokens: admins only (an
// admin token, or a person who is an owner or admin). User tokens: a
// person mints their own, and only their own; no token speaks for a person
// it was not given by. The secret is returned once and never stored.
func (s *Service) CreateToken(ctx context.Context, in CreateTokenInput) (store.Token, string, error) {
	p, err := principal(ctx)
	if err != nil {
		return store.Token{}, "", err
	}
	ev := &auditEvent{Action: "token.create", TargetKind: "token",
		Detail: map[string]any{"kind": in.Kind, "name": in.Name}}
	var tok store.Token
	var secret string
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		if in.Kind == store.TokenUser {
			if !p.IsPerson() {
				return Forbidden("a user token is minted by the person it belongs to (sign in as them); no other token can mint one")
			}
		} else if err := requireAdmin(p, "minting a token"); err != nil {
			return err
		}
		if err := validName("token name", in.Name); err != nil {
			return err
		}
		now := s.clock.Now()
		if !in.ExpiresAt.IsZero() && !in.ExpiresAt.After(now) {
			return Invalid("invalid_expiry", "expires_at must be in the future")
		}
		switch in.Kind {
		case store.TokenAdmin:
			if in.WorkspaceID != "" {
				return Invalid("invalid_field", "workspace_id is for workspace tokens; use acting_workspace_id to bind an admin token")
			}
			if in.ActingWorkspaceID != "" {
				if _, err := s.liveWorkspace(ctx, tx, p.OrgID, in.ActingWorkspaceID); err != nil {
					return err
				}
			}
			if err := s.gate(ctx, tx, p, func(g Gates) bool { return g.AdminToken }, nil); err != nil {
				return err
			}
		case store.TokenWorkspace:
			if in.ActingWorkspaceID != "" {
				return Invalid("invalid_field", "acting_workspace_id is for admin tokens")
			}
			if in.WorkspaceID == "" {
				return Invalid("missing_field", "workspace_id is required for a workspace token")
			}
			if _, err := s.liveWorkspace(ctx, tx, p.OrgID, in.WorkspaceID); err != nil {
				return err
			}
		case store.TokenUser:
			if in.WorkspaceID != "" || in.ActingWorkspaceID != "" {
				return Invalid("invalid_field", "a user token is a person's: it takes no workspace_id nor acting_workspace_id")
			}
		default:
			return Invalid("invalid_kind", "kind must be \"admin\", \"workspace\" or \"user\"")
		}
		tok = store.Token{
			ID: ids.New("t"), OrgID: p.OrgID, Kind: in.Kind, Name: in.Name,
			WorkspaceID: in.WorkspaceID, ActingWorkspaceID: in.ActingWorkspaceID,
			CreatedAt: now, ExpiresAt: in.ExpiresAt,
		}
		if in.Kind == store.TokenUser {
			tok.UserID = p.UserID
		}
		secret, tok.SecretHash = auth.NewSecret(tok.Kind, tok.ID)
		ev.TargetID, ev.WorkspaceID = tok.ID, in.WorkspaceID
		return tx.InsertToken(ctx, tok)
	})
	if errors.Is(err, errGated) {
		params := ActionParams{Kind: in.Kind, Name: &in.Name, ActingWorkspaceID: in.ActingWorkspaceID}
		if !in.ExpiresAt.IsZero() {
			params.ExpiresAt = &in.ExpiresAt
		}
		return store.Token{}, "", s.askApproval(ctx, p, Action{Type: ActionTokenCreate, Params: params}, "Mint admin token "+in.Name)
	}
	if err != nil {
		return store.Token{}, "", err
	}
	return tok, secret, nil
}

// ListTokens lists the org's tokens, without secrets; admins only.
func (s *Service) ListTokens(ctx context.Context) ([]store.Token, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireReader(p, "listing tokens"); err != nil {
		return nil, err
	}
	return s.store.ListTokens(ctx, p.OrgID)
}

// RevokeToken revokes a token of the org; admins only. Revoking a revoked
// token is not an error.
func (s *Service) RevokeToken(ctx context.Context, id string) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	ev := &auditEvent{Action: "token.revoke", TargetKind: "token", TargetID: id}
	return s.mutate(ctx, p, ev, func(tx store.Store) error {
		if !ids.Valid("t", id) {
			return NotFound("token", id)
		}
		t, err := tx.GetToken(ctx, id)
		if err != nil || t.OrgID != p.OrgID {
			return notFoundAs(orNotFound(err), "token", id)
		}
		// A person may always revoke their own user tokens, a viewer too.
		if own := p.IsPerson() && t.UserID == p.UserID; !own {
			if err := requireAdmin(p, "revoking a token"); err != nil {
				return err
			}
		}
		ev.WorkspaceID = t.WorkspaceID
		boxWS := t.WorkspaceID
		if boxWS == "" {
			boxWS = t.ActingWorkspaceID // the platform's management token
		}
		if boxWS != "" && t.BoxGeneration > 0 && t.RevokedAt.IsZero() {
			// Revoking a token a live box runs with would make it exit and
			// be recovered: a restart by another name, and of the platform
			// too. A restart rotates it, explicitly and audited.
			// Locked: a restart that commits meanwhile makes it current or not.
			if w, err := tx.GetWorkspaceForUpdate(ctx, p.OrgID, boxWS); err == nil && w.Generation == t.BoxGeneration && hasBox(w.Status) {
				return Refused("box_token_in_use", "token %s is the current box token of workspace %s (generation %d); restart the workspace to rotate it (POST /v1/workspaces/%s/restart)",
					id, w.ID, w.Generation, w.ID)
			}
		}
		return tx.RevokeToken(ctx, p.OrgID, id, s.clock.Now())
	})
}

// orNotFound turns a nil error (found, but in another org) into ErrNotFound.
func orNotFound(err error) error {
	if err == nil {
		return store.ErrNotFound
	}
	return err
}
