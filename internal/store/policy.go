package store

import (
	"context"
	"fmt"
	"time"
)

// StoredPolicy is an org's policy as stored: canonical JSON, validated by
// the service layer.
type StoredPolicy struct {
	OrgID     string
	Body      string
	UpdatedAt time.Time
	UpdatedBy string // token id
}

func (s *sqlStore) GetPolicy(ctx context.Context, orgID string) (StoredPolicy, error) {
	var p StoredPolicy
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT org_id, body, updated_at, updated_by FROM policies WHERE org_id = $1`, orgID).
		Scan(&p.OrgID, &p.Body, &at, &p.UpdatedBy)
	if err != nil {
		return StoredPolicy{}, mapErr(err)
	}
	p.UpdatedAt = fromMicros(at)
	return p, nil
}

func (s *sqlStore) PutPolicy(ctx context.Context, p StoredPolicy) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO policies (org_id, body, updated_at, updated_by) VALUES ($1, $2, $3, $4)
		ON CONFLICT (org_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		p.OrgID, p.Body, toMicros(p.UpdatedAt), p.UpdatedBy)
	if err != nil {
		return fmt.Errorf("put policy: %w", mapErr(err))
	}
	return nil
}
