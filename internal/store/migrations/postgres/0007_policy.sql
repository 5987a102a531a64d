-- The org's approval policy (which agent actions are gated, the threshold,
-- the quorum, approval lifetimes), as canonical JSON; absent: the defaults.
CREATE TABLE policies (
    org_id     TEXT PRIMARY KEY REFERENCES orgs(id),
    body       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL DEFAULT ''
);
