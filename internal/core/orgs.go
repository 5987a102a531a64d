package core

import (
	"context"
	"errors"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
)

// NewOrg is what creating an org returns.
type NewOrg struct {
	Org      store.Org
	Platform store.Workspace
	Token    store.Token
	// Secret is the first admin token, shown once.
	Secret string
	// Owner is the org's first person, "owner" (role owner), and
	// OwnerSecret a user token of theirs, shown once: people decide, and
	// an org needs one from the start.
	Owner       store.User
	OwnerSecret string
}

// CreateOrg creates an org, its platform workspace and a first admin token
// in one transaction. It is an operator action on the store (no caller
// principal): `orgplane org create` and `orgplane up` use it. The platform
// workspace is created provisioning: a running control plane starts its box
// (the reference agent, home of the org's concierge).
func (s *Service) CreateOrg(ctx context.Context, name string) (NewOrg, error) {
	if err := validName("org name", name); err != nil {
		return NewOrg{}, err
	}
	now := s.clock.Now()
	var out NewOrg
	err := s.store.InTx(ctx, func(tx store.Store) error {
		out.Org = store.Org{ID: ids.New("o"), Name: name, CreatedAt: now}
		if err := tx.CreateOrg(ctx, out.Org); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return Conflict("an org named %q already exists", name)
			}
			return err
		}
		out.Platform = store.Workspace{
			ID: ids.New("w"), OrgID: out.Org.ID, Name: "platform", Kind: store.KindPlatform,
			Runtime: RuntimeProcess, Spec: "{}", Status: StatusProvisioning, RestartPolicy: PolicyAuto,
			CreatedAt: now, UpdatedAt: now,
		}
		if err := tx.InsertWorkspace(ctx, out.Platform); err != nil {
			return err
		}
		out.Token = store.Token{ID: ids.New("t"), OrgID: out.Org.ID, Kind: store.TokenAdmin, Name: "first-admin", CreatedAt: now}
		out.Secret, out.Token.SecretHash = auth.NewSecret(store.TokenAdmin, out.Token.ID)
		if err := tx.InsertToken(ctx, out.Token); err != nil {
			return err
		}
		out.Owner = store.User{ID: ids.New("u"), OrgID: out.Org.ID, Name: "owner", Role: store.RoleOwner, CreatedAt: now}
		if err := tx.InsertUser(ctx, out.Owner); err != nil {
			return err
		}
		ot := store.Token{ID: ids.New("t"), OrgID: out.Org.ID, Kind: store.TokenUser, Name: "owner-first", UserID: out.Owner.ID, CreatedAt: now}
		out.OwnerSecret, ot.SecretHash = auth.NewSecret(store.TokenUser, ot.ID)
		if err := tx.InsertToken(ctx, ot); err != nil {
			return err
		}
		sys := auth.Principal{Kind: auth.KindSystem, OrgID: out.Org.ID}
		_, err := tx.AppendAudit(ctx, s.auditEntry(ctx, sys, auditEvent{
			Action: "org.create", TargetKind: "org", TargetID: out.Org.ID,
			Detail: map[string]any{"name": name, "platform_workspace_id": out.Platform.ID, "admin_token_id": out.Token.ID,
				"owner_user_id": out.Owner.ID, "owner_token_id": ot.ID},
		}, "ok"))
		return err
	})
	if err != nil {
		return NewOrg{}, err
	}
	return out, nil
}

// StartPending starts the box of a workspace whose start was recorded but
// not carried out (an org created by an operator command; a crash): it is
// what reconcile does at start, for one workspace.
func (s *Service) StartPending(ctx context.Context, orgID, wsID string) error {
	w, err := s.store.GetWorkspace(ctx, orgID, wsID)
	if err != nil {
		return err
	}
	if w.Status == StatusProvisioning && w.Box == "" {
		s.startAsync(orgID, wsID, w.Generation, "bootstrap")
	}
	return nil
}

// OrgByName finds an org (operator commands).
func (s *Service) OrgByName(ctx context.Context, name string) (store.Org, error) {
	o, err := s.store.GetOrgByName(ctx, name)
	return o, notFoundAs(err, "org", name)
}

// ListAudit pages the org's audit log, newest first; admins only.
func (s *Service) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	list, _, err := s.ListAuditPage(ctx, f)
	return list, err
}

// ListAuditPage is ListAudit that also tells whether an older page may
// follow (f.Limit entries a page, 100 when 0).
func (s *Service) ListAuditPage(ctx context.Context, f store.AuditFilter) (list []store.AuditEntry, more bool, err error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, false, err
	}
	if err := requireReader(p, "reading the audit log"); err != nil {
		return nil, false, err
	}
	if f.Limit < 0 || f.Limit > MaxPageLimit {
		return nil, false, Invalid("invalid_limit", "limit must be between 1 and %d", MaxPageLimit)
	}
	if f.Before < 0 {
		return nil, false, Invalid("invalid_before", "before must be a positive entry id")
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	page := f.Limit
	f.Limit++ // one more tells whether another page follows
	if list, err = s.store.ListAudit(ctx, p.OrgID, f); err != nil {
		return nil, false, err
	}
	if len(list) > page {
		list, more = list[:page], true
	}
	return list, more, nil
}
