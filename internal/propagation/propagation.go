// Package propagation decides, for every workspace a secret change could
// affect, whether its box is restarted, and why. The decision is a pure
// function of its inputs so that it can be tested exhaustively and applied
// twice: when a change is planned, and again when a restart job executes.
package propagation

// Reason codes, in the order the rules are applied (the first rule that
// matches gives the reason).
const (
	ReasonKindUnknown     = "kind_unknown"
	ReasonOverridden      = "overridden"
	ReasonUnchanged       = "unchanged"
	ReasonPlatformRoot    = "platform_root"
	ReasonSelfWrite       = "self_write"
	ReasonProtected       = "protected"
	ReasonExternalRuntime = "external_runtime"
	ReasonRemoved         = "removed"
	ReasonPaused          = "paused"
	ReasonStopped         = "stopped"
	ReasonFailed          = "failed"
	ReasonManualPolicy    = "manual_policy"
	ReasonLoopBreaker     = "loop_breaker"
	ReasonCoalesced       = "coalesced"
	ReasonRestartQueued   = "restart_queued"
)

// Reasons lists every reason code in rule order.
var Reasons = []string{
	ReasonKindUnknown, ReasonOverridden, ReasonUnchanged, ReasonPlatformRoot, ReasonSelfWrite,
	ReasonProtected, ReasonExternalRuntime, ReasonRemoved, ReasonPaused, ReasonStopped, ReasonFailed,
	ReasonManualPolicy, ReasonLoopBreaker, ReasonCoalesced, ReasonRestartQueued,
}

// Actions.
const (
	ActionRestart = "restart"
	ActionSkip    = "skip"
)

// Target is what is known of one possibly-affected workspace.
type Target struct {
	WorkspaceID string
	// Known is false when the workspace's facts could not be read: the
	// decision then fails closed.
	Known         bool
	Kind          string // "platform" | "workspace"
	Runtime       string
	Status        string
	RestartPolicy string
	Protected     bool
	// Overrides: the change is global and the workspace has its own secret
	// with that key, so its env does not change.
	Overrides bool
	// Unchanged: its effective env fingerprint is the same after the change.
	Unchanged bool
	// RecentAutoRestarts counts automatic restarts in the loop-breaker window.
	RecentAutoRestarts int
	// LoopBroken: an earlier automatic restart was refused by the loop
	// breaker and no admin has restarted the workspace since.
	LoopBroken bool
	// PendingRestart: a restart job is already pending for the workspace.
	PendingRestart bool
}

// Caller is who made the change.
type Caller struct {
	// Workspace is the caller's workspace: a workspace token's own, or an
	// admin token's acting workspace; "" for none.
	Workspace string
}

// Limits are the tunables of the rules.
type Limits struct {
	// MaxAutoRestarts is how many automatic restarts the loop-breaker
	// window allows; one more is refused (default 3).
	MaxAutoRestarts int
}

// Decision is the outcome for one workspace.
type Decision struct {
	WorkspaceID string
	Action      string
	Reason      string
}

// MarksStale reports whether a skip of this reason leaves the box stale (its
// env differs from the effective env until someone restarts it).
func MarksStale(reason string) bool {
	switch reason {
	case ReasonKindUnknown, ReasonPlatformRoot, ReasonSelfWrite, ReasonProtected,
		ReasonManualPolicy, ReasonLoopBreaker:
		return true
	}
	return false
}

// Decide applies the rules, in order, to one target.
func Decide(t Target, c Caller, l Limits) Decision {
	d := Decision{WorkspaceID: t.WorkspaceID, Action: ActionSkip}
	if l.MaxAutoRestarts <= 0 {
		l.MaxAutoRestarts = 3
	}
	switch {
	case !t.Known || (t.Kind != "platform" && t.Kind != "workspace"):
		// Fail closed: a workspace we cannot classify might be the root.
		d.Reason = ReasonKindUnknown
	case t.Overrides:
		d.Reason = ReasonOverridden
	case t.Unchanged:
		d.Reason = ReasonUnchanged
	case t.Kind == "platform":
		d.Reason = ReasonPlatformRoot
	case c.Workspace != "" && c.Workspace == t.WorkspaceID:
		d.Reason = ReasonSelfWrite
	case t.Protected:
		d.Reason = ReasonProtected
	case t.Runtime == "external":
		d.Reason = ReasonExternalRuntime
	case t.Status == "removed", t.Status == "paused", t.Status == "stopped", t.Status == "failed":
		d.Reason = t.Status
	case t.Status != "running" && t.Status != "provisioning" && t.Status != "degraded":
		// An unknown status is not "running": fail closed.
		d.Reason = ReasonKindUnknown
	case t.RestartPolicy != "auto":
		d.Reason = ReasonManualPolicy
	case t.LoopBroken || t.RecentAutoRestarts >= l.MaxAutoRestarts:
		d.Reason = ReasonLoopBreaker
	case t.PendingRestart:
		d.Action, d.Reason = ActionRestart, ReasonCoalesced
	default:
		d.Action, d.Reason = ActionRestart, ReasonRestartQueued
	}
	return d
}

// ActionOf is the action a stored decision's reason stands for.
func ActionOf(reason string) string {
	if reason == ReasonCoalesced || reason == ReasonRestartQueued {
		return ActionRestart
	}
	return ActionSkip
}
