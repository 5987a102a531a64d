package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/redact"
	"github.com/orgplane/orgplane/internal/store"
)

// The box contract's variables.
const (
	EnvURL         = "ORGPLANE_URL"
	EnvWorkspaceID = "ORGPLANE_WORKSPACE_ID"
	EnvToken       = "ORGPLANE_TOKEN"
	EnvGeneration  = "ORGPLANE_GENERATION"
	// EnvFingerprint is the env fingerprint the box was provisioned with;
	// the reference agent echoes it in its heartbeats.
	EnvFingerprint = "ORGPLANE_ENV_FINGERPRINT"
	// EnvManagementToken is the platform box's admin token, bound to the
	// platform workspace and minted per provision: the concierge manages
	// the org with it, never with a person's credential.
	EnvManagementToken = "ORGPLANE_MANAGEMENT_TOKEN"
	// EnvMCPURL is the platform box's MCP endpoint (the advertise URL's
	// /mcp): the concierge finds it without configuration.
	EnvMCPURL = "ORGPLANE_MCP_URL"
)

type wsLock struct {
	mu sync.Mutex
	n  int
}

// lockWS serializes box operations on one workspace within this replica.
// Across replicas, generation-conditional writes keep them safe.
func (s *Service) lockWS(id string) func() {
	s.mu.Lock()
	l := s.locks[id]
	if l == nil {
		l = &wsLock{}
		s.locks[id] = l
	}
	l.n++
	s.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.mu.Lock()
		if l.n--; l.n == 0 {
			delete(s.locks, id)
		}
		s.mu.Unlock()
	}
}

// boxWatch follows one generation of a workspace's box: its health, then
// its life.
type boxWatch struct {
	orgID, wsID string
	gen         int64
	handle      provision.Handle
	// owned: a restart job waits on this box's first outcome and handles its
	// failure (retries); the watcher does not schedule a recovery for it.
	owned  bool
	cancel context.CancelFunc
	beat   chan struct{}
	result chan error // first outcome: nil healthy, or why it failed
	once   sync.Once
	// kept: a platform box late for its deadline, kept running (degraded):
	// the restart that owns it ends without a retry, which would stop it.
	kept atomic.Bool
	// seen: what the watcher last read of its workspace (nil before its
	// first read, or after a read that failed), for the shared sweep to
	// tell whether a change passed it by (watchsweep.go).
	seen atomic.Pointer[store.WorkspaceState]
}

func (w *boxWatch) resolve(err error) {
	w.once.Do(func() { w.result <- err; close(w.result) })
}

// isAgentBox: a process workspace with no command runs the reference agent,
// which speaks the heartbeat protocol; it is healthy only by heartbeat.
func isAgentBox(w store.Workspace) bool {
	if w.Runtime != RuntimeProcess {
		return false
	}
	var sp ProcessSpec
	_ = json.Unmarshal([]byte(w.Spec), &sp)
	return len(sp.Command) == 0
}

func (s *Service) readyAfter(w store.Workspace) time.Duration {
	var sp struct {
		ReadyAfterSeconds *float64 `json:"ready_after_seconds"`
	}
	_ = json.Unmarshal([]byte(w.Spec), &sp)
	if sp.ReadyAfterSeconds != nil {
		return time.Duration(*sp.ReadyAfterSeconds * float64(time.Second))
	}
	return s.cfg.ReadyAfter
}

// boxSpec builds what the provisioner runs: the spec's env, the effective
// env over it, and the box contract's variables over both.
func (s *Service) boxSpec(w store.Workspace, env map[string]string, fp, token, mgmt string) (provision.Spec, error) {
	sp := provision.Spec{OrgID: w.OrgID, WorkspaceID: w.ID, Generation: w.Generation, Env: map[string]string{}}
	switch w.Runtime {
	case RuntimeProcess:
		var ps ProcessSpec
		if err := json.Unmarshal([]byte(w.Spec), &ps); err != nil {
			return sp, fmt.Errorf("decode spec: %w", err)
		}
		maps.Copy(sp.Env, ps.Env)
		sp.Command = ps.Command
		if len(sp.Command) == 0 {
			if len(s.cfg.AgentCommand) == 0 {
				return sp, errors.New("no command in the spec and no reference agent configured")
			}
			sp.Command = s.cfg.AgentCommand
		}
	case RuntimeDocker:
		var ds DockerSpec
		if err := json.Unmarshal([]byte(w.Spec), &ds); err != nil {
			return sp, fmt.Errorf("decode spec: %w", err)
		}
		maps.Copy(sp.Env, ds.Env)
		sp.Image, sp.Command, sp.User = ds.Image, ds.Command, ds.User
	case RuntimeKubernetes:
		if err := kubeBoxSpec(w, &sp, s.cfg.KubeAgentImage); err != nil {
			return sp, err
		}
	default:
		return sp, fmt.Errorf("runtime %s has no boxes", w.Runtime)
	}
	for k := range sp.Env {
		if _, secret := env[k]; !secret {
			sp.PublicKeys = append(sp.PublicKeys, k) // the spec's own, not masked in output
		}
	}
	maps.Copy(sp.Env, env)
	sp.Env[EnvURL] = s.cfg.AdvertiseURL
	sp.Env[EnvWorkspaceID] = w.ID
	sp.Env[EnvToken] = token
	sp.Env[EnvGeneration] = strconv.FormatInt(w.Generation, 10)
	sp.Env[EnvFingerprint] = fp
	if mgmt != "" {
		sp.Env[EnvManagementToken] = mgmt
		sp.Env[EnvMCPURL] = strings.TrimRight(s.cfg.AdvertiseURL, "/") + "/mcp"
	}
	return sp, nil
}

// errSuperseded: the workspace moved to another generation than the one a
// caller read; the caller's work is moot and it backs off.
var errSuperseded = errors.New("superseded by a newer box")

// startBox provisions the next generation of a workspace's box. It records
// the generation (and, through onGen, the job that provisions it) in one
// transaction before the box starts, so that a crash cannot start two. The
// caller holds the workspace lock. fromGen is the generation the caller
// read (compare-and-set: if another replica or an admin restart moved the
// workspace on since, nothing starts and the error is errSuperseded). The
// returned watch resolves when the box is healthy or has failed.
//
// resume starts generation fromGen itself when it was recorded but its box
// never started (a crash in between): the restart then happens once, under
// the generation its job recorded, rather than skipping one.
func (s *Service) startBox(ctx context.Context, orgID, wsID string, fromGen int64, resume bool, cause string, owned bool, onGen func(tx store.Store, gen int64) error) (*boxWatch, error) {
	w, err := s.store.GetWorkspace(ctx, orgID, wsID)
	if err != nil {
		return nil, err
	}
	if w.Runtime == RuntimeExternal {
		return nil, Refused("external_runtime", "workspace %s runs elsewhere (runtime external): orgplane never starts it", wsID)
	}
	env, fp, envErr := s.EffectiveEnv(ctx, s.store, orgID, wsID)
	prov := s.provs[w.Runtime]
	var token, mgmt string
	err = s.store.InTx(ctx, func(tx store.Store) error {
		cur, err := tx.GetWorkspaceForUpdate(ctx, orgID, wsID)
		if err != nil {
			return err
		}
		if cur.Generation != fromGen {
			return fmt.Errorf("%w: workspace %s is at generation %d, not %d", errSuperseded, wsID, cur.Generation, fromGen)
		}
		if err := checkTransition(wsID, cur.Status, StatusProvisioning); err != nil {
			return err
		}
		if cur.Status == StatusPaused {
			// A pause that commits while a restart job or a resume is on its
			// way here wins: paused -> provisioning is resume's transition
			// alone, and resume writes provisioning before it starts the box.
			return Conflict("workspace %s is paused", wsID)
		}
		now := s.clock.Now()
		resumed := resume && cur.Status == StatusProvisioning && cur.Box == "" && cur.Generation > 0
		if resumed {
			// Its tokens' secrets died with the crashed run: new ones.
			if err := revokeOldBoxTokens(ctx, tx, cur, cur.Generation+1, now); err != nil {
				return err
			}
		} else {
			cur.Generation++
		}
		tok := store.Token{ID: ids.New("t"), OrgID: orgID, Kind: store.TokenWorkspace, Name: "box-g" + strconv.FormatInt(cur.Generation, 10),
			WorkspaceID: wsID, BoxGeneration: cur.Generation, CreatedAt: now}
		token, tok.SecretHash = auth.NewSecret(store.TokenWorkspace, tok.ID)
		if err := tx.InsertToken(ctx, tok); err != nil {
			return err
		}
		if cur.Kind == store.KindPlatform {
			m := store.Token{ID: ids.New("t"), OrgID: orgID, Kind: store.TokenAdmin, Name: "management-g" + strconv.FormatInt(cur.Generation, 10),
				ActingWorkspaceID: wsID, BoxGeneration: cur.Generation, CreatedAt: now}
			mgmt, m.SecretHash = auth.NewSecret(store.TokenAdmin, m.ID)
			if err := tx.InsertToken(ctx, m); err != nil {
				return err
			}
		}
		cur.Status, cur.Box, cur.BoxFingerprint, cur.BoxTokenID = StatusProvisioning, "", fp, tok.ID
		cur.HealthyAt, cur.HeartbeatAt, cur.UpdatedAt = time.Time{}, time.Time{}, now
		if err := tx.UpdateWorkspace(ctx, cur); err != nil {
			return err
		}
		if onGen != nil {
			if err := onGen(tx, cur.Generation); err != nil {
				return err
			}
		}
		w = cur
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{
			Action: "box.provision", TargetKind: "workspace", TargetID: wsID, WorkspaceID: wsID,
			Detail: map[string]any{"generation": cur.Generation, "cause": cause, "runtime": cur.Runtime, "resumed": resumed},
		}, "ok"))
		return err
	})
	if err != nil {
		return nil, err
	}
	s.platformTransition(w.Kind, StatusProvisioning)
	s.events.Publish(Event{OrgID: orgID, Type: "box.provision", WorkspaceID: wsID, Status: StatusProvisioning})
	fail := func(cause, msg string) (*boxWatch, error) {
		err := errors.New(msg)
		s.markFailed(orgID, wsID, w.Generation, cause, msg, !owned)
		return nil, err
	}
	switch {
	case envErr != nil:
		return fail("env", "cannot build the box's env: "+AsError(envErr).Message)
	case prov == nil:
		return fail("runtime", fmt.Sprintf("runtime %s is not enabled on this control plane", w.Runtime))
	}
	spec, err := s.boxSpec(w, env, fp, token, mgmt)
	if err != nil {
		return fail("spec", err.Error())
	}
	start := s.clock.Now()
	h, err := s.provStart(ctx, prov, spec)
	if err != nil {
		s.metrics.Provisions.WithLabelValues(w.Runtime, "start_failed").Inc()
		return fail("start", "start box: "+err.Error())
	}
	if h.Node == "" {
		h.Node = nodeOf(prov)
	}
	hb, _ := json.Marshal(h)
	// Record the handle durably: a store that blinks now must not leave a
	// live box unrecorded (the recovery would start a second one).
	err = s.durableTx(func(ctx context.Context, tx store.Store) error {
		cur, err := tx.GetWorkspaceForUpdate(ctx, orgID, wsID)
		if err != nil {
			return err
		}
		if cur.Generation != w.Generation {
			return errSuperseded
		}
		if !hasBox(cur.Status) {
			// Deleted or paused while the box was starting: the delete or
			// pause saw no box to stop (none was recorded yet), so recording
			// this one would leave it running with nobody to stop it.
			return Conflict("workspace %s became %s while its box started", wsID, cur.Status)
		}
		cur.Box = string(hb)
		if err := tx.UpdateWorkspace(ctx, cur); err != nil {
			return err
		}
		// Whoever starts a box watches it: the lease is taken with the
		// handle, in the same transaction rather than one more.
		now := s.clock.Now()
		_, err = tx.ClaimSupervision(ctx, wsID, s.owner, w.Generation, now, now.Add(s.cfg.SupervisionLease), true)
		return err
	})
	if err != nil {
		// Never recorded as the workspace's box, so nothing relies on it:
		// it must not live on beside the box that replaced it.
		s.discardUnrecorded(w, h, err)
		if errors.Is(err, errSuperseded) {
			return nil, fmt.Errorf("record the box: %w", err)
		}
		return fail("store", "record the box: "+AsError(err).Message)
	}
	return s.watch(w, h, owned, start), nil
}

// discardUnrecorded stops a box that was started but could not be recorded
// as its workspace's box. It is not the workspace's box (another generation
// is, or none was recorded), so this is not a stop of the platform's box;
// a failure to stop it is logged and audited, never ignored.
func (s *Service) discardUnrecorded(w store.Workspace, h provision.Handle, why error) {
	err := errors.New("no provisioner for its runtime")
	if prov := s.provOf(w.Runtime, h); prov != nil {
		err = s.provStop(context.Background(), prov, h)
	}
	// why is a store error or errSuperseded: ids and states, no values.
	s.auditBoxStop(w, h.Generation, "unrecorded", map[string]any{"cause": why.Error()}, err)
}

// watch starts following a box generation, replacing any previous watcher
// of the workspace. Whoever watches a box holds its supervision lease
// (other replicas leave it alone while the lease lives, and take it over
// when it lapses): the caller has claimed it.
func (s *Service) watch(w store.Workspace, h provision.Handle, owned bool, started time.Time) *boxWatch {
	ctx, cancel := context.WithCancel(s.bgCtx)
	bw := &boxWatch{orgID: w.OrgID, wsID: w.ID, gen: w.Generation, handle: h, owned: owned, cancel: cancel,
		beat: make(chan struct{}, 1), result: make(chan error, 1)}
	s.mu.Lock()
	if old := s.watches[w.ID]; old != nil {
		old.cancel()
	}
	s.watches[w.ID] = bw
	s.mu.Unlock()
	s.sweepStart.Do(s.startWatchSweep)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer cancel()
		s.follow(ctx, bw, w, started)
		s.mu.Lock()
		last := s.watches[w.ID] == bw
		if last {
			delete(s.watches, w.ID)
		}
		s.mu.Unlock()
		if last && s.bgCtx.Err() == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.store.ReleaseSupervision(ctx, w.ID, s.owner); err != nil {
				s.log.Warn("release box supervision", "workspace_id", w.ID, "err", err)
			}
		}
	}()
	return bw
}

// unwatch stops following generation gen of a workspace's box (it is being
// stopped on purpose); a newer generation's watcher is left alone.
func (s *Service) unwatch(wsID string, gen int64) {
	s.mu.Lock()
	if bw := s.watches[wsID]; bw != nil && bw.gen == gen {
		bw.cancel()
		bw.resolve(errors.New("box stopped"))
		delete(s.watches, wsID)
	}
	s.mu.Unlock()
}

// nudge tells the watcher of a workspace that its workspace changed (a
// heartbeat made it running; another replica wrote its status or
// generation): it reads the store again now rather than at its next check.
func (s *Service) nudge(wsID string) {
	s.mu.Lock()
	bw := s.watches[wsID]
	s.mu.Unlock()
	if bw != nil {
		bw.nudge()
	}
}

func (w *boxWatch) nudge() {
	select {
	case w.beat <- struct{}{}:
	default:
	}
}

// follow is a box's watcher: it waits for health until the provision
// deadline, then for the box's end. Every way a box fails ends in status
// failed with a reason, an audit entry and a metric.
//
// It reads the workspace when it starts, when told something changed
// (nudge: by whoever changed it, or by the shared sweep when that wake-up
// was lost), and when its heartbeat deadline comes; never on a timer of
// its own otherwise, so that its reads do not grow with the boxes.
func (s *Service) follow(ctx context.Context, bw *boxWatch, w store.Workspace, started time.Time) {
	prov := s.provs[w.Runtime]
	var exited <-chan provision.State
	if wt, ok := prov.(provision.Waiter); ok {
		exited = wt.Wait(ctx, bw.handle)
	}
	// The backend's word on the box's end comes through exited; without
	// it, the box is inspected every second.
	var inspect <-chan time.Time
	pollInspect := func() {
		t := time.NewTicker(time.Second)
		context.AfterFunc(ctx, t.Stop)
		inspect = t.C
	}
	if exited == nil && prov != nil {
		pollInspect()
	}
	// beatDue fires when a healthy agent box's heartbeat is due at the
	// latest: it is degraded if none came by then.
	beatDue := time.NewTimer(time.Hour)
	beatDue.Stop()
	defer beatDue.Stop()
	deadline := time.NewTimer(s.cfg.ProvisionTimeout - s.clock.Now().Sub(started))
	defer deadline.Stop()
	var ready <-chan time.Time
	if !isAgentBox(w) {
		t := time.NewTimer(max(s.readyAfter(w)-s.clock.Now().Sub(started), 0))
		defer t.Stop()
		ready = t.C
	}
	healthy := w.Status == StatusRunning || w.Status == StatusDegraded
	if healthy {
		bw.resolve(nil)
	}
	// A box adopted after a control-plane restart may have been silent
	// only because nobody listened: it is not degraded before it had a
	// moment to heartbeat (what the first one-second poll used to give).
	grace := s.clock.Now().Add(time.Second)
	// checkDB follows what heartbeats (perhaps on another replica) and
	// others wrote; it reports false when this box is no longer current.
	checkDB := func() bool {
		cur, err := s.store.GetWorkspace(ctx, w.OrgID, w.ID)
		if err != nil {
			// The store may be back soon; keep watching. Unknown to the
			// sweep, which wakes this watcher to read again at its next pass.
			bw.seen.Store(nil)
			return true
		}
		bw.seen.Store(&store.WorkspaceState{ID: cur.ID, Generation: cur.Generation, Status: cur.Status, HeartbeatAt: cur.HeartbeatAt})
		if cur.Generation != bw.gen {
			bw.resolve(errors.New("superseded by a newer box"))
			return false
		}
		now := s.clock.Now()
		switch {
		case !healthy && cur.Status == StatusRunning:
			healthy = true
			s.metrics.ProvisionLatency.WithLabelValues(w.Runtime).Observe(now.Sub(started).Seconds())
			s.metrics.Provisions.WithLabelValues(w.Runtime, "healthy").Inc()
			bw.resolve(nil)
		case !hasBox(cur.Status):
			// Stopped, paused, failed or removed by someone else.
			bw.resolve(fmt.Errorf("workspace is %s", cur.Status))
			return cur.Status != StatusFailed
		}
		if healthy && isAgentBox(w) && cur.Status == StatusRunning && !cur.HeartbeatAt.IsZero() {
			due := cur.HeartbeatAt.Add(s.cfg.HeartbeatTimeout)
			if now.Sub(cur.HeartbeatAt) > s.cfg.HeartbeatTimeout && !now.Before(grace) {
				s.setStatus(w.OrgID, w.ID, bw.gen, StatusRunning, StatusDegraded,
					fmt.Sprintf("no heartbeat for %s", now.Sub(cur.HeartbeatAt).Truncate(time.Second)))
				return true
			}
			// Read again just after the deadline: a heartbeat since has
			// moved it on, or the box is degraded.
			beatDue.Reset(max(due.Sub(now), grace.Sub(now), 0) + 10*time.Millisecond)
		}
		return true
	}
	// A heartbeat that committed before this watcher was registered nudged
	// nobody: read once now, so it is never missed.
	if !checkDB() {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-bw.beat:
			if !checkDB() {
				return
			}
		case <-beatDue.C:
			if !checkDB() {
				return
			}
		case <-inspect:
			if st, err := s.provInspect(ctx, prov, bw.handle); err == nil && !st.Running || errors.Is(err, provision.ErrNotFound) {
				s.boxExited(ctx, bw, w, st, err, healthy)
				return
			}
		case <-ready:
			ready = nil
			if !healthy {
				if st, err := s.provInspect(ctx, prov, bw.handle); err == nil && st.Running {
					if s.markHealthy(w.OrgID, w.ID, bw.gen, "alive for ready_after") {
						healthy = true
						bw.sawStatus(StatusRunning) // its own write: nothing for the sweep to wake it for
						s.metrics.ProvisionLatency.WithLabelValues(w.Runtime).Observe(s.clock.Now().Sub(started).Seconds())
						s.metrics.Provisions.WithLabelValues(w.Runtime, "healthy").Inc()
						bw.resolve(nil)
					}
				}
			}
		case st, ok := <-exited:
			if !ok {
				if ctx.Err() != nil {
					return
				}
				exited = nil // the backend gave up waiting: inspect instead
				if prov != nil {
					pollInspect()
				}
				continue
			}
			s.boxExited(ctx, bw, w, st, nil, healthy)
			return
		case <-deadline.C:
			if healthy {
				continue
			}
			how := "no heartbeat with generation " + strconv.FormatInt(bw.gen, 10)
			if !isAgentBox(w) {
				how = "not alive for its ready_after"
			}
			msg := fmt.Sprintf("box generation %d was not healthy within %s (%s)", bw.gen, s.cfg.ProvisionTimeout, how)
			s.metrics.Provisions.WithLabelValues(w.Runtime, "timeout").Inc()
			if w.Kind == store.KindPlatform {
				// Late is not dead. The platform's box is never stopped by an
				// automatic path, and it is not declared failed while it may
				// still come up: it is degraded, watched on, and a late
				// healthy heartbeat makes it running. If it dies, its exit
				// brings it back (boxExited); no job owns it any longer.
				bw.kept.Store(true)
				bw.owned = false
				s.setStatus(w.OrgID, w.ID, bw.gen, StatusProvisioning, StatusDegraded, msg+"; kept running: the platform box is never stopped automatically")
				bw.resolve(errors.New(msg + "; the platform box was kept running (degraded) and becomes running when it heartbeats"))
				continue
			}
			// An unhealthy box is stopped and recovered.
			if s.markFailed(w.OrgID, w.ID, bw.gen, "provision_timeout", msg, !bw.owned) {
				if err := s.terminate(context.WithoutCancel(ctx), w, bw.handle, false); err != nil {
					// The workspace is failed already; the box that would not
					// stop is recorded too, and its recovery stops it again.
					s.auditBoxStop(w, bw.gen, "provision_timeout", nil, err)
				}
			}
			bw.resolve(errors.New(msg))
			return
		}
	}
}

// boxExited handles a box that ended without being asked to.
func (s *Service) boxExited(ctx context.Context, bw *boxWatch, w store.Workspace, st provision.State, err error, healthy bool) {
	if ctx.Err() != nil {
		return // stopped on purpose
	}
	what := st.Reason
	if what == "" {
		what = "box vanished"
		if st.Exited {
			what = fmt.Sprintf("exited with code %d", st.ExitCode)
		}
	}
	if s.replacedElsewhere(ctx, w, bw.gen) {
		bw.resolve(errors.New("superseded by a newer box"))
		return
	}
	msg := fmt.Sprintf("box generation %d %s", bw.gen, what)
	if tail := s.logTail(w, 5); tail != "" {
		msg += "; last output: " + tail
	}
	cause := "exited"
	if !healthy {
		cause = "exited_during_provision"
	}
	s.metrics.Provisions.WithLabelValues(w.Runtime, cause).Inc()
	// A dead box is brought back: that terminates nothing, so it holds for
	// the platform workspace too. A box a restart job owns is that job's to
	// retry until it has been healthy.
	// The platform's dead box is always brought back at once, owned or not:
	// the supervisor's rules, not a job's retry budget, decide for it.
	s.markFailed(w.OrgID, w.ID, bw.gen, cause, msg, healthy || !bw.owned || w.Kind == store.KindPlatform)
	bw.resolve(errors.New(msg))
}

// logTail returns the last lines of a box's output, on one line, bounded.
// Box output is the box's own; orgplane never writes secret values there.
func (s *Service) logTail(w store.Workspace, n int) string {
	lg, ok := s.provs[w.Runtime].(provision.Logger)
	if !ok {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := lg.Logs(ctx, w.ID, n)
	if err != nil || len(b) == 0 {
		return ""
	}
	// A box may print its own env. Its output goes into last_error and the
	// audit log, where secret values must never be: mask them, and withhold
	// the output when the values cannot be read to mask.
	env, _, err := s.EffectiveEnv(ctx, s.store, w.OrgID, w.ID)
	if err != nil {
		return "(output withheld: the secrets needed to redact it could not be read)"
	}
	out := strings.Join(strings.Fields(strings.ReplaceAll(redact.String(string(b), env), "\n", " | ")), " ")
	if len(out) > 500 {
		out = out[len(out)-500:]
	}
	return out
}

// markFailed records that a generation's box failed, on a fresh context (the
// caller's may be the one that timed out). It reports whether it wrote: a
// newer generation or a deliberate stop wins.
//
// With recover, the recovery (a re-provision with backoff, within the retry
// bound) is queued in the same transaction: a failure and its recovery are
// never seen apart.
func (s *Service) markFailed(orgID, wsID string, gen int64, cause, msg string, recover bool) bool {
	wrote := false
	var kind string
	err := s.durableTx(func(ctx context.Context, tx store.Store) error {
		wrote = false
		if recover {
			if err := tx.LockOrg(ctx, orgID); err != nil {
				return err
			}
		}
		w, err := tx.GetWorkspaceForUpdate(ctx, orgID, wsID)
		if err != nil {
			return err
		}
		if w.Generation != gen || !CanTransition(w.Status, StatusFailed) || !hasBox(w.Status) {
			return nil
		}
		kind = w.Kind
		now := s.clock.Now()
		// A box that stayed healthy for a while starts a fresh count; one
		// that flaps (healthy, then dead soon after) keeps counting, so the
		// retry bound holds for it too.
		if !w.HealthyAt.IsZero() && now.Sub(w.HealthyAt) >= s.cfg.StableAfter {
			w.Failures = 0
		}
		w.Status, w.LastError, w.UpdatedAt = StatusFailed, msg, now
		w.Failures++
		if err := tx.UpdateWorkspace(ctx, w); err != nil {
			return err
		}
		wrote = true
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{
			Action: "box.failed", TargetKind: "workspace", TargetID: wsID, WorkspaceID: wsID,
			Detail: map[string]any{"generation": gen, "cause": cause, "error": msg, "failures": w.Failures},
		}, "failed"))
		if err != nil || !recover {
			return err
		}
		_, err = s.scheduleRecoveryTx(ctx, tx, orgID, wsID, gen)
		return err
	})
	if err != nil {
		s.log.Error("record box failure", "workspace_id", wsID, "generation", gen, "cause", cause, "err", err)
		return false
	}
	if wrote {
		s.platformTransition(kind, StatusFailed)
		s.metrics.BoxFailures.WithLabelValues(cause).Inc()
		s.log.Warn("box failed", "workspace_id", wsID, "generation", gen, "cause", cause, "error", msg)
		s.events.Publish(Event{OrgID: orgID, Type: "box.failed", WorkspaceID: wsID, Status: StatusFailed, Reason: cause})
		if recover {
			s.kick()
		}
	}
	return wrote
}

// markHealthy moves a generation to running; older box tokens are revoked
// now that the new box is healthy, so no box is left in a 401 loop while
// it is still needed.
func (s *Service) markHealthy(orgID, wsID string, gen int64, via string) bool {
	ok, changed := false, false
	var kind string
	// Durable: a box found healthy once (ready_after) is not found again.
	err := s.durableTx(func(ctx context.Context, tx store.Store) error {
		w, err := tx.GetWorkspaceForUpdate(ctx, orgID, wsID)
		if err != nil {
			return err
		}
		kind = w.Kind
		ok, changed, err = s.healthyTx(ctx, tx, w, gen, via)
		return err
	})
	if err != nil {
		s.log.Error("record box healthy", "workspace_id", wsID, "generation", gen, "err", err)
		return false
	}
	if changed {
		s.healthyCommitted(orgID, wsID, kind)
	}
	return ok
}

// healthyCommitted announces a box that became running, once its
// transaction committed (never before: a rolled-back change is no event).
func (s *Service) healthyCommitted(orgID, wsID, kind string) {
	s.platformTransition(kind, StatusRunning)
	s.events.Publish(Event{OrgID: orgID, Type: "box.healthy", WorkspaceID: wsID, Status: StatusRunning})
}

// healthyTx moves generation gen to running in tx. ok: it is running now;
// changed: this call moved it.
func (s *Service) healthyTx(ctx context.Context, tx store.Store, w store.Workspace, gen int64, via string) (ok, changed bool, err error) {
	if w.Generation != gen || (w.Status != StatusProvisioning && w.Status != StatusDegraded) {
		return w.Generation == gen && w.Status == StatusRunning, false, nil
	}
	now := s.clock.Now()
	// The generation's first health, even when it comes late (a platform
	// box kept degraded past its deadline, a box adopted after a check).
	first := w.HealthyAt.IsZero()
	w.Status, w.UpdatedAt = StatusRunning, now
	if first {
		// Failures is not reset here but when the box has stayed up for
		// StableAfter (see markFailed): a flapping box must not retry forever.
		w.HealthyAt, w.LastError = now, ""
	}
	if err := tx.UpdateWorkspace(ctx, w); err != nil {
		return false, false, err
	}
	if first {
		if err := revokeOldBoxTokens(ctx, tx, w, gen, now); err != nil {
			return false, false, err
		}
		if _, err := tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(w.OrgID), auditEvent{
			Action: "box.healthy", TargetKind: "workspace", TargetID: w.ID, WorkspaceID: w.ID,
			Detail: map[string]any{"generation": gen, "via": via},
		}, "ok")); err != nil {
			return false, false, err
		}
	}
	return true, true, nil
}

// revokeOldBoxTokens revokes the live tokens minted for a workspace's
// boxes of generations before gen: its box tokens and, for the platform
// workspace (startBox mints management tokens for its boxes alone), its
// management tokens (other workspaces, restarted by the thousand in a
// fan-out, have none to look for).
func revokeOldBoxTokens(ctx context.Context, tx store.Store, w store.Workspace, before int64, now time.Time) error {
	if err := tx.RevokeBoxTokens(ctx, w.OrgID, w.ID, before, now); err != nil {
		return err
	}
	if w.Kind != store.KindPlatform {
		return nil
	}
	return tx.RevokeManagementTokens(ctx, w.OrgID, w.ID, before, now)
}

// setStatus moves a generation between two statuses, if it is still there.
func (s *Service) setStatus(orgID, wsID string, gen int64, from, to, msg string) {
	wrote := false
	var kind string
	err := s.durableTx(func(ctx context.Context, tx store.Store) error {
		wrote = false
		w, err := tx.GetWorkspaceForUpdate(ctx, orgID, wsID)
		if err != nil || w.Generation != gen || w.Status != from {
			return err
		}
		kind = w.Kind
		if err := checkTransition(wsID, from, to); err != nil {
			return err
		}
		w.Status, w.LastError, w.UpdatedAt = to, msg, s.clock.Now()
		if err := tx.UpdateWorkspace(ctx, w); err != nil {
			return err
		}
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{
			Action: "box." + to, TargetKind: "workspace", TargetID: wsID, WorkspaceID: wsID,
			Detail: map[string]any{"generation": gen, "reason": msg},
		}, "ok"))
		wrote = err == nil
		return err
	})
	if err != nil {
		s.log.Error("set box status", "workspace_id", wsID, "to", to, "err", err)
		return
	}
	if wrote {
		s.platformTransition(kind, to)
		s.events.Publish(Event{OrgID: orgID, Type: "box." + to, WorkspaceID: wsID, Status: to, Reason: msg})
	}
}

// ErrPlatformStop is returned when an automatic path tries to stop the
// platform workspace's box. It never happens by design; the guard makes
// sure of it.
var ErrPlatformStop = errors.New("refusing to stop the platform workspace's box automatically: only an explicit admin restart may")

// terminate is the one place that stops a box. explicit is true only for an
// admin's explicit, audited action; an automatic path can never stop the
// platform workspace's box.
func (s *Service) terminate(ctx context.Context, w store.Workspace, h provision.Handle, explicit bool) error {
	if w.Kind == store.KindPlatform && !explicit {
		s.log.Error("blocked an automatic stop of the platform workspace", "workspace_id", w.ID)
		return ErrPlatformStop
	}
	if !s.sees(w.Runtime, h) {
		return fmt.Errorf("stop box of %s: it runs on node %s, which this control plane cannot reach", w.ID, h.Node)
	}
	prov := s.provOf(w.Runtime, h)
	if prov == nil {
		return fmt.Errorf("runtime %s is not enabled on this control plane", w.Runtime)
	}
	if err := s.provStop(ctx, prov, h); err != nil {
		return fmt.Errorf("stop box of %s: %w", w.ID, err)
	}
	return nil
}

// cleanUpGone releases what a box known to be gone left behind (an exited
// container, a process group's stragglers) through its provisioner's Stop,
// which terminates nothing there. A failure is logged and audited (what it
// left may need an operator); the new box starts regardless.
func (s *Service) cleanUpGone(ctx context.Context, w store.Workspace) {
	h, ok := currentHandle(w)
	if !ok || !s.sees(w.Runtime, h) {
		return
	}
	prov := s.provOf(w.Runtime, h)
	if prov == nil {
		return
	}
	s.unwatch(w.ID, w.Generation)
	if err := s.provStop(ctx, prov, h); err != nil {
		s.auditBoxStop(w, w.Generation, "clean_up_gone", nil, err)
	}
}

// currentHandle decodes a workspace's box handle; ok is false when it has none.
func currentHandle(w store.Workspace) (provision.Handle, bool) {
	if w.Box == "" {
		return provision.Handle{}, false
	}
	var h provision.Handle
	if err := json.Unmarshal([]byte(w.Box), &h); err != nil {
		return provision.Handle{}, false
	}
	return h, true
}

// stopCurrent stops a workspace's current box, if it has one.
func (s *Service) stopCurrent(ctx context.Context, w store.Workspace, explicit bool) error {
	h, ok := currentHandle(w)
	if !ok {
		return nil
	}
	if w.Kind == store.KindPlatform && !explicit {
		return ErrPlatformStop
	}
	s.unwatch(w.ID, w.Generation)
	return s.terminate(ctx, w, h, explicit)
}

// replacedElsewhere reports whether a box that just exited was stopped on
// purpose by another replica's restart: while such a job runs, wait for it
// to move the workspace to a new generation before calling the exit a
// failure.
func (s *Service) replacedElsewhere(ctx context.Context, w store.Workspace, gen int64) bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cur, err := s.store.GetWorkspace(ctx, w.OrgID, w.ID)
		if err != nil {
			return false
		}
		if cur.Generation != gen || !hasBox(cur.Status) {
			return true
		}
		jobs, err := s.store.ListOpenJobs(ctx, w.OrgID, w.ID)
		if err != nil {
			return false
		}
		busy := false
		now := s.clock.Now()
		for _, j := range jobs {
			busy = busy || (j.State == store.JobRunning && j.LeaseOwner != s.owner && j.LeaseUntil.After(now))
		}
		if !busy {
			return false
		}
		select {
		case <-ctx.Done():
			return true
		case <-time.After(200 * time.Millisecond):
		}
	}
	return false
}

// durableTx runs fn in a transaction on a fresh context and, while the
// store is unavailable, tries again with backoff for up to two minutes: an
// outcome (a failure, a job's end) must be recorded, not dropped because
// the store blinked.
func (s *Service) durableTx(fn func(ctx context.Context, tx store.Store) error) error {
	deadline := time.Now().Add(2 * time.Minute)
	wait := 250 * time.Millisecond
	// Changes that end in the transaction are announced once it commits.
	changed := &changeEvents{}
	defer func() { changed.publish(s.events) }()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.store.InTx(ctx, func(tx store.Store) error {
			changed.evs = nil
			return fn(withChangeEvents(ctx, changed), tx)
		})
		if err != nil {
			changed.evs = nil
		}
		cancel()
		// A stall of the store shows as ErrUnavailable or as this attempt's
		// own deadline passing: both are tried again, with a fresh context.
		stalled := errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
		if err == nil || !stalled || time.Now().Add(wait).After(deadline) {
			return err
		}
		s.log.Warn("store unavailable; will retry recording", "err", err, "in", wait)
		time.Sleep(wait)
		wait = min(2*wait, 15*time.Second)
	}
}
