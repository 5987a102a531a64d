-- Approvals: an agent's gated action (or a free-form question) waiting for
-- people to decide. The action's parameters are canonical JSON without any
-- secret value; a secret value is sealed with the key ring, bound to the
-- approval (value_ct), and wiped with the parameters when the approval ends.
CREATE TABLE approvals (
    id                     TEXT PRIMARY KEY,
    org_id                 TEXT NOT NULL REFERENCES orgs(id),
    state                  TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'executing', 'succeeded', 'failed', 'denied', 'expired', 'cancelled')),
    title                  TEXT NOT NULL,
    detail                 TEXT NOT NULL DEFAULT '',
    action_type            TEXT NOT NULL DEFAULT '',
    params                 TEXT NOT NULL DEFAULT '',
    params_hash            TEXT NOT NULL DEFAULT '',
    value_key_id           TEXT NOT NULL DEFAULT '',
    value_ct               BLOB,
    preconditions          TEXT NOT NULL DEFAULT '{}',
    plan                   TEXT NOT NULL DEFAULT '',
    quorum                 INTEGER NOT NULL DEFAULT 1,
    requester_kind         TEXT NOT NULL,
    requester_token_id     TEXT NOT NULL DEFAULT '',
    requester_user_id      TEXT NOT NULL DEFAULT '',
    requester_workspace_id TEXT NOT NULL DEFAULT '',
    requester_via          TEXT NOT NULL DEFAULT '',
    result                 TEXT NOT NULL DEFAULT '',
    error_code             TEXT NOT NULL DEFAULT '',
    error_message          TEXT NOT NULL DEFAULT '',
    result_key_id          TEXT NOT NULL DEFAULT '',
    result_ct              BLOB,
    expires_at             BIGINT NOT NULL,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    ended_at               BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX approvals_org_created ON approvals (org_id, created_at, id);
CREATE INDEX approvals_org_state ON approvals (org_id, state, created_at, id);
-- The sweeper's: pending ones by expiry, approved ones left unexecuted.
CREATE INDEX approvals_open ON approvals (state, expires_at) WHERE state IN ('pending', 'approved');

-- One person's decision on an approval; a person decides once.
CREATE TABLE approval_votes (
    approval_id TEXT NOT NULL REFERENCES approvals(id),
    user_id     TEXT NOT NULL,
    token_id    TEXT NOT NULL,
    via         TEXT NOT NULL,
    verdict     TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
    note        TEXT NOT NULL DEFAULT '',
    at          BIGINT NOT NULL,
    PRIMARY KEY (approval_id, user_id)
);

-- Requests: an agent asks people for information (ask 'text') or for a
-- secret (ask 'secret': the value is written as a secret of the workspace,
-- never stored here).
CREATE TABLE requests (
    id                     TEXT PRIMARY KEY,
    org_id                 TEXT NOT NULL REFERENCES orgs(id),
    state                  TEXT NOT NULL CHECK (state IN ('pending', 'answered', 'declined', 'expired', 'cancelled')),
    title                  TEXT NOT NULL,
    detail                 TEXT NOT NULL DEFAULT '',
    ask                    TEXT NOT NULL CHECK (ask IN ('text', 'secret')),
    secret_key             TEXT NOT NULL DEFAULT '',
    workspace_id           TEXT NOT NULL DEFAULT '',
    requester_kind         TEXT NOT NULL,
    requester_token_id     TEXT NOT NULL DEFAULT '',
    requester_user_id      TEXT NOT NULL DEFAULT '',
    requester_workspace_id TEXT NOT NULL DEFAULT '',
    requester_via          TEXT NOT NULL DEFAULT '',
    answer_text            TEXT NOT NULL DEFAULT '',
    secret_version         BIGINT NOT NULL DEFAULT 0,
    responder_user_id      TEXT NOT NULL DEFAULT '',
    responder_token_id     TEXT NOT NULL DEFAULT '',
    responder_via          TEXT NOT NULL DEFAULT '',
    note                   TEXT NOT NULL DEFAULT '',
    expires_at             BIGINT NOT NULL,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    ended_at               BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX requests_org_created ON requests (org_id, created_at, id);
CREATE INDEX requests_org_state ON requests (org_id, state, created_at, id);
CREATE INDEX requests_open ON requests (state, expires_at) WHERE state = 'pending';
