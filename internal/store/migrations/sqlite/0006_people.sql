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

-- User tokens (op_user_...): SQLite cannot change a table's CHECKs, so the
-- tokens table is rebuilt with the new kind (nothing references it).
CREATE TABLE tokens_new (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES orgs(id),
    kind                TEXT NOT NULL CHECK (kind IN ('admin', 'workspace', 'user')),
    name                TEXT NOT NULL,
    workspace_id        TEXT REFERENCES workspaces(id),
    acting_workspace_id TEXT REFERENCES workspaces(id),
    secret_hash         BLOB NOT NULL,
    box_generation      BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL DEFAULT 0,
    revoked_at          BIGINT NOT NULL DEFAULT 0,
    last_used_at        BIGINT NOT NULL DEFAULT 0,
    user_id             TEXT REFERENCES users(id),
    CHECK ((kind = 'workspace') = (workspace_id IS NOT NULL)),
    CHECK (kind = 'admin' OR acting_workspace_id IS NULL),
    CHECK ((kind = 'user') = (user_id IS NOT NULL))
);
INSERT INTO tokens_new (id, org_id, kind, name, workspace_id, acting_workspace_id, secret_hash, box_generation,
    created_at, expires_at, revoked_at, last_used_at)
SELECT id, org_id, kind, name, workspace_id, acting_workspace_id, secret_hash, box_generation,
    created_at, expires_at, revoked_at, last_used_at FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;
CREATE INDEX tokens_org ON tokens (org_id, id);
CREATE INDEX tokens_workspace ON tokens (workspace_id);
CREATE INDEX tokens_user ON tokens (user_id);
