-- A refused SMTP login holds only its own route's mail (a route: one SMTP
-- account and the queues it carries, see `outbound::routes`). The V7 row
-- could not say which account the server refused, so any other route's
-- mail going out cleared it. One row per refused route instead, for
-- /healthz, /metrics and `postdesk outbox list` (which may run in another
-- process): the route's name (its first queue's), its queues, the keys to
-- fix, since when and the server's words. The V7 row is dropped: the
-- next attempt on each route records its state again.
CREATE TABLE smtp_auth_routes (
    route         TEXT PRIMARY KEY,
    queues        TEXT NOT NULL,
    hint          TEXT NOT NULL,
    failing_since TEXT NOT NULL,
    error         TEXT NOT NULL
);
DROP TABLE smtp_auth_failure;

-- A mail of a refused route waits, pending and uncounted, until the
-- route's next try (next_attempt_at), so it is not claimed again and
-- again ahead of other routes' mail; held_for names that route. A start
-- puts held mail back at once (the settings may be fixed).
ALTER TABLE outbox ADD COLUMN held_for TEXT;
