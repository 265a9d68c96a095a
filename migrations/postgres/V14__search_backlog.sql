-- Issue 16: SQLite's V14 defers its FTS5 indexing to the end of each write
-- transaction (FTS5 flushes at every savepoint). PostgreSQL's GIN index
-- has no such cost, so its trigger (V6) stays as it is; this version only
-- keeps the two migration histories in step.
SELECT 1;
