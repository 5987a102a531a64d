-- Retention: finished restart jobs and finished changes are pruned by age,
-- oldest first, in small batches; these indexes find them without reading
-- the open work or the rest of the history.
CREATE INDEX restart_jobs_finished ON restart_jobs (finished_at) WHERE state IN ('succeeded', 'failed', 'skipped', 'superseded');
CREATE INDEX changes_finished ON changes (finished_at) WHERE finished_at > 0;
