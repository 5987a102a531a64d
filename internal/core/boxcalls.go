package core

import (
	"context"
	"time"

	"github.com/orgplane/orgplane/internal/provision"
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
	prov := s.provs[h.Runtime]
	if prov == nil {
		prov = s.provs[runtime]
	}
	n, ok := prov.(provision.Noder)
	return !ok || n.Node() == h.Node
}

// nodeOf is the node a new box of this provisioner runs on ("" when its
// boxes are visible from every replica).
func nodeOf(prov provision.Provisioner) string {
	if n, ok := prov.(provision.Noder); ok {
		return n.Node()
	}
	return ""
}
