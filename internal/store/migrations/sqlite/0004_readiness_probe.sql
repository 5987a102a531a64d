-- /readyz writes here: a store that answers reads but cannot write (a full
-- disk, a read-only file system) is not ready. One row, updated in place.
CREATE TABLE readiness_probe (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at BIGINT NOT NULL
);
INSERT INTO readiness_probe (id, probed_at) VALUES (1, 0);
