package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// ---- orgs

func (s *sqlStore) CreateOrg(ctx context.Context, o Org) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)`,
		o.ID, o.Name, toMicros(o.CreatedAt))
	if err != nil {
		return fmt.Errorf("create org: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) scanOrg(row *sql.Row) (Org, error) {
	var o Org
	var created int64
	if err := row.Scan(&o.ID, &o.Name, &created); err != nil {
		return Org{}, mapErr(err)
	}
	o.CreatedAt = fromMicros(created)
	return o, nil
}

func (s *sqlStore) GetOrg(ctx context.Context, id string) (Org, error) {
	return s.scanOrg(s.r.QueryRowContext(ctx, `SELECT id, name, created_at FROM orgs WHERE id = $1`, id))
}

func (s *sqlStore) GetOrgByName(ctx context.Context, name string) (Org, error) {
	return s.scanOrg(s.r.QueryRowContext(ctx, `SELECT id, name, created_at FROM orgs WHERE name = $1`, name))
}

func (s *sqlStore) ListOrgs(ctx context.Context) ([]Org, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, name, created_at FROM orgs ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list orgs: %w", mapErr(err))
	}
	defer rows.Close()
	var out []Org
	for rows.Next() {
		var o Org
		var created int64
		if err := rows.Scan(&o.ID, &o.Name, &created); err != nil {
			return nil, mapErr(err)
		}
		o.CreatedAt = fromMicros(created)
		out = append(out, o)
	}
	return out, mapErr(rows.Err())
}

// ---- workspaces

const workspaceCols = `id, org_id, parent_id, name, kind, runtime, spec, status, restart_policy, protected,
	generation, box, box_fingerprint, healthy_at, heartbeat_at, failures, last_error, created_at, updated_at,
	loop_broken, box_token_id`

type scanner interface{ Scan(dest ...any) error }

func scanWorkspace(sc scanner) (Workspace, error) {
	var w Workspace
	var parent sql.NullString
	var protected, loopBroken int
	var healthy, heartbeat, created, updated int64
	err := sc.Scan(&w.ID, &w.OrgID, &parent, &w.Name, &w.Kind, &w.Runtime, &w.Spec, &w.Status,
		&w.RestartPolicy, &protected, &w.Generation, &w.Box, &w.BoxFingerprint, &healthy, &heartbeat,
		&w.Failures, &w.LastError, &created, &updated, &loopBroken, &w.BoxTokenID)
	if err != nil {
		return Workspace{}, mapErr(err)
	}
	w.ParentID = parent.String
	w.Protected = protected != 0
	w.LoopBroken = loopBroken != 0
	w.HealthyAt = fromMicros(healthy)
	w.HeartbeatAt = fromMicros(heartbeat)
	w.CreatedAt = fromMicros(created)
	w.UpdatedAt = fromMicros(updated)
	return w, nil
}

func (s *sqlStore) InsertWorkspace(ctx context.Context, w Workspace) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO workspaces (`+workspaceCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`,
		w.ID, w.OrgID, nullStr(w.ParentID), w.Name, w.Kind, w.Runtime, w.Spec, w.Status, w.RestartPolicy,
		b2i(w.Protected), w.Generation, w.Box, w.BoxFingerprint, toMicros(w.HealthyAt), toMicros(w.HeartbeatAt),
		w.Failures, w.LastError, toMicros(w.CreatedAt), toMicros(w.UpdatedAt), b2i(w.LoopBroken), w.BoxTokenID)
	if err != nil {
		return fmt.Errorf("insert workspace: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetWorkspace(ctx context.Context, orgID, id string) (Workspace, error) {
	return scanWorkspace(s.r.QueryRowContext(ctx,
		`SELECT `+workspaceCols+` FROM workspaces WHERE org_id = $1 AND id = $2`, orgID, id))
}

func (s *sqlStore) GetWorkspaceForUpdate(ctx context.Context, orgID, id string) (Workspace, error) {
	return scanWorkspace(s.w.QueryRowContext(ctx,
		`SELECT `+workspaceCols+` FROM workspaces WHERE org_id = $1 AND id = $2`+s.forUpdate(), orgID, id))
}

func (s *sqlStore) GetPlatformWorkspace(ctx context.Context, orgID string) (Workspace, error) {
	return scanWorkspace(s.r.QueryRowContext(ctx,
		`SELECT `+workspaceCols+` FROM workspaces WHERE org_id = $1 AND kind = 'platform'`, orgID))
}

func (s *sqlStore) WorkspaceStates(ctx context.Context, ids []string) ([]WorkspaceState, error) {
	out := []WorkspaceState{}
	if len(ids) == 0 {
		return out, nil
	}
	q, arg := `SELECT id, generation, status, heartbeat_at FROM workspaces WHERE id IN (SELECT value FROM json_each($1))`, any(jsonArray(ids))
	if s.dialect == Postgres {
		q, arg = `SELECT id, generation, status, heartbeat_at FROM workspaces WHERE id = ANY($1)`, ids
	}
	rows, err := s.r.QueryContext(ctx, q, arg)
	if err != nil {
		return nil, fmt.Errorf("read workspace states: %w", mapErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		var w WorkspaceState
		var heartbeat int64
		if err := rows.Scan(&w.ID, &w.Generation, &w.Status, &heartbeat); err != nil {
			return nil, fmt.Errorf("read workspace states: %w", mapErr(err))
		}
		w.HeartbeatAt = fromMicros(heartbeat)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read workspace states: %w", mapErr(err))
	}
	return out, nil
}

func (s *sqlStore) queryWorkspaces(ctx context.Context, q string, args ...any) ([]Workspace, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", mapErr(err))
	}
	defer rows.Close()
	out := []Workspace{}
	for rows.Next() {
		w, err := scanWorkspace(rows)
		if err != nil {
			return nil, fmt.Errorf("list workspaces: %w", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list workspaces: %w", mapErr(err))
	}
	return out, nil
}

func (s *sqlStore) ListWorkspaces(ctx context.Context, orgID string, includeRemoved bool, p ListParams) ([]Workspace, error) {
	// Static texts rather than a "($3 = 1 OR status <> 'removed')" switch, so
	// that each engine plans one range of the (org_id, id) index: a page is
	// "id > after ORDER BY id LIMIT n", whatever the org's size.
	q := `SELECT ` + workspaceCols + ` FROM workspaces WHERE org_id = $1 AND id > $2`
	if !includeRemoved {
		q += ` AND status <> 'removed'`
	}
	q += ` ORDER BY id`
	if p.Limit > 0 {
		return s.queryWorkspaces(ctx, q+` LIMIT $3`, orgID, p.After, p.Limit)
	}
	return s.queryWorkspaces(ctx, q, orgID, p.After)
}

func (s *sqlStore) ListChildren(ctx context.Context, orgID, parentID string) ([]Workspace, error) {
	return s.queryWorkspaces(ctx, `SELECT `+workspaceCols+` FROM workspaces
		WHERE org_id = $1 AND parent_id = $2 AND status <> 'removed' ORDER BY id`, orgID, parentID)
}

func (s *sqlStore) MaxSpecLength(ctx context.Context, orgID string) (int, error) {
	// Bytes, not characters: length() counts characters on both engines.
	octets := "length(CAST(spec AS BLOB))"
	if s.dialect == Postgres {
		octets = "octet_length(spec)"
	}
	var n sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MAX(`+octets+`) FROM workspaces WHERE org_id = $1 AND status <> 'removed'`,
		orgID).Scan(&n); err != nil {
		return 0, fmt.Errorf("max spec length: %w", mapErr(err))
	}
	return int(n.Int64), nil
}

// MaxOwnSecretBytes is, over the org's workspaces, the largest sum of
// their own secrets' sizes, each counted as perEntry bytes plus its key's
// and its value's (the ciphertext's length less overhead): computed by
// the database, so that a global write's bound reads no secret row.
func (s *sqlStore) MaxOwnSecretBytes(ctx context.Context, orgID string, perEntry, overhead int) (int, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(t), 0) FROM (
		SELECT SUM(length(key) + $2 + CASE WHEN length(ciphertext) > $3 THEN length(ciphertext) - $3 ELSE 0 END) AS t
		FROM secrets WHERE org_id = $1 AND workspace_id <> '' GROUP BY workspace_id) own`, orgID, perEntry, overhead).Scan(&n); err != nil {
		return 0, fmt.Errorf("max own secret bytes: %w", mapErr(err))
	}
	return int(n), nil
}

func (s *sqlStore) ListChildrenForUpdate(ctx context.Context, orgID, parentID string) ([]Workspace, error) {
	return s.queryWorkspaces(ctx, `SELECT `+workspaceCols+` FROM workspaces
		WHERE org_id = $1 AND parent_id = $2 AND status <> 'removed' ORDER BY id`+s.forUpdate(), orgID, parentID)
}

func (s *sqlStore) UpdateWorkspace(ctx context.Context, w Workspace) error {
	err := affected(s.w.ExecContext(ctx, `UPDATE workspaces SET parent_id = $3, name = $4, runtime = $5, spec = $6,
		status = $7, restart_policy = $8, protected = $9, generation = $10, box = $11, box_fingerprint = $12,
		healthy_at = $13, heartbeat_at = $14, failures = $15, last_error = $16, updated_at = $17,
		loop_broken = $18, box_token_id = $19
		WHERE org_id = $1 AND id = $2`,
		w.OrgID, w.ID, nullStr(w.ParentID), w.Name, w.Runtime, w.Spec, w.Status, w.RestartPolicy,
		b2i(w.Protected), w.Generation, w.Box, w.BoxFingerprint, toMicros(w.HealthyAt),
		toMicros(w.HeartbeatAt), w.Failures, w.LastError, toMicros(w.UpdatedAt), b2i(w.LoopBroken), w.BoxTokenID))
	if err != nil {
		return fmt.Errorf("update workspace %s: %w", w.ID, err)
	}
	return nil
}

// ---- tokens

const tokenCols = `id, org_id, kind, name, workspace_id, acting_workspace_id, secret_hash, box_generation,
	created_at, expires_at, revoked_at, last_used_at, user_id`

func scanToken(sc scanner) (Token, error) {
	var t Token
	var ws, acting, user sql.NullString
	var created, expires, revoked, used int64
	if err := sc.Scan(&t.ID, &t.OrgID, &t.Kind, &t.Name, &ws, &acting, &t.SecretHash, &t.BoxGeneration,
		&created, &expires, &revoked, &used, &user); err != nil {
		return Token{}, mapErr(err)
	}
	t.WorkspaceID, t.ActingWorkspaceID, t.UserID = ws.String, acting.String, user.String
	t.CreatedAt, t.ExpiresAt, t.RevokedAt, t.LastUsedAt = fromMicros(created), fromMicros(expires), fromMicros(revoked), fromMicros(used)
	return t, nil
}

func (s *sqlStore) InsertToken(ctx context.Context, t Token) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO tokens (`+tokenCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		t.ID, t.OrgID, t.Kind, t.Name, nullStr(t.WorkspaceID), nullStr(t.ActingWorkspaceID), t.SecretHash,
		t.BoxGeneration, toMicros(t.CreatedAt), toMicros(t.ExpiresAt), toMicros(t.RevokedAt), toMicros(t.LastUsedAt),
		nullStr(t.UserID))
	if err != nil {
		return fmt.Errorf("insert token: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetToken(ctx context.Context, id string) (Token, error) {
	return scanToken(s.r.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = $1`, id))
}

func (s *sqlStore) ListTokens(ctx context.Context, orgID string) ([]Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE org_id = $1 ORDER BY created_at, id`, orgID)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", mapErr(err))
	}
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	return out, mapErr(rows.Err())
}

func (s *sqlStore) RevokeToken(ctx context.Context, orgID, id string, at time.Time) error {
	// Revoking twice keeps the first time.
	err := affected(s.w.ExecContext(ctx, `UPDATE tokens SET revoked_at = CASE WHEN revoked_at = 0 THEN $3 ELSE revoked_at END
		WHERE org_id = $1 AND id = $2`, orgID, id, toMicros(at)))
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

func (s *sqlStore) RevokeBoxTokens(ctx context.Context, orgID, workspaceID string, before int64, at time.Time) error {
	// workspace_id first: the statement must find the workspace's tokens
	// through tokens_workspace. An OR with acting_workspace_id (which no
	// index leads to) made it scan every token of the org, one more per
	// restart: each box's first health cost as much as the org's history.
	_, err := s.w.ExecContext(ctx, `UPDATE tokens SET revoked_at = $4 WHERE workspace_id = $2 AND org_id = $1
		AND box_generation > 0 AND box_generation < $3 AND revoked_at = 0`, orgID, workspaceID, before, toMicros(at))
	if err != nil {
		return fmt.Errorf("revoke box tokens: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) RevokeManagementTokens(ctx context.Context, orgID, workspaceID string, before int64, at time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE tokens SET revoked_at = $4 WHERE org_id = $1
		AND kind = 'admin' AND acting_workspace_id = $2
		AND box_generation > 0 AND box_generation < $3 AND revoked_at = 0`, orgID, workspaceID, before, toMicros(at))
	if err != nil {
		return fmt.Errorf("revoke management tokens: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) TouchToken(ctx context.Context, id string, at time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE tokens SET last_used_at = $2 WHERE id = $1`, id, toMicros(at))
	return mapErr(err)
}

// ---- audit

func (s *sqlStore) AppendAudit(ctx context.Context, e AuditEntry) (int64, error) {
	if e.Detail == "" {
		e.Detail = "{}"
	}
	var id int64
	err := s.w.QueryRowContext(ctx, `INSERT INTO audit (org_id, at, token_id, principal_kind, acting_workspace_id,
		action, target_kind, target_id, workspace_id, outcome, request_id, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`,
		e.OrgID, toMicros(e.At), e.TokenID, e.PrincipalKind, e.ActingWorkspaceID, e.Action, e.TargetKind,
		e.TargetID, e.WorkspaceID, e.Outcome, e.RequestID, e.Detail).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("append audit: %w", mapErr(err))
	}
	return id, nil
}

func (s *sqlStore) ListAudit(ctx context.Context, orgID string, f AuditFilter) ([]AuditEntry, error) {
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = 100
	case limit > 1001:
		// 1000 a page, and one more to tell whether another page follows.
		limit = 1001
	}
	before := f.Before
	if before <= 0 {
		before = 1<<63 - 1
	}
	// A workspace's entries are a range of the (org_id, workspace_id, id)
	// index; a "($3 = '' OR workspace_id = $3)" switch would scan the org's
	// whole log for them on SQLite.
	ws := `($3 = '' OR workspace_id = $3)`
	if f.WorkspaceID != "" {
		ws = `workspace_id = $3`
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, org_id, at, token_id, principal_kind, acting_workspace_id, action,
		target_kind, target_id, workspace_id, outcome, request_id, detail FROM audit
		WHERE org_id = $1 AND id < $2 AND `+ws+`
		AND ($5 = '' OR action = $5) AND ($6 = '' OR token_id = $6) AND ($7 = '' OR outcome = $7)
		ORDER BY id DESC LIMIT $4`,
		orgID, before, f.WorkspaceID, limit, f.Action, f.TokenID, f.Outcome)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", mapErr(err))
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &e.OrgID, &at, &e.TokenID, &e.PrincipalKind, &e.ActingWorkspaceID, &e.Action,
			&e.TargetKind, &e.TargetID, &e.WorkspaceID, &e.Outcome, &e.RequestID, &e.Detail); err != nil {
			return nil, fmt.Errorf("list audit: %w", mapErr(err))
		}
		e.At = fromMicros(at)
		out = append(out, e)
	}
	return out, mapErr(rows.Err())
}

// ---- meta and data keys

func (s *sqlStore) GetMeta(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	if err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = $1`, name).Scan(&v); err != nil {
		return nil, mapErr(err)
	}
	return v, nil
}

func (s *sqlStore) PutMeta(ctx context.Context, name string, value []byte) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	return mapErr(err)
}

func (s *sqlStore) InsertDataKey(ctx context.Context, k DataKey) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO data_keys (id, wrapped, is_current, created_at, retired_at)
		VALUES ($1, $2, 0, $3, $4)`, k.ID, k.Wrapped, toMicros(k.CreatedAt), toMicros(k.RetiredAt))
	if err != nil {
		return fmt.Errorf("insert data key: %w", mapErr(err))
	}
	if k.Current {
		return s.SetCurrentDataKey(ctx, k.ID)
	}
	return nil
}

func (s *sqlStore) ListDataKeys(ctx context.Context) ([]DataKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, wrapped, is_current, created_at, retired_at FROM data_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list data keys: %w", mapErr(err))
	}
	defer rows.Close()
	var out []DataKey
	for rows.Next() {
		var k DataKey
		var cur int
		var created, retired int64
		if err := rows.Scan(&k.ID, &k.Wrapped, &cur, &created, &retired); err != nil {
			return nil, mapErr(err)
		}
		k.Current, k.CreatedAt, k.RetiredAt = cur != 0, fromMicros(created), fromMicros(retired)
		out = append(out, k)
	}
	return out, mapErr(rows.Err())
}

func (s *sqlStore) SetCurrentDataKey(ctx context.Context, id string) error {
	return s.InTx(ctx, func(tx Store) error {
		t := tx.(*sqlStore)
		if _, err := t.w.ExecContext(ctx, `UPDATE data_keys SET is_current = 0 WHERE is_current = 1 AND id <> $1`, id); err != nil {
			return mapErr(err)
		}
		return affected(t.w.ExecContext(ctx, `UPDATE data_keys SET is_current = 1 WHERE id = $1 AND retired_at = 0`, id))
	})
}

func (s *sqlStore) RetireDataKey(ctx context.Context, id string, at time.Time) error {
	return affected(s.w.ExecContext(ctx, `UPDATE data_keys SET retired_at = $2 WHERE id = $1 AND is_current = 0 AND retired_at = 0`, id, toMicros(at)))
}

// ---- secrets

const secretCols = `org_id, workspace_id, key, key_id, ciphertext, value_mac, version, created_at, updated_at`

func scanSecret(sc scanner) (Secret, error) {
	var x Secret
	var created, updated int64
	if err := sc.Scan(&x.OrgID, &x.WorkspaceID, &x.Key, &x.KeyID, &x.Ciphertext, &x.ValueMAC, &x.Version, &created, &updated); err != nil {
		return Secret{}, mapErr(err)
	}
	x.CreatedAt, x.UpdatedAt = fromMicros(created), fromMicros(updated)
	return x, nil
}

func (s *sqlStore) querySecrets(ctx context.Context, q string, args ...any) ([]Secret, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", mapErr(err))
	}
	defer rows.Close()
	out := []Secret{}
	for rows.Next() {
		x, err := scanSecret(rows)
		if err != nil {
			return nil, fmt.Errorf("list secrets: %w", err)
		}
		out = append(out, x)
	}
	return out, mapErr(rows.Err())
}

func (s *sqlStore) GetSecret(ctx context.Context, orgID, workspaceID, key string) (Secret, error) {
	return scanSecret(s.r.QueryRowContext(ctx, `SELECT `+secretCols+` FROM secrets
		WHERE org_id = $1 AND workspace_id = $2 AND key = $3`, orgID, workspaceID, key))
}

func (s *sqlStore) ListSecrets(ctx context.Context, orgID, workspaceID string) ([]Secret, error) {
	return s.querySecrets(ctx, `SELECT `+secretCols+` FROM secrets WHERE org_id = $1 AND workspace_id = $2 ORDER BY key`,
		orgID, workspaceID)
}

func (s *sqlStore) PutSecret(ctx context.Context, x Secret) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO secrets (`+secretCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (org_id, workspace_id, key) DO UPDATE SET key_id = excluded.key_id, ciphertext = excluded.ciphertext,
		value_mac = excluded.value_mac, version = excluded.version, updated_at = excluded.updated_at`,
		x.OrgID, x.WorkspaceID, x.Key, x.KeyID, x.Ciphertext, x.ValueMAC, x.Version, toMicros(x.CreatedAt), toMicros(x.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put secret: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) DeleteSecret(ctx context.Context, orgID, workspaceID, key string) error {
	err := affected(s.w.ExecContext(ctx, `DELETE FROM secrets WHERE org_id = $1 AND workspace_id = $2 AND key = $3`,
		orgID, workspaceID, key))
	if err != nil {
		return fmt.Errorf("delete secret: %w", err)
	}
	return nil
}

func (s *sqlStore) SecretsByKeyID(ctx context.Context, keyID string, after SecretCursor, limit int) ([]Secret, error) {
	// Row-value comparison runs on both engines and uses the primary key.
	return s.querySecrets(ctx, `SELECT `+secretCols+` FROM secrets
		WHERE key_id = $1 AND (org_id, workspace_id, key) > ($2, $3, $4)
		ORDER BY org_id, workspace_id, key LIMIT $5`, keyID, after.OrgID, after.WorkspaceID, after.Key, limit)
}

// ReencryptSecret rewrites the row only if it is still the version that was
// read and still under fromKeyID: a value written meanwhile is never
// replaced by the re-encryption of an older one.
func (s *sqlStore) ReencryptSecret(ctx context.Context, x Secret, fromKeyID string) (bool, error) {
	err := affected(s.w.ExecContext(ctx, `UPDATE secrets SET key_id = $4, ciphertext = $5
		WHERE org_id = $1 AND workspace_id = $2 AND key = $3 AND key_id = $6 AND version = $7`,
		x.OrgID, x.WorkspaceID, x.Key, x.KeyID, x.Ciphertext, fromKeyID, x.Version))
	if err == ErrNotFound {
		return false, nil // changed or deleted meanwhile: nothing to do
	}
	if err != nil {
		return false, fmt.Errorf("re-encrypt secret: %w", err)
	}
	return true, nil
}

func (s *sqlStore) ReencryptSecrets(ctx context.Context, batch []Secret, fromKeyID string) (int, error) {
	if s.dialect != Postgres {
		n := 0
		for _, x := range batch {
			ok, err := s.ReencryptSecret(ctx, x, fromKeyID)
			if err != nil {
				return n, err
			}
			if ok {
				n++
			}
		}
		return n, nil
	}
	// One statement per batch: a round trip per row would dominate.
	orgs, wss, keys, kids := make([]string, len(batch)), make([]string, len(batch)), make([]string, len(batch)), make([]string, len(batch))
	cts, versions := make([][]byte, len(batch)), make([]int64, len(batch))
	for i, x := range batch {
		orgs[i], wss[i], keys[i], kids[i], cts[i], versions[i] = x.OrgID, x.WorkspaceID, x.Key, x.KeyID, x.Ciphertext, x.Version
	}
	res, err := s.w.ExecContext(ctx, `UPDATE secrets s SET key_id = v.key_id, ciphertext = v.ciphertext
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $7::bigint[])
			AS v(org_id, workspace_id, key, key_id, ciphertext, version)
		WHERE s.org_id = v.org_id AND s.workspace_id = v.workspace_id AND s.key = v.key
			AND s.key_id = $6 AND s.version = v.version`,
		orgs, wss, keys, kids, cts, fromKeyID, versions)
	if err != nil {
		return 0, fmt.Errorf("re-encrypt secrets: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	return int(n), mapErr(err)
}

func (s *sqlStore) CountSecretsByKeyID(ctx context.Context, keyID string) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM secrets WHERE key_id = $1`, keyID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count secrets: %w", mapErr(err))
	}
	return n, nil
}

const secretMACCols = `org_id, workspace_id, key, key_id, value_mac, length(ciphertext), version, created_at, updated_at`

func (s *sqlStore) ListSecretMACs(ctx context.Context, orgID string) ([]Secret, error) {
	return s.querySecretMACs(ctx, `SELECT `+secretMACCols+` FROM secrets WHERE org_id = $1 ORDER BY workspace_id, key`, orgID)
}

func (s *sqlStore) ListSecretMACsOf(ctx context.Context, orgID, after, through string) ([]Secret, error) {
	// Two ranges of the primary key (org_id, workspace_id, key).
	return s.querySecretMACs(ctx, `SELECT `+secretMACCols+` FROM secrets WHERE org_id = $1 AND workspace_id = ''
		UNION ALL
		SELECT `+secretMACCols+` FROM secrets WHERE org_id = $1 AND workspace_id > $2 AND workspace_id <= $3
		ORDER BY 2, 3`, orgID, after, through)
}

func (s *sqlStore) querySecretMACs(ctx context.Context, q string, args ...any) ([]Secret, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list secret macs: %w", mapErr(err))
	}
	defer rows.Close()
	out := []Secret{}
	for rows.Next() {
		var x Secret
		var created, updated int64
		if err := rows.Scan(&x.OrgID, &x.WorkspaceID, &x.Key, &x.KeyID, &x.ValueMAC, &x.CiphertextLen, &x.Version, &created, &updated); err != nil {
			return nil, fmt.Errorf("list secret macs: %w", mapErr(err))
		}
		x.CreatedAt, x.UpdatedAt = fromMicros(created), fromMicros(updated)
		out = append(out, x)
	}
	return out, mapErr(rows.Err())
}
