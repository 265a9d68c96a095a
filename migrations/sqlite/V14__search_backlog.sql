-- Issue 16: the search index is filled once per write transaction, not
-- once per message. FTS5 writes its pending terms out at every SAVEPOINT,
-- and ingest takes one savepoint per mail: V6's trigger, indexing each
-- message as it was inserted, made one tiny index segment per mail and
-- merged them again (~6% of ingest's CPU). The trigger now only notes the
-- message in search_backlog; the writer indexes the backlog just before it
-- commits, in the same transaction (store::search::INDEX_BACKLOG), so what
-- is committed is searchable, as before. Same kinds as V6.
CREATE TABLE search_backlog (message_id INTEGER PRIMARY KEY);

DROP TRIGGER message_search_insert;
CREATE TRIGGER message_search_insert AFTER INSERT ON messages
WHEN new.kind IN ('customer', 'agent', 'note', 'list')
BEGIN
    INSERT INTO search_backlog (message_id) VALUES (new.id);
END;

DROP TRIGGER message_search_delete;
CREATE TRIGGER message_search_delete AFTER DELETE ON messages
BEGIN
    DELETE FROM message_search WHERE rowid = old.id;
    DELETE FROM search_backlog WHERE message_id = old.id;
END;
