// Package store persists orgplane's state behind one interface, on SQLite
// (the embedded default, pure Go) or PostgreSQL (production).
//
// One SQL text serves both engines wherever it can: $N placeholders,
// RETURNING and ON CONFLICT run on both. Times are unix microseconds.
// The few places where the engines differ are named dialect switches.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Driver errors are mapped to these once, here.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: a uniqueness or reference constraint refused the write.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the store did not answer (connection lost, disk
	// unavailable, locked for too long). Callers report 503 and retry later.
	ErrUnavailable = errors.New("store unavailable")
)

// Store is every query orgplane makes. Services never see *sql.Tx.
type Store interface {
	// InTx runs fn in one transaction: on SQLite an immediate (writer)
	// transaction, on Postgres read committed with row locks where a method
	// says so. fn's Store must not be used after fn returns.
	//
	// On Postgres, a transaction that loses a deadlock or a serialization
	// failure is rolled back and fn runs again, a few times, before InTx
	// gives up with ErrConflict: fn must be safe to run more than once
	// (assign what it computes, never append to the caller's state).
	InTx(ctx context.Context, fn func(Store) error) error
	Ping(ctx context.Context) error
	// ProbeWrite makes one real, committed write (a one-row table): a store
	// that answers reads but cannot write (a full disk, a read-only file
	// system) fails it. It is the readiness probe's.
	ProbeWrite(ctx context.Context, at time.Time) error
	Close() error
	// Dialect is "sqlite" or "postgres".
	Dialect() string

	CreateOrg(ctx context.Context, o Org) error
	GetOrg(ctx context.Context, id string) (Org, error)
	GetOrgByName(ctx context.Context, name string) (Org, error)
	ListOrgs(ctx context.Context) ([]Org, error)

	InsertWorkspace(ctx context.Context, w Workspace) error
	// GetWorkspace is scoped to the org: another org's workspace is ErrNotFound.
	GetWorkspace(ctx context.Context, orgID, id string) (Workspace, error)
	// GetWorkspaceForUpdate is GetWorkspace that, inside InTx on Postgres,
	// locks the row until the transaction ends.
	GetWorkspaceForUpdate(ctx context.Context, orgID, id string) (Workspace, error)
	GetPlatformWorkspace(ctx context.Context, orgID string) (Workspace, error)
	// ListWorkspaces lists the org's workspaces by id, removed ones included
	// only when includeRemoved.
	ListWorkspaces(ctx context.Context, orgID string, includeRemoved bool, p ListParams) ([]Workspace, error)
	// MaxSpecLength is the length of the longest spec (its JSON text) of
	// the org's live workspaces.
	MaxSpecLength(ctx context.Context, orgID string) (int, error)
	// MaxOwnSecretBytes is the largest sum, over the org's workspaces, of
	// the sizes of a workspace's own secrets (perEntry bytes each, plus its
	// key's and its value's: the ciphertext's length less overhead).
	MaxOwnSecretBytes(ctx context.Context, orgID string, perEntry, overhead int) (int, error)
	// ListChildren lists the workspaces whose parent is parentID, not removed.
	ListChildren(ctx context.Context, orgID, parentID string) ([]Workspace, error)
	// ListChildrenForUpdate is ListChildren that, inside InTx on Postgres,
	// locks the rows until the transaction ends (cascades rewrite them).
	ListChildrenForUpdate(ctx context.Context, orgID, parentID string) ([]Workspace, error)
	// WorkspaceStates reads the generation, status and last heartbeat of
	// the workspaces with the given ids, across orgs; ids not found are
	// left out, and the order is the store's. It is the box watchers'
	// shared safety re-read: one statement for many boxes.
	WorkspaceStates(ctx context.Context, ids []string) ([]WorkspaceState, error)
	// UpdateWorkspace writes every mutable column of w (by org and id).
	UpdateWorkspace(ctx context.Context, w Workspace) error

	// People. GetUser finds removed ones too (a token's owner); the rest
	// only live ones.
	InsertUser(ctx context.Context, u User) error
	GetUser(ctx context.Context, orgID, id string) (User, error)
	GetUserByName(ctx context.Context, orgID, name string) (User, error)
	ListUsers(ctx context.Context, orgID string) ([]User, error)
	// RemoveUser marks the person removed and revokes their tokens.
	RemoveUser(ctx context.Context, orgID, id string, at time.Time) error

	InsertToken(ctx context.Context, t Token) error
	// GetToken is not org-scoped: authentication looks tokens up by id.
	GetToken(ctx context.Context, id string) (Token, error)
	ListTokens(ctx context.Context, orgID string) ([]Token, error)
	RevokeToken(ctx context.Context, orgID, id string, at time.Time) error
	TouchToken(ctx context.Context, id string, at time.Time) error
	// RevokeBoxTokens revokes the live box tokens minted for the
	// workspace's boxes of generations before gen (workspace tokens; see
	// RevokeManagementTokens for the platform's admin tokens). It reads the
	// workspace's tokens only, through an index: it runs at every box's
	// first health.
	RevokeBoxTokens(ctx context.Context, orgID, workspaceID string, before int64, at time.Time) error
	// RevokeManagementTokens revokes the live admin tokens bound to the
	// workspace that were minted per provision of its boxes of generations
	// before gen: the platform's management tokens, found by their acting
	// workspace's index (migration 0013). Only the platform workspace's
	// boxes get them.
	RevokeManagementTokens(ctx context.Context, orgID, workspaceID string, before int64, at time.Time) error

	AppendAudit(ctx context.Context, e AuditEntry) (int64, error)
	ListAudit(ctx context.Context, orgID string, f AuditFilter) ([]AuditEntry, error)

	// Data keys and metadata (secrets encryption).
	GetMeta(ctx context.Context, name string) ([]byte, error)
	PutMeta(ctx context.Context, name string, value []byte) error
	InsertDataKey(ctx context.Context, k DataKey) error
	ListDataKeys(ctx context.Context) ([]DataKey, error)
	// SetCurrentDataKey makes id the only current key.
	SetCurrentDataKey(ctx context.Context, id string) error
	RetireDataKey(ctx context.Context, id string, at time.Time) error

	// Secrets. workspaceID "" is the global scope.
	GetSecret(ctx context.Context, orgID, workspaceID, key string) (Secret, error)
	// ListSecrets lists one scope's secrets by key.
	ListSecrets(ctx context.Context, orgID, workspaceID string) ([]Secret, error)
	// PutSecret inserts or replaces a secret (the caller sets Version).
	PutSecret(ctx context.Context, s Secret) error
	DeleteSecret(ctx context.Context, orgID, workspaceID, key string) error
	// SecretsByKeyID pages secrets encrypted under keyID (any org), for
	// re-encryption. The cursor is (org, workspace, key) of the last row seen.
	SecretsByKeyID(ctx context.Context, keyID string, after SecretCursor, limit int) ([]Secret, error)
	// ReencryptSecret replaces a secret's ciphertext and key id if it is
	// still encrypted under fromKeyID; it changes neither value nor version.
	ReencryptSecret(ctx context.Context, s Secret, fromKeyID string) (bool, error)
	// ReencryptSecrets is ReencryptSecret for a batch; it returns how many
	// rows it rewrote.
	ReencryptSecrets(ctx context.Context, batch []Secret, fromKeyID string) (int, error)
	CountSecretsByKeyID(ctx context.Context, keyID string) (int64, error)
	// CountSealedByKeyID counts the approvals holding a sealed value or
	// result under a data key.
	CountSealedByKeyID(ctx context.Context, keyID string) (int64, error)
	// ListSecretMACs lists every secret of the org, both scopes, without
	// ciphertexts: enough to compute fingerprints and overrides.
	ListSecretMACs(ctx context.Context, orgID string) ([]Secret, error)
	// ListSecretMACsOf is ListSecretMACs narrowed to the org's global
	// secrets and those of the workspaces whose id is in (after, through]:
	// what one page of a list of workspaces by id needs.
	ListSecretMACsOf(ctx context.Context, orgID, after, through string) ([]Secret, error)

	// Restart jobs.
	InsertJobs(ctx context.Context, jobs []RestartJob) error
	GetJob(ctx context.Context, orgID, id string) (RestartJob, error)
	GetPendingJob(ctx context.Context, workspaceID string) (RestartJob, error)
	// GetJobForUpdate and GetPendingJobForUpdate are GetJob and
	// GetPendingJob that, inside InTx on Postgres, lock the row: a job is
	// read and written back by one writer at a time.
	GetJobForUpdate(ctx context.Context, orgID, id string) (RestartJob, error)
	GetPendingJobForUpdate(ctx context.Context, workspaceID string) (RestartJob, error)
	// LockPendingJobs locks, inside InTx, those of the given jobs that are
	// still pending and returns their ids: a change merged into a pending
	// job must hold it, or a claim could take the job (and read the old
	// env) before the change commits. On Postgres a job being claimed
	// meanwhile is waited for and, no longer pending, left out.
	LockPendingJobs(ctx context.Context, ids []string) (map[string]bool, error)
	// ListJobs lists jobs newest first; workspaceID "" lists the org's.
	ListJobs(ctx context.Context, orgID, workspaceID string, limit int) ([]RestartJob, error)
	// ListJobsBefore is ListJobs from a cursor on: the jobs older than it.
	ListJobsBefore(ctx context.Context, orgID, workspaceID string, before JobCursor, limit int) ([]RestartJob, error)
	ListJobsByChange(ctx context.Context, orgID, changeID string) ([]RestartJob, error)
	// ListOpenJobs lists the workspace's pending and running jobs (at most
	// one of each), however many decisions were recorded since.
	ListOpenJobs(ctx context.Context, orgID, workspaceID string) ([]RestartJob, error)
	UpdateJob(ctx context.Context, j RestartJob) error
	// MarkMerged flags pending jobs into which changes were merged.
	MarkMerged(ctx context.Context, jobIDs []string) error

	// Changes (changes.go). InsertChange records a change with its
	// decisions; ListChangeDecisions pages them by workspace id;
	// ListWorkspaceDecisions finds one workspace's decisions in the org's
	// changes since a time, newest first; RecordChangeOutcome counts one of
	// a change's restart jobs ending.
	InsertChange(ctx context.Context, c Change, ds []ChangeDecision) error
	GetChange(ctx context.Context, orgID, id string) (Change, error)
	ListChangeDecisions(ctx context.Context, orgID, changeID, after string, limit int) ([]ChangeDecision, error)
	ListWorkspaceDecisions(ctx context.Context, orgID, workspaceID string, since time.Time, limit int) ([]WorkspaceDecision, error)
	RecordChangeOutcome(ctx context.Context, orgID, changeID, state string, at time.Time) error
	// InsertRestartQueue records a change's restarts, which become jobs
	// when ClaimJob takes them (queue.go); QueuedRestarts maps the org's
	// workspaces with one not taken yet to its change (inside InTx it
	// holds the org's claims until commit); QueuedChangesOf lists the
	// changes with one of the workspace not taken yet.
	InsertRestartQueue(ctx context.Context, orgID, changeID string, batches []QueuedBatch) error
	QueuedRestarts(ctx context.Context, orgID string) (map[string]string, error)
	QueuedChangesOf(ctx context.Context, orgID, workspaceID string) ([]string, error)
	// DelayQueuedRestarts debounces a burst: a change's queued restarts of
	// wsIDs not due by now become due a window from now, within maxDelay
	// of the change.
	DelayQueuedRestarts(ctx context.Context, changeID string, wsIDs []string, now time.Time, window, maxDelay time.Duration) error
	CountRunningForChange(ctx context.Context, orgID, changeID string) (int, error)

	// Retention (retention.go): PruneJobs deletes up to limit restart
	// jobs that ended before cutoff; PruneChanges deletes, with their
	// decision parts, changes whose restarts all ended before cutoff,
	// about limit rows in all (in a transaction). Both return the rows
	// deleted, oldest first; deleting is idempotent.
	PruneJobs(ctx context.Context, cutoff time.Time, limit int) (int, error)
	PruneChanges(ctx context.Context, cutoff time.Time, limit int) (int, error)
	ClaimJob(ctx context.Context, owner string, now, leaseUntil time.Time, lim ClaimLimits) (RestartJob, error)
	RenewLease(ctx context.Context, id, owner string, until time.Time) error
	CountRecentAutoRestarts(ctx context.Context, workspaceID string, since time.Time) (int, error)
	CountJobsByState(ctx context.Context) (map[string]int, error)
	ListPropagationFacts(ctx context.Context, orgID, key string, since time.Time) ([]PropagationFacts, error)
	GetPropagationFacts(ctx context.Context, orgID, workspaceID, key string, since time.Time) (PropagationFacts, error)
	ListActiveWorkspaces(ctx context.Context) ([]Workspace, error)
	// LockOrg serializes, until the transaction ends, the writers that plan
	// restarts for one org (Postgres: an advisory transaction lock; SQLite's
	// immediate transaction already is the only writer). Outside InTx it
	// does nothing.
	LockOrg(ctx context.Context, orgID string) error
	// ExpireLeases ends every running job's lease: for a store only this
	// process uses (embedded SQLite), whatever ran before it is dead.
	ExpireLeases(ctx context.Context) (int, error)
	// ReleaseLeases ends the leases of owner's running jobs (a replica
	// shutting down gracefully): another replica resumes them at once.
	ReleaseLeases(ctx context.Context, owner string) (int, error)
	// ClaimSupervision makes owner the supervisor of the workspace's box
	// (generation gen) until until, if nobody holds a live lease on it
	// (its until >= now, or its owner's as RenewSupervision keeps it) or
	// owner already does; force takes it regardless (the replica that just
	// started the box). It reports whether owner holds it.
	ClaimSupervision(ctx context.Context, workspaceID, owner string, gen int64, now, until time.Time, force bool) (bool, error)
	// RenewSupervision extends every lease owner holds, by one write
	// whatever their number; a zero until ends them all.
	RenewSupervision(ctx context.Context, owner string, until time.Time) error
	// ReleaseSupervision ends owner's lease on the workspace's box, if it
	// holds it.
	ReleaseSupervision(ctx context.Context, workspaceID, owner string) error
	// ListSupervision lists every lease by workspace id.
	ListSupervision(ctx context.Context) (map[string]Supervision, error)
	// ListUnsupervised lists the active workspaces with a recorded box
	// that owner holds no live lease on, with their lease (supervision.go); ListStuckStarts the
	// workspaces provisioning with no box since before a time.
	ListUnsupervised(ctx context.Context, owner string, now time.Time) ([]UnsupervisedBox, error)
	ListStuckStarts(ctx context.Context, before time.Time) ([]Workspace, error)
	// ClearSupervision ends every lease: for a store only this process uses
	// (embedded SQLite), the previous run's leases are dead.
	ClearSupervision(ctx context.Context) error
	// GetPolicy returns the org's stored policy (ErrNotFound: never set).
	GetPolicy(ctx context.Context, orgID string) (StoredPolicy, error)
	// PutPolicy stores the org's policy, replacing it.
	PutPolicy(ctx context.Context, p StoredPolicy) error
	// Approvals. UpdateApproval and UpdateRequest are compare-and-set on
	// the state the caller read: ErrNotFound when it moved meanwhile.
	// ListDue* find what the sweeper must act on: pending ones past their
	// expiry, and approved actions not executed yet (a crash between the
	// decision and the execution).
	InsertApproval(ctx context.Context, a Approval) error
	GetApproval(ctx context.Context, orgID, id string) (Approval, error)
	GetApprovalForUpdate(ctx context.Context, orgID, id string) (Approval, error)
	UpdateApproval(ctx context.Context, a Approval, from string) error
	ListApprovals(ctx context.Context, orgID string, f ListFilter) ([]Approval, error)
	ListDueApprovals(ctx context.Context, now time.Time, limit int) ([]Approval, error)
	InsertVote(ctx context.Context, v ApprovalVote) error
	ListVotes(ctx context.Context, approvalIDs []string) (map[string][]ApprovalVote, error)
	InsertRequest(ctx context.Context, r Request) error
	GetRequest(ctx context.Context, orgID, id string) (Request, error)
	GetRequestForUpdate(ctx context.Context, orgID, id string) (Request, error)
	UpdateRequest(ctx context.Context, r Request, from string) error
	ListRequests(ctx context.Context, orgID string, f ListFilter) ([]Request, error)
	ListDueRequests(ctx context.Context, now time.Time, limit int) ([]Request, error)
	CountPending(ctx context.Context, orgID, workspaceID string) (approvals, requests int, err error)
	// Canvas sign-in (sessions.go). GetLoginLink and GetSession are not
	// org-scoped: sign-in and authentication look them up by id.
	InsertLoginLink(ctx context.Context, l LoginLink) error
	GetLoginLink(ctx context.Context, id string) (LoginLink, error)
	// UseLoginLink marks the link used at at if it is unused and not
	// expired then (compare-and-set); it reports whether this call won.
	UseLoginLink(ctx context.Context, id string, at time.Time) (bool, error)
	InsertSession(ctx context.Context, x Session) error
	GetSession(ctx context.Context, id string) (Session, error)
	// TouchSession moves last_seen_at forward to at (never back).
	TouchSession(ctx context.Context, id string, at time.Time) error
	// RevokeSession ends a session of the org; revoking twice keeps the
	// first time.
	RevokeSession(ctx context.Context, orgID, id string, at time.Time) error
	// RevokeUserSessions ends every live session of a person and reports
	// how many.
	RevokeUserSessions(ctx context.Context, orgID, userID string, at time.Time) (int, error)
	// LockServer makes this process the only orgplane server of the store
	// until release is called: on SQLite an exclusive lock on a file beside
	// the database (a second server is refused, with ErrLocked); on
	// Postgres, where replicas share the store, it does nothing. Commands
	// that open the store briefly (keys, org) do not take it.
	LockServer() (release func(), err error)
}

// Supervision is one replica's lease on watching a workspace's box.
type Supervision struct {
	WorkspaceID string
	Owner       string
	Generation  int64
	Until       time.Time
}

// ErrLocked is returned by LockServer when another server holds the store.
var ErrLocked = errors.New("store in use by another orgplane server")

// SecretCursor points at one secret row.
type SecretCursor struct {
	OrgID, WorkspaceID, Key string
}
