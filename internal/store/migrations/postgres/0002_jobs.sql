-- set when the loop breaker refused an automatic restart; cleared by an
-- explicit admin restart
ALTER TABLE workspaces ADD COLUMN loop_broken INTEGER NOT NULL DEFAULT 0;
-- the token minted for the current box (revoked when the next box is healthy)
ALTER TABLE workspaces ADD COLUMN box_token_id TEXT NOT NULL DEFAULT '';

-- Restart jobs: the durable outbox of propagation, and explicit restarts.
-- No foreign keys: a global fan-out inserts one row per workspace, and a
-- per-row key check (a row lock on every workspace) would dominate it.
-- Orgs and workspaces are never deleted (removal is a status), and jobs are
-- only written by the service for ids it has just read.
CREATE TABLE restart_jobs (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL,
    workspace_id        TEXT NOT NULL,
    automatic           INTEGER NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'superseded')),
    reason              TEXT NOT NULL,
    note                TEXT NOT NULL DEFAULT '',
    change_id           TEXT NOT NULL DEFAULT '',
    caller_workspace_id TEXT NOT NULL DEFAULT '',
    requested_by        TEXT NOT NULL DEFAULT '',
    attempts            INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL,
    generation          BIGINT NOT NULL DEFAULT 0,
    run_after           BIGINT NOT NULL,
    lease_owner         TEXT NOT NULL DEFAULT '',
    lease_until         BIGINT NOT NULL DEFAULT 0,
    error               TEXT NOT NULL DEFAULT '',
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    started_at          BIGINT NOT NULL DEFAULT 0,
    finished_at         BIGINT NOT NULL DEFAULT 0
);
-- the queue: only unfinished jobs are ever looked up by state
CREATE INDEX restart_jobs_ready ON restart_jobs (run_after) WHERE state IN ('pending', 'running');
CREATE INDEX restart_jobs_workspace ON restart_jobs (workspace_id, created_at);
-- coalescing: at most one pending restart per workspace
CREATE UNIQUE INDEX restart_jobs_one_pending ON restart_jobs (workspace_id) WHERE state = 'pending';
-- the queue never runs two restarts of one workspace at once
CREATE UNIQUE INDEX restart_jobs_one_running ON restart_jobs (workspace_id) WHERE state = 'running';
CREATE INDEX workspaces_org_status ON workspaces (org_id, status);
-- the loop breaker counts an org's recent automatic restarts
CREATE INDEX restart_jobs_recent ON restart_jobs (org_id, started_at) WHERE automatic = 1 AND started_at > 0;
