-- Held mail (a route's SMTP login refused, V10) is found at every start and
-- after each login attempt; without an index that read scans the outbox,
-- 1.8 s at 259,000 rows on PostgreSQL. Few rows are ever held: a partial index.
CREATE INDEX outbox_held ON outbox(held_for) WHERE held_for IS NOT NULL;
