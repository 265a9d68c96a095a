-- Issue 13 §3: full-text search over what people wrote, for agents.
-- One row per inbound message a person wrote (a customer's mail, an
-- agent's reply, an internal note, list mail), rowid = messages.id, with
-- its ticket's subject beside the text, so that "printer invoice" finds a
-- ticket whose subject says one word and a mail the other. Our own mails
-- (confirmations, status mails, the relayed and notified copies) are left
-- out: they repeat the same text or the same boilerplate on every ticket.
-- Triggers keep the index in the transaction that writes or deletes the
-- message, whichever code path does it (ingest, set-status notes, erase).
-- The characters U+0002 and U+0003 mark the matches in snippets, so they
-- are replaced in what is indexed: mail text cannot forge a mark.
CREATE VIRTUAL TABLE message_search USING fts5(
    subject,
    body,
    ticket_number UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

-- An erased message leaves no term behind in the index's b-trees (the
-- default only adds a delete marker until the next merge).
INSERT INTO message_search (message_search, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER message_search_insert AFTER INSERT ON messages
WHEN new.kind IN ('customer', 'agent', 'note', 'list')
BEGIN
    INSERT INTO message_search (rowid, subject, body, ticket_number)
    SELECT new.id,
           replace(replace(t.subject, char(2), ' '), char(3), ' '),
           replace(replace(new.text, char(2), ' '), char(3), ' '),
           new.ticket_number
      FROM tickets t WHERE t.number = new.ticket_number;
END;

CREATE TRIGGER message_search_delete AFTER DELETE ON messages
BEGIN
    DELETE FROM message_search WHERE rowid = old.id;
END;

INSERT INTO message_search (rowid, subject, body, ticket_number)
SELECT m.id,
       replace(replace(t.subject, char(2), ' '), char(3), ' '),
       replace(replace(m.text, char(2), ' '), char(3), ' '),
       m.ticket_number
  FROM messages m JOIN tickets t ON t.number = m.ticket_number
 WHERE m.kind IN ('customer', 'agent', 'note', 'list');
