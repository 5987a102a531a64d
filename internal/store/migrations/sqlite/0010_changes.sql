-- Changes: one row per secret write that decided anything, committed with
-- the write. Its decisions are stored compactly in parts (a few hundred
-- per row, sorted by workspace id) rather than one row per decision: a
-- global change across 100,000 workspaces writes ~100 part rows, and only
-- its restarts become restart jobs. The progress counters are kept by the
-- jobs of the change as they finish, in their own transactions.
CREATE TABLE changes (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL,
    workspace_id        TEXT NOT NULL DEFAULT '',
    key                 TEXT NOT NULL,
    op                  TEXT NOT NULL CHECK (op IN ('set', 'delete')),
    caller_workspace_id TEXT NOT NULL DEFAULT '',
    requested_by        TEXT NOT NULL DEFAULT '',
    created_at          BIGINT NOT NULL,
    total               INTEGER NOT NULL,
    restarts            INTEGER NOT NULL,
    counts              TEXT NOT NULL,
    succeeded           INTEGER NOT NULL DEFAULT 0,
    failed              INTEGER NOT NULL DEFAULT 0,
    cancelled           INTEGER NOT NULL DEFAULT 0,
    finished_at         BIGINT NOT NULL DEFAULT 0
);
-- a workspace's history reads the org's changes newest first
CREATE INDEX changes_org ON changes (org_id, created_at);

-- The decisions of a change, in parts: lines "workspace_id<TAB>reason",
-- sorted by workspace id; first_id and last_id bound the part.
CREATE TABLE change_parts (
    change_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    first_id  TEXT NOT NULL,
    last_id   TEXT NOT NULL,
    decisions TEXT NOT NULL,
    PRIMARY KEY (change_id, seq)
);

-- A recovery of a dead box into which secret changes were merged must run
-- even if the box is back by then (the change was promised a restart).
ALTER TABLE restart_jobs ADD COLUMN merged INTEGER NOT NULL DEFAULT 0;

-- Claims: pending work per org in queue order, and running jobs per org
-- (the per-org cap and expired leases) -- both bounded by what is open,
-- never by history.
DROP INDEX restart_jobs_ready;
CREATE INDEX restart_jobs_pending ON restart_jobs (org_id, run_after, id) WHERE state = 'pending';
CREATE INDEX restart_jobs_running ON restart_jobs (org_id, lease_until) WHERE state = 'running';
-- History (newest first, per workspace and per org) leaves pending jobs
-- out: a fan-out inserts its pending jobs without touching these, and the
-- listings read the pending ones (few per workspace) from the queue.
DROP INDEX restart_jobs_workspace;
CREATE INDEX restart_jobs_workspace ON restart_jobs (workspace_id, created_at, id) WHERE state <> 'pending';
CREATE INDEX restart_jobs_org ON restart_jobs (org_id, created_at, id) WHERE state <> 'pending';

-- The overall cap on restarts in flight, across replicas, as slots: a
-- claim takes a slot whose job is not running under a live lease, and
-- concurrent claims skip each other's slots rather than wait on one lock.
CREATE TABLE restart_slots (
    slot   INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL DEFAULT ''
);
