-- Linking by email (issue 13, item 4): the addresses that may link a new
-- sign-in to an account. A row is written only for an identity whose connector
-- has trust_email = true and whose upstream said email_verified = true, so an
-- address claimed through an untrusted or unverifying provider is never a link
-- target (pre-account takeover). The primary key makes one address one
-- account's, also when two first sign-ins race. `email` is normalised by
-- idbridge_store::email_key (ASCII letters folded to lower case, nothing else).
-- Keep in step with ../../postgres/2026-12-01-000003_account_emails/up.sql.

CREATE TABLE account_emails (
    email        TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id),
    -- The identity that vouched for it; its row goes when the identity is
    -- unlinked or signs in with another (or an unverified) address.
    connector_id TEXT NOT NULL,
    subject      TEXT NOT NULL,
    verified_at  BIGINT NOT NULL
);
CREATE INDEX account_emails_identity ON account_emails (connector_id, subject);
CREATE INDEX account_emails_user_id ON account_emails (user_id);
