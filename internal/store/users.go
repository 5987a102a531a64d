package store

import (
	"context"
	"fmt"
	"time"
)

const userCols = `id, org_id, name, role, created_at, removed_at`

func scanUser(sc scanner) (User, error) {
	var u User
	var created, removed int64
	if err := sc.Scan(&u.ID, &u.OrgID, &u.Name, &u.Role, &created, &removed); err != nil {
		return User{}, mapErr(err)
	}
	u.CreatedAt, u.RemovedAt = fromMicros(created), fromMicros(removed)
	return u, nil
}

func (s *sqlStore) InsertUser(ctx context.Context, u User) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		u.ID, u.OrgID, u.Name, u.Role, toMicros(u.CreatedAt), toMicros(u.RemovedAt))
	if err != nil {
		return fmt.Errorf("insert user: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetUser(ctx context.Context, orgID, id string) (User, error) {
	return scanUser(s.r.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE org_id = $1 AND id = $2`, orgID, id))
}

func (s *sqlStore) GetUserByName(ctx context.Context, orgID, name string) (User, error) {
	return scanUser(s.r.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE org_id = $1 AND name = $2 AND removed_at = 0`, orgID, name))
}

func (s *sqlStore) ListUsers(ctx context.Context, orgID string) ([]User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+userCols+` FROM users WHERE org_id = $1 AND removed_at = 0 ORDER BY name, id`, orgID)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", mapErr(err))
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	return out, mapErr(rows.Err())
}

func (s *sqlStore) RemoveUser(ctx context.Context, orgID, id string, at time.Time) error {
	err := affected(s.w.ExecContext(ctx, `UPDATE users SET removed_at = $3 WHERE org_id = $1 AND id = $2 AND removed_at = 0`,
		orgID, id, toMicros(at)))
	if err != nil {
		return fmt.Errorf("remove user %s: %w", id, err)
	}
	_, err = s.w.ExecContext(ctx, `UPDATE tokens SET revoked_at = $3 WHERE org_id = $1 AND user_id = $2 AND revoked_at = 0`,
		orgID, id, toMicros(at))
	if err != nil {
		return fmt.Errorf("revoke the tokens of user %s: %w", id, mapErr(err))
	}
	return nil
}
