-- Canvas sign-in. A login link is a one-time code a person opens in a
-- browser (10 minutes, single use); using it creates a session, whose
-- cookie the API accepts like a user token. Only SHA-256 hashes of the
-- codes and session secrets are stored.
CREATE TABLE login_links (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    code_hash  BLOB NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT NOT NULL DEFAULT 0,
    CHECK (expires_at > created_at)
);
CREATE INDEX login_links_user ON login_links (user_id);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES orgs(id),
    user_id       TEXT NOT NULL REFERENCES users(id),
    secret_hash   BLOB NOT NULL,
    login_link_id TEXT NOT NULL REFERENCES login_links(id),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    revoked_at    BIGINT NOT NULL DEFAULT 0,
    CHECK (expires_at > created_at)
);
CREATE INDEX sessions_user ON sessions (user_id);
-- One session per link: a link that two concurrent sign-ins both read
-- unused still yields a single session.
CREATE UNIQUE INDEX sessions_link ON sessions (login_link_id);
