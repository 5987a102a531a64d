package store

import "time"

// Org is a tenant.
type Org struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// Workspace kinds.
const (
	KindPlatform  = "platform"
	KindWorkspace = "workspace"
)

// Workspace is one row of the org tree, with the facts of its current box.
type Workspace struct {
	ID            string
	OrgID         string
	ParentID      string // "" for the platform workspace
	Name          string
	Kind          string
	Runtime       string
	Spec          string // JSON object
	Status        string
	RestartPolicy string
	Protected     bool

	Generation     int64     // of the current (or last) box
	Box            string    // provision.Handle JSON of the current box; "" when none
	BoxFingerprint string    // env fingerprint the current box was provisioned with
	HealthyAt      time.Time // when the current generation was first seen healthy
	HeartbeatAt    time.Time // last heartbeat of the current generation
	Failures       int       // consecutive failed provisions since the last healthy box
	LastError      string
	LoopBroken     bool   // the loop breaker refused an automatic restart; an admin restart clears it
	BoxTokenID     string // token minted for the current box

	CreatedAt time.Time
	UpdatedAt time.Time
}

// WorkspaceState is the part of a workspace its box's watcher follows.
type WorkspaceState struct {
	ID          string
	Generation  int64
	Status      string
	HeartbeatAt time.Time
}

// Token kinds.
const (
	TokenAdmin     = "admin"
	TokenUser      = "user"
	TokenWorkspace = "workspace"
)

// Token is an API credential. Only a SHA-256 of its secret is stored.
type Token struct {
	ID                string
	OrgID             string
	Kind              string
	Name              string
	WorkspaceID       string // kind workspace
	ActingWorkspaceID string // kind admin, optional
	UserID            string // kind user
	SecretHash        []byte
	BoxGeneration     int64 // >0 for a token minted for one provision of a box
	CreatedAt         time.Time
	ExpiresAt         time.Time // zero: never
	RevokedAt         time.Time // zero: live
	LastUsedAt        time.Time
}

// AuditEntry is one line of the append-only audit log.
type AuditEntry struct {
	ID                int64
	OrgID             string
	At                time.Time
	TokenID           string
	PrincipalKind     string
	ActingWorkspaceID string
	Action            string
	TargetKind        string
	TargetID          string
	WorkspaceID       string // the workspace the entry concerns, for filtering
	Outcome           string
	RequestID         string
	Detail            string // JSON object; never a secret value
}

// AuditFilter pages the audit log, newest first.
type AuditFilter struct {
	WorkspaceID string
	// Action, TokenID (the caller: a token or session id) and Outcome
	// select exactly; "" selects any.
	Action  string
	TokenID string
	Outcome string
	Before  int64 // entries with ID < Before; 0: from the newest
	Limit   int   // 0: 100; at most 1001 (a page of 1000, and one more to tell whether another follows)
}

// Secret scopes.
const (
	ScopeGlobal    = "global"
	ScopeWorkspace = "workspace"
)

// Secret is one encrypted env var. WorkspaceID is "" for a global secret.
type Secret struct {
	OrgID       string
	WorkspaceID string
	Key         string
	KeyID       string // data key that encrypted Ciphertext
	Ciphertext  []byte
	ValueMAC    string // keyed hash of (key, value): compares values without decrypting
	// CiphertextLen is len(Ciphertext), filled in by ListSecretMACs (which
	// leaves the ciphertext out): the value's length follows from it
	// without decrypting.
	CiphertextLen int
	Version       int64
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Scope reports the secret's scope.
func (s Secret) Scope() string {
	if s.WorkspaceID == "" {
		return ScopeGlobal
	}
	return ScopeWorkspace
}

// DataKey is one key of the ring, wrapped by the master key.
type DataKey struct {
	ID        string
	Wrapped   []byte
	Current   bool
	CreatedAt time.Time
	RetiredAt time.Time
}

// ListParams pages a list by id.
type ListParams struct {
	After string
	Limit int // 0: no limit
}

// Job states.
const (
	JobPending    = "pending"
	JobRunning    = "running"
	JobSucceeded  = "succeeded"
	JobFailed     = "failed"
	JobSkipped    = "skipped"
	JobSuperseded = "superseded"
)

// RestartJob is one restart decision of a workspace and, when it restarts,
// its execution. Skipped decisions are rows too, so that a workspace's
// history shows every decision.
type RestartJob struct {
	ID                string
	OrgID             string
	WorkspaceID       string
	Automatic         bool // caused by a secret change (rules re-checked at execution)
	State             string
	Reason            string // the decision's reason code, then the outcome's
	Note              string // an admin's reason, or the job a coalesced decision merged into
	ChangeID          string
	CallerWorkspaceID string
	RequestedBy       string // token id
	Attempts          int
	MaxAttempts       int
	Generation        int64 // the generation this job provisions, once it has started
	RunAfter          time.Time
	LeaseOwner        string
	LeaseUntil        time.Time
	Error             string
	CreatedAt         time.Time
	UpdatedAt         time.Time
	StartedAt         time.Time
	FinishedAt        time.Time
	// Merged: secret changes were merged into this pending job (decisions
	// "coalesced"); it owes them a restart.
	Merged bool
}

// Finished reports whether the job is in a final state.
func (j RestartJob) Finished() bool {
	switch j.State {
	case JobSucceeded, JobFailed, JobSkipped, JobSuperseded:
		return true
	}
	return false
}

// PropagationFacts is what the planner needs of one workspace.
type PropagationFacts struct {
	WorkspaceID        string
	Kind               string
	Runtime            string
	Status             string
	RestartPolicy      string
	Protected          bool
	LoopBroken         bool
	OverridesKey       bool // has its own secret with the changed key
	PendingJobID       string
	QueuedIn           string // the change whose queued restart of it is not taken yet
	RecentAutoRestarts int
	// LastAutoRestart is when the change behind its latest automatic
	// restart in the loop window was made (zero: none).
	LastAutoRestart time.Time
}

// JobCursor points at one job in a newest-first listing (by creation
// time, then id).
type JobCursor struct {
	CreatedAt time.Time
	ID        string
}

// ClaimLimits are the governor's caps, checked when a job is claimed.
type ClaimLimits struct {
	MaxRunning       int // across all replicas
	MaxRunningPerOrg int
	// The job made for a restart taken from a change's queue: its reason
	// (the decision's) and its attempts.
	QueuedReason string
	MaxAttempts  int
	// SkipQueued leaves the changes' queues alone (a test holds them).
	SkipQueued bool
}

// Roles of people.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleViewer = "viewer"
)

// User is a person of an org.
type User struct {
	ID        string
	OrgID     string
	Name      string
	Role      string
	CreatedAt time.Time
	RemovedAt time.Time // zero: live
}
