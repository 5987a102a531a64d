package core

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/store"
)

// SecretMeta describes a secret without its value.
type SecretMeta struct {
	store.Secret
	OverridesGlobal bool
}

// SecretWrite is the outcome of a secret write or delete.
type SecretWrite struct {
	Key     string
	Scope   string
	Version int64
	DryRun  bool
	// ChangeID names the change's record (not for a dry run, nor for a
	// write that decided nothing).
	ChangeID string
	// Summary counts every decision by reason.
	Summary   map[string]int
	Decisions []propagation.Decision
}

// Change is one secret write or delete, as propagation sees it.
type Change struct {
	OrgID       string
	WorkspaceID string // "" for global
	Key         string
	Delete      bool
	NewMAC      string // value MAC after a set
	OldMAC      string // value MAC before; "" when the key did not exist
}

// secretScope resolves the scope a call addresses and checks the caller may
// write it: globals are admin-only; a workspace's secrets are its admins'
// and its own token's (agents keep their own credentials).
func (s *Service) secretScope(ctx context.Context, tx store.Store, p auth.Principal, workspaceID string, write bool) error {
	if write && p.IsPerson() && !p.IsAdmin() {
		return Forbidden("a %s reads only", p.Role)
	}
	if workspaceID == "" {
		if write && !p.IsAdmin() || !write && !p.CanReadOrg() {
			return Forbidden("global secrets are admin-only; a workspace token may manage only its own workspace's secrets")
		}
		return nil
	}
	w, err := s.visibleWorkspace(ctx, tx, p, workspaceID)
	if err != nil {
		return err
	}
	if w.Status == StatusRemoved {
		return NotFound("workspace", workspaceID)
	}
	return nil
}

func scopeOf(workspaceID string) string {
	if workspaceID == "" {
		return store.ScopeGlobal
	}
	return store.ScopeWorkspace
}

// ListSecrets lists secrets without values. For a workspace it lists what
// its box gets: its own secrets and the globals it does not override; for
// "" the org's globals (admins only).
func (s *Service) ListSecrets(ctx context.Context, workspaceID string) ([]SecretMeta, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.secretScope(ctx, s.store, p, workspaceID, false); err != nil {
		return nil, err
	}
	globals, err := s.store.ListSecrets(ctx, p.OrgID, "")
	if err != nil {
		return nil, err
	}
	if workspaceID == "" {
		out := make([]SecretMeta, len(globals))
		for i, g := range globals {
			out[i] = SecretMeta{Secret: g}
		}
		return out, nil
	}
	own, err := s.store.ListSecrets(ctx, p.OrgID, workspaceID)
	if err != nil {
		return nil, err
	}
	isOwn := map[string]bool{}
	var out []SecretMeta
	gkeys := map[string]bool{}
	for _, g := range globals {
		gkeys[g.Key] = true
	}
	for _, o := range own {
		isOwn[o.Key] = true
		out = append(out, SecretMeta{Secret: o, OverridesGlobal: gkeys[o.Key]})
	}
	for _, g := range globals {
		if !isOwn[g.Key] {
			out = append(out, SecretMeta{Secret: g})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// SetSecret sets a secret (workspaceID "" for a global one). With dryRun it
// returns the decisions and changes nothing.
func (s *Service) SetSecret(ctx context.Context, workspaceID, key, value string, dryRun bool) (SecretWrite, error) {
	return s.writeSecret(ctx, workspaceID, key, &value, dryRun)
}

// DeleteSecret deletes a secret; with dryRun it only plans.
func (s *Service) DeleteSecret(ctx context.Context, workspaceID, key string, dryRun bool) (SecretWrite, error) {
	return s.writeSecret(ctx, workspaceID, key, nil, dryRun)
}

func (s *Service) writeSecret(ctx context.Context, workspaceID, key string, value *string, dryRun bool) (SecretWrite, error) {
	p, err := principal(ctx)
	if err != nil {
		return SecretWrite{}, err
	}
	action := "secret.set"
	if value == nil {
		action = "secret.delete"
	}
	scope := scopeOf(workspaceID)
	ev := &auditEvent{Action: action, TargetKind: "secret", TargetID: key, WorkspaceID: workspaceID,
		Detail: map[string]any{"key": key, "scope": scope}}
	out := SecretWrite{Key: key, Scope: scope, DryRun: dryRun}
	run := func(tx store.Store) error {
		// Planners of one org take turns: two concurrent writes must not both
		// see "no pending restart" and both queue one (Postgres; SQLite has
		// one writer anyway).
		if err := tx.LockOrg(ctx, p.OrgID); err != nil {
			return err
		}
		if err := s.secretScope(ctx, tx, p, workspaceID, true); err != nil {
			return err
		}
		if err := ValidateSecretKey(key); err != nil {
			return err
		}
		if value != nil {
			if err := ValidateSecretValue(*value); err != nil {
				return err
			}
		}
		// A dry run answers what the write would: a write no box could be
		// started with is refused in both.
		if err := s.checkSecretEnvSize(ctx, tx, p.OrgID, workspaceID, key, value); err != nil {
			return err
		}
		old, err := tx.GetSecret(ctx, p.OrgID, workspaceID, key)
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		ch := Change{OrgID: p.OrgID, WorkspaceID: workspaceID, Key: key, Delete: value == nil}
		if exists {
			ch.OldMAC = old.ValueMAC
		}
		if value == nil && !exists {
			return NotFound("secret", key)
		}
		now := s.clock.Now()
		sec := store.Secret{OrgID: p.OrgID, WorkspaceID: workspaceID, Key: key, Version: 1, CreatedAt: now, UpdatedAt: now}
		if value != nil {
			ch.NewMAC = s.keys.ValueMAC(key, *value)
			if exists {
				sec.Version, sec.CreatedAt = old.Version+1, old.CreatedAt
			}
			out.Version = sec.Version
			ev.Detail["version"] = sec.Version
		}
		plan, err := s.planChange(ctx, tx, p, ch)
		if err != nil {
			return err
		}
		out.Decisions, out.Summary = plan.Decisions, plan.Summary()
		ev.Detail["decisions"] = out.Summary
		if dryRun {
			return nil
		}
		if workspaceID == "" {
			// A global change restarting many boxes waits for people when
			// an agent makes it.
			restarts := resultOfDecisions(plan.Decisions).Restarts
			if err := s.gate(ctx, tx, p, func(g Gates) bool { return g.GlobalSecret },
				func(pol Policy) bool { return restarts > pol.RestartThreshold }); err != nil {
				return err
			}
		}
		if value != nil {
			if sec, err = s.keys.encrypt(sec, *value); err != nil {
				return err
			}
			sec.ValueMAC = ch.NewMAC
			if err := tx.PutSecret(ctx, sec); err != nil {
				return err
			}
		} else if err := tx.DeleteSecret(ctx, p.OrgID, workspaceID, key); err != nil {
			return err
		}
		if len(plan.Decisions) > 0 {
			out.ChangeID = plan.ChangeID
			ev.Detail["change_id"] = plan.ChangeID
		}
		return s.applyPlan(ctx, tx, p, plan)
	}
	if dryRun {
		// Nothing is written, so nothing is audited: a dry run is a read.
		err = s.store.InTx(ctx, run)
	} else {
		err = s.mutate(ctx, p, ev, run)
	}
	if errors.Is(err, errGated) {
		act := Action{Type: ActionSecretSet, Params: ActionParams{Key: key, Value: value}}
		title := "Set global secret " + key
		if value == nil {
			act.Type, title = ActionSecretDelete, "Delete global secret "+key
		}
		return SecretWrite{}, s.askApproval(ctx, p, act, title)
	}
	if err != nil {
		return SecretWrite{}, err
	}
	if !dryRun {
		s.afterCommit(ctx, func() { s.afterPlan(out.Decisions) })
	}
	return out, nil
}

// ValidateSecretValue checks a secret value: what a box's env can hold.
func ValidateSecretValue(v string) error { return validateValue("value", v) }

func validateValue(what, v string) error {
	if len(v) > MaxSecretValue {
		return Invalid("value_too_large", "%s is %d bytes; at most %d", what, len(v), MaxSecretValue)
	}
	if strings.IndexByte(v, 0) >= 0 {
		// exec would end the variable at the NUL (or refuse it): every
		// start of every box that gets it would fail.
		return Invalid("invalid_value", "%s contains a NUL byte, which no environment variable can hold", what)
	}
	return nil
}

// SecretValues returns the effective env of a workspace; only that
// workspace's own token may read it: humans write secrets, boxes read them.
func (s *Service) SecretValues(ctx context.Context, workspaceID string) (env map[string]string, err error) {
	defer func() { s.auditValuesRead(ctx, workspaceID, env, err) }()
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	w, err := s.visibleWorkspace(ctx, s.store, p, workspaceID)
	if err != nil {
		return nil, err
	}
	if p.Kind != auth.KindWorkspace {
		return nil, Forbidden("secret values are readable only by the workspace's own token: humans write secrets, boxes read them")
	}
	// Deleting a workspace does not revoke its tokens (its box's, or ones an
	// admin minted): a removed workspace is not found here, as it is for
	// listing and writing its secrets (secretScope), so that such a token
	// cannot keep reading the org's global values.
	if w.Status == StatusRemoved {
		return nil, NotFound("workspace", workspaceID)
	}
	env, _, err = s.EffectiveEnv(ctx, s.store, w.OrgID, w.ID)
	return env, err
}

// EffectiveEnv returns a workspace's effective env (globals merged with its
// own secrets, its own winning) and its fingerprint. If any secret fails to
// decrypt it is an error naming the keys, never a partial env.
func (s *Service) EffectiveEnv(ctx context.Context, st store.Store, orgID, workspaceID string) (map[string]string, string, error) {
	globals, err := st.ListSecrets(ctx, orgID, "")
	if err != nil {
		return nil, "", err
	}
	own, err := st.ListSecrets(ctx, orgID, workspaceID)
	if err != nil {
		return nil, "", err
	}
	merged := map[string]store.Secret{}
	for _, g := range globals {
		merged[g.Key] = g
	}
	for _, o := range own {
		merged[o.Key] = o
	}
	env := make(map[string]string, len(merged))
	macs := make(map[string]string, len(merged))
	var bad []string
	for k, sec := range merged {
		v, err := s.keys.decrypt(ctx, st, sec)
		if err != nil {
			s.log.Error("decrypt secret", "org_id", orgID, "workspace_id", workspaceID, "key", k, "scope", sec.Scope(), "err", err)
			bad = append(bad, k)
			continue
		}
		env[k] = v
		macs[k] = sec.ValueMAC
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, "", &Error{Status: 500, Code: "secret_undecryptable",
			Message: fmt.Sprintf("secrets %s could not be decrypted (wrong or retired key, or tampered); no env was produced", strings.Join(bad, ", "))}
	}
	return env, s.keys.Fingerprint(macs), nil
}

// fingerprints computes the current effective-env fingerprint of every
// workspace of the org from the secrets' MACs, without decrypting.
type fingerprinter struct {
	globals   map[string]string
	own       map[string]map[string]string
	keys      *Keyring
	globalsFP string // the fingerprint of a workspace with no secrets of its own
}

func (s *Service) newFingerprinter(ctx context.Context, st store.Store, orgID string) (*fingerprinter, error) {
	rows, err := st.ListSecretMACs(ctx, orgID)
	if err != nil {
		return nil, err
	}
	return s.fingerprinterOf(rows), nil
}

// fingerprinterOf makes a fingerprinter of the org's global secrets and
// the own secrets of the workspaces it will be asked about.
func (s *Service) fingerprinterOf(rows []store.Secret) *fingerprinter {
	f := &fingerprinter{globals: map[string]string{}, own: map[string]map[string]string{}, keys: s.keys}
	for _, r := range rows {
		if r.WorkspaceID == "" {
			f.globals[r.Key] = r.ValueMAC
			continue
		}
		m := f.own[r.WorkspaceID]
		if m == nil {
			m = map[string]string{}
			f.own[r.WorkspaceID] = m
		}
		m[r.Key] = r.ValueMAC
	}
	return f
}

func (f *fingerprinter) of(workspaceID string) string {
	own := f.own[workspaceID]
	if len(own) == 0 {
		if f.globalsFP == "" {
			f.globalsFP = f.keys.Fingerprint(f.globals)
		}
		return f.globalsFP
	}
	m := make(map[string]string, len(f.globals)+len(own))
	for k, v := range f.globals {
		m[k] = v
	}
	for k, v := range own {
		m[k] = v
	}
	return f.keys.Fingerprint(m)
}
