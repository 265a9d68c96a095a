-- postdesk schema, version 1. Append-only: later changes go in V2__…, V3__….

-- Values the installation keeps for itself (the generated HMAC secret).
CREATE TABLE installation (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Every mail as received, byte for byte; dedup_key is the Message-ID or
-- "sha256:<hash>" where there is none.
CREATE TABLE raw_mails (
    id          INTEGER PRIMARY KEY,
    dedup_key   TEXT NOT NULL UNIQUE,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    bytes       BLOB NOT NULL,
    source      TEXT NOT NULL,
    received_at TEXT NOT NULL
);

CREATE TABLE tickets (
    number           INTEGER PRIMARY KEY,
    subject          TEXT NOT NULL,
    status           TEXT NOT NULL,
    requester        TEXT NOT NULL,
    requester_name   TEXT,
    assignee         TEXT,
    created_at       TEXT NOT NULL,
    last_activity_at TEXT NOT NULL
);
CREATE INDEX tickets_requester ON tickets(requester);
CREATE INDEX tickets_status ON tickets(status, last_activity_at);

CREATE TABLE participants (
    ticket_number INTEGER NOT NULL REFERENCES tickets(number),
    address       TEXT NOT NULL,
    name          TEXT,
    role          TEXT NOT NULL,
    PRIMARY KEY (ticket_number, address)
);

-- Private links: only the token's hash is kept. scope is 'ticket' or
-- 'requester'.
CREATE TABLE access_tokens (
    token_hash    TEXT PRIMARY KEY,
    scope         TEXT NOT NULL,
    ticket_number INTEGER REFERENCES tickets(number),
    requester     TEXT,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);
CREATE INDEX access_tokens_ticket ON access_tokens(ticket_number);

CREATE TABLE messages (
    id             INTEGER PRIMARY KEY,
    ticket_number  INTEGER NOT NULL REFERENCES tickets(number),
    raw_mail_id    INTEGER REFERENCES raw_mails(id),
    message_id     TEXT NOT NULL UNIQUE,
    direction      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    from_address   TEXT NOT NULL,
    from_name      TEXT,
    subject        TEXT NOT NULL,
    date           TEXT NOT NULL,
    text           TEXT NOT NULL,
    quoted         TEXT NOT NULL DEFAULT '',
    thread_reason  TEXT NOT NULL,
    classification TEXT NOT NULL DEFAULT '',
    created_at     TEXT NOT NULL
);
CREATE INDEX messages_ticket ON messages(ticket_number, id);

-- Attachment bytes, stored once per content.
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    size   INTEGER NOT NULL,
    bytes  BLOB NOT NULL
);

CREATE TABLE attachments (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES messages(id),
    filename    TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    content_id  TEXT,
    sha256      TEXT NOT NULL REFERENCES blobs(sha256),
    size        INTEGER NOT NULL
);
CREATE INDEX attachments_message ON attachments(message_id);

-- Mail waiting to be sent, being sent, sent or failed.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE,
    ticket_number   INTEGER REFERENCES tickets(number),
    kind            TEXT NOT NULL,
    envelope_from   TEXT NOT NULL,
    recipients      TEXT NOT NULL,
    raw             BLOB NOT NULL,
    automatic       INTEGER NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_recipients ON outbox(recipients, created_at);

CREATE TABLE imap_checkpoints (
    mailbox     TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    raw_mail_id INTEGER NOT NULL REFERENCES raw_mails(id),
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
