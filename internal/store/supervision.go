package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

func (s *sqlStore) ClaimSupervision(ctx context.Context, workspaceID, owner string, gen int64, now, until time.Time, force bool) (bool, error) {
	res, err := s.w.ExecContext(ctx, `INSERT INTO box_supervision (workspace_id, owner, generation, until) VALUES ($1, $2, $3, $4)
		ON CONFLICT (workspace_id) DO UPDATE SET owner = excluded.owner, generation = excluded.generation, until = excluded.until
		WHERE $6 = 1 OR box_supervision.owner = excluded.owner OR (box_supervision.until < $5
			AND NOT EXISTS (SELECT 1 FROM supervisors r WHERE r.owner = box_supervision.owner AND r.until >= $5))`,
		workspaceID, owner, gen, toMicros(until), toMicros(now), b2i(force))
	if err != nil {
		return false, fmt.Errorf("claim supervision of %s: %w", workspaceID, mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, mapErr(err)
	}
	return n > 0, nil
}

// RenewSupervision extends owner's leases by renewing its liveness row:
// one row whatever the number of boxes. A zero until ends them all at once
// (a replica handing its boxes over), its boxes' own rows included.
func (s *sqlStore) RenewSupervision(ctx context.Context, owner string, until time.Time) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO supervisors (owner, until) VALUES ($1, $2)
		ON CONFLICT (owner) DO UPDATE SET until = excluded.until`, owner, toMicros(until)); err != nil {
		return fmt.Errorf("renew supervision: %w", mapErr(err))
	}
	if until.IsZero() {
		if _, err := s.w.ExecContext(ctx, `UPDATE box_supervision SET until = 0 WHERE owner = $1`, owner); err != nil {
			return fmt.Errorf("renew supervision: %w", mapErr(err))
		}
	}
	return nil
}

func (s *sqlStore) ReleaseSupervision(ctx context.Context, workspaceID, owner string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM box_supervision WHERE workspace_id = $1 AND owner = $2`, workspaceID, owner); err != nil {
		return fmt.Errorf("release supervision of %s: %w", workspaceID, mapErr(err))
	}
	return nil
}

func (s *sqlStore) ListSupervision(ctx context.Context) (map[string]Supervision, error) {
	// A lease lives until the later of its own until and its owner's.
	rows, err := s.r.QueryContext(ctx, `SELECT b.workspace_id, b.owner, b.generation,
		CASE WHEN r.until IS NOT NULL AND r.until > b.until THEN r.until ELSE b.until END
		FROM box_supervision b LEFT JOIN supervisors r ON r.owner = b.owner`)
	if err != nil {
		return nil, fmt.Errorf("list supervision: %w", mapErr(err))
	}
	defer rows.Close()
	out := map[string]Supervision{}
	for rows.Next() {
		var x Supervision
		var until int64
		if err := rows.Scan(&x.WorkspaceID, &x.Owner, &x.Generation, &until); err != nil {
			return nil, fmt.Errorf("list supervision: %w", mapErr(err))
		}
		x.Until = fromMicros(until)
		out[x.WorkspaceID] = x
	}
	return out, mapErr(rows.Err())
}

func (s *sqlStore) ClearSupervision(ctx context.Context) error {
	for _, q := range []string{`DELETE FROM box_supervision`, `DELETE FROM supervisors`} {
		if _, err := s.w.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("clear supervision: %w", mapErr(err))
		}
	}
	return nil
}

// UnsupervisedBox is an active workspace whose box owner does not hold a
// live lease on: none, a lapsed one, or another replica's (Lease.Owner).
type UnsupervisedBox struct {
	Workspace Workspace
	Lease     Supervision // zero when there is none
}

// withExtra scans a row's leading columns into a caller's destinations
// and the trailing ones into extra.
type withExtra struct {
	sc    scanner
	extra []any
}

func (w withExtra) Scan(dest ...any) error { return w.sc.Scan(append(dest, w.extra...)...) }

// ListUnsupervised lists the active workspaces with a recorded box that
// owner does not hold a live lease on, with their lease: what a replica
// checks for boxes to take over, without reading those it supervises (on
// one replica, all of them).
func (s *sqlStore) ListUnsupervised(ctx context.Context, owner string, now time.Time) ([]UnsupervisedBox, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+prefixCols("w.", workspaceCols)+`,
		COALESCE(l.owner, ''), COALESCE(l.generation, 0),
		CASE WHEN r.until IS NOT NULL AND r.until > l.until THEN r.until ELSE COALESCE(l.until, 0) END
		FROM workspaces w LEFT JOIN box_supervision l ON l.workspace_id = w.id
		LEFT JOIN supervisors r ON r.owner = l.owner
		WHERE w.status IN ('provisioning', 'running', 'degraded') AND w.box <> ''
		  AND (l.workspace_id IS NULL OR l.owner <> $1 OR (l.until < $2 AND COALESCE(r.until, 0) < $2))
		ORDER BY w.id`, owner, toMicros(now))
	if err != nil {
		return nil, fmt.Errorf("list unsupervised boxes: %w", mapErr(err))
	}
	defer rows.Close()
	var out []UnsupervisedBox
	for rows.Next() {
		var b UnsupervisedBox
		var until int64
		w, err := scanWorkspace(withExtra{rows, []any{&b.Lease.Owner, &b.Lease.Generation, &until}})
		if err != nil {
			return nil, fmt.Errorf("list unsupervised boxes: %w", err)
		}
		b.Workspace = w
		if b.Lease.Owner != "" {
			b.Lease.WorkspaceID, b.Lease.Until = w.ID, fromMicros(until)
		}
		out = append(out, b)
	}
	return out, mapErr(rows.Err())
}

// ListStuckStarts lists the workspaces provisioning with no box recorded
// since before a time (not of the external runtime): starts that may never
// have happened.
func (s *sqlStore) ListStuckStarts(ctx context.Context, before time.Time) ([]Workspace, error) {
	return s.queryWorkspaces(ctx, `SELECT `+workspaceCols+` FROM workspaces
		WHERE status = 'provisioning' AND box = '' AND runtime <> 'external' AND updated_at < $1 ORDER BY id`, toMicros(before))
}

// prefixCols qualifies each of a column list's names with prefix.
func prefixCols(prefix, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = prefix + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}
