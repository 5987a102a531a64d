// Package core is orgplane's service layer: one Go API that enforces
// authorization and every rule. HTTP, MCP, the CLI and the canvas are thin
// faces over it and never re-implement a rule.
//
// Authorization has one choke point: every exported method starts from the
// principal in its context (auth.FromContext), and objects of another org
// are reported as not found so that their existence does not leak.
package core

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/store"
)

// Service is the service layer.
type Service struct {
	store store.Store
	clock Clock
	log   *slog.Logger
}

// Options configure a Service.
type Options struct {
	Clock  Clock
	Logger *slog.Logger
}

// New returns a Service over st.
func New(st store.Store, opts Options) *Service {
	s := &Service{store: st, clock: opts.Clock, log: opts.Logger}
	if s.clock == nil {
		s.clock = SystemClock{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Store returns the service's store (for operator commands and tests).
func (s *Service) Store() store.Store { return s.store }

// Ready reports whether the store answers.
func (s *Service) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.store.Ping(ctx)
}

func principal(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.OrgID == "" {
		return auth.Principal{}, Unauthorized("authentication required")
	}
	return p, nil
}

// requireAdmin is the rule for admin-only operations.
func requireAdmin(p auth.Principal, what string) error {
	if !p.IsAdmin() {
		return Forbidden("%s requires an admin token", what)
	}
	return nil
}

// auditEvent describes one mutating call for the audit log.
type auditEvent struct {
	Action      string
	TargetKind  string
	TargetID    string
	WorkspaceID string
	Detail      map[string]any // never a secret value
}

func (s *Service) auditEntry(ctx context.Context, p auth.Principal, ev auditEvent, outcome string) store.AuditEntry {
	detail := "{}"
	if len(ev.Detail) > 0 {
		if b, err := json.Marshal(ev.Detail); err == nil {
			detail = string(b)
		}
	}
	return store.AuditEntry{
		OrgID:             p.OrgID,
		At:                s.clock.Now(),
		TokenID:           p.TokenID,
		PrincipalKind:     p.Kind,
		ActingWorkspaceID: p.CallerWorkspace(),
		Action:            ev.Action,
		TargetKind:        ev.TargetKind,
		TargetID:          ev.TargetID,
		WorkspaceID:       ev.WorkspaceID,
		Outcome:           outcome,
		RequestID:         auth.RequestID(ctx),
		Detail:            detail,
	}
}

// mutate runs fn in one transaction and audits it: the entry of a success
// commits with the change; a refusal or failure is recorded afterwards, in
// its own transaction on a fresh context, so that it is never lost with the
// change it refused. fn may fill in ev (target ids, detail) as it learns them.
func (s *Service) mutate(ctx context.Context, p auth.Principal, ev *auditEvent, fn func(tx store.Store) error) error {
	err := s.store.InTx(ctx, func(tx store.Store) error {
		if err := fn(tx); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, s.auditEntry(ctx, p, *ev, "ok"))
		return err
	})
	if err == nil {
		return nil
	}
	e := AsError(err)
	if e.Status >= 500 {
		s.log.Error("mutation failed", "action", ev.Action, "target", ev.TargetID, "err", err)
	}
	if e.Status == 503 {
		return e // nowhere to write the entry
	}
	outcome := "error:" + e.Code
	if e.Status == 403 || e.Status == 401 {
		outcome = "denied"
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, aerr := s.store.AppendAudit(actx, s.auditEntry(ctx, p, *ev, outcome)); aerr != nil {
		s.log.Error("append audit entry", "action", ev.Action, "err", aerr)
	}
	return e
}

// notFoundAs maps store.ErrNotFound to a typed not-found error.
func notFoundAs(err error, what, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return NotFound(what, id)
	}
	return err
}
