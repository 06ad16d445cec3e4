-- Failure counters shared by every broker instance (issue 10): one row per
-- key (a client address: "ip:203.0.113.7"), a token bucket kept as the time
-- (unix milliseconds) at which it is full again. A row whose full_at_ms has
-- passed remembers nothing and is collected.
-- Keep in step with ../../postgres/2026-12-01-000002_failure_counters/up.sql.

CREATE TABLE failure_counters (
    key        TEXT PRIMARY KEY NOT NULL,
    full_at_ms BIGINT NOT NULL
);
CREATE INDEX failure_counters_full_at_ms ON failure_counters (full_at_ms);
