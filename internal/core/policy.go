package core

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/orgplane/orgplane/internal/store"
)

// Gates are the agent actions the policy can gate behind an approval
// (DESIGN "People, approvals and requests"); all are gated by default.
type Gates struct {
	// PlatformRestart: an explicit restart of the platform workspace.
	PlatformRestart bool `json:"platform_restart"`
	// GlobalSecret: a global secret write or delete whose plan restarts
	// more than RestartThreshold workspaces.
	GlobalSecret bool `json:"global_secret"`
	// WorkspaceDelete: deleting a workspace.
	WorkspaceDelete bool `json:"workspace_delete"`
	// AdminToken: minting an admin token.
	AdminToken bool `json:"admin_token"`
	// WorkspaceProtection: changing a workspace's protected or
	// restart_policy.
	WorkspaceProtection bool `json:"workspace_protection"`
}

// Policy is an org's approval policy. Agents can never change it; only an
// owner can.
type Policy struct {
	Gates Gates `json:"gates"`
	// RestartThreshold: a global secret change restarting more workspaces
	// than this is gated (when Gates.GlobalSecret).
	RestartThreshold int `json:"restart_threshold"`
	// Quorum: distinct people who must approve.
	Quorum int `json:"quorum"`
	// DefaultTTLSeconds and MaxTTLSeconds bound how long an approval or a
	// request stays pending.
	DefaultTTLSeconds int       `json:"default_ttl_seconds"`
	MaxTTLSeconds     int       `json:"max_ttl_seconds"`
	UpdatedAt         time.Time `json:"updated_at,omitzero"`
}

// Policy bounds.
const (
	maxPolicyTTL        = 7 * 24 * 3600
	minPolicyTTL        = 60
	maxQuorum           = 10
	maxRestartThreshold = 1_000_000
)

// DefaultPolicy is what an org follows until an owner sets one.
func DefaultPolicy() Policy {
	return Policy{
		Gates:             Gates{PlatformRestart: true, GlobalSecret: true, WorkspaceDelete: true, AdminToken: true, WorkspaceProtection: true},
		RestartThreshold:  10,
		Quorum:            1,
		DefaultTTLSeconds: 24 * 3600,
		MaxTTLSeconds:     maxPolicyTTL,
	}
}

func (p Policy) validate() error {
	switch {
	case p.RestartThreshold < 0 || p.RestartThreshold > maxRestartThreshold:
		return Invalid("invalid_policy", "restart_threshold must be between 0 and %d", maxRestartThreshold)
	case p.Quorum < 1 || p.Quorum > maxQuorum:
		return Invalid("invalid_policy", "quorum must be between 1 and %d distinct people", maxQuorum)
	case p.MaxTTLSeconds < minPolicyTTL || p.MaxTTLSeconds > maxPolicyTTL:
		return Invalid("invalid_policy", "max_ttl_seconds must be between %d and %d (7 days)", minPolicyTTL, maxPolicyTTL)
	case p.DefaultTTLSeconds < minPolicyTTL || p.DefaultTTLSeconds > p.MaxTTLSeconds:
		return Invalid("invalid_policy", "default_ttl_seconds must be between %d and max_ttl_seconds (%d)", minPolicyTTL, p.MaxTTLSeconds)
	}
	return nil
}

// policyOf reads an org's policy, the defaults when none was set.
func (s *Service) policyOf(ctx context.Context, st store.Store, orgID string) (Policy, error) {
	sp, err := st.GetPolicy(ctx, orgID)
	if errors.Is(err, store.ErrNotFound) {
		return DefaultPolicy(), nil
	}
	if err != nil {
		return Policy{}, err
	}
	p := DefaultPolicy()
	if err := json.Unmarshal([]byte(sp.Body), &p); err != nil {
		return Policy{}, err
	}
	p.UpdatedAt = sp.UpdatedAt
	return p, nil
}

// GetPolicy returns the org's policy: any person or admin token may read
// it (agents learn what they will be asked to wait for).
func (s *Service) GetPolicy(ctx context.Context) (Policy, error) {
	p, err := principal(ctx)
	if err != nil {
		return Policy{}, err
	}
	if err := requireReader(p, "reading the policy"); err != nil {
		return Policy{}, err
	}
	return s.policyOf(ctx, s.store, p.OrgID)
}

// PolicyInput is a whole policy as a caller sends it: every field, every
// gate, is required, so that a forgotten one is never silently turned off.
type PolicyInput struct {
	PlatformRestart, GlobalSecret, WorkspaceDelete, AdminToken, WorkspaceProtection *bool
	RestartThreshold, Quorum, DefaultTTLSeconds, MaxTTLSeconds                      *int
}

// policy checks that every field is there and returns the policy.
func (in PolicyInput) policy() (Policy, error) {
	var missing []string
	b := func(name string, v *bool) bool {
		if v == nil {
			missing = append(missing, name)
			return false
		}
		return *v
	}
	n := func(name string, v *int) int {
		if v == nil {
			missing = append(missing, name)
			return 0
		}
		return *v
	}
	p := Policy{
		Gates: Gates{PlatformRestart: b("gates.platform_restart", in.PlatformRestart), GlobalSecret: b("gates.global_secret", in.GlobalSecret),
			WorkspaceDelete: b("gates.workspace_delete", in.WorkspaceDelete), AdminToken: b("gates.admin_token", in.AdminToken),
			WorkspaceProtection: b("gates.workspace_protection", in.WorkspaceProtection)},
		RestartThreshold: n("restart_threshold", in.RestartThreshold), Quorum: n("quorum", in.Quorum),
		DefaultTTLSeconds: n("default_ttl_seconds", in.DefaultTTLSeconds), MaxTTLSeconds: n("max_ttl_seconds", in.MaxTTLSeconds),
	}
	if len(missing) > 0 {
		return Policy{}, Invalid("missing_field", "a policy is set whole: missing %s", strings.Join(missing, ", "))
	}
	return p, p.validate()
}

// SetPolicy replaces the org's policy; owners only (never an agent, never
// automation). The change is audited with what it was and what it is.
func (s *Service) SetPolicy(ctx context.Context, input PolicyInput) (Policy, error) {
	p, err := principal(ctx)
	if err != nil {
		return Policy{}, err
	}
	ev := &auditEvent{Action: "policy.set", TargetKind: "policy", TargetID: p.OrgID, Detail: map[string]any{}}
	var out Policy
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		if err := requireOwner(p, "changing the policy"); err != nil {
			return err
		}
		in, err := input.policy()
		if err != nil {
			return err
		}
		// Owners changing it at once take turns: "before" is what was.
		if err := tx.LockOrg(ctx, p.OrgID); err != nil {
			return err
		}
		before, err := s.policyOf(ctx, tx, p.OrgID)
		if err != nil {
			return err
		}
		body, err := json.Marshal(in)
		if err != nil {
			return err
		}
		now := s.clock.Now()
		if err := tx.PutPolicy(ctx, store.StoredPolicy{OrgID: p.OrgID, Body: string(body), UpdatedAt: now, UpdatedBy: p.TokenID}); err != nil {
			return err
		}
		before.UpdatedAt = time.Time{}
		ev.Detail["before"], ev.Detail["after"] = before, in
		out = in
		out.UpdatedAt = now
		return nil
	})
	return out, err
}
