-- Notifications, so that every replica wakes when another one writes
-- instead of waiting for its next poll. Sent by the writing transaction,
-- they are delivered only if it commits.
--
-- orgplane_jobs (no payload, so that a transaction's many rows give one):
-- work to claim (a job pending) or a slot freed under the restart caps (a
-- job no longer running, or its lease handed over).
CREATE FUNCTION orgplane_notify_jobs() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('orgplane_jobs', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

-- Once per statement, not per row: a fan-out inserts 100,000 pending jobs
-- in one COPY, and a row trigger would run (and queue) 100,000 times. Every
-- insert of jobs is of pending ones but for imports of history; a spurious
-- wake-up costs one claim.
CREATE TRIGGER restart_jobs_notify_insert AFTER INSERT ON restart_jobs
    FOR EACH STATEMENT
    EXECUTE FUNCTION orgplane_notify_jobs();

CREATE TRIGGER restart_jobs_notify_update AFTER UPDATE ON restart_jobs
    FOR EACH ROW WHEN (NEW.state = 'pending'
        OR (OLD.state = 'running' AND NEW.state <> 'running')
        OR (NEW.state = 'running' AND NEW.lease_until < OLD.lease_until))
    EXECUTE FUNCTION orgplane_notify_jobs();

-- orgplane_workspaces (payload: the workspace id): a workspace's status or
-- generation changed, which its box's watcher, on whichever replica, must
-- see. A heartbeat that changes neither is not sent: a watcher re-reads the
-- workspace when its heartbeat deadline comes anyway.
CREATE FUNCTION orgplane_notify_workspace() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('orgplane_workspaces', NEW.id);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER workspaces_notify AFTER UPDATE ON workspaces
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.generation IS DISTINCT FROM NEW.generation)
    EXECUTE FUNCTION orgplane_notify_workspace();
