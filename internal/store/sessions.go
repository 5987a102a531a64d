package store

import (
	"context"
	"fmt"
	"time"
)

// LoginLink is a one-time canvas sign-in code minted for a person. Only the
// SHA-256 of the code is stored.
type LoginLink struct {
	ID        string
	OrgID     string
	UserID    string
	CodeHash  []byte
	CreatedBy string // the token or session id that minted it; "" for orgplane itself
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero: not used yet
}

// Session is a person's canvas session, created by using a login link.
// Only the SHA-256 of its secret is stored.
type Session struct {
	ID          string
	OrgID       string
	UserID      string
	SecretHash  []byte
	LoginLinkID string
	CreatedAt   time.Time
	ExpiresAt   time.Time // absolute end, whatever the activity
	LastSeenAt  time.Time
	RevokedAt   time.Time // zero: live
}

const loginLinkCols = `id, org_id, user_id, code_hash, created_by, created_at, expires_at, used_at`

func scanLoginLink(sc scanner) (LoginLink, error) {
	var l LoginLink
	var created, expires, used int64
	if err := sc.Scan(&l.ID, &l.OrgID, &l.UserID, &l.CodeHash, &l.CreatedBy, &created, &expires, &used); err != nil {
		return LoginLink{}, mapErr(err)
	}
	l.CreatedAt, l.ExpiresAt, l.UsedAt = fromMicros(created), fromMicros(expires), fromMicros(used)
	return l, nil
}

func (s *sqlStore) InsertLoginLink(ctx context.Context, l LoginLink) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO login_links (`+loginLinkCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		l.ID, l.OrgID, l.UserID, l.CodeHash, l.CreatedBy, toMicros(l.CreatedAt), toMicros(l.ExpiresAt), toMicros(l.UsedAt))
	if err != nil {
		return fmt.Errorf("insert login link: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetLoginLink(ctx context.Context, id string) (LoginLink, error) {
	return scanLoginLink(s.r.QueryRowContext(ctx, `SELECT `+loginLinkCols+` FROM login_links WHERE id = $1`, id))
}

func (s *sqlStore) UseLoginLink(ctx context.Context, id string, at time.Time) (bool, error) {
	// Compare-and-set: of two sign-ins with one link, one wins.
	res, err := s.w.ExecContext(ctx, `UPDATE login_links SET used_at = $2 WHERE id = $1 AND used_at = 0 AND expires_at > $2`,
		id, toMicros(at))
	if err != nil {
		return false, fmt.Errorf("use login link %s: %w", id, mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("use login link %s: %w", id, mapErr(err))
	}
	return n == 1, nil
}

const sessionCols = `id, org_id, user_id, secret_hash, login_link_id, created_at, expires_at, last_seen_at, revoked_at`

func scanSession(sc scanner) (Session, error) {
	var x Session
	var created, expires, seen, revoked int64
	if err := sc.Scan(&x.ID, &x.OrgID, &x.UserID, &x.SecretHash, &x.LoginLinkID, &created, &expires, &seen, &revoked); err != nil {
		return Session{}, mapErr(err)
	}
	x.CreatedAt, x.ExpiresAt, x.LastSeenAt, x.RevokedAt = fromMicros(created), fromMicros(expires), fromMicros(seen), fromMicros(revoked)
	return x, nil
}

func (s *sqlStore) InsertSession(ctx context.Context, x Session) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		x.ID, x.OrgID, x.UserID, x.SecretHash, x.LoginLinkID, toMicros(x.CreatedAt), toMicros(x.ExpiresAt),
		toMicros(x.LastSeenAt), toMicros(x.RevokedAt))
	if err != nil {
		return fmt.Errorf("insert session: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetSession(ctx context.Context, id string) (Session, error) {
	return scanSession(s.r.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1`, id))
}

func (s *sqlStore) TouchSession(ctx context.Context, id string, at time.Time) error {
	// Only forward: a slow request must not move last_seen_at back.
	_, err := s.w.ExecContext(ctx, `UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2`, id, toMicros(at))
	return mapErr(err)
}

func (s *sqlStore) RevokeSession(ctx context.Context, orgID, id string, at time.Time) error {
	// Revoking twice keeps the first time.
	err := affected(s.w.ExecContext(ctx, `UPDATE sessions SET revoked_at = CASE WHEN revoked_at = 0 THEN $3 ELSE revoked_at END
		WHERE org_id = $1 AND id = $2`, orgID, id, toMicros(at)))
	if err != nil {
		return fmt.Errorf("revoke session %s: %w", id, err)
	}
	return nil
}

func (s *sqlStore) RevokeUserSessions(ctx context.Context, orgID, userID string, at time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE sessions SET revoked_at = $3 WHERE org_id = $1 AND user_id = $2 AND revoked_at = 0`,
		orgID, userID, toMicros(at))
	if err != nil {
		return 0, fmt.Errorf("revoke the sessions of user %s: %w", userID, mapErr(err))
	}
	n, err := res.RowsAffected()
	return int(n), mapErr(err)
}
