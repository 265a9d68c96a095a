-- Issue 13 §3: the SMTP server refusing our login (535, 534, 530, 454
-- 4.7.x) is a fault of ours, not of the mail: the mail stays pending and
-- this one row says since when and why, for /healthz, /metrics and
-- `postdesk outbox list` (which may run in another process). No row: the
-- last attempt logged in, or none was refused since. PostgreSQL twin of
-- migrations/sqlite/V7: the single row's id is always 1 (written by the
-- app), so a plain BIGINT key, not an identity. V10 drops the table.
CREATE TABLE smtp_auth_failure (
    id            BIGINT PRIMARY KEY CHECK (id = 1),
    failing_since TEXT NOT NULL,
    error         TEXT NOT NULL
);
