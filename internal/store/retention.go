package store

import (
	"context"
	"fmt"
	"time"
)

// finishedStates are the job states that never change again.
const finishedStates = `('succeeded', 'failed', 'skipped', 'superseded')`

// PruneJobs deletes up to limit restart jobs that ended before cutoff
// (succeeded, failed, skipped, superseded), oldest first, and returns how
// many it deleted. Open jobs (pending, running) are never touched.
// Deleting is idempotent: replicas pruning at once delete each row once.
func (s *sqlStore) PruneJobs(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM restart_jobs WHERE id IN (
		SELECT id FROM restart_jobs
		WHERE state IN `+finishedStates+` AND finished_at > 0 AND finished_at < $1
		ORDER BY finished_at LIMIT $2)`, toMicros(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("prune restart jobs: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune restart jobs: %w", mapErr(err))
	}
	return int(n), nil
}

// PruneChanges deletes the oldest changes whose restarts all ended before
// cutoff, each with its decision parts, about limit rows in all (parts
// included; a change is never split, so one change larger than limit goes
// alone), and returns the rows it deleted. Call it in a transaction: a
// change and its parts go together.
func (s *sqlStore) PruneChanges(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	// A change's parts are ceil(total/partSize) and its queue's rows at most
	// ceil(restarts/QueueBatchSize): known without reading them.
	rows, err := s.w.QueryContext(ctx, `SELECT id, total, restarts FROM changes
		WHERE finished_at > 0 AND finished_at < $1 ORDER BY finished_at LIMIT $2`, toMicros(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("prune changes: %w", mapErr(err))
	}
	var ids []string
	rowCount := 0
	for rows.Next() {
		var id string
		var total, restarts int
		if err := rows.Scan(&id, &total, &restarts); err != nil {
			rows.Close()
			return 0, fmt.Errorf("prune changes: %w", mapErr(err))
		}
		n := 1 + (total+partSize-1)/partSize + (restarts+QueueBatchSize-1)/QueueBatchSize
		if len(ids) > 0 && rowCount+n > limit {
			break
		}
		ids, rowCount = append(ids, id), rowCount+n
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return 0, fmt.Errorf("prune changes: %w", mapErr(err))
	}
	if len(ids) == 0 {
		return 0, nil
	}
	in, arg := `IN (SELECT value FROM json_each($1))`, any(jsonArray(ids))
	if s.dialect == Postgres {
		in, arg = `= ANY($1)`, ids
	}
	deleted := 0
	for _, q := range []string{`DELETE FROM change_parts WHERE change_id ` + in, `DELETE FROM change_restarts WHERE change_id ` + in,
		`DELETE FROM changes WHERE id ` + in} {
		res, err := s.w.ExecContext(ctx, q, arg)
		if err != nil {
			return deleted, fmt.Errorf("prune changes: %w", mapErr(err))
		}
		n, err := res.RowsAffected()
		if err != nil {
			return deleted, fmt.Errorf("prune changes: %w", mapErr(err))
		}
		deleted += int(n)
	}
	return deleted, nil
}
