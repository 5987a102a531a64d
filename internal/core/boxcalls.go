package core

import (
	"context"
	"time"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/store"
)

// Every call to a provisioner runs under a deadline: a hung engine (a
// Docker daemon that stopped answering, a stalled /proc read) must end in
// an error the rules can act on, not hold a restart slot, a workspace
// lock or the control plane's start forever.

func (s *Service) provStart(ctx context.Context, prov provision.Provisioner, spec provision.Spec) (provision.Handle, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProvisionTimeout)
	defer cancel()
	return prov.Start(ctx, spec)
}

func (s *Service) provStop(ctx context.Context, prov provision.Provisioner, h provision.Handle) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StopTimeout)
	defer cancel()
	return prov.Stop(ctx, h)
}

func (s *Service) provInspect(ctx context.Context, prov provision.Provisioner, h provision.Handle) (provision.State, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProvisionerCallTimeout)
	defer cancel()
	return prov.Inspect(ctx, h)
}

func (s *Service) provAdopt(ctx context.Context, prov provision.Provisioner, h provision.Handle) (provision.State, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProvisionerCallTimeout)
	defer cancel()
	return prov.Adopt(ctx, h)
}

func (s *Service) provList(ctx context.Context, l provision.Lister) ([]provision.Handle, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProvisionerCallTimeout)
	defer cancel()
	return l.List(ctx)
}

// backoff is base doubled n times, capped.
func backoff(base time.Duration, n int, ceiling time.Duration) time.Duration {
	d := base
	for i := 0; i < n && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// sees reports whether this control plane can see the box of handle h:
// a box recorded on another node is neither inspected nor adopted nor
// stopped nor declared dead from here.
func (s *Service) sees(runtime string, h provision.Handle) bool {
	if h.Node == "" {
		return true
	}
	n, ok := s.provOf(runtime, h).(provision.Noder)
	return !ok || n.Node() == h.Node
}

// provOf is the provisioner of a box: its handle's runtime's, else its
// workspace's (handles of some backends name another runtime); nil when
// this control plane has neither.
func (s *Service) provOf(runtime string, h provision.Handle) provision.Provisioner {
	if prov := s.provs[h.Runtime]; prov != nil {
		return prov
	}
	return s.provs[runtime]
}

// auditBoxStop records a stop that orgplane made on its own (why), and
// logs one that failed: a box that would not stop is never ignored.
func (s *Service) auditBoxStop(w store.Workspace, gen int64, why string, detail map[string]any, err error) {
	if detail == nil {
		detail = map[string]any{}
	}
	detail["why"], detail["generation"] = why, gen
	outcome := "ok"
	if err != nil {
		outcome, detail["error"] = "failed", err.Error()
		s.log.Error("stop box", "workspace_id", w.ID, "generation", gen, "why", why, "err", err)
	}
	s.appendAudit(context.Background(), systemPrincipal(w.OrgID), auditEvent{Action: "box.stop", TargetKind: "workspace",
		TargetID: w.ID, WorkspaceID: w.ID, Detail: detail}, outcome)
}

// nodeOf is the node a new box of this provisioner runs on ("" when its
// boxes are visible from every replica).
func nodeOf(prov provision.Provisioner) string {
	if n, ok := prov.(provision.Noder); ok {
		return n.Node()
	}
	return ""
}
