-- Consent (issue 12, item 5): what a person allowed an app to get, remembered
-- per account and app. `scope` is the union of the scopes granted so far
-- (space-separated, sorted); a request for a subset asks nothing. The row goes
-- when the person revokes it on the account page or the app is removed.
-- Keep in step with ../../postgres/2026-12-01-000020_consents/up.sql.

CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users (id),
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX consents_client_id ON consents (client_id);
