package core

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/orgplane/orgplane/internal/propagation"
	"github.com/orgplane/orgplane/internal/store"
)

// Action types an approval can hold: the gated actions of the policy, and
// the writes they are made of.
const (
	ActionSecretSet        = "secret.set"
	ActionSecretDelete     = "secret.delete"
	ActionWorkspaceRestart = "workspace.restart"
	ActionWorkspaceDelete  = "workspace.delete"
	ActionWorkspaceUpdate  = "workspace.update"
	ActionTokenCreate      = "token.create"
)

// actionFields lists, per action type, the parameters it takes and which of
// them are required. Anything else is refused.
var actionFields = map[string]struct{ allowed, required []string }{
	ActionSecretSet:        {[]string{"workspace_id", "key", "value"}, []string{"key", "value"}},
	ActionSecretDelete:     {[]string{"workspace_id", "key"}, []string{"key"}},
	ActionWorkspaceRestart: {[]string{"workspace_id", "reason"}, []string{"workspace_id"}},
	ActionWorkspaceDelete:  {[]string{"workspace_id", "cascade"}, []string{"workspace_id"}},
	ActionWorkspaceUpdate:  {[]string{"workspace_id", "name", "parent_id", "spec", "restart_policy", "protected"}, []string{"workspace_id"}},
	ActionTokenCreate:      {[]string{"kind", "name", "workspace_id", "acting_workspace_id", "expires_at"}, []string{"kind", "name"}},
}

// ActionTypes lists the action types, sorted.
func ActionTypes() []string {
	out := make([]string, 0, len(actionFields))
	for t := range actionFields {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// ActionParams are an action's parameters. Value (a secret's) is never
// part of the stored parameters: it is sealed apart, bound to the approval.
type ActionParams struct {
	WorkspaceID       string          `json:"workspace_id,omitempty"`
	Key               string          `json:"key,omitempty"`
	Value             *string         `json:"value,omitempty"`
	Reason            string          `json:"reason,omitempty"`
	Cascade           bool            `json:"cascade,omitempty"`
	Name              *string         `json:"name,omitempty"`
	ParentID          *string         `json:"parent_id,omitempty"`
	Spec              json.RawMessage `json:"spec,omitempty"`
	RestartPolicy     *string         `json:"restart_policy,omitempty"`
	Protected         *bool           `json:"protected,omitempty"`
	Kind              string          `json:"kind,omitempty"`
	ActingWorkspaceID string          `json:"acting_workspace_id,omitempty"`
	ExpiresAt         *time.Time      `json:"expires_at,omitempty"`
}

// Action is an action to execute on approval.
type Action struct {
	Type   string
	Params ActionParams
}

// ParseAction checks an action as a caller sends it: a known type and
// exactly its parameters (unknown ones refused, required ones present, the
// right JSON types).
func ParseAction(typ string, raw json.RawMessage) (Action, error) {
	f, ok := actionFields[typ]
	if !ok {
		return Action{}, Invalid("unknown_action", "unknown action type %q; known: %s", typ, strings.Join(ActionTypes(), ", "))
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	var names map[string]json.RawMessage
	if err := json.Unmarshal(raw, &names); err != nil || names == nil {
		return Action{}, Invalid("invalid_params", "action params must be a JSON object")
	}
	for n, v := range names {
		if !slices.Contains(f.allowed, n) {
			return Action{}, Invalid("unknown_param", "action %s takes no parameter %q; it takes %s", typ, n, strings.Join(f.allowed, ", "))
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return Action{}, Invalid("invalid_params", "action %s: parameter %q is null", typ, n)
		}
	}
	for _, n := range f.required {
		if _, ok := names[n]; !ok {
			return Action{}, Invalid("missing_param", "action %s needs parameter %q", typ, n)
		}
	}
	var a Action
	a.Type = typ
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a.Params); err != nil {
		return Action{}, Invalid("invalid_params", "action %s: %s", typ, jsonProblem(err))
	}
	return a, nil
}

// jsonProblem describes a decoding error without echoing input.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if e, ok := err.(*json.UnmarshalTypeError); ok {
		te = e
		return "parameter " + te.Field + " has the wrong type (want " + te.Type.String() + ")"
	}
	return "malformed parameters"
}

// canonical is the stored form of the parameters: no value, fixed order.
func (a Action) canonical() string {
	p := a.Params
	p.Value = nil
	b, _ := json.Marshal(p)
	return string(b)
}

// hash binds the type, the canonical parameters and the value (by its MAC,
// never the value itself): execution refuses parameters that changed.
func (s *Service) actionHash(a Action) string {
	h := sha256.New()
	h.Write([]byte(a.Type + "\n" + a.canonical() + "\n"))
	if a.Params.Value != nil {
		h.Write([]byte(s.keys.ValueMAC(a.Params.Key, *a.Params.Value)))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ActionResult is what an action did (or, planned, would do).
type ActionResult struct {
	// Decisions of a secret write or delete, or the restart of an explicit
	// one; Counts by reason over all of them (Decisions may be cut at
	// maxPlanDecisions; Truncated then).
	Decisions []propagation.Decision `json:"decisions,omitempty"`
	Counts    map[string]int         `json:"counts,omitempty"`
	Restarts  int                    `json:"restarts"`
	Truncated bool                   `json:"truncated,omitempty"`
	Version   int64                  `json:"version,omitempty"`
	JobID     string                 `json:"job_id,omitempty"`
	Removed   []string               `json:"removed,omitempty"`
	TokenID   string                 `json:"token_id,omitempty"`
	Workspace *Workspace             `json:"-"`
	// secret is a minted token's, for the requester only.
	secret string
}

// maxPlanDecisions bounds the decisions an approval stores; the counts
// always cover them all.
const maxPlanDecisions = 1000

func resultOfDecisions(ds []propagation.Decision) ActionResult {
	r := ActionResult{Counts: map[string]int{}}
	for _, d := range ds {
		r.Counts[d.Reason]++
		if d.Action == propagation.ActionRestart {
			r.Restarts++
		}
	}
	if len(ds) > maxPlanDecisions {
		ds, r.Truncated = ds[:maxPlanDecisions], true
	}
	r.Decisions = ds
	return r
}

// runAction performs a as the principal of ctx. It is called inside an
// execution (execOf(ctx) != nil): the methods join its transaction and are
// not gated.
func (s *Service) runAction(ctx context.Context, a Action) (ActionResult, error) {
	p := a.Params
	switch a.Type {
	case ActionSecretSet:
		w, err := s.SetSecret(ctx, p.WorkspaceID, p.Key, *p.Value, false)
		if err != nil {
			return ActionResult{}, err
		}
		r := resultOfDecisions(w.Decisions)
		r.Version = w.Version
		return r, nil
	case ActionSecretDelete:
		w, err := s.DeleteSecret(ctx, p.WorkspaceID, p.Key, false)
		if err != nil {
			return ActionResult{}, err
		}
		return resultOfDecisions(w.Decisions), nil
	case ActionWorkspaceRestart:
		job, err := s.RestartWorkspace(ctx, p.WorkspaceID, p.Reason)
		if err != nil {
			return ActionResult{}, err
		}
		r := resultOfDecisions([]propagation.Decision{{WorkspaceID: p.WorkspaceID, Action: propagation.ActionRestart, Reason: ReasonAdminRestart}})
		r.JobID = job.ID
		return r, nil
	case ActionWorkspaceDelete:
		removed, err := s.DeleteWorkspace(ctx, p.WorkspaceID, p.Cascade)
		if err != nil {
			return ActionResult{}, err
		}
		return ActionResult{Removed: removed}, nil
	case ActionWorkspaceUpdate:
		w, err := s.UpdateWorkspace(ctx, p.WorkspaceID, PatchWorkspaceInput{Name: p.Name, ParentID: p.ParentID,
			Spec: p.Spec, RestartPolicy: p.RestartPolicy, Protected: p.Protected})
		if err != nil {
			return ActionResult{}, err
		}
		return ActionResult{Workspace: &w}, nil
	case ActionTokenCreate:
		in := CreateTokenInput{Kind: p.Kind, Name: deref(p.Name), WorkspaceID: p.WorkspaceID, ActingWorkspaceID: p.ActingWorkspaceID}
		if p.ExpiresAt != nil {
			in.ExpiresAt = *p.ExpiresAt
		}
		tok, secret, err := s.CreateToken(ctx, in)
		if err != nil {
			return ActionResult{}, err
		}
		return ActionResult{TokenID: tok.ID, secret: secret}, nil
	}
	return ActionResult{}, Invalid("unknown_action", "unknown action type %q", a.Type)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Preconditions are the facts an action was planned against; execution
// re-checks them.
type Preconditions struct {
	// SecretVersion is the version of the secret the action writes or
	// deletes when it was asked for (0: it did not exist).
	SecretVersion *int64 `json:"secret_version,omitempty"`
}

func (s *Service) preconditionsOf(ctx context.Context, tx store.Store, orgID string, a Action) (Preconditions, error) {
	var pc Preconditions
	switch a.Type {
	case ActionSecretSet, ActionSecretDelete:
		var v int64
		sec, err := tx.GetSecret(ctx, orgID, a.Params.WorkspaceID, a.Params.Key)
		switch {
		case err == nil:
			v = sec.Version
		case !isNotFound(err):
			return pc, err
		}
		pc.SecretVersion = &v
	}
	return pc, nil
}

func isNotFound(err error) bool { return err != nil && AsError(err).Status == 404 }
