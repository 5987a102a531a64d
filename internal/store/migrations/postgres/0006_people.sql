-- People: user principals of an org, with a role. Removal is soft (their
-- tokens are revoked; the row stays for the audit log's sake).
CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs(id),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    created_at BIGINT NOT NULL,
    removed_at BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX users_live_name ON users (org_id, name) WHERE removed_at = 0;

-- User tokens (op_user_...): a person's own credential for the CLI.
ALTER TABLE tokens ADD COLUMN user_id TEXT REFERENCES users(id);
ALTER TABLE tokens DROP CONSTRAINT tokens_kind_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_kind_check CHECK (kind IN ('admin', 'workspace', 'user'));
ALTER TABLE tokens ADD CONSTRAINT tokens_user_check CHECK ((kind = 'user') = (user_id IS NOT NULL));
CREATE INDEX tokens_user ON tokens (user_id);
