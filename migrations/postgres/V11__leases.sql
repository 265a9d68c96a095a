-- Several daemons on one database: each mailbox is read by the holder of
-- its lease, renewed every few seconds; an expired lease is taken over.
-- Times are the database server's own (now()), so the daemons' clocks
-- never decide who is alive. (SQLite's V11 has the same tables, unused:
-- one daemon per file.)
CREATE TABLE mailbox_leases (
    mailbox    TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- The daemon that claimed an outbox row: a row left `sending` is put back
-- by its own daemon at restart, or by another once that one is gone.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;

-- Each daemon's last sign of life, in the server's time.
CREATE TABLE instances (
    id         TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL
);
