-- Clients managed at run time (issue 12, item 8): a rotated-away secret keeps
-- working until previous_secret_expires_at (the grace period the operator
-- chose), and updated_at lets an update refuse to overwrite a change made
-- meanwhile through another instance. Both NULL when no rotation is pending.
-- Keep in step with ../../sqlite/2026-12-01-000010_client_secret_rotation/up.sql.

ALTER TABLE clients ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE clients ADD COLUMN previous_secret_expires_at BIGINT;
ALTER TABLE clients ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
