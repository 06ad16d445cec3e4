-- Refresh grace without forks (issue 10): the successor a refresh token was
-- rotated to, recorded when it is first used. A reuse within the grace window
-- gets that same successor again (never a second one), and only while it is
-- still unused. NULL for unused tokens and for tokens rotated before this.
-- Keep in step with ../../sqlite/2026-12-01-000001_refresh_successor/up.sql.

ALTER TABLE refresh_tokens ADD COLUMN successor_hash TEXT;
