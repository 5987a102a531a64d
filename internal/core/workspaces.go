package core

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
)

// Statuses of a workspace (its box).
const (
	StatusProvisioning = "provisioning"
	StatusRunning      = "running"
	StatusDegraded     = "degraded"
	StatusFailed       = "failed"
	StatusStopped      = "stopped"
	StatusPaused       = "paused"
	StatusRemoved      = "removed"
)

// Restart policies.
const (
	PolicyAuto   = "auto"
	PolicyManual = "manual"
)

// Workspace is a workspace as the faces show it: the stored row and what is
// derived from it.
type Workspace struct {
	store.Workspace
	// Stale: the box runs with an env fingerprint other than the current
	// effective env's.
	Stale bool
}

// CreateWorkspaceInput is a request to create a workspace.
type CreateWorkspaceInput struct {
	Name          string
	ParentID      string
	Runtime       string
	Spec          json.RawMessage
	RestartPolicy string
	Protected     bool
	// Start: nil or true starts the box once created; false leaves it stopped.
	Start *bool
}

// PatchWorkspaceInput changes the fields that are set.
type PatchWorkspaceInput struct {
	Name          *string
	ParentID      *string
	Spec          json.RawMessage
	RestartPolicy *string
	Protected     *bool
}

// visibleWorkspace loads a workspace the principal may see: admins see the
// org's; a workspace token only its own. Anything else is not found.
func (s *Service) visibleWorkspace(ctx context.Context, tx store.Store, p auth.Principal, id string) (store.Workspace, error) {
	if !ids.Valid("w", id) {
		return store.Workspace{}, NotFound("workspace", id)
	}
	if p.Kind == auth.KindWorkspace && p.WorkspaceID != id {
		return store.Workspace{}, NotFound("workspace", id)
	}
	w, err := tx.GetWorkspaceForUpdate(ctx, p.OrgID, id)
	if err != nil {
		return store.Workspace{}, notFoundAs(err, "workspace", id)
	}
	return w, nil
}

// liveWorkspace loads a workspace of the org that is not removed.
func (s *Service) liveWorkspace(ctx context.Context, tx store.Store, orgID, id string) (store.Workspace, error) {
	if !ids.Valid("w", id) {
		return store.Workspace{}, NotFound("workspace", id)
	}
	w, err := tx.GetWorkspaceForUpdate(ctx, orgID, id)
	if err != nil {
		return store.Workspace{}, notFoundAs(err, "workspace", id)
	}
	if w.Status == StatusRemoved {
		return store.Workspace{}, NotFound("workspace", id)
	}
	return w, nil
}

// view derives what the faces show of one workspace.
func (s *Service) view(w store.Workspace) Workspace {
	v := Workspace{Workspace: w}
	if hasBox(w.Status) && w.BoxFingerprint != "" && s.keys != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fp, err := s.currentFingerprint(ctx, w.OrgID, w.ID)
		// Fail towards "stale": a fingerprint we cannot compute is not known
		// to match.
		v.Stale = err != nil || fp != w.BoxFingerprint
	}
	return v
}

// MaxPageLimit is the largest page a paged list answers.
const MaxPageLimit = 1000

// ListWorkspaces lists what the caller may see: the org's live workspaces
// for an admin, only its own for a workspace token.
func (s *Service) ListWorkspaces(ctx context.Context) ([]Workspace, error) {
	list, _, err := s.ListWorkspacesPage(ctx, store.ListParams{})
	return list, err
}

// ListWorkspacesPage is one page of ListWorkspaces, by id: at most p.Limit
// workspaces (0: all) whose id is above p.After. more tells whether a
// page may follow.
func (s *Service) ListWorkspacesPage(ctx context.Context, lp store.ListParams) (list []Workspace, more bool, err error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, false, err
	}
	if lp.Limit < 0 || lp.Limit > MaxPageLimit {
		return nil, false, Invalid("invalid_limit", "limit must be between 1 and %d", MaxPageLimit)
	}
	var rows []store.Workspace
	if p.Kind == auth.KindWorkspace {
		w, err := s.store.GetWorkspace(ctx, p.OrgID, p.WorkspaceID)
		if err != nil {
			return nil, false, err
		}
		rows = []store.Workspace{}
		if w.ID > lp.After {
			rows = append(rows, w)
		}
	} else {
		fetch := lp
		if fetch.Limit > 0 {
			fetch.Limit++ // one more tells whether another page follows
		}
		if rows, err = s.store.ListWorkspaces(ctx, p.OrgID, false, fetch); err != nil {
			return nil, false, err
		}
		if lp.Limit > 0 && len(rows) > lp.Limit {
			rows, more = rows[:lp.Limit], true
		}
	}
	var fp *fingerprinter
	switch {
	case s.keys == nil || len(rows) == 0:
	case lp.Limit > 0 || p.Kind == auth.KindWorkspace:
		// A page needs the secrets of its own workspaces only, not the
		// org's: its cost stays that of a page.
		macs, err := s.store.ListSecretMACsOf(ctx, p.OrgID, lp.After, rows[len(rows)-1].ID)
		if err != nil {
			return nil, false, err
		}
		fp = s.fingerprinterOf(macs)
	default:
		if fp, err = s.newFingerprinter(ctx, s.store, p.OrgID); err != nil {
			return nil, false, err
		}
	}
	list = make([]Workspace, len(rows))
	for i, w := range rows {
		list[i] = Workspace{Workspace: w, Stale: isStale(w, fp)}
	}
	return list, more, nil
}

// GetWorkspace returns one workspace the caller may see.
func (s *Service) GetWorkspace(ctx context.Context, id string) (Workspace, error) {
	p, err := principal(ctx)
	if err != nil {
		return Workspace{}, err
	}
	w, err := s.visibleWorkspace(ctx, s.store, p, id)
	if err != nil {
		return Workspace{}, err
	}
	return s.view(w), nil
}

// CreateWorkspace creates a workspace under a parent (default: the platform
// workspace); admins only.
func (s *Service) CreateWorkspace(ctx context.Context, in CreateWorkspaceInput) (Workspace, error) {
	p, err := principal(ctx)
	if err != nil {
		return Workspace{}, err
	}
	ev := &auditEvent{Action: "workspace.create", TargetKind: "workspace", Detail: map[string]any{"name": in.Name}}
	var w store.Workspace
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		if err := requireAdmin(p, "creating a workspace"); err != nil {
			return err
		}
		if err := validName("workspace name", in.Name); err != nil {
			return err
		}
		if in.Runtime == "" {
			in.Runtime = RuntimeProcess
		}
		spec, err := s.checkSpec(ctx, tx, p.OrgID, "", in.Runtime, in.Spec, true)
		if err != nil {
			return err
		}
		if in.RestartPolicy == "" {
			in.RestartPolicy = PolicyAuto
		}
		if err := validPolicy(in.RestartPolicy); err != nil {
			return err
		}
		var parent store.Workspace
		if in.ParentID == "" {
			parent, err = tx.GetPlatformWorkspace(ctx, p.OrgID)
		} else {
			parent, err = s.liveWorkspace(ctx, tx, p.OrgID, in.ParentID)
		}
		if err != nil {
			return err
		}
		now := s.clock.Now()
		status := StatusStopped
		if (in.Start == nil || *in.Start) && in.Runtime != RuntimeExternal {
			// The intent is durable: if we crash before the box starts, the
			// next run starts it.
			status = StatusProvisioning
		}
		w = store.Workspace{
			ID: ids.New("w"), OrgID: p.OrgID, ParentID: parent.ID, Name: in.Name,
			Kind: store.KindWorkspace, Runtime: in.Runtime, Spec: spec, Status: status,
			RestartPolicy: in.RestartPolicy, Protected: in.Protected, CreatedAt: now, UpdatedAt: now,
		}
		ev.Detail["parent_id"], ev.Detail["runtime"] = parent.ID, w.Runtime
		if err := tx.InsertWorkspace(ctx, w); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return Conflict("a workspace named %q already exists under %s", in.Name, parent.ID)
			}
			return err
		}
		ev.TargetID, ev.WorkspaceID = w.ID, w.ID
		return nil
	})
	if err != nil {
		return Workspace{}, err
	}
	if w.Status == StatusProvisioning {
		s.startAsync(w.OrgID, w.ID, w.Generation, "create")
	}
	return s.view(w), nil
}

func validPolicy(p string) error {
	if p != PolicyAuto && p != PolicyManual {
		return Invalid("invalid_restart_policy", "restart_policy must be \"auto\" or \"manual\"; got %q", p)
	}
	return nil
}

// UpdateWorkspace patches a workspace; admins only. The platform workspace
// keeps its place: it is never re-parented nor given a parent.
func (s *Service) UpdateWorkspace(ctx context.Context, id string, in PatchWorkspaceInput) (Workspace, error) {
	p, err := principal(ctx)
	if err != nil {
		return Workspace{}, err
	}
	ev := &auditEvent{Action: "workspace.update", TargetKind: "workspace", TargetID: id, WorkspaceID: id,
		Detail: map[string]any{}}
	var w store.Workspace
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		if in.ParentID != nil {
			// Re-parents change the tree's shape: they take turns per org
			// (before any row lock, as planners do), so two of them cannot
			// each pass the cycle check against the other's old tree, nor
			// deadlock on each other's rows.
			if err := tx.LockOrg(ctx, p.OrgID); err != nil {
				return err
			}
		}
		// visibleWorkspace reads the row locked: it is written back whole.
		if w, err = s.visibleWorkspace(ctx, tx, p, id); err != nil {
			return err
		}
		if err := requireAdmin(p, "changing a workspace"); err != nil {
			return err
		}
		if w.Status == StatusRemoved {
			return Refused("workspace_removed", "workspace %s is removed", id)
		}
		if in.Protected != nil && *in.Protected != w.Protected || in.RestartPolicy != nil && *in.RestartPolicy != w.RestartPolicy {
			if err := s.gate(ctx, tx, p, func(g Gates) bool { return g.WorkspaceProtection }, nil); err != nil {
				return err
			}
		}
		if in.Name != nil {
			if err := validName("workspace name", *in.Name); err != nil {
				return err
			}
			w.Name = *in.Name
			ev.Detail["name"] = w.Name
		}
		if in.ParentID != nil {
			if w.Kind == store.KindPlatform {
				return Refused("platform_workspace", "the platform workspace is the org root: it cannot be re-parented or given a parent")
			}
			if err := s.checkNewParent(ctx, tx, p.OrgID, w.ID, *in.ParentID); err != nil {
				return err
			}
			w.ParentID = *in.ParentID
			ev.Detail["parent_id"] = w.ParentID
		}
		if in.Spec != nil {
			spec, err := s.checkSpec(ctx, tx, p.OrgID, w.ID, w.Runtime, in.Spec, false)
			if err != nil {
				return err
			}
			w.Spec = spec
			ev.Detail["spec"] = "changed"
		}
		if in.RestartPolicy != nil {
			if err := validPolicy(*in.RestartPolicy); err != nil {
				return err
			}
			w.RestartPolicy = *in.RestartPolicy
			ev.Detail["restart_policy"] = w.RestartPolicy
		}
		if in.Protected != nil {
			w.Protected = *in.Protected
			ev.Detail["protected"] = w.Protected
		}
		w.UpdatedAt = s.clock.Now()
		if err := tx.UpdateWorkspace(ctx, w); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return Conflict("a workspace named %q already exists under %s", w.Name, w.ParentID)
			}
			return err
		}
		return nil
	})
	if errors.Is(err, errGated) {
		return Workspace{}, s.askApproval(ctx, p, Action{Type: ActionWorkspaceUpdate, Params: ActionParams{WorkspaceID: id,
			Name: in.Name, ParentID: in.ParentID, Spec: in.Spec, RestartPolicy: in.RestartPolicy, Protected: in.Protected}},
			"Change workspace "+w.Name+"'s protection or restart policy")
	}
	if err != nil {
		return Workspace{}, err
	}
	return s.view(w), nil
}

// checkNewParent refuses a parent that is missing, removed, or inside the
// workspace's own subtree (a cycle).
func (s *Service) checkNewParent(ctx context.Context, tx store.Store, orgID, id, parentID string) error {
	if parentID == "" {
		return Refused("parent_required", "a workspace must have a parent; only the platform workspace is a root")
	}
	if parentID == id {
		return Refused("cycle", "a workspace cannot be its own parent")
	}
	cur, err := s.liveWorkspace(ctx, tx, orgID, parentID)
	if err != nil {
		return err
	}
	// Walk up from the new parent; meeting id means id is its ancestor.
	for seen := 0; cur.ParentID != ""; seen++ {
		if cur.ParentID == id {
			return Refused("cycle", "workspace %s is an ancestor of %s: that would make a cycle", id, parentID)
		}
		if seen > 10000 {
			return errors.New("workspace tree too deep or corrupt")
		}
		if cur, err = tx.GetWorkspace(ctx, orgID, cur.ParentID); err != nil {
			return err
		}
	}
	return nil
}

// DeleteWorkspace removes a workspace (soft: status removed); admins only.
// A workspace with live children is refused unless cascade removes its
// whole subtree. The platform workspace cannot be deleted.
func (s *Service) DeleteWorkspace(ctx context.Context, id string, cascade bool) ([]string, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	ev := &auditEvent{Action: "workspace.delete", TargetKind: "workspace", TargetID: id, WorkspaceID: id,
		Detail: map[string]any{"cascade": cascade}}
	var removed []string
	var stopped []store.Workspace
	var name string
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		removed, stopped = nil, nil // the transaction may run again
		w, err := s.visibleWorkspace(ctx, tx, p, id)
		if err != nil {
			return err
		}
		if err := requireAdmin(p, "deleting a workspace"); err != nil {
			return err
		}
		if w.Kind == store.KindPlatform {
			return Refused("platform_workspace", "the platform workspace cannot be deleted")
		}
		if w.Status == StatusRemoved {
			return NotFound("workspace", id)
		}
		name = w.Name
		if err := s.gate(ctx, tx, p, func(g Gates) bool { return g.WorkspaceDelete }, nil); err != nil {
			return err
		}
		subtree, err := s.subtree(ctx, tx, w)
		if err != nil {
			return err
		}
		if len(subtree) > 1 && !cascade {
			return Conflict("workspace %s has %d live descendants; delete them first or pass cascade=true", id, len(subtree)-1)
		}
		now := s.clock.Now()
		// Children first, so no live workspace ever has a removed parent.
		for i := len(subtree) - 1; i >= 0; i-- {
			x := subtree[i]
			stopped = append(stopped, x)
			x.Status, x.UpdatedAt = StatusRemoved, now
			if err := tx.UpdateWorkspace(ctx, x); err != nil {
				return err
			}
			removed = append(removed, x.ID)
		}
		ev.Detail["removed"] = removed
		return nil
	})
	if errors.Is(err, errGated) {
		return nil, s.askApproval(ctx, p, Action{Type: ActionWorkspaceDelete, Params: ActionParams{WorkspaceID: id, Cascade: cascade}},
			"Delete workspace "+name)
	}
	if err != nil {
		return nil, err
	}
	s.afterCommit(ctx, func() {
		for _, x := range stopped {
			s.stopAsync(x, "removed")
		}
	})
	return removed, nil
}

// subtree returns w and its live descendants, parents before children.
func (s *Service) subtree(ctx context.Context, tx store.Store, w store.Workspace) ([]store.Workspace, error) {
	// Cascades write each row back whole: every row is read locked, root
	// first, or a restart that committed meanwhile (a new generation, a new
	// box) would be rolled back by the cascade's stale copy.
	w, err := tx.GetWorkspaceForUpdate(ctx, w.OrgID, w.ID)
	if err != nil {
		return nil, err
	}
	out := []store.Workspace{w}
	for i := 0; i < len(out); i++ {
		kids, err := tx.ListChildrenForUpdate(ctx, w.OrgID, out[i].ID)
		if err != nil {
			return nil, err
		}
		out = append(out, kids...)
	}
	return out, nil
}
