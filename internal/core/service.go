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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/store"
)

// RuntimeConfig tunes boxes and restarts. Zero values take the defaults.
type RuntimeConfig struct {
	// AdvertiseURL is ORGPLANE_URL in every box.
	AdvertiseURL string
	// AgentCommand runs the reference agent (a process workspace with no
	// command runs it): the orgplane binary and "agent".
	AgentCommand []string
	// ProvisionTimeout: a box not healthy this long after it started has
	// failed (default 30s).
	ProvisionTimeout time.Duration
	// ReadyAfter: a box that does not speak the agent protocol is healthy
	// once alive this long, unless its spec says otherwise (default 2s).
	ReadyAfter time.Duration
	// MaxProvisionRetries bounds automatic re-provisions of a crashed box
	// and retries of a failed restart (default 3).
	MaxProvisionRetries int
	// RetryBackoff is the first backoff; it doubles per attempt (default 1s).
	RetryBackoff time.Duration
	// CoalesceWindow: a workspace restarted for a change less than this
	// ago waits this long for its next restart, into which the burst's
	// later changes coalesce; a lone change restarts at once (default 2s;
	// between 2s and 30s outside tests).
	CoalesceWindow time.Duration
	// Jitter spreads the restarts of a fan-out (default 500ms).
	Jitter time.Duration
	// MaxConcurrentRestarts caps restarts in flight over all replicas (default 4).
	MaxConcurrentRestarts int
	// MaxConcurrentRestartsPerOrg caps them per org (default 4).
	MaxConcurrentRestartsPerOrg int
	// LoopWindow and LoopMax: more than LoopMax automatic restarts in
	// LoopWindow trip the loop breaker (defaults 10m, 3).
	LoopWindow time.Duration
	LoopMax    int
	// JobLease is how long a claimed job is its worker's before another
	// replica may take it over (default 30s; renewed every third of it).
	JobLease time.Duration
	// PollInterval is the workers' poll (default 1s): it finds jobs that
	// came due (a coalescing window, a retry's backoff); new work wakes them
	// at once (in-process, or another replica's through the store's
	// notifications).
	PollInterval time.Duration
	// HeartbeatTimeout: an agent box silent this long is degraded (default 15s).
	HeartbeatTimeout time.Duration
	// StableAfter: a box healthy this long has proven itself; its next
	// failure starts a fresh retry count (default 60s).
	StableAfter time.Duration
	// ProvisionerCallTimeout bounds each Inspect, Adopt and List call to a
	// provisioner (default 15s): a hung engine must not hold a restart slot
	// or a workspace forever. Start is bounded by ProvisionTimeout, Stop by
	// StopTimeout.
	ProvisionerCallTimeout time.Duration
	// StopTimeout bounds one Stop call, grace period included (default 60s).
	StopTimeout time.Duration
	// PlatformCheckInterval is how often the platform supervisor looks at
	// every org's platform workspace (default 5s).
	PlatformCheckInterval time.Duration
	// PlatformMaxBackoff caps the backoff between attempts to bring a dead
	// platform box back; those attempts never stop (default 30s).
	PlatformMaxBackoff time.Duration
	// PlatformDownAlert: a platform workspace not running for longer is
	// logged at error level on every check (default 1m).
	PlatformDownAlert time.Duration
	// SupervisionLease is how long a replica's watch of a box holds when
	// the replica stops renewing it (it renews every third of it); then a
	// replica that can see the box takes it over (default 15s).
	SupervisionLease time.Duration
	// MaxBoxEnvBytes caps a box's env plus command line, as exec counts
	// them (default DefaultMaxBoxEnvBytes): a secret write or spec after
	// which a box could not be started is refused.
	MaxBoxEnvBytes int
	// KubeAgentImage is the image of a kubernetes box whose spec names
	// none: the orgplane image, whose default command runs the reference
	// agent ("" : a kubernetes spec must name its image).
	KubeAgentImage string
	// SweepInterval is how often approvals and requests past their expiry
	// are expired, and approved actions left unexecuted are executed
	// (default 5s).
	SweepInterval time.Duration
	// Retention: restart jobs that ended, and changes whose restarts all
	// ended, longer ago than this are pruned (0: DefaultRetention;
	// negative: never). The audit log is never pruned.
	Retention time.Duration
	// RetentionInterval is how often the pruning runs (default 1h).
	RetentionInterval time.Duration
}

// DefaultRetention is how long finished restart jobs and changes are kept.
const DefaultRetention = 30 * 24 * time.Hour

func (c *RuntimeConfig) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ProvisionTimeout, 30*time.Second)
	def(&c.ReadyAfter, 2*time.Second)
	def(&c.RetryBackoff, time.Second)
	def(&c.CoalesceWindow, 2*time.Second)
	def(&c.Jitter, 500*time.Millisecond)
	def(&c.LoopWindow, 10*time.Minute)
	def(&c.JobLease, 30*time.Second)
	def(&c.PollInterval, time.Second)
	def(&c.HeartbeatTimeout, 15*time.Second)
	def(&c.StableAfter, time.Minute)
	def(&c.ProvisionerCallTimeout, 15*time.Second)
	def(&c.StopTimeout, time.Minute)
	def(&c.PlatformCheckInterval, 5*time.Second)
	def(&c.PlatformMaxBackoff, 30*time.Second)
	def(&c.PlatformDownAlert, time.Minute)
	def(&c.SupervisionLease, 15*time.Second)
	def(&c.SweepInterval, 5*time.Second)
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	def(&c.RetentionInterval, time.Hour)
	defInt(&c.MaxProvisionRetries, 3)
	defInt(&c.MaxConcurrentRestarts, 4)
	defInt(&c.MaxConcurrentRestartsPerOrg, 4)
	defInt(&c.LoopMax, 3)
	defInt(&c.MaxBoxEnvBytes, DefaultMaxBoxEnvBytes)
}

// Service is the service layer.
type Service struct {
	store store.Store
	clock Clock
	// holdQueue: see Options.HoldQueue.
	holdQueue func() bool
	log       *slog.Logger
	keys      *Keyring
	provs     map[string]provision.Provisioner
	cfg       RuntimeConfig
	metrics   *Metrics
	events    *Bus
	owner     string // this replica's id, for job leases

	wake chan struct{} // nudges the job workers
	// notifier: the store's notifications, when replicas share it
	// (notify.go); listening while this replica receives them.
	notifier   store.Notifier
	listening  atomic.Bool
	fwd        chan Event // events published here, to forward
	fwdDropped atomic.Int64
	mu         sync.Mutex
	watches    map[string]*boxWatch // workspace id -> watcher of its current box
	// The watchers' shared sweep (watchsweep.go): started with the first
	// watcher; sweepNow asks it for a pass at once.
	sweepStart sync.Once
	sweepNow   chan struct{}
	locks      map[string]*wsLock
	bg         sync.WaitGroup
	stop       context.CancelFunc
	bgCtx      context.Context
	// platformDown: org id -> when this replica first saw its platform
	// workspace not running (the supervisor's alert clock).
	platformDown map[string]time.Time
	// unlockServer releases the store's one-server lock (SQLite).
	unlockServer func()
}

// Options configure a Service.
type Options struct {
	Clock        Clock
	Logger       *slog.Logger
	Keys         *Keyring
	Provisioners map[string]provision.Provisioner
	Runtime      RuntimeConfig
	Metrics      *Metrics
	// HoldQueue, while it returns true, keeps the changes' queued restarts
	// from being taken (explicit restarts, recoveries and retries still
	// run): a test holds a change's restarts with it while it changes the
	// world around them.
	HoldQueue func() bool
}

// New returns a Service over st. Call Start to run its background work.
func New(st store.Store, opts Options) *Service {
	s := &Service{store: st, clock: opts.Clock, log: opts.Logger, keys: opts.Keys, provs: opts.Provisioners,
		cfg: opts.Runtime, metrics: opts.Metrics, holdQueue: opts.HoldQueue, events: NewBus(), owner: ids.New("p"),
		wake: make(chan struct{}, 1), watches: map[string]*boxWatch{}, sweepNow: make(chan struct{}, 1), locks: map[string]*wsLock{},
		platformDown: map[string]time.Time{}}
	if s.clock == nil {
		s.clock = SystemClock{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	if s.provs == nil {
		s.provs = map[string]provision.Provisioner{}
	}
	s.cfg.defaults()
	s.bgCtx, s.stop = context.WithCancel(context.Background())
	s.notifier, _ = store.NotifierOf(st)
	return s
}

// Store returns the service's store (for operator commands and tests).
func (s *Service) Store() store.Store { return s.store }

// Keyring returns the service's key ring.
func (s *Service) Keyring() *Keyring { return s.keys }

// Events returns the bus of the org's changes.
func (s *Service) Events() *Bus { return s.events }

// Metrics returns the service's metrics.
func (s *Service) Metrics() *Metrics { return s.metrics }

// Ready reports whether the store answers and takes writes. A store that
// answers reads but refuses every write (a full disk, a read-only file
// system) is not ready: nearly every call the API serves writes.
func (s *Service) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return err
	}
	return s.store.ProbeWrite(ctx, s.clock.Now())
}

func principal(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.OrgID == "" {
		return auth.Principal{}, Unauthorized("authentication required")
	}
	return p, nil
}

// requireAdmin is the rule for operations that change the org: an admin
// token, or a person who is an owner or admin.
func requireAdmin(p auth.Principal, what string) error {
	if p.IsPerson() && !p.IsAdmin() {
		return Forbidden("%s: a %s reads only", what, p.Role)
	}
	if !p.IsAdmin() {
		return Forbidden("%s requires an admin token", what)
	}
	return nil
}

// requireReader is the rule for reading the whole org: whoever may change
// it, and every person.
func requireReader(p auth.Principal, what string) error {
	if !p.CanReadOrg() {
		return Forbidden("%s requires an admin token or a person's", what)
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
	if x := execOf(ctx); x != nil {
		return s.mutateIn(ctx, x, p, ev, fn)
	}
	err := s.store.InTx(ctx, func(tx store.Store) error {
		if err := fn(tx); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, s.auditEntry(ctx, p, *ev, "ok"))
		return err
	})
	if err == nil {
		markAudited(ctx, p)
		s.events.Publish(Event{OrgID: p.OrgID, Type: ev.Action, WorkspaceID: ev.WorkspaceID, TargetID: ev.TargetID})
		return nil
	}
	if errors.Is(err, errGated) {
		return err // not a refusal: the caller asks for an approval
	}
	e := AsError(err)
	if e.Status >= 500 {
		s.log.Error("mutation failed", "action", ev.Action, "target", ev.TargetID, "err", err)
	}
	if e.Status == 503 {
		return e // nowhere to write the entry
	}
	s.appendAudit(ctx, p, *ev, outcomeOf(e))
	return e
}

// appendAudit writes one entry on a fresh context: it must land even when
// the caller's context timed out or was cancelled.
func (s *Service) appendAudit(ctx context.Context, p auth.Principal, ev auditEvent, outcome string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.store.AppendAudit(actx, s.auditEntry(ctx, p, ev, outcome)); err != nil {
		s.log.Error("append audit entry", "action", ev.Action, "target", ev.TargetID, "err", err)
		return
	}
	markAudited(ctx, p)
}

type auditMarkKey struct{}

// WithAuditMark returns a context that notes whether the service wrote an
// audit entry for the call's own principal, so that a face can audit a
// refusal the service did not record, and only such a one: every refused
// call is in the log once.
func WithAuditMark(ctx context.Context) context.Context {
	return context.WithValue(ctx, auditMarkKey{}, new(atomic.Bool))
}

// Audited reports whether an entry was written for the call of ctx (see
// WithAuditMark).
func Audited(ctx context.Context) bool {
	m, _ := ctx.Value(auditMarkKey{}).(*atomic.Bool)
	return m != nil && m.Load()
}

// markAudited notes an entry written for p, if p is the call's principal
// (not orgplane itself acting on the call's behalf).
func markAudited(ctx context.Context, p auth.Principal) {
	m, _ := ctx.Value(auditMarkKey{}).(*atomic.Bool)
	if cp, ok := auth.FromContext(ctx); m != nil && ok && cp.TokenID == p.TokenID && cp.OrgID == p.OrgID {
		m.Store(true)
	}
}

// AuditRefusal records a refused call that no service method recorded: one
// a face refused before calling the service (a body or query string it
// could not accept), or one a read or a heartbeat refused. The audit log
// then holds every refused call of a known principal. It records the route
// and the error code, never the body or the query, which may carry values.
// A call already audited (see WithAuditMark) is not recorded twice.
func (s *Service) AuditRefusal(ctx context.Context, method, route string, err error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.OrgID == "" || Audited(ctx) {
		return
	}
	e := AsError(err)
	if e.Status >= 500 {
		return
	}
	s.appendAudit(ctx, p, auditEvent{Action: "request.refused", TargetKind: "route",
		Detail: map[string]any{"method": method, "route": route, "status": e.Status}}, outcomeOf(e))
}

// auditValuesRead records a read of a workspace's secret values, or its
// refusal: who read, which workspace, which keys; never a value.
func (s *Service) auditValuesRead(ctx context.Context, workspaceID string, env map[string]string, err error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.OrgID == "" {
		return
	}
	// A workspace that was not found (perhaps another org's) is not named:
	// the entry must not hand its id to this org's auditors.
	ev := auditEvent{Action: "secret.values_read", TargetKind: "workspace"}
	if err != nil {
		e := AsError(err)
		if e.Status == 503 {
			return
		}
		if e.Status == 403 {
			ev.TargetID, ev.WorkspaceID = workspaceID, workspaceID
		}
		s.appendAudit(ctx, p, ev, outcomeOf(e))
		return
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ev.TargetID, ev.WorkspaceID = workspaceID, workspaceID
	ev.Detail = map[string]any{"keys": keys}
	s.appendAudit(ctx, p, ev, "ok")
}

// outcomeOf is the audit outcome of a refusal.
func outcomeOf(e *Error) string {
	if e.Status == 403 || e.Status == 401 {
		return "denied"
	}
	return "error:" + e.Code
}

// notFoundAs maps store.ErrNotFound to a typed not-found error.
func notFoundAs(err error, what, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return NotFound(what, id)
	}
	return err
}

// systemPrincipal is orgplane itself acting in an org.
func systemPrincipal(orgID string) auth.Principal {
	return auth.Principal{Kind: auth.KindSystem, OrgID: orgID}
}
