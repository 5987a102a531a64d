package core

import (
	"context"
	"errors"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
)

// People are user principals: owners, admins and viewers. Only owners
// manage them, and only people can be owners: no token of an agent or of
// automation creates a person (that would let it make itself one).

func validRole(role string) error {
	switch role {
	case store.RoleOwner, store.RoleAdmin, store.RoleViewer:
		return nil
	}
	return Invalid("invalid_role", "role must be owner, admin or viewer; got %q", role)
}

func requireOwner(p auth.Principal, what string) error {
	if !p.IsPerson() || p.Role != auth.RoleOwner {
		return Forbidden("%s requires an owner (a person; no token of an agent or of automation may)", what)
	}
	return nil
}

// CreateUser adds a person to the org; owners only.
func (s *Service) CreateUser(ctx context.Context, name, role string) (store.User, error) {
	p, err := principal(ctx)
	if err != nil {
		return store.User{}, err
	}
	ev := &auditEvent{Action: "user.create", TargetKind: "user", Detail: map[string]any{"name": name, "role": role}}
	var u store.User
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		if err := requireOwner(p, "adding a person"); err != nil {
			return err
		}
		if err := validName("user name", name); err != nil {
			return err
		}
		if err := validRole(role); err != nil {
			return err
		}
		u = store.User{ID: ids.New("u"), OrgID: p.OrgID, Name: name, Role: role, CreatedAt: s.clock.Now()}
		ev.TargetID = u.ID
		if err := tx.InsertUser(ctx, u); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return Conflict("a person named %q already exists", name)
			}
			return err
		}
		return nil
	})
	return u, err
}

// ListUsers lists the org's people; owners and admins (people, or admin
// tokens) only.
func (s *Service) ListUsers(ctx context.Context) ([]store.User, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireAdmin(p, "listing people"); err != nil {
		return nil, err
	}
	return s.store.ListUsers(ctx, p.OrgID)
}

// DeleteUser removes a person (id or name) and revokes their tokens and
// sessions; owners only. The org's last owner cannot be removed.
func (s *Service) DeleteUser(ctx context.Context, ref string) (store.User, error) {
	p, err := principal(ctx)
	if err != nil {
		return store.User{}, err
	}
	ev := &auditEvent{Action: "user.delete", TargetKind: "user", TargetID: ref, Detail: map[string]any{}}
	var u store.User
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		if err := requireOwner(p, "removing a person"); err != nil {
			return err
		}
		if err := tx.LockOrg(ctx, p.OrgID); err != nil { // two owners removing each other
			return err
		}
		var err error
		if ids.Valid("u", ref) {
			u, err = tx.GetUser(ctx, p.OrgID, ref)
			if err == nil && !u.RemovedAt.IsZero() {
				err = store.ErrNotFound
			}
		} else {
			u, err = tx.GetUserByName(ctx, p.OrgID, ref)
		}
		if err != nil {
			return notFoundAs(err, "user", ref)
		}
		ev.TargetID, ev.Detail["name"] = u.ID, u.Name
		if u.Role == store.RoleOwner {
			all, err := tx.ListUsers(ctx, p.OrgID)
			if err != nil {
				return err
			}
			owners := 0
			for _, x := range all {
				if x.Role == store.RoleOwner {
					owners++
				}
			}
			if owners <= 1 {
				return Refused("last_owner", "%s is the org's last owner: add another owner first", u.Name)
			}
		}
		if err := tx.RemoveUser(ctx, p.OrgID, u.ID, s.clock.Now()); err != nil {
			return err
		}
		// Their canvas sessions end with them (they would be refused
		// anyway, their person being removed).
		_, err = tx.RevokeUserSessions(ctx, p.OrgID, u.ID, s.clock.Now())
		return err
	})
	return u, err
}

// OwnerToken mints a user token for the org's person "owner" (creating
// them, an owner, if the org has none yet): an operator action of
// `orgplane up`, which keeps DATA_DIR/owner.token for the person at the
// keyboard. The secret is returned once.
func (s *Service) OwnerToken(ctx context.Context, orgID string) (string, error) {
	var secret string
	err := s.store.InTx(ctx, func(tx store.Store) error {
		now := s.clock.Now()
		u, err := tx.GetUserByName(ctx, orgID, "owner")
		switch {
		case errors.Is(err, store.ErrNotFound):
			u = store.User{ID: ids.New("u"), OrgID: orgID, Name: "owner", Role: store.RoleOwner, CreatedAt: now}
			if err := tx.InsertUser(ctx, u); err != nil {
				return err
			}
		case err != nil:
			return err
		case u.Role != store.RoleOwner:
			return Refused("not_owner", "the person named owner is a %s; give DATA_DIR/owner.token yourself", u.Role)
		}
		t := store.Token{ID: ids.New("t"), OrgID: orgID, Kind: store.TokenUser, Name: "owner-" + now.UTC().Format("20060102-150405"),
			UserID: u.ID, CreatedAt: now}
		secret, t.SecretHash = auth.NewSecret(store.TokenUser, t.ID)
		if err := tx.InsertToken(ctx, t); err != nil {
			return err
		}
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{
			Action: "token.create", TargetKind: "token", TargetID: t.ID,
			Detail: map[string]any{"kind": store.TokenUser, "name": t.Name, "user_id": u.ID, "why": "owner.token"},
		}, "ok"))
		return err
	})
	return secret, err
}
