package store

import (
	"context"
	"fmt"
	"time"
)

func (s *sqlStore) ClaimSupervision(ctx context.Context, workspaceID, owner string, gen int64, now, until time.Time, force bool) (bool, error) {
	res, err := s.w.ExecContext(ctx, `INSERT INTO box_supervision (workspace_id, owner, generation, until) VALUES ($1, $2, $3, $4)
		ON CONFLICT (workspace_id) DO UPDATE SET owner = excluded.owner, generation = excluded.generation, until = excluded.until
		WHERE $6 = 1 OR box_supervision.owner = excluded.owner OR box_supervision.until < $5`,
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

func (s *sqlStore) RenewSupervision(ctx context.Context, owner string, until time.Time) error {
	if _, err := s.w.ExecContext(ctx, `UPDATE box_supervision SET until = $2 WHERE owner = $1`, owner, toMicros(until)); err != nil {
		return fmt.Errorf("renew supervision: %w", mapErr(err))
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
	rows, err := s.r.QueryContext(ctx, `SELECT workspace_id, owner, generation, until FROM box_supervision`)
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
	if _, err := s.w.ExecContext(ctx, `DELETE FROM box_supervision`); err != nil {
		return fmt.Errorf("clear supervision: %w", mapErr(err))
	}
	return nil
}
