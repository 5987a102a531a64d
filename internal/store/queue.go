package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/orgplane/orgplane/internal/ids"
)

// QueueBatchSize is the most workspace ids in one row of a change's queue
// of restarts: a fan-out to 100,000 workspaces is ~800 rows, and taking one
// restart rewrites a row of ~2 KB.
const QueueBatchSize = 128

// claimLockKey is the advisory lock (Postgres) under which an org's
// restarts are claimed: one claimer of an org at a time, so that its cap
// is exact; a plan holds it too while it reads the org's queue.
const claimLockKey = 7250160

// QueuedBatch is a run of a change's restarts due at one time: workspace
// ids sorted, at most QueueBatchSize of them.
type QueuedBatch struct {
	RunAfter time.Time
	IDs      []string
}

// InsertRestartQueue records a change's restarts, not yet taken by the
// governor, in the change's transaction: the outbox. No restart job
// exists for them until a claim takes them (ClaimJob).
func (s *sqlStore) InsertRestartQueue(ctx context.Context, orgID, changeID string, batches []QueuedBatch) error {
	const rowsPerStmt = 50 // 7 parameters each
	for start := 0; start < len(batches); start += rowsPerStmt {
		end := min(start+rowsPerStmt, len(batches))
		var q strings.Builder
		q.WriteString(`INSERT INTO change_restarts (change_id, seq, org_id, run_after, first_id, last_id, ids, n) VALUES `)
		args := make([]any, 0, (end-start)*8)
		for i := start; i < end; i++ {
			b := batches[i]
			if len(b.IDs) == 0 || len(b.IDs) > QueueBatchSize {
				return fmt.Errorf("insert restart queue: a batch of %d ids", len(b.IDs))
			}
			if i > start {
				q.WriteString(", ")
			}
			n := len(args)
			fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8)
			args = append(args, changeID, i, orgID, toMicros(b.RunAfter), b.IDs[0], b.IDs[len(b.IDs)-1],
				strings.Join(b.IDs, "\n"), len(b.IDs))
		}
		if _, err := s.w.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("insert restart queue: %w", mapErr(err))
		}
	}
	return nil
}

// lockClaims holds, until the transaction ends, the org's claims
// (Postgres; SQLite has one writer).
func (s *sqlStore) lockClaims(ctx context.Context, orgID string) error {
	if s.dialect != Postgres || !s.inTx {
		return nil
	}
	if _, err := s.w.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, claimLockKey, orgID); err != nil {
		return mapErr(err)
	}
	return nil
}

// QueuedRestarts maps each workspace of the org with a queued restart not
// taken yet to the change that queued it. Inside InTx it holds the org's
// claims until the transaction ends: a change coalesced into a queued
// restart must commit before a claim can take that restart (and read the
// old env).
func (s *sqlStore) QueuedRestarts(ctx context.Context, orgID string) (map[string]string, error) {
	if err := s.lockClaims(ctx, orgID); err != nil {
		return nil, fmt.Errorf("read the restart queue: %w", err)
	}
	out := map[string]string{}
	err := s.eachQueued(ctx, s.w, `SELECT change_id, ids, next FROM change_restarts WHERE org_id = $1 AND open = 1`,
		[]any{orgID}, func(change, wsID string) { out[wsID] = change })
	return out, err
}

// QueuedChangesOf lists the changes that have a restart of the workspace
// queued and not taken yet.
func (s *sqlStore) QueuedChangesOf(ctx context.Context, orgID, workspaceID string) ([]string, error) {
	var out []string
	err := s.eachQueued(ctx, s.r, `SELECT change_id, ids, next FROM change_restarts
		WHERE org_id = $1 AND open = 1 AND first_id <= $2 AND last_id >= $2`, []any{orgID, workspaceID},
		func(change, wsID string) {
			if wsID == workspaceID {
				out = append(out, change)
			}
		})
	return out, err
}

// eachQueued calls fn for each restart not taken yet in the batches the
// query reads (change_id, ids, next).
func (s *sqlStore) eachQueued(ctx context.Context, db querier, q string, args []any, fn func(change, wsID string)) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("read the restart queue: %w", mapErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		var change, list string
		var next int
		if err := rows.Scan(&change, &list, &next); err != nil {
			return fmt.Errorf("read the restart queue: %w", mapErr(err))
		}
		for _, id := range strings.Split(list, "\n")[next:] {
			fn(change, id)
		}
	}
	return mapErr(rows.Err())
}

// countQueued counts the restarts queued in changes and not taken yet.
func (s *sqlStore) countQueued(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(SUM(n - next), 0) FROM change_restarts WHERE open = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count queued restarts: %w", mapErr(err))
	}
	return n, nil
}

// queuedDue is when the org's first queued restart is due (-1: none is
// due by now).
func (s *sqlStore) queuedDue(ctx context.Context, orgID string, nowUS int64) (int64, error) {
	var due int64
	err := s.r.QueryRowContext(ctx, `SELECT run_after FROM change_restarts WHERE org_id = $1 AND open = 1 AND run_after <= $2
		ORDER BY run_after LIMIT 1`, orgID, nowUS).Scan(&due)
	if errors.Is(mapErr(err), ErrNotFound) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("claim job: %w", mapErr(err))
	}
	return due, nil
}

// errTookQueued: a claim took queued restarts that did not become a
// running job (their workspace was restarting, or had a restart pending);
// the claim commits that and looks again.
var errTookQueued = errors.New("took queued restarts; claim again")

// takeQueued takes, in the claim's transaction, the org's next queued
// restart that is due and makes its job: running under owner's lease when
// the workspace is free; pending when the workspace is restarting (it runs
// after); merged into the workspace's pending job when there is one (the
// job is recorded superseded, with a note naming it, and counts as ended
// for its change). It returns the running job, ErrNotFound when nothing is
// due, or errTookQueued after a few restarts that did not run.
func (s *sqlStore) takeQueued(ctx context.Context, orgID, owner string, now, leaseUntil time.Time, lim ClaimLimits) (RestartJob, error) {
	nowUS := toMicros(now)
	for step := 0; step < 16; step++ {
		var change, list, caller, by string
		var seq, next int
		var runAfter, created int64
		err := s.w.QueryRowContext(ctx, `SELECT q.change_id, q.seq, q.run_after, q.ids, q.next, c.caller_workspace_id, c.requested_by, c.created_at
			FROM change_restarts q JOIN changes c ON c.id = q.change_id
			WHERE q.org_id = $1 AND q.open = 1 AND q.run_after <= $2
			ORDER BY q.run_after, q.change_id, q.seq LIMIT 1`, orgID, nowUS).Scan(&change, &seq, &runAfter, &list, &next, &caller, &by, &created)
		if err != nil {
			err = mapErr(err)
			if step > 0 && errors.Is(err, ErrNotFound) {
				return RestartJob{}, errTookQueued
			}
			return RestartJob{}, err
		}
		ws := nthLine(list, next)
		if _, err := s.w.ExecContext(ctx, `UPDATE change_restarts SET next = next + 1, open = CASE WHEN next + 1 < n THEN 1 ELSE 0 END
			WHERE change_id = $1 AND seq = $2`, change, seq); err != nil {
			return RestartJob{}, mapErr(err)
		}
		j := RestartJob{ID: ids.New("j"), OrgID: orgID, WorkspaceID: ws, Automatic: true, Reason: lim.QueuedReason,
			ChangeID: change, CallerWorkspaceID: caller, RequestedBy: by, MaxAttempts: lim.MaxAttempts,
			CreatedAt: fromMicros(created), UpdatedAt: now, RunAfter: fromMicros(runAfter)}
		pending, running, err := s.openJobsOf(ctx, ws)
		if err != nil {
			return RestartJob{}, err
		}
		switch {
		case pending != "":
			j.State, j.FinishedAt, j.Note = JobSuperseded, now, "merged into pending job "+pending
			if err := s.InsertJobs(ctx, []RestartJob{j}); err != nil {
				return RestartJob{}, err
			}
			if err := s.MarkMerged(ctx, []string{pending}); err != nil {
				return RestartJob{}, err
			}
			if err := s.RecordChangeOutcome(ctx, orgID, change, JobSuperseded, now); err != nil {
				return RestartJob{}, err
			}
			continue
		case running:
			j.State = JobPending
			if err := s.InsertJobs(ctx, []RestartJob{j}); err != nil {
				return RestartJob{}, err
			}
			continue
		}
		if lim.MaxRunning > 0 {
			if err := s.takeSlot(ctx, j.ID, lim.MaxRunning, nowUS); err != nil {
				return RestartJob{}, err
			}
		}
		j.State, j.LeaseOwner, j.LeaseUntil, j.Attempts, j.StartedAt = JobRunning, owner, leaseUntil, 1, now
		if err := s.InsertJobs(ctx, []RestartJob{j}); err != nil {
			return RestartJob{}, err
		}
		return j, nil
	}
	return RestartJob{}, errTookQueued
}

// openJobsOf reads the workspace's pending job (its id, or "") and whether
// it has one running.
func (s *sqlStore) openJobsOf(ctx context.Context, workspaceID string) (pending string, running bool, err error) {
	// One branch per state: each reads its own unique partial index.
	rows, err := s.w.QueryContext(ctx, `SELECT id, state FROM restart_jobs WHERE workspace_id = $1 AND state = 'pending'
		UNION ALL SELECT id, state FROM restart_jobs WHERE workspace_id = $1 AND state = 'running'`, workspaceID)
	if err != nil {
		return "", false, mapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, state string
		if err := rows.Scan(&id, &state); err != nil {
			return "", false, mapErr(err)
		}
		if state == JobPending {
			pending = id
		} else {
			running = true
		}
	}
	return pending, running, mapErr(rows.Err())
}

// nthLine is the i-th line of a newline-separated list.
func nthLine(list string, i int) string {
	for ; i > 0; i-- {
		k := strings.IndexByte(list, '\n')
		if k < 0 {
			return ""
		}
		list = list[k+1:]
	}
	if k := strings.IndexByte(list, '\n'); k >= 0 {
		return list[:k]
	}
	return list
}

// DelayQueuedRestarts debounces a burst: the open batches of a change
// that hold any of wsIDs (not taken yet) and are not due by now become due
// a window from now, but never later than the change's own time plus
// maxDelay, so that one busy workspace does not hold the rest of its batch
// back for ever. A batch already due is left alone: its restart goes
// ahead, and what comes next is a change of its own.
func (s *sqlStore) DelayQueuedRestarts(ctx context.Context, changeID string, wsIDs []string, now time.Time, window, maxDelay time.Duration) error {
	want := make(map[string]bool, len(wsIDs))
	for _, id := range wsIDs {
		want[id] = true
	}
	rows, err := s.w.QueryContext(ctx, `SELECT q.seq, q.ids, q.next, q.run_after, c.created_at
		FROM change_restarts q JOIN changes c ON c.id = q.change_id WHERE q.change_id = $1 AND q.open = 1`, changeID)
	if err != nil {
		return fmt.Errorf("delay queued restarts: %w", mapErr(err))
	}
	type move struct {
		seq int
		at  int64
	}
	var moves []move
	nowUS := toMicros(now)
	for rows.Next() {
		var seq, next int
		var list string
		var runAfter, created int64
		if err := rows.Scan(&seq, &list, &next, &runAfter, &created); err != nil {
			rows.Close()
			return fmt.Errorf("delay queued restarts: %w", mapErr(err))
		}
		at := min(nowUS+window.Microseconds(), created+maxDelay.Microseconds())
		if runAfter <= nowUS || at <= runAfter {
			continue
		}
		for _, id := range strings.Split(list, "\n")[next:] {
			if want[id] {
				moves = append(moves, move{seq, at})
				break
			}
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return fmt.Errorf("delay queued restarts: %w", mapErr(err))
	}
	for _, m := range moves {
		if _, err := s.w.ExecContext(ctx, `UPDATE change_restarts SET run_after = $3 WHERE change_id = $1 AND seq = $2`,
			changeID, m.seq, m.at); err != nil {
			return fmt.Errorf("delay queued restarts: %w", mapErr(err))
		}
	}
	return nil
}
