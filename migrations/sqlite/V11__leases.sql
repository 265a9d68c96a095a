-- Several daemons on one database (PostgreSQL): each mailbox is read by the
-- holder of its lease, renewed every few seconds; an expired lease is taken
-- over. SQLite has one daemon, which always holds them.
CREATE TABLE mailbox_leases (
    mailbox    TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- The daemon that claimed an outbox row: a row left `sending` is put back
-- by its own daemon at restart, or by another once that one is gone.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;

-- Each daemon's last sign of life, shown by /healthz and /metrics.
CREATE TABLE instances (
    id         TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    seen_at    TEXT NOT NULL
);
