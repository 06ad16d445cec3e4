-- Accounts (issue 5): a verified phone number per user, one-time verification
-- codes (phone or WeChat), for binding, phone verification and step-up.
-- Keep in step with ../../postgres/2026-11-30-000001_accounts/up.sql.

ALTER TABLE users ADD COLUMN phone_number TEXT;
ALTER TABLE users ADD COLUMN phone_verified_at BIGINT;
-- A verified number belongs to one account (NULLs do not collide).
CREATE UNIQUE INDEX users_phone_number ON users (phone_number);

CREATE TABLE verification_codes (
    id           TEXT PRIMARY KEY NOT NULL,
    purpose      TEXT NOT NULL,
    channel      TEXT NOT NULL,
    destination  TEXT NOT NULL,
    user_id      TEXT,
    browser_hash TEXT NOT NULL,
    code_hash    TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX verification_codes_destination ON verification_codes (destination, created_at);
CREATE INDEX verification_codes_expires_at ON verification_codes (expires_at);
