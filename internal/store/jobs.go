package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

const jobCols = `id, org_id, workspace_id, automatic, state, reason, note, change_id, caller_workspace_id, requested_by,
	attempts, max_attempts, generation, run_after, lease_owner, lease_until, error, created_at, updated_at, started_at, finished_at, merged`

const jobColCount = 22

func jobArgs(j RestartJob) []any {
	return []any{j.ID, j.OrgID, j.WorkspaceID, b2i(j.Automatic), j.State, j.Reason, j.Note, j.ChangeID,
		j.CallerWorkspaceID, j.RequestedBy, j.Attempts, j.MaxAttempts, j.Generation, toMicros(j.RunAfter),
		j.LeaseOwner, toMicros(j.LeaseUntil), j.Error, toMicros(j.CreatedAt), toMicros(j.UpdatedAt),
		toMicros(j.StartedAt), toMicros(j.FinishedAt), b2i(j.Merged)}
}

func scanJob(sc scanner) (RestartJob, error) {
	var j RestartJob
	var auto, merged int
	var runAfter, lease, created, updated, started, finished int64
	err := sc.Scan(&j.ID, &j.OrgID, &j.WorkspaceID, &auto, &j.State, &j.Reason, &j.Note, &j.ChangeID,
		&j.CallerWorkspaceID, &j.RequestedBy, &j.Attempts, &j.MaxAttempts, &j.Generation, &runAfter,
		&j.LeaseOwner, &lease, &j.Error, &created, &updated, &started, &finished, &merged)
	if err != nil {
		return RestartJob{}, mapErr(err)
	}
	j.Automatic, j.Merged = auto != 0, merged != 0
	j.RunAfter, j.LeaseUntil = fromMicros(runAfter), fromMicros(lease)
	j.CreatedAt, j.UpdatedAt, j.StartedAt, j.FinishedAt = fromMicros(created), fromMicros(updated), fromMicros(started), fromMicros(finished)
	return j, nil
}

// insertBatch is the rows per multi-row INSERT: well under SQLite's limit
// of bound parameters.
const insertBatch = 200

// InsertJobs inserts jobs: on Postgres as one INSERT ... SELECT FROM
// unnest of column arrays (a fan-out of 100,000 rows is one statement), on
// SQLite with multi-row INSERTs.
func (s *sqlStore) InsertJobs(ctx context.Context, jobs []RestartJob) error {
	if len(jobs) == 0 {
		return nil
	}
	if s.dialect == Postgres {
		if s.conn != nil && len(jobs) > insertBatch {
			return s.insertJobsCopy(ctx, jobs)
		}
		return s.insertJobsUnnest(ctx, jobs)
	}
	for start := 0; start < len(jobs); start += insertBatch {
		end := min(start+insertBatch, len(jobs))
		var b strings.Builder
		b.WriteString(`INSERT INTO restart_jobs (` + jobCols + `) VALUES `)
		args := make([]any, 0, (end-start)*jobColCount)
		for i, j := range jobs[start:end] {
			if i > 0 {
				b.WriteString(", ")
			}
			// Plain ? placeholders: SQLite resolves each $N by a linear
			// search of the names seen so far, quadratic in a multi-row insert.
			b.WriteString("(?" + strings.Repeat(", ?", jobColCount-1) + ")")
			args = append(args, jobArgs(j)...)
		}
		if _, err := s.w.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("insert jobs: %w", mapErr(err))
		}
	}
	return nil
}

// insertJobsCopy streams the rows with COPY on the transaction's own
// connection: the fastest bulk path Postgres has.
func (s *sqlStore) insertJobsCopy(ctx context.Context, jobs []RestartJob) error {
	cols := strings.Split(strings.Join(strings.Fields(jobCols), ""), ",")
	err := s.conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("not a pgx connection: %T", dc)
		}
		_, err := c.Conn().CopyFrom(ctx, pgx.Identifier{"restart_jobs"}, cols, pgx.CopyFromSlice(len(jobs), func(i int) ([]any, error) {
			return jobArgs(jobs[i]), nil
		}))
		return err
	})
	if err != nil {
		return fmt.Errorf("insert jobs: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) insertJobsUnnest(ctx context.Context, jobs []RestartJob) error {
	n := len(jobs)
	str := func() []string { return make([]string, n) }
	i64 := func() []int64 { return make([]int64, n) }
	id, org, ws, state, reason, note, change, caller, by, owner, errs := str(), str(), str(), str(), str(), str(), str(), str(), str(), str(), str()
	auto, attempts, maxAttempts, gen, runAfter, lease, created, updated, started, finished, merged := i64(), i64(), i64(), i64(), i64(), i64(), i64(), i64(), i64(), i64(), i64()
	for i, j := range jobs {
		id[i], org[i], ws[i], state[i], reason[i], note[i] = j.ID, j.OrgID, j.WorkspaceID, j.State, j.Reason, j.Note
		change[i], caller[i], by[i], owner[i], errs[i] = j.ChangeID, j.CallerWorkspaceID, j.RequestedBy, j.LeaseOwner, j.Error
		auto[i], attempts[i], maxAttempts[i], gen[i] = int64(b2i(j.Automatic)), int64(j.Attempts), int64(j.MaxAttempts), j.Generation
		runAfter[i], lease[i], created[i], updated[i] = toMicros(j.RunAfter), toMicros(j.LeaseUntil), toMicros(j.CreatedAt), toMicros(j.UpdatedAt)
		started[i], finished[i], merged[i] = toMicros(j.StartedAt), toMicros(j.FinishedAt), int64(b2i(j.Merged))
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO restart_jobs (`+jobCols+`)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::text[], $10::text[], $11::int[], $12::int[], $13::bigint[], $14::bigint[], $15::text[], $16::bigint[],
			$17::text[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], $22::int[])`,
		id, org, ws, auto, state, reason, note, change, caller, by, attempts, maxAttempts, gen, runAfter, owner, lease,
		errs, created, updated, started, finished, merged)
	if err != nil {
		return fmt.Errorf("insert jobs: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetJob(ctx context.Context, orgID, id string) (RestartJob, error) {
	return scanJob(s.r.QueryRowContext(ctx, `SELECT `+jobCols+` FROM restart_jobs WHERE org_id = $1 AND id = $2`, orgID, id))
}

func (s *sqlStore) GetPendingJob(ctx context.Context, workspaceID string) (RestartJob, error) {
	return scanJob(s.r.QueryRowContext(ctx, `SELECT `+jobCols+` FROM restart_jobs WHERE workspace_id = $1 AND state = 'pending'`, workspaceID))
}

func (s *sqlStore) GetJobForUpdate(ctx context.Context, orgID, id string) (RestartJob, error) {
	return scanJob(s.w.QueryRowContext(ctx, `SELECT `+jobCols+` FROM restart_jobs WHERE org_id = $1 AND id = $2`+s.forUpdate(), orgID, id))
}

func (s *sqlStore) GetPendingJobForUpdate(ctx context.Context, workspaceID string) (RestartJob, error) {
	return scanJob(s.w.QueryRowContext(ctx, `SELECT `+jobCols+` FROM restart_jobs WHERE workspace_id = $1 AND state = 'pending'`+s.forUpdate(), workspaceID))
}

func (s *sqlStore) LockPendingJobs(ctx context.Context, ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	// SQLite: the caller's immediate transaction is the only writer, so
	// reading the rows is holding them.
	for start := 0; start < len(ids); start += 10000 {
		batch := ids[start:min(start+10000, len(ids))]
		var rows *sql.Rows
		var err error
		if s.dialect == Postgres {
			rows, err = s.w.QueryContext(ctx, `SELECT id FROM restart_jobs WHERE id = ANY($1) AND state = 'pending' ORDER BY id`+s.forUpdate(), batch)
		} else {
			rows, err = s.r.QueryContext(ctx, `SELECT id FROM restart_jobs WHERE state = 'pending' AND id IN (SELECT value FROM json_each($1))`, jsonArray(batch))
		}
		if err != nil {
			return nil, fmt.Errorf("lock pending jobs: %w", mapErr(err))
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("lock pending jobs: %w", mapErr(err))
			}
			out[id] = true
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("lock pending jobs: %w", mapErr(err))
		}
	}
	return out, nil
}

func jsonArray(ids []string) string {
	b, _ := json.Marshal(ids)
	return string(b)
}

func (s *sqlStore) queryJobs(ctx context.Context, q string, args ...any) ([]RestartJob, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", mapErr(err))
	}
	defer rows.Close()
	out := []RestartJob{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, mapErr(rows.Err())
}

func (s *sqlStore) ListJobs(ctx context.Context, orgID, workspaceID string, limit int) ([]RestartJob, error) {
	return s.ListJobsBefore(ctx, orgID, workspaceID, JobCursor{}, limit)
}

// ListJobsBefore lists jobs newest first, older than the cursor (none: from
// the newest). Pending jobs and the others are read from their own indexes
// (a plan inserts pending jobs without touching the history's) and merged.
func (s *sqlStore) ListJobsBefore(ctx context.Context, orgID, workspaceID string, before JobCursor, limit int) ([]RestartJob, error) {
	if limit <= 0 {
		limit = 100
	}
	at, id := int64(1<<62), ""
	if !before.CreatedAt.IsZero() {
		at, id = toMicros(before.CreatedAt), before.ID
	}
	scope := "org_id = $1 AND $2 = ''" // $2 typed for Postgres; empty here
	if workspaceID != "" {
		scope = "org_id = $1 AND workspace_id = $2"
	}
	page := func(state string) string {
		return `SELECT ` + jobCols + ` FROM restart_jobs WHERE ` + scope + ` AND ` + state + `
			AND (created_at < $3 OR (created_at = $3 AND id < $4)) ORDER BY created_at DESC, id DESC LIMIT $5`
	}
	return s.queryJobs(ctx, `SELECT * FROM (`+page("state <> 'pending'")+`) h UNION ALL SELECT * FROM (`+page("state = 'pending'")+`) p
		ORDER BY created_at DESC, id DESC LIMIT $5`, orgID, workspaceID, at, id, limit)
}

func (s *sqlStore) ListJobsByChange(ctx context.Context, orgID, changeID string) ([]RestartJob, error) {
	return s.queryJobs(ctx, `SELECT `+jobCols+` FROM restart_jobs WHERE org_id = $1 AND change_id = $2 ORDER BY id`, orgID, changeID)
}

func (s *sqlStore) ListOpenJobs(ctx context.Context, orgID, workspaceID string) ([]RestartJob, error) {
	return s.queryJobs(ctx, `SELECT `+jobCols+` FROM restart_jobs WHERE org_id = $1 AND workspace_id = $2
		AND state IN ('pending', 'running') ORDER BY created_at DESC, id DESC`, orgID, workspaceID)
}

func (s *sqlStore) UpdateJob(ctx context.Context, j RestartJob) error {
	err := affected(s.w.ExecContext(ctx, `UPDATE restart_jobs SET state = $3, reason = $4, note = $5, attempts = $6,
		generation = $7, run_after = $8, lease_owner = $9, lease_until = $10, error = $11, updated_at = $12,
		started_at = $13, finished_at = $14, merged = $15 WHERE org_id = $1 AND id = $2`,
		j.OrgID, j.ID, j.State, j.Reason, j.Note, j.Attempts, j.Generation, toMicros(j.RunAfter), j.LeaseOwner,
		toMicros(j.LeaseUntil), j.Error, toMicros(j.UpdatedAt), toMicros(j.StartedAt), toMicros(j.FinishedAt), b2i(j.Merged)))
	if err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	return nil
}

// ClaimJob takes the next runnable job under the governor's caps: a running
// job whose owner's lease expired (a crashed replica) first, then the
// pending job due first (explicit restarts, recoveries, retries: these do
// not wait behind a fan-out), then the restart due first in the changes'
// queues, whose job is made now (takeQueued). It returns ErrNotFound when
// there is none or a cap is reached.
//
// Its cost is bounded by what is open, never by history or by the length
// of the queue: per org, one indexed count of its running jobs and one
// indexed read of the head of its queue (a pending job whose workspace is
// already restarting is stepped over; there are at most as many of those
// as running jobs). The per-org cap is exact across replicas: the count and
// the claim happen under a per-org transaction lock (Postgres; SQLite has
// one writer), so claims of different orgs never wait for each other. The
// overall cap is exact too, without a lock that serializes claims: a
// claim takes one of MaxRunning slots (takeSlot).
func (s *sqlStore) ClaimJob(ctx context.Context, owner string, now, leaseUntil time.Time, lim ClaimLimits) (RestartJob, error) {
	nowUS := toMicros(now)
	if lim.MaxRunning > 0 {
		var running int
		if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM restart_jobs WHERE state = 'running' AND lease_until >= $1`,
			nowUS).Scan(&running); err != nil {
			return RestartJob{}, fmt.Errorf("claim job: %w", mapErr(err))
		}
		if running >= lim.MaxRunning {
			return RestartJob{}, ErrNotFound
		}
	}
	perOrg := lim.MaxRunningPerOrg
	if perOrg <= 0 {
		perOrg = 1 << 30
	}
	orgs, err := s.claimCandidates(ctx, nowUS, perOrg, !lim.SkipQueued)
	if err != nil {
		return RestartJob{}, err
	}
	rounds := 0
	for i := 0; i < len(orgs); i++ {
		orgID := orgs[i]
		var out RestartJob
		again := false
		err := s.InTx(ctx, func(txs Store) error {
			tx := txs.(*sqlStore)
			again = false
			if err := tx.lockClaims(ctx, orgID); err != nil {
				return err
			}
			var running int
			if err := tx.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM restart_jobs WHERE org_id = $1 AND state = 'running' AND lease_until >= $2`,
				orgID, nowUS).Scan(&running); err != nil {
				return mapErr(err)
			}
			if running >= perOrg {
				return ErrNotFound
			}
			skipLocked := ""
			if tx.dialect == Postgres {
				skipLocked = " FOR UPDATE SKIP LOCKED"
			}
			j, err := scanJob(tx.w.QueryRowContext(ctx, `SELECT `+jobCols+` FROM restart_jobs
				WHERE org_id = $1 AND state = 'running' AND lease_until < $2 ORDER BY lease_until LIMIT 1`+skipLocked, orgID, nowUS))
			if errors.Is(err, ErrNotFound) {
				j, err = scanJob(tx.w.QueryRowContext(ctx, `SELECT `+jobCols+` FROM restart_jobs j
					WHERE j.org_id = $1 AND j.state = 'pending' AND j.run_after <= $2
					  AND NOT EXISTS (SELECT 1 FROM restart_jobs r WHERE r.workspace_id = j.workspace_id AND r.state = 'running')
					ORDER BY j.run_after, j.id LIMIT 1`+skipLocked, orgID, nowUS))
			}
			if errors.Is(err, ErrNotFound) && !lim.SkipQueued {
				// Then the changes' queues: a job is made now, for the
				// workspace taken.
				out, err = tx.takeQueued(ctx, orgID, owner, now, leaseUntil, lim)
				if errors.Is(err, errTookQueued) {
					again = true // commit what was taken, and look again
					return nil
				}
				return err
			}
			if err != nil {
				return err
			}
			if lim.MaxRunning > 0 {
				if err := tx.takeSlot(ctx, j.ID, lim.MaxRunning, nowUS); err != nil {
					return err
				}
			}
			j.State, j.LeaseOwner, j.LeaseUntil, j.UpdatedAt = JobRunning, owner, leaseUntil, now
			j.Attempts++
			if j.StartedAt.IsZero() {
				j.StartedAt = now
			}
			if err := tx.UpdateJob(ctx, j); err != nil {
				return err
			}
			out = j
			return nil
		})
		if err == nil && again && rounds < 64 {
			rounds++
			i-- // the same org again
			continue
		}
		if err == nil && !again {
			return out, nil
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return RestartJob{}, err
		}
	}
	return RestartJob{}, ErrNotFound
}

// takeSlot gives job one of the max slots of the overall cap: a slot is
// free when the job it last held is not running under a live lease.
// Concurrent claims skip the slots others are taking (SKIP LOCKED) instead
// of waiting; with none free, ErrNotFound.
func (s *sqlStore) takeSlot(ctx context.Context, jobID string, max int, nowUS int64) error {
	if err := s.ensureSlots(ctx, max); err != nil {
		return err
	}
	skipLocked := ""
	if s.dialect == Postgres {
		skipLocked = " FOR UPDATE SKIP LOCKED"
	}
	var slot int
	err := s.w.QueryRowContext(ctx, `SELECT t.slot FROM restart_slots t
		WHERE t.slot < $1 AND NOT EXISTS (SELECT 1 FROM restart_jobs r WHERE r.id = t.job_id AND r.state = 'running' AND r.lease_until >= $2)
		ORDER BY t.slot LIMIT 1`+skipLocked, max, nowUS).Scan(&slot)
	if err != nil {
		return mapErr(err)
	}
	if _, err := s.w.ExecContext(ctx, `UPDATE restart_slots SET job_id = $1 WHERE slot = $2`, jobID, slot); err != nil {
		return mapErr(err)
	}
	return nil
}

// ensureSlots creates the slots up to max, once per process and size.
func (s *sqlStore) ensureSlots(ctx context.Context, max int) error {
	if int(s.slots.Load()) >= max {
		return nil
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO restart_slots (slot) VALUES `)
	for i := 0; i < max; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + strconv.Itoa(i) + ")")
	}
	b.WriteString(` ON CONFLICT (slot) DO NOTHING`)
	if _, err := s.w.ExecContext(ctx, b.String()); err != nil {
		return mapErr(err)
	}
	s.slots.Store(int64(max))
	return nil
}

// claimCandidates lists the orgs with runnable work and room under their
// cap, the one whose work is due first first (expired leases before
// anything pending).
func (s *sqlStore) claimCandidates(ctx context.Context, nowUS int64, perOrg int, withQueued bool) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM orgs`)
	if err != nil {
		return nil, fmt.Errorf("claim job: %w", mapErr(err))
	}
	var orgs []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("claim job: %w", mapErr(err))
		}
		orgs = append(orgs, id)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("claim job: %w", mapErr(err))
	}
	type cand struct {
		org string
		due int64
	}
	var out []cand
	for _, org := range orgs {
		var running int
		var expired int64
		err := s.r.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(MIN(CASE WHEN lease_until < $2 THEN lease_until END), -1)
			FROM restart_jobs WHERE org_id = $1 AND state = 'running'`, org, nowUS).Scan(&running, &expired)
		if err != nil {
			return nil, fmt.Errorf("claim job: %w", mapErr(err))
		}
		if expired >= 0 {
			out = append(out, cand{org, -1 << 62})
			continue
		}
		if running >= perOrg {
			continue
		}
		var due int64
		err = s.r.QueryRowContext(ctx, `SELECT j.run_after FROM restart_jobs j
			WHERE j.org_id = $1 AND j.state = 'pending' AND j.run_after <= $2
			  AND NOT EXISTS (SELECT 1 FROM restart_jobs r WHERE r.workspace_id = j.workspace_id AND r.state = 'running')
			ORDER BY j.run_after, j.id LIMIT 1`, org, nowUS).Scan(&due)
		if errors.Is(mapErr(err), ErrNotFound) {
			due = -1
		} else if err != nil {
			return nil, fmt.Errorf("claim job: %w", mapErr(err))
		}
		queued := int64(-1)
		if withQueued {
			if queued, err = s.queuedDue(ctx, org, nowUS); err != nil {
				return nil, err
			}
		}
		if due < 0 || (queued >= 0 && queued < due) {
			due = queued
		}
		if due >= 0 {
			out = append(out, cand{org, due})
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].due < out[k].due })
	ids := make([]string, len(out))
	for i, c := range out {
		ids[i] = c.org
	}
	return ids, nil
}

// RenewLease extends a running job's lease if owner still holds it.
func (s *sqlStore) RenewLease(ctx context.Context, id, owner string, until time.Time) error {
	err := affected(s.w.ExecContext(ctx, `UPDATE restart_jobs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND state = 'running'`,
		id, owner, toMicros(until)))
	if err != nil {
		return fmt.Errorf("renew lease of job %s: %w", id, err)
	}
	return nil
}

func (s *sqlStore) CountRecentAutoRestarts(ctx context.Context, workspaceID string, since time.Time) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM restart_jobs WHERE workspace_id = $1 AND state <> 'pending' AND automatic = 1
		AND state IN ('running', 'succeeded', 'failed') AND started_at > 0 AND started_at >= $2`, workspaceID, toMicros(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count restarts: %w", mapErr(err))
	}
	return n, nil
}

func (s *sqlStore) CountJobsByState(ctx context.Context) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT state, COUNT(*) FROM restart_jobs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", mapErr(err))
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, mapErr(err)
		}
		out[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(err)
	}
	// The restarts queued in changes are pending too: they have no job yet.
	queued, err := s.countQueued(ctx)
	if err != nil {
		return nil, err
	}
	if queued > 0 {
		out[JobPending] += queued
	}
	return out, nil
}

// factsSelect reads the planner's facts with joins rather than per-row
// subqueries: one pass over the org's workspaces, whatever their number.
const factsSelect = `SELECT w.id, w.kind, w.runtime, w.status, w.restart_policy, w.protected, w.loop_broken,
	CASE WHEN s.key IS NULL THEN 0 ELSE 1 END, COALESCE(p.id, ''), COALESCE(r.n, 0), COALESCE(r.last, 0)
	FROM workspaces w
	LEFT JOIN secrets s ON s.org_id = w.org_id AND s.workspace_id = w.id AND s.key = $2
	LEFT JOIN restart_jobs p ON p.workspace_id = w.id AND p.state = 'pending'
	LEFT JOIN (SELECT workspace_id, COUNT(*) AS n, MAX(created_at) AS last FROM restart_jobs
		WHERE org_id = $1 AND automatic = 1 AND started_at > 0 AND started_at >= $3 AND state IN ('running', 'succeeded', 'failed')
		GROUP BY workspace_id) r ON r.workspace_id = w.id`

func scanFacts(sc scanner) (PropagationFacts, error) {
	var f PropagationFacts
	var protected, broken, overrides int
	var last int64
	if err := sc.Scan(&f.WorkspaceID, &f.Kind, &f.Runtime, &f.Status, &f.RestartPolicy, &protected, &broken,
		&overrides, &f.PendingJobID, &f.RecentAutoRestarts, &last); err != nil {
		return PropagationFacts{}, mapErr(err)
	}
	f.Protected, f.LoopBroken, f.OverridesKey = protected != 0, broken != 0, overrides != 0
	f.LastAutoRestart = fromMicros(last)
	return f, nil
}

// ListPropagationFacts is the affected set of a global change, in one
// query: every live workspace of the org except the platform workspace.
func (s *sqlStore) ListPropagationFacts(ctx context.Context, orgID, key string, since time.Time) ([]PropagationFacts, error) {
	rows, err := s.w.QueryContext(ctx, factsSelect+` WHERE w.org_id = $1 AND w.kind <> 'platform' AND w.status <> 'removed'`,
		orgID, key, toMicros(since))
	if err != nil {
		return nil, fmt.Errorf("list propagation facts: %w", mapErr(err))
	}
	defer rows.Close()
	var out []PropagationFacts
	// The four short columns take a handful of values: read in place and
	// shared, rather than a string allocated per column and row.
	var kind, runtime, status, policy sql.RawBytes
	var protected, broken, overrides int
	var last int64
	for rows.Next() {
		var f PropagationFacts
		if err := rows.Scan(&f.WorkspaceID, &kind, &runtime, &status, &policy, &protected, &broken,
			&overrides, &f.PendingJobID, &f.RecentAutoRestarts, &last); err != nil {
			return nil, fmt.Errorf("list propagation facts: %w", mapErr(err))
		}
		f.Kind, f.Runtime, f.Status, f.RestartPolicy = internWord(kind), internWord(runtime), internWord(status), internWord(policy)
		f.Protected, f.LoopBroken, f.OverridesKey = protected != 0, broken != 0, overrides != 0
		f.LastAutoRestart = fromMicros(last)
		out = append(out, f)
	}
	return out, mapErr(rows.Err())
}

// words are the values of the workspaces' enum columns.
var words = func() map[string]string {
	m := map[string]string{}
	for _, w := range []string{KindPlatform, KindWorkspace, "process", "docker", "kubernetes", "external",
		"provisioning", "running", "degraded", "failed", "stopped", "paused", "removed", "auto", "manual"} {
		m[w] = w
	}
	return m
}()

// internWord is b as a string, shared when it is one of words.
func internWord(b []byte) string {
	if w, ok := words[string(b)]; ok { // no allocation for the lookup
		return w
	}
	return string(b)
}

// factsOneSelect is factsSelect for one workspace: its recent restarts
// are counted from its own rows, not by grouping the org's (the literal
// "state <> 'pending'" lets SQLite use the partial history index of the
// workspace; it cannot prove that from the IN list).
const factsOneSelect = `SELECT w.id, w.kind, w.runtime, w.status, w.restart_policy, w.protected, w.loop_broken,
	CASE WHEN s.key IS NULL THEN 0 ELSE 1 END, COALESCE(p.id, ''),
	(SELECT COUNT(*) FROM restart_jobs r WHERE r.workspace_id = w.id AND r.state <> 'pending' AND r.automatic = 1
		AND r.started_at > 0 AND r.started_at >= $3 AND r.state IN ('running', 'succeeded', 'failed')),
	(SELECT COALESCE(MAX(r.created_at), 0) FROM restart_jobs r WHERE r.workspace_id = w.id AND r.state <> 'pending' AND r.automatic = 1
		AND r.started_at > 0 AND r.started_at >= $3 AND r.state IN ('running', 'succeeded', 'failed'))
	FROM workspaces w
	LEFT JOIN secrets s ON s.org_id = w.org_id AND s.workspace_id = w.id AND s.key = $2
	LEFT JOIN restart_jobs p ON p.workspace_id = w.id AND p.state = 'pending'
	WHERE w.org_id = $1 AND w.id = $4`

// GetPropagationFacts reads one workspace's facts.
func (s *sqlStore) GetPropagationFacts(ctx context.Context, orgID, workspaceID, key string, since time.Time) (PropagationFacts, error) {
	return scanFacts(s.w.QueryRowContext(ctx, factsOneSelect, orgID, key, toMicros(since), workspaceID))
}

// ListActiveWorkspaces lists, across orgs, the workspaces that should have
// a box: those provisioning, running or degraded.
func (s *sqlStore) ListActiveWorkspaces(ctx context.Context) ([]Workspace, error) {
	return s.queryWorkspaces(ctx, `SELECT `+workspaceCols+` FROM workspaces
		WHERE status IN ('provisioning', 'running', 'degraded') ORDER BY id`)
}

func (s *sqlStore) LockOrg(ctx context.Context, orgID string) error {
	if s.dialect != Postgres || !s.inTx {
		return nil
	}
	if _, err := s.w.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7250159, hashtext($1))`, orgID); err != nil {
		return fmt.Errorf("lock org: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) ExpireLeases(ctx context.Context) (int, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE restart_jobs SET lease_until = 0 WHERE state = 'running'`)
	if err != nil {
		return 0, fmt.Errorf("expire leases: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	return int(n), mapErr(err)
}

func (s *sqlStore) ReleaseLeases(ctx context.Context, owner string) (int, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE restart_jobs SET lease_until = 0 WHERE state = 'running' AND lease_owner = $1`, owner)
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	return int(n), mapErr(err)
}
