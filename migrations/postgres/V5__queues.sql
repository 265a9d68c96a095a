-- Issue 12 §1: several support addresses, each a queue. Every ticket
-- belongs to one queue, decided when its first mail arrives. Rows from
-- before queues have '' here: at start-up the store gives them the name
-- of the first queue as configured then ([support] queue), so an operator
-- who names the first queue while upgrading gets that name.
ALTER TABLE tickets ADD COLUMN queue TEXT NOT NULL DEFAULT '';
CREATE INDEX tickets_queue ON tickets(queue, last_activity_at);
