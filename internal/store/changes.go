package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// partSize is the decisions per change_parts row: a change across 100,000
// workspaces is 196 rows, and reading one workspace's decision decodes one
// part.
const partSize = 512

// Change is one secret write's record: what it was, how its decisions
// split by reason, and how its restarts went.
type Change struct {
	ID                string
	OrgID             string
	WorkspaceID       string // "" for a global change
	Key               string
	Op                string // "set" or "delete"
	CallerWorkspaceID string
	RequestedBy       string
	CreatedAt         time.Time
	Total             int            // decisions
	Restarts          int            // decisions that queued a restart job
	Counts            map[string]int // decisions by reason
	// Progress of its restart jobs: final outcomes so far.
	Succeeded, Failed, Cancelled int
	FinishedAt                   time.Time // when the last of its restarts ended
}

// ChangeDecision is one workspace's decision in a change.
type ChangeDecision struct {
	WorkspaceID string
	Reason      string
}

// WorkspaceDecision is a decision about one workspace, with its change.
type WorkspaceDecision struct {
	Change Change
	Reason string
}

const changeCols = `id, org_id, workspace_id, key, op, caller_workspace_id, requested_by, created_at, total, restarts, counts,
	succeeded, failed, cancelled, finished_at`

func scanChange(sc scanner) (Change, error) {
	var c Change
	var created, finished int64
	var counts string
	if err := sc.Scan(&c.ID, &c.OrgID, &c.WorkspaceID, &c.Key, &c.Op, &c.CallerWorkspaceID, &c.RequestedBy, &created,
		&c.Total, &c.Restarts, &counts, &c.Succeeded, &c.Failed, &c.Cancelled, &finished); err != nil {
		return Change{}, mapErr(err)
	}
	c.CreatedAt, c.FinishedAt = fromMicros(created), fromMicros(finished)
	if err := json.Unmarshal([]byte(counts), &c.Counts); err != nil {
		return Change{}, fmt.Errorf("change %s: counts: %w", c.ID, err)
	}
	return c, nil
}

// InsertChange records a change and its decisions (sorted here by
// workspace id, in parts).
func (s *sqlStore) InsertChange(ctx context.Context, c Change, ds []ChangeDecision) error {
	counts, err := json.Marshal(c.Counts)
	if err != nil {
		return fmt.Errorf("insert change: %w", err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO changes (`+changeCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		c.ID, c.OrgID, c.WorkspaceID, c.Key, c.Op, c.CallerWorkspaceID, c.RequestedBy, toMicros(c.CreatedAt), c.Total,
		c.Restarts, string(counts), c.Succeeded, c.Failed, c.Cancelled, toMicros(c.FinishedAt))
	if err != nil {
		return fmt.Errorf("insert change: %w", mapErr(err))
	}
	if !sort.SliceIsSorted(ds, func(i, j int) bool { return ds[i].WorkspaceID < ds[j].WorkspaceID }) {
		ds = append([]ChangeDecision(nil), ds...)
		sort.Slice(ds, func(i, j int) bool { return ds[i].WorkspaceID < ds[j].WorkspaceID })
	}
	nparts := (len(ds) + partSize - 1) / partSize
	// Parts go in multi-row INSERTs of 100 (5 parameters each).
	const rowsPerStmt = 100
	var b strings.Builder
	for start := 0; start < nparts; start += rowsPerStmt {
		end := min(start+rowsPerStmt, nparts)
		var q strings.Builder
		q.WriteString(`INSERT INTO change_parts (change_id, seq, first_id, last_id, decisions) VALUES `)
		args := make([]any, 0, (end-start)*5)
		for p := start; p < end; p++ {
			part := ds[p*partSize : min((p+1)*partSize, len(ds))]
			b.Reset()
			b.Grow(len(part) * 40)
			for _, d := range part {
				b.WriteString(d.WorkspaceID)
				b.WriteByte('\t')
				b.WriteString(d.Reason)
				b.WriteByte('\n')
			}
			if p > start {
				q.WriteString(", ")
			}
			n := len(args)
			fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5)
			args = append(args, c.ID, p, part[0].WorkspaceID, part[len(part)-1].WorkspaceID, b.String())
		}
		if _, err := s.w.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("insert change: %w", mapErr(err))
		}
	}
	return nil
}

func (s *sqlStore) GetChange(ctx context.Context, orgID, id string) (Change, error) {
	return scanChange(s.r.QueryRowContext(ctx, `SELECT `+changeCols+` FROM changes WHERE org_id = $1 AND id = $2`, orgID, id))
}

// parseDecisions decodes a part's lines.
func parseDecisions(text string, fn func(d ChangeDecision) bool) {
	for len(text) > 0 {
		line, rest, _ := strings.Cut(text, "\n")
		text = rest
		ws, reason, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		if !fn(ChangeDecision{WorkspaceID: ws, Reason: reason}) {
			return
		}
	}
}

// ListChangeDecisions pages a change's decisions by workspace id: up to
// limit of those after the workspace id after.
func (s *sqlStore) ListChangeDecisions(ctx context.Context, orgID, changeID, after string, limit int) ([]ChangeDecision, error) {
	if _, err := s.GetChange(ctx, orgID, changeID); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT decisions FROM change_parts WHERE change_id = $1 AND last_id > $2 ORDER BY seq`, changeID, after)
	if err != nil {
		return nil, fmt.Errorf("list change decisions: %w", mapErr(err))
	}
	defer rows.Close()
	out := []ChangeDecision{}
	for rows.Next() && len(out) < limit {
		var text string
		if err := rows.Scan(&text); err != nil {
			return nil, fmt.Errorf("list change decisions: %w", mapErr(err))
		}
		parseDecisions(text, func(d ChangeDecision) bool {
			if d.WorkspaceID > after {
				out = append(out, d)
			}
			return len(out) < limit
		})
	}
	return out, mapErr(rows.Err())
}

// ListWorkspaceDecisions lists the decisions of the org's changes about
// one workspace, newest first: its own changes and the global ones since
// it was created (older ones cannot name it).
func (s *sqlStore) ListWorkspaceDecisions(ctx context.Context, orgID, workspaceID string, since time.Time, limit int) ([]WorkspaceDecision, error) {
	out := []WorkspaceDecision{}
	before, beforeID := int64(1<<62), ""
	for len(out) < limit {
		rows, err := s.r.QueryContext(ctx, `SELECT `+changeCols+` FROM changes
			WHERE org_id = $1 AND (workspace_id = '' OR workspace_id = $2) AND created_at >= $3
			  AND (created_at < $4 OR (created_at = $4 AND id < $5))
			ORDER BY created_at DESC, id DESC LIMIT $6`, orgID, workspaceID, toMicros(since), before, beforeID, limit)
		if err != nil {
			return nil, fmt.Errorf("list decisions: %w", mapErr(err))
		}
		var batch []Change
		for rows.Next() {
			c, err := scanChange(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("list decisions: %w", err)
			}
			batch = append(batch, c)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("list decisions: %w", mapErr(err))
		}
		if len(batch) == 0 {
			break
		}
		last := batch[len(batch)-1]
		before, beforeID = toMicros(last.CreatedAt), last.ID
		ids := make([]string, len(batch))
		for i, c := range batch {
			ids[i] = c.ID
		}
		reasons, err := s.decisionsOf(ctx, ids, workspaceID)
		if err != nil {
			return nil, err
		}
		for _, c := range batch {
			if r, ok := reasons[c.ID]; ok && len(out) < limit {
				out = append(out, WorkspaceDecision{Change: c, Reason: r})
			}
		}
		if len(batch) < limit {
			break
		}
	}
	return out, nil
}

// decisionsOf finds one workspace's reason in each of the changes.
func (s *sqlStore) decisionsOf(ctx context.Context, changeIDs []string, workspaceID string) (map[string]string, error) {
	var q string
	var arg any
	if s.dialect == Postgres {
		q, arg = `SELECT change_id, decisions FROM change_parts WHERE change_id = ANY($1) AND first_id <= $2 AND last_id >= $2`, changeIDs
	} else {
		q, arg = `SELECT change_id, decisions FROM change_parts WHERE change_id IN (SELECT value FROM json_each($1)) AND first_id <= $2 AND last_id >= $2`, jsonArray(changeIDs)
	}
	rows, err := s.r.QueryContext(ctx, q, arg, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("list decisions: %w", mapErr(err))
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, text string
		if err := rows.Scan(&id, &text); err != nil {
			return nil, fmt.Errorf("list decisions: %w", mapErr(err))
		}
		// The part is sorted: look the line up without decoding the rest.
		needle := workspaceID + "\t"
		i := strings.Index(text, needle)
		for i > 0 && text[i-1] != '\n' {
			j := strings.Index(text[i+1:], needle)
			if j < 0 {
				i = -1
				break
			}
			i += 1 + j
		}
		if i < 0 {
			continue
		}
		line := text[i+len(needle):]
		if k := strings.IndexByte(line, '\n'); k >= 0 {
			line = line[:k]
		}
		out[id] = line
	}
	return out, mapErr(rows.Err())
}

// RecordChangeOutcome counts one of a change's restart jobs ending
// (state succeeded, failed, or anything else final: cancelled), and marks
// the change finished when it was the last.
func (s *sqlStore) RecordChangeOutcome(ctx context.Context, orgID, changeID, state string, at time.Time) error {
	col := "cancelled"
	switch state {
	case JobSucceeded:
		col = "succeeded"
	case JobFailed:
		col = "failed"
	}
	// A job queued by an older version has no change record: nothing to count.
	_, err := s.w.ExecContext(ctx, `UPDATE changes SET `+col+` = `+col+` + 1,
		finished_at = CASE WHEN succeeded + failed + cancelled + 1 >= restarts THEN $3 ELSE finished_at END
		WHERE org_id = $1 AND id = $2`, orgID, changeID, toMicros(at))
	if err != nil {
		return fmt.Errorf("record change outcome: %w", mapErr(err))
	}
	return nil
}

// MarkMerged flags the given pending jobs as holding changes merged into
// them.
func (s *sqlStore) MarkMerged(ctx context.Context, jobIDs []string) error {
	for start := 0; start < len(jobIDs); start += 10000 {
		batch := jobIDs[start:min(start+10000, len(jobIDs))]
		var err error
		if s.dialect == Postgres {
			_, err = s.w.ExecContext(ctx, `UPDATE restart_jobs SET merged = 1 WHERE id = ANY($1) AND merged = 0`, batch)
		} else {
			_, err = s.w.ExecContext(ctx, `UPDATE restart_jobs SET merged = 1 WHERE id IN (SELECT value FROM json_each($1)) AND merged = 0`, jsonArray(batch))
		}
		if err != nil {
			return fmt.Errorf("mark merged: %w", mapErr(err))
		}
	}
	return nil
}

// CountRunningForChange counts a change's restart jobs running now (read
// from the few running rows, never from history).
func (s *sqlStore) CountRunningForChange(ctx context.Context, orgID, changeID string) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM restart_jobs WHERE org_id = $1 AND state = 'running' AND change_id = $2`,
		orgID, changeID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count running jobs: %w", mapErr(err))
	}
	return n, nil
}
