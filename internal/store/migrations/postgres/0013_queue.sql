-- A change's restarts before the governor takes them: the workspace ids of
-- its restart_queued decisions, in batches, taken in order by the claim
-- (next is the index of the first one not taken yet; the batch is open
-- until all are). A fan-out to 100,000 workspaces writes ~800 batch rows
-- here instead of 100,000 pending restart jobs; a job is made when the
-- governor takes the workspace (the rules are checked again then anyway).
CREATE TABLE change_restarts (
    change_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    org_id    TEXT NOT NULL,
    run_after BIGINT NOT NULL,
    first_id  TEXT NOT NULL,
    last_id   TEXT NOT NULL,
    ids       TEXT NOT NULL,
    n         INTEGER NOT NULL,
    next      INTEGER NOT NULL DEFAULT 0,
    open      INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (change_id, seq)
) WITH (fillfactor = 50);
-- the queue: open batches per org, due first first (in the claim's order,
-- so that it reads the head and stops). Its predicate is on
-- open, which changes once per batch, not on next, which every claim
-- moves: on Postgres a claim's update is then a heap-only one (no index
-- entry, room left in the page for it), and a long drain leaves no trail
-- of dead index entries to step over.
CREATE INDEX change_restarts_open ON change_restarts (org_id, run_after, change_id, seq) WHERE open = 1;

-- A change's queued restarts are work to claim on every replica.
CREATE TRIGGER change_restarts_notify_insert AFTER INSERT ON change_restarts
    FOR EACH STATEMENT
    EXECUTE FUNCTION orgplane_notify_jobs();

-- The platform box's management tokens, revoked when its next box is
-- healthy, are found by index rather than by reading the org's tokens.
CREATE INDEX tokens_acting_workspace ON tokens (acting_workspace_id) WHERE acting_workspace_id IS NOT NULL;

-- Supervision's liveness per replica: a replica renews its one row here
-- rather than the lease row of every box it supervises (10,000 rows every
-- few seconds for a replica with 10,000 boxes). A box's lease is live while
-- its own until (set when claimed) or its owner's row here is.
CREATE TABLE supervisors (
    owner TEXT PRIMARY KEY,
    until BIGINT NOT NULL
);

-- A change's decisions and queue are written once and read a part at a
-- time: stored out of line uncompressed, which spares a 100,000-workspace
-- change the compression of a few MB of text inside its transaction.
ALTER TABLE change_parts ALTER COLUMN decisions SET STORAGE EXTERNAL;
ALTER TABLE change_restarts ALTER COLUMN ids SET STORAGE EXTERNAL;
