-- Issue 13 §3: full-text search over what people wrote, for agents.
-- PostgreSQL twin of migrations/sqlite/V6 (an FTS5 table there): one row
-- per inbound message a person wrote (a customer's mail, an agent's reply,
-- an internal note, list mail), keyed by messages.id, with its ticket's
-- subject beside the text, so that "printer invoice" finds a ticket whose
-- subject says one word and a mail the other. Our own mails
-- (confirmations, status mails, the relayed and notified copies) are left
-- out: they repeat the same text or the same boilerplate on every ticket.
-- A trigger fills the index in the transaction that writes the message,
-- whichever code path does it; deleting the message (erase) deletes its
-- row by the cascade. The characters U+0002 and U+0003 mark the matches in
-- snippets, so they are replaced in what is indexed: mail text cannot
-- forge a mark.
--
-- document weighs the subject above the body. The 'simple' configuration
-- folds case only (no stemming, no accent folding, unlike SQLite's porter
-- unicode61 remove_diacritics). Only the first 10,000 characters of the
-- subject and 200,000 of the body are indexed: a tsvector holds at most
-- 1 MB (at worst some 2.5 bytes per character of text), and a longer mail
-- of many distinct words would otherwise fail its insert, and the ingest.
CREATE TABLE message_search (
    message_id    BIGINT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    ticket_number BIGINT NOT NULL,
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    document      tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', left(subject, 10000)), 'A') ||
        setweight(to_tsvector('simple', left(body, 200000)), 'B')
    ) STORED
);
CREATE INDEX message_search_document ON message_search USING GIN (document);

CREATE FUNCTION message_search_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_search (message_id, ticket_number, subject, body)
    SELECT NEW.id,
           NEW.ticket_number,
           replace(replace(t.subject, chr(2), ' '), chr(3), ' '),
           replace(replace(NEW.text, chr(2), ' '), chr(3), ' ')
      FROM tickets t WHERE t.number = NEW.ticket_number;
    RETURN NULL;
END;
$$;

CREATE TRIGGER message_search_insert AFTER INSERT ON messages
FOR EACH ROW
WHEN (NEW.kind IN ('customer', 'agent', 'note', 'list'))
EXECUTE FUNCTION message_search_insert();

INSERT INTO message_search (message_id, ticket_number, subject, body)
SELECT m.id,
       m.ticket_number,
       replace(replace(t.subject, chr(2), ' '), chr(3), ' '),
       replace(replace(m.text, chr(2), ' '), chr(3), ' ')
  FROM messages m JOIN tickets t ON t.number = m.ticket_number
 WHERE m.kind IN ('customer', 'agent', 'note', 'list');
