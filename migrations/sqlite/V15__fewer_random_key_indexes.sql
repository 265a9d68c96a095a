-- Issue 16 (growth): two indexes that took an entry at a random place for
-- almost every mail, each a page found and rewritten anywhere in a large
-- file once the desk holds 100,000 tickets, give way.
--
-- The per-address limit on automatic mail (limits.auto_replies_per_hour)
-- counted a recipient's automatic mails of the last hour through an index
-- on every outbox row's recipients, where each new ticket's confirmation
-- put its entry at a random place. The count now reads this table, which
-- holds only the automatic mails of the last two hours (the writer drops
-- expired rows, oldest first, as it adds new ones), so its pages stay few.
-- One row per recipient. The index on the time only ever grows at its end.
CREATE TABLE recent_automatic_mails (
    id        INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL,
    sent_at   TEXT NOT NULL
);
CREATE INDEX recent_automatic_mails_recipient ON recent_automatic_mails(recipient, sent_at);
CREATE INDEX recent_automatic_mails_sent ON recent_automatic_mails(sent_at);

-- The last hours' automatic mails count on after the upgrade (each went to
-- one address; a joined list of several is left out). Times are stored as
-- 'YYYY-MM-DD HH:MM:SS.f+00:00', which compares as text with datetime()'s
-- 'YYYY-MM-DD HH:MM:SS'. The old index answers the filter on the time
-- without reading the outbox's rows.
INSERT INTO recent_automatic_mails (recipient, sent_at)
    SELECT recipients, created_at FROM outbox INDEXED BY outbox_recipients
     WHERE created_at >= datetime('now', '-2 hours') AND automatic = 1
       AND instr(recipients, ',') = 0
     ORDER BY created_at;

DROP INDEX outbox_recipients;

-- Every mail that carries a ticket link (a confirmation, an agent's
-- notification, a relayed reply, a status mail) adds a link row, and this
-- index put each at its ticket's place: for mail on older tickets a random
-- page (at 100,000 tickets about a sixth of the index pages a probe of
-- mail dirtied that 1,000 tickets did not). No query reads through it: a
-- link is found by its key, and rotation and erasure name the requester
-- too (an OR that reads the whole table either way). The cost moves to
-- erasure: deleting a ticket checks its foreign key by reading this table
-- (about 35 ms per ticket with 340,000 links), as it already read the
-- outbox; for an ordinary customer the erasure's VACUUM outweighs it, for
-- an address with hundreds of tickets (and in a dry run, which has no
-- VACUUM) it is seconds more.
DROP INDEX access_tokens_ticket;
