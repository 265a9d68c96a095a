-- The per-address limit on automatic mail (limits.auto_replies_per_hour)
-- counted a recipient's automatic mails of the last hour through an index
-- on every outbox row's recipients. A new ticket's confirmation put its
-- entry at a random place in that index, which at 100,000 tickets is a page
-- found and rewritten anywhere in a large file, for every ticket (issue 16,
-- growth). The count now reads this table, which holds only the automatic
-- mails of the last two hours (the writer drops expired rows, oldest
-- first, as it adds new ones), so its pages stay few. One row per
-- recipient. The index on the time only ever grows at its end.
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
