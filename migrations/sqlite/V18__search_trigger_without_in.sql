-- The search backlog's trigger without `IN (...)` (issue 16 §1). SQLite
-- evaluates `new.kind IN ('customer', 'agent', 'note', 'list')` by
-- building a temporary b-tree of the four words, and inside a trigger it
-- builds it anew for every row: opened, filled, probed and closed on each
-- insert into messages, about three times per mail (the mail and the one
-- or two mails we send), ~4 us each, about 1.5% of the writer's time in the
-- ingest benchmark. The same test spelled as comparisons builds nothing.
-- PostgreSQL's trigger (V6, V14) is its own and keeps its IN.
DROP TRIGGER message_search_insert;
CREATE TRIGGER message_search_insert AFTER INSERT ON messages
WHEN new.kind = 'customer' OR new.kind = 'agent' OR new.kind = 'note' OR new.kind = 'list'
BEGIN
    INSERT INTO search_backlog (message_id) VALUES (new.id);
END;
