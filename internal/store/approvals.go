package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Requester is who asked for an approval or a request, as the credential
// said at the time: the principal's kind, its token (or session) id, the
// person behind it, the workspace it acted from, and how it came.
type Requester struct {
	Kind        string
	TokenID     string
	UserID      string
	WorkspaceID string
	Via         string
}

// Approval is an approval as stored. The service layer owns its rules
// (internal/approvals) and its JSON shapes.
type Approval struct {
	ID         string
	OrgID      string
	State      string
	Title      string
	Detail     string
	ActionType string // "" for a free-form approval
	Params     string // canonical JSON, never a secret value; "" once wiped
	ParamsHash string
	// ValueKeyID and ValueCT: a secret value of the action, sealed with the
	// key ring and bound to the approval; wiped when it ends.
	ValueKeyID    string
	ValueCT       []byte
	Preconditions string // JSON
	Plan          string // JSON: the dry-run plan at request time
	Quorum        int
	Requester     Requester
	Result        string // JSON: what the execution did
	ErrorCode     string
	ErrorMessage  string
	// ResultKeyID and ResultCT: a credential the execution made for the
	// requester (a minted token's secret), sealed; wiped once delivered.
	ResultKeyID string
	ResultCT    []byte
	ExpiresAt   time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
	EndedAt     time.Time
}

// ApprovalVote is one person's decision on an approval.
type ApprovalVote struct {
	ApprovalID string
	UserID     string
	TokenID    string // the user token or session it was made with
	Via        string
	Verdict    string // "approve" or "deny"
	Note       string
	At         time.Time
}

// Request is a request as stored.
type Request struct {
	ID            string
	OrgID         string
	State         string
	Title         string
	Detail        string
	Ask           string // "text" or "secret"
	SecretKey     string
	WorkspaceID   string // the workspace a secret answer is written to
	Requester     Requester
	AnswerText    string
	SecretVersion int64 // the version a secret answer wrote
	ResponderUser string
	ResponderTok  string
	ResponderVia  string
	Note          string
	ExpiresAt     time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
	EndedAt       time.Time
}

// ListFilter selects approvals or requests of an org: by state, by the
// requester's workspace, older than an id (keyset paging, newest first).
type ListFilter struct {
	State       string
	WorkspaceID string // requester's workspace; "" for all
	Before      string // an id: list those created before it
	Limit       int
}

const approvalCols = `id, org_id, state, title, detail, action_type, params, params_hash, value_key_id, value_ct,
	preconditions, plan, quorum, requester_kind, requester_token_id, requester_user_id, requester_workspace_id,
	requester_via, result, error_code, error_message, result_key_id, result_ct, expires_at, created_at, updated_at, ended_at`

func scanApproval(sc scanner) (Approval, error) {
	var a Approval
	var exp, created, updated, ended int64
	err := sc.Scan(&a.ID, &a.OrgID, &a.State, &a.Title, &a.Detail, &a.ActionType, &a.Params, &a.ParamsHash,
		&a.ValueKeyID, &a.ValueCT, &a.Preconditions, &a.Plan, &a.Quorum, &a.Requester.Kind, &a.Requester.TokenID,
		&a.Requester.UserID, &a.Requester.WorkspaceID, &a.Requester.Via, &a.Result, &a.ErrorCode, &a.ErrorMessage,
		&a.ResultKeyID, &a.ResultCT, &exp, &created, &updated, &ended)
	if err != nil {
		return Approval{}, mapErr(err)
	}
	a.ExpiresAt, a.CreatedAt, a.UpdatedAt, a.EndedAt = fromMicros(exp), fromMicros(created), fromMicros(updated), fromMicros(ended)
	return a, nil
}

func (s *sqlStore) InsertApproval(ctx context.Context, a Approval) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO approvals (`+approvalCols+`) VALUES
		($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)`,
		a.ID, a.OrgID, a.State, a.Title, a.Detail, a.ActionType, a.Params, a.ParamsHash, a.ValueKeyID, a.ValueCT,
		a.Preconditions, a.Plan, a.Quorum, a.Requester.Kind, a.Requester.TokenID, a.Requester.UserID,
		a.Requester.WorkspaceID, a.Requester.Via, a.Result, a.ErrorCode, a.ErrorMessage, a.ResultKeyID, a.ResultCT,
		toMicros(a.ExpiresAt), toMicros(a.CreatedAt), toMicros(a.UpdatedAt), toMicros(a.EndedAt))
	if err != nil {
		return fmt.Errorf("insert approval: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetApproval(ctx context.Context, orgID, id string) (Approval, error) {
	return scanApproval(s.r.QueryRowContext(ctx, `SELECT `+approvalCols+` FROM approvals WHERE org_id = $1 AND id = $2`, orgID, id))
}

func (s *sqlStore) GetApprovalForUpdate(ctx context.Context, orgID, id string) (Approval, error) {
	return scanApproval(s.w.QueryRowContext(ctx, `SELECT `+approvalCols+` FROM approvals WHERE org_id = $1 AND id = $2`+s.forUpdate(), orgID, id))
}

func (s *sqlStore) UpdateApproval(ctx context.Context, a Approval, from string) error {
	err := affected(s.w.ExecContext(ctx, `UPDATE approvals SET state = $3, params = $4, value_key_id = $5, value_ct = $6,
		plan = $7, result = $8, error_code = $9, error_message = $10, result_key_id = $11, result_ct = $12,
		updated_at = $13, ended_at = $14 WHERE id = $1 AND state = $2`,
		a.ID, from, a.State, a.Params, a.ValueKeyID, a.ValueCT, a.Plan, a.Result, a.ErrorCode, a.ErrorMessage,
		a.ResultKeyID, a.ResultCT, toMicros(a.UpdatedAt), toMicros(a.EndedAt)))
	if err != nil {
		return fmt.Errorf("update approval %s from %s: %w", a.ID, from, err)
	}
	return nil
}

// listWhere builds the WHERE clause of a list of approvals or requests.
func (s *sqlStore) listWhere(ctx context.Context, table, orgID string, f ListFilter) (string, []any, error) {
	where := []string{"org_id = $1"}
	args := []any{orgID}
	add := func(cond string, v ...any) {
		c := cond
		for _, x := range v {
			args = append(args, x)
			c = strings.Replace(c, "?", fmt.Sprintf("$%d", len(args)), 1)
		}
		where = append(where, c)
	}
	if f.State != "" {
		add("state = ?", f.State)
	}
	if f.WorkspaceID != "" {
		add("requester_workspace_id = ?", f.WorkspaceID)
	}
	if f.Before != "" {
		var at int64
		err := s.r.QueryRowContext(ctx, `SELECT created_at FROM `+table+` WHERE org_id = $1 AND id = $2`, orgID, f.Before).Scan(&at)
		if err != nil {
			return "", nil, mapErr(err)
		}
		add("(created_at < ? OR created_at = ? AND id < ?)", at, at, f.Before)
	}
	return strings.Join(where, " AND "), args, nil
}

func (s *sqlStore) ListApprovals(ctx context.Context, orgID string, f ListFilter) ([]Approval, error) {
	where, args, err := s.listWhere(ctx, "approvals", orgID, f)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+approvalCols+` FROM approvals WHERE `+where+
		fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT %d`, max(f.Limit, 1)), args...)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", mapErr(err))
	}
	defer rows.Close()
	out := []Approval{}
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, fmt.Errorf("list approvals: %w", err)
		}
		out = append(out, a)
	}
	return out, mapErr(rows.Err())
}

func (s *sqlStore) ListDueApprovals(ctx context.Context, now time.Time, limit int) ([]Approval, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+approvalCols+` FROM approvals
		WHERE state = 'pending' AND expires_at <= $1 OR state = 'approved' AND action_type <> ''
		ORDER BY expires_at LIMIT $2`, toMicros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("list due approvals: %w", mapErr(err))
	}
	defer rows.Close()
	var out []Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, fmt.Errorf("list due approvals: %w", err)
		}
		out = append(out, a)
	}
	return out, mapErr(rows.Err())
}

func (s *sqlStore) InsertVote(ctx context.Context, v ApprovalVote) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO approval_votes (approval_id, user_id, token_id, via, verdict, note, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, v.ApprovalID, v.UserID, v.TokenID, v.Via, v.Verdict, v.Note, toMicros(v.At))
	if err != nil {
		return fmt.Errorf("insert vote: %w", mapErr(err))
	}
	return nil
}

// ListVotes returns the votes on each of the approvals, oldest first.
func (s *sqlStore) ListVotes(ctx context.Context, approvalIDs []string) (map[string][]ApprovalVote, error) {
	out := make(map[string][]ApprovalVote, len(approvalIDs))
	for start := 0; start < len(approvalIDs); start += 500 {
		chunk := approvalIDs[start:min(start+500, len(approvalIDs))]
		ph := make([]string, len(chunk))
		args := make([]any, len(chunk))
		for i, id := range chunk {
			ph[i] = fmt.Sprintf("$%d", i+1)
			args[i] = id
		}
		rows, err := s.r.QueryContext(ctx, `SELECT approval_id, user_id, token_id, via, verdict, note, at FROM approval_votes
			WHERE approval_id IN (`+strings.Join(ph, ", ")+`) ORDER BY at, user_id`, args...)
		if err != nil {
			return nil, fmt.Errorf("list votes: %w", mapErr(err))
		}
		for rows.Next() {
			var v ApprovalVote
			var at int64
			if err := rows.Scan(&v.ApprovalID, &v.UserID, &v.TokenID, &v.Via, &v.Verdict, &v.Note, &at); err != nil {
				rows.Close()
				return nil, fmt.Errorf("list votes: %w", mapErr(err))
			}
			v.At = fromMicros(at)
			out[v.ApprovalID] = append(out[v.ApprovalID], v)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("list votes: %w", mapErr(err))
		}
	}
	return out, nil
}

const requestCols = `id, org_id, state, title, detail, ask, secret_key, workspace_id, requester_kind, requester_token_id,
	requester_user_id, requester_workspace_id, requester_via, answer_text, secret_version, responder_user_id,
	responder_token_id, responder_via, note, expires_at, created_at, updated_at, ended_at`

func scanRequest(sc scanner) (Request, error) {
	var r Request
	var exp, created, updated, ended int64
	err := sc.Scan(&r.ID, &r.OrgID, &r.State, &r.Title, &r.Detail, &r.Ask, &r.SecretKey, &r.WorkspaceID,
		&r.Requester.Kind, &r.Requester.TokenID, &r.Requester.UserID, &r.Requester.WorkspaceID, &r.Requester.Via,
		&r.AnswerText, &r.SecretVersion, &r.ResponderUser, &r.ResponderTok, &r.ResponderVia, &r.Note,
		&exp, &created, &updated, &ended)
	if err != nil {
		return Request{}, mapErr(err)
	}
	r.ExpiresAt, r.CreatedAt, r.UpdatedAt, r.EndedAt = fromMicros(exp), fromMicros(created), fromMicros(updated), fromMicros(ended)
	return r, nil
}

func (s *sqlStore) InsertRequest(ctx context.Context, r Request) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO requests (`+requestCols+`) VALUES
		($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`,
		r.ID, r.OrgID, r.State, r.Title, r.Detail, r.Ask, r.SecretKey, r.WorkspaceID, r.Requester.Kind,
		r.Requester.TokenID, r.Requester.UserID, r.Requester.WorkspaceID, r.Requester.Via, r.AnswerText,
		r.SecretVersion, r.ResponderUser, r.ResponderTok, r.ResponderVia, r.Note,
		toMicros(r.ExpiresAt), toMicros(r.CreatedAt), toMicros(r.UpdatedAt), toMicros(r.EndedAt))
	if err != nil {
		return fmt.Errorf("insert request: %w", mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetRequest(ctx context.Context, orgID, id string) (Request, error) {
	return scanRequest(s.r.QueryRowContext(ctx, `SELECT `+requestCols+` FROM requests WHERE org_id = $1 AND id = $2`, orgID, id))
}

func (s *sqlStore) GetRequestForUpdate(ctx context.Context, orgID, id string) (Request, error) {
	return scanRequest(s.w.QueryRowContext(ctx, `SELECT `+requestCols+` FROM requests WHERE org_id = $1 AND id = $2`+s.forUpdate(), orgID, id))
}

func (s *sqlStore) UpdateRequest(ctx context.Context, r Request, from string) error {
	err := affected(s.w.ExecContext(ctx, `UPDATE requests SET state = $3, answer_text = $4, secret_version = $5,
		responder_user_id = $6, responder_token_id = $7, responder_via = $8, note = $9, updated_at = $10, ended_at = $11
		WHERE id = $1 AND state = $2`,
		r.ID, from, r.State, r.AnswerText, r.SecretVersion, r.ResponderUser, r.ResponderTok, r.ResponderVia, r.Note,
		toMicros(r.UpdatedAt), toMicros(r.EndedAt)))
	if err != nil {
		return fmt.Errorf("update request %s from %s: %w", r.ID, from, err)
	}
	return nil
}

func (s *sqlStore) ListRequests(ctx context.Context, orgID string, f ListFilter) ([]Request, error) {
	where, args, err := s.listWhere(ctx, "requests", orgID, f)
	if err != nil {
		return nil, fmt.Errorf("list requests: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+requestCols+` FROM requests WHERE `+where+
		fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT %d`, max(f.Limit, 1)), args...)
	if err != nil {
		return nil, fmt.Errorf("list requests: %w", mapErr(err))
	}
	defer rows.Close()
	out := []Request{}
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("list requests: %w", err)
		}
		out = append(out, r)
	}
	return out, mapErr(rows.Err())
}

func (s *sqlStore) ListDueRequests(ctx context.Context, now time.Time, limit int) ([]Request, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+requestCols+` FROM requests WHERE state = 'pending' AND expires_at <= $1
		ORDER BY expires_at LIMIT $2`, toMicros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("list due requests: %w", mapErr(err))
	}
	defer rows.Close()
	var out []Request
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("list due requests: %w", err)
		}
		out = append(out, r)
	}
	return out, mapErr(rows.Err())
}

func (s *sqlStore) CountSealedByKeyID(ctx context.Context, keyID string) (int64, error) {
	var n int64
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM approvals WHERE value_key_id = $1 OR result_key_id = $1`, keyID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count sealed approvals: %w", mapErr(err))
	}
	return n, nil
}

// CountPending counts an org's pending approvals and requests (of one
// requester workspace when workspaceID is set): the inboxes' counts.
func (s *sqlStore) CountPending(ctx context.Context, orgID, workspaceID string) (approvals, requests int, err error) {
	for _, c := range []struct {
		table string
		n     *int
	}{{"approvals", &approvals}, {"requests", &requests}} {
		q := `SELECT COUNT(*) FROM ` + c.table + ` WHERE org_id = $1 AND state = 'pending'`
		args := []any{orgID}
		if workspaceID != "" {
			q += ` AND requester_workspace_id = $2`
			args = append(args, workspaceID)
		}
		if err := s.r.QueryRowContext(ctx, q, args...).Scan(c.n); err != nil {
			return 0, 0, fmt.Errorf("count pending %s: %w", c.table, mapErr(err))
		}
	}
	return approvals, requests, nil
}
