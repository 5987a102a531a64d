package propagation

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// running is a workspace every rule lets through: a restart is queued.
func running() Target {
	return Target{WorkspaceID: "wa", Known: true, Kind: "workspace", Runtime: "process",
		Status: "running", RestartPolicy: "auto"}
}

func TestDecideRules(t *testing.T) {
	t.Parallel()
	with := func(f func(*Target)) Target { x := running(); f(&x); return x }
	platform := func(x *Target) { x.Kind = "platform" }
	tests := []struct {
		name   string
		target Target
		caller Caller
		action string
		reason string
	}{
		{"unknown facts fail closed", Target{WorkspaceID: "wa"}, Caller{}, ActionSkip, ReasonKindUnknown},
		{"unknown kind fails closed", with(func(x *Target) { x.Kind = "" }), Caller{}, ActionSkip, ReasonKindUnknown},
		{"unknown status fails closed", with(func(x *Target) { x.Status = "weird" }), Caller{}, ActionSkip, ReasonKindUnknown},
		{"unknown facts win over overridden", Target{WorkspaceID: "wa", Overrides: true}, Caller{}, ActionSkip, ReasonKindUnknown},
		{"global key overridden", with(func(x *Target) { x.Overrides = true }), Caller{}, ActionSkip, ReasonOverridden},
		{"overridden wins over platform", with(func(x *Target) { x.Overrides = true; x.Kind = "platform" }), Caller{}, ActionSkip, ReasonOverridden},
		{"same value again", with(func(x *Target) { x.Unchanged = true }), Caller{}, ActionSkip, ReasonUnchanged},
		{"unchanged platform", with(func(x *Target) { x.Unchanged = true; platform(x) }), Caller{}, ActionSkip, ReasonUnchanged},
		{"platform, admin with no acting workspace", with(platform), Caller{}, ActionSkip, ReasonPlatformRoot},
		{"platform, admin acting as platform", with(platform), Caller{Workspace: "wa"}, ActionSkip, ReasonPlatformRoot},
		{"platform, another workspace's token", with(platform), Caller{Workspace: "wb"}, ActionSkip, ReasonPlatformRoot},
		{"platform even when protected is off and policy auto", with(func(x *Target) { platform(x); x.PendingRestart = true }), Caller{}, ActionSkip, ReasonPlatformRoot},
		{"self write by workspace token", running(), Caller{Workspace: "wa"}, ActionSkip, ReasonSelfWrite},
		{"self write wins over protected", with(func(x *Target) { x.Protected = true }), Caller{Workspace: "wa"}, ActionSkip, ReasonSelfWrite},
		{"protected", with(func(x *Target) { x.Protected = true }), Caller{}, ActionSkip, ReasonProtected},
		{"external runtime", with(func(x *Target) { x.Runtime = "external" }), Caller{}, ActionSkip, ReasonExternalRuntime},
		{"removed", with(func(x *Target) { x.Status = "removed" }), Caller{}, ActionSkip, ReasonRemoved},
		{"paused", with(func(x *Target) { x.Status = "paused" }), Caller{}, ActionSkip, ReasonPaused},
		{"stopped", with(func(x *Target) { x.Status = "stopped" }), Caller{}, ActionSkip, ReasonStopped},
		{"failed", with(func(x *Target) { x.Status = "failed" }), Caller{}, ActionSkip, ReasonFailed},
		{"manual policy", with(func(x *Target) { x.RestartPolicy = "manual" }), Caller{}, ActionSkip, ReasonManualPolicy},
		{"manual policy wins over pending", with(func(x *Target) { x.RestartPolicy = "manual"; x.PendingRestart = true }), Caller{}, ActionSkip, ReasonManualPolicy},
		{"loop breaker at the limit", with(func(x *Target) { x.RecentAutoRestarts = 3 }), Caller{}, ActionSkip, ReasonLoopBreaker},
		{"loop broken until an admin restarts", with(func(x *Target) { x.LoopBroken = true }), Caller{}, ActionSkip, ReasonLoopBreaker},
		{"below the loop limit", with(func(x *Target) { x.RecentAutoRestarts = 2 }), Caller{}, ActionRestart, ReasonRestartQueued},
		{"coalesced into a pending restart", with(func(x *Target) { x.PendingRestart = true }), Caller{}, ActionRestart, ReasonCoalesced},
		{"restart queued", running(), Caller{}, ActionRestart, ReasonRestartQueued},
		{"restart queued for another workspace's write", running(), Caller{Workspace: "wb"}, ActionRestart, ReasonRestartQueued},
		{"provisioning is affected", with(func(x *Target) { x.Status = "provisioning" }), Caller{}, ActionRestart, ReasonRestartQueued},
		{"degraded is affected", with(func(x *Target) { x.Status = "degraded" }), Caller{}, ActionRestart, ReasonRestartQueued},
		{"docker runtime is managed", with(func(x *Target) { x.Runtime = "docker" }), Caller{}, ActionRestart, ReasonRestartQueued},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.target, tc.caller, Limits{})
			require.Equal(t, tc.action, d.Action)
			require.Equal(t, tc.reason, d.Reason)
			require.Equal(t, tc.target.WorkspaceID, d.WorkspaceID)
		})
		seen[tc.reason] = true
	}
	for _, r := range Reasons {
		require.True(t, seen[r], "no case for reason %s", r)
	}
}

// TestPlatformNeverRestarted: whatever the other facts and the caller, a
// platform workspace is never given a restart.
func TestPlatformNeverRestarted(t *testing.T) {
	t.Parallel()
	for _, status := range []string{"running", "provisioning", "degraded", "failed", "stopped", "paused", "removed", "x"} {
		for _, policy := range []string{"auto", "manual", ""} {
			for _, caller := range []Caller{{}, {Workspace: "wa"}, {Workspace: "wb"}} {
				for _, b := range []bool{false, true} {
					tg := Target{WorkspaceID: "wa", Known: true, Kind: "platform", Runtime: "process", Status: status,
						RestartPolicy: policy, Protected: b, PendingRestart: !b}
					d := Decide(tg, caller, Limits{})
					require.Equal(t, ActionSkip, d.Action, "%+v %+v", tg, caller)
				}
			}
		}
	}
}

func TestMarksStale(t *testing.T) {
	t.Parallel()
	stale := map[string]bool{ReasonKindUnknown: true, ReasonPlatformRoot: true, ReasonSelfWrite: true,
		ReasonProtected: true, ReasonManualPolicy: true, ReasonLoopBreaker: true}
	for _, r := range Reasons {
		require.Equal(t, stale[r], MarksStale(r), r)
	}
}
