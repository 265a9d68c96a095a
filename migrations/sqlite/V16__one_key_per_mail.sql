-- Issue 16 (growth): every customer mail put its Message-ID into two
-- unique indexes, raw_mails.dedup_key and messages.message_id, each an
-- entry at a random place (the ID's), so two pages found and rewritten
-- anywhere in two large indexes per mail once a desk is large. One is
-- enough. A received mail's Message-ID stays in messages.message_id (it
-- is shown and explained), but only raw_mails.dedup_key indexes it: a
-- received message is found through its raw mail (messages_raw_mail, whose
-- entries come in the order mails are stored, so always at its end).
-- Messages without a raw mail (ours, sent, and notes from the command
-- line) keep a unique index on their ID; ours begin with the second they
-- were made, so they too are added at the index's end.
--
-- SQLite cannot drop a column's UNIQUE, so the table is made again with
-- the same ids (the search index and attachments refer to them). The
-- migration runs with foreign keys off, as SQLite's procedure for making
-- a table again requires, and checks them before it commits.
CREATE TABLE messages_v16 (
    id             INTEGER PRIMARY KEY,
    ticket_number  INTEGER NOT NULL REFERENCES tickets(number),
    raw_mail_id    INTEGER REFERENCES raw_mails(id),
    message_id     TEXT NOT NULL,
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
INSERT INTO messages_v16 (id, ticket_number, raw_mail_id, message_id, direction, kind,
        from_address, from_name, subject, date, text, quoted, thread_reason,
        classification, created_at)
    SELECT id, ticket_number, raw_mail_id, message_id, direction, kind,
        from_address, from_name, subject, date, text, quoted, thread_reason,
        classification, created_at
      FROM messages ORDER BY id;
DROP TABLE messages;
ALTER TABLE messages_v16 RENAME TO messages;

CREATE INDEX messages_ticket ON messages(ticket_number, id);
CREATE UNIQUE INDEX messages_raw_mail ON messages(raw_mail_id);
CREATE UNIQUE INDEX messages_without_raw ON messages(message_id) WHERE raw_mail_id IS NULL;

-- The search index's triggers went with the old table (as in V14).
CREATE TRIGGER message_search_insert AFTER INSERT ON messages
WHEN new.kind IN ('customer', 'agent', 'note', 'list')
BEGIN
    INSERT INTO search_backlog (message_id) VALUES (new.id);
END;

CREATE TRIGGER message_search_delete AFTER DELETE ON messages
BEGIN
    DELETE FROM message_search WHERE rowid = old.id;
    DELETE FROM search_backlog WHERE message_id = old.id;
END;

-- The last step of SQLite's procedure: every foreign key still holds (the
-- rows and their ids were copied as they were). A row pointing at nothing
-- fails the CHECK, and the whole upgrade rolls back.
CREATE TEMP TABLE v16_foreign_keys (broken INTEGER CHECK (broken = 0));
INSERT INTO v16_foreign_keys SELECT count(*) FROM pragma_foreign_key_check;
DROP TABLE v16_foreign_keys;
