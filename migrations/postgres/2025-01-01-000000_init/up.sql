-- idbridge initial schema (PostgreSQL). Timestamps are unix seconds (BIGINT);
-- JSON payloads are TEXT; opaque encrypted blobs are BYTEA.
-- Keep in step with ../../sqlite/2025-01-01-000000_init/up.sql.

CREATE TABLE users (
    id          TEXT PRIMARY KEY NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    disabled_at BIGINT,
    name        TEXT,
    picture     TEXT,
    locale      TEXT
);

CREATE TABLE identities (
    connector_id    TEXT NOT NULL,
    subject         TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id),
    link_scope      TEXT,
    link_key        TEXT,
    profile         TEXT NOT NULL,
    upstream_tokens BYTEA,
    created_at      BIGINT NOT NULL,
    last_login_at   BIGINT NOT NULL,
    PRIMARY KEY (connector_id, subject)
);
CREATE INDEX identities_user_id ON identities (user_id);

CREATE TABLE link_keys (
    link_scope TEXT NOT NULL,
    link_key   TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (link_scope, link_key)
);
CREATE INDEX link_keys_user_id ON link_keys (user_id);

CREATE TABLE clients (
    id          TEXT PRIMARY KEY NOT NULL,
    secret_hash TEXT,
    metadata    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE auth_requests (
    id         TEXT PRIMARY KEY NOT NULL,
    client_id  TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX auth_requests_expires_at ON auth_requests (expires_at);

CREATE TABLE upstream_flows (
    state           TEXT PRIMARY KEY NOT NULL,
    connector_id    TEXT NOT NULL,
    auth_request_id TEXT NOT NULL,
    browser_hash    TEXT NOT NULL,
    data            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT,
    outcome         TEXT
);
CREATE INDEX upstream_flows_expires_at ON upstream_flows (expires_at);

CREATE TABLE authorization_codes (
    code_hash  TEXT PRIMARY KEY NOT NULL,
    client_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    family_id  TEXT
);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);

CREATE TABLE refresh_token_families (
    id                  TEXT PRIMARY KEY NOT NULL,
    client_id           TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    scope               TEXT NOT NULL,
    sso_session_id      TEXT,
    payload             TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    last_used_at        BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at          BIGINT,
    revoked_reason      TEXT
);
CREATE INDEX refresh_token_families_user_id ON refresh_token_families (user_id);
CREATE INDEX refresh_token_families_sso_session_id ON refresh_token_families (sso_session_id);
CREATE INDEX refresh_token_families_absolute_expires_at ON refresh_token_families (absolute_expires_at);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    family_id  TEXT NOT NULL REFERENCES refresh_token_families (id),
    created_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);

CREATE TABLE sso_sessions (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    connector_id TEXT NOT NULL,
    auth_time    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT
);
CREATE INDEX sso_sessions_user_id ON sso_sessions (user_id);
CREATE INDEX sso_sessions_expires_at ON sso_sessions (expires_at);
CREATE INDEX sso_sessions_ended_at ON sso_sessions (ended_at);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY NOT NULL,
    alg          TEXT NOT NULL,
    generation   BIGINT NOT NULL,
    private_key  BYTEA NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retires_at   BIGINT,
    expires_at   BIGINT,
    UNIQUE (alg, generation)
);

CREATE TABLE audit_log (
    id           BIGSERIAL PRIMARY KEY,
    at           BIGINT NOT NULL,
    event        TEXT NOT NULL,
    user_id      TEXT,
    client_id    TEXT,
    connector_id TEXT,
    ip           TEXT,
    detail       TEXT NOT NULL
);
CREATE INDEX audit_log_user_id ON audit_log (user_id, id);
CREATE INDEX audit_log_at ON audit_log (at);

-- Upstream app-level access tokens (WeChat access_token), shared between
-- instances with a lease so only one refreshes at a time. No API yet.
CREATE TABLE app_tokens (
    app_key     TEXT PRIMARY KEY NOT NULL,
    token       BYTEA NOT NULL,
    expires_at  BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    updated_at  BIGINT NOT NULL
);
