package core

import (
	"context"
	"errors"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/store"
)

// execState runs a service method inside a transaction someone else owns:
// the control plane executing an approved action (the action and the
// approval's end state commit together, so a crash between them loses or
// doubles nothing), answering a secret request the same way, or planning
// an action in a transaction that is then rolled back (the dry-run plan of
// an approval). Every mutate of the method joins tx; what it would do after
// its commit (wake workers, stop boxes, publish events) waits in after and
// events until the owner commits, and is dropped when it rolls back.
type execState struct {
	tx         store.Store
	approvalID string // the approval executed ("" when planning or answering)
	after      []func()
	events     []Event
}

type execKey struct{}

func withExec(ctx context.Context, x *execState) context.Context {
	return context.WithValue(ctx, execKey{}, x)
}

func execOf(ctx context.Context) *execState {
	x, _ := ctx.Value(execKey{}).(*execState)
	return x
}

// reset readies x for a (re)run of its transaction: InTx may run it again.
func (x *execState) reset(tx store.Store) {
	x.tx, x.after, x.events = tx, nil, nil
}

// finish runs what the committed transaction left to do.
func (s *Service) finishExec(x *execState) {
	for _, f := range x.after {
		f()
	}
	for _, ev := range x.events {
		s.events.Publish(ev)
	}
}

// afterCommit runs fn once the calling method's change has committed: now,
// or, when the method runs inside an execution, when that commits.
func (s *Service) afterCommit(ctx context.Context, fn func()) {
	if x := execOf(ctx); x != nil {
		x.after = append(x.after, fn)
		return
	}
	fn()
}

// mutateIn is mutate for a method running inside an execution: fn joins the
// owner's transaction, and its audit entry (which names the approval) with
// it. Errors are returned as they are: the owner records the outcome.
func (s *Service) mutateIn(ctx context.Context, x *execState, p auth.Principal, ev *auditEvent, fn func(tx store.Store) error) error {
	if err := fn(x.tx); err != nil {
		return err
	}
	if x.approvalID != "" {
		if ev.Detail == nil {
			ev.Detail = map[string]any{}
		}
		ev.Detail["approval_id"] = x.approvalID
	}
	if _, err := x.tx.AppendAudit(ctx, s.auditEntry(ctx, p, *ev, "ok")); err != nil {
		return err
	}
	x.events = append(x.events, Event{OrgID: p.OrgID, Type: ev.Action, WorkspaceID: ev.WorkspaceID, TargetID: ev.TargetID})
	return nil
}

// errGated is how a method's transaction says that the org's policy holds
// the call for people to decide: the transaction rolls back, nothing is
// audited as a refusal, and the method asks for an approval instead.
var errGated = errors.New("gated: the org's policy requires an approval")

// gate returns errGated when p is an agent, the policy gates the action
// (gateOn), and cond (nil: always) holds under the policy. Inside an
// execution nothing is gated: people have already approved it, or it is a
// plan.
func (s *Service) gate(ctx context.Context, tx store.Store, p auth.Principal, gateOn func(Gates) bool, cond func(Policy) bool) error {
	if !p.IsAgent() || execOf(ctx) != nil {
		return nil
	}
	pol, err := s.policyOf(ctx, tx, p.OrgID)
	if err != nil {
		return err
	}
	if !gateOn(pol.Gates) || cond != nil && !cond(pol) {
		return nil
	}
	return errGated
}

type callerKey struct{}

// withCallerWorkspace makes propagation treat ws as the caller's workspace
// for the writes of ctx: a person answering a workspace's secret request
// writes on that workspace's behalf, so the asking agent is not restarted
// mid-turn (self_write); it reads the value from /values.
func withCallerWorkspace(ctx context.Context, ws string) context.Context {
	return context.WithValue(ctx, callerKey{}, ws)
}

// callerWorkspace is the workspace propagation treats as the caller's.
func callerWorkspace(ctx context.Context, p auth.Principal) string {
	if ws, ok := ctx.Value(callerKey{}).(string); ok && ws != "" {
		return ws
	}
	return p.CallerWorkspace()
}
