-- Times are unix microseconds (BIGINT) on both engines so one SQL text serves both.
CREATE TABLE orgs (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE workspaces (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES orgs(id),
    parent_id       TEXT REFERENCES workspaces(id),
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('platform', 'workspace')),
    runtime         TEXT NOT NULL,
    spec            TEXT NOT NULL DEFAULT '{}',
    status          TEXT NOT NULL,
    restart_policy  TEXT NOT NULL CHECK (restart_policy IN ('auto', 'manual')),
    protected       INTEGER NOT NULL DEFAULT 0,
    generation      BIGINT NOT NULL DEFAULT 0,
    box             TEXT NOT NULL DEFAULT '',
    box_fingerprint TEXT NOT NULL DEFAULT '',
    healthy_at      BIGINT NOT NULL DEFAULT 0,
    heartbeat_at    BIGINT NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    -- the platform workspace is the root: it alone has no parent
    CHECK ((kind = 'platform' AND parent_id IS NULL) OR (kind = 'workspace' AND parent_id IS NOT NULL))
);
-- exactly one platform workspace per org, enforced by the schema itself
CREATE UNIQUE INDEX workspaces_one_platform ON workspaces (org_id) WHERE kind = 'platform';
CREATE UNIQUE INDEX workspaces_sibling_name ON workspaces (parent_id, name) WHERE status <> 'removed';
CREATE INDEX workspaces_org ON workspaces (org_id, id);
CREATE INDEX workspaces_parent ON workspaces (parent_id);

CREATE TABLE tokens (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES orgs(id),
    kind                TEXT NOT NULL CHECK (kind IN ('admin', 'workspace')),
    name                TEXT NOT NULL,
    workspace_id        TEXT REFERENCES workspaces(id),
    acting_workspace_id TEXT REFERENCES workspaces(id),
    secret_hash         BYTEA NOT NULL,
    box_generation      BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL DEFAULT 0,
    revoked_at          BIGINT NOT NULL DEFAULT 0,
    last_used_at        BIGINT NOT NULL DEFAULT 0,
    CHECK ((kind = 'workspace') = (workspace_id IS NOT NULL)),
    CHECK (kind = 'admin' OR acting_workspace_id IS NULL)
);
CREATE INDEX tokens_org ON tokens (org_id, id);
CREATE INDEX tokens_workspace ON tokens (workspace_id);

CREATE TABLE audit (
    id                  BIGSERIAL PRIMARY KEY,
    org_id              TEXT NOT NULL,
    at                  BIGINT NOT NULL,
    token_id            TEXT NOT NULL DEFAULT '',
    principal_kind      TEXT NOT NULL,
    acting_workspace_id TEXT NOT NULL DEFAULT '',
    action              TEXT NOT NULL,
    target_kind         TEXT NOT NULL DEFAULT '',
    target_id           TEXT NOT NULL DEFAULT '',
    workspace_id        TEXT NOT NULL DEFAULT '',
    outcome             TEXT NOT NULL,
    request_id          TEXT NOT NULL DEFAULT '',
    detail              TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_org ON audit (org_id, id);
CREATE INDEX audit_workspace ON audit (org_id, workspace_id, id);


CREATE TABLE data_keys (
    id         TEXT PRIMARY KEY,
    wrapped    BYTEA NOT NULL,
    is_current INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    retired_at BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX data_keys_one_current ON data_keys (is_current) WHERE is_current = 1;

CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE secrets (
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    workspace_id TEXT NOT NULL DEFAULT '',
    key          TEXT NOT NULL,
    key_id       TEXT NOT NULL REFERENCES data_keys(id),
    ciphertext   BYTEA NOT NULL,
    value_mac    TEXT NOT NULL,
    version      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (org_id, workspace_id, key)
);
CREATE INDEX secrets_key_id ON secrets (key_id);
CREATE INDEX secrets_org_key ON secrets (org_id, key);
-- append-only, whatever the code tries
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only';
END;
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
