-- The requester's list (/r/TOKEN, issue 16 §2) with the subject in the
-- requester index, so the page reads no table row at all (SQLite's plan:
-- SEARCH t USING COVERING INDEX). V13 left the subject out because its
-- updates were ~40% slower in a micro-measure; measured on whole mails
-- (scripts/bench scale) it costs 1-1.5% more bytes written per mail, and
-- it nearly doubles /r (the 50 rows of a page were 50 scattered table
-- reads, most of the page's time). A long subject is no hazard here: an
-- SQLite index entry spills to overflow pages. PostgreSQL keeps V13's
-- index: a B-tree entry there is limited to about 2.7 KB and a subject has
-- no length limit, so it has no V17.
DROP INDEX tickets_requester_activity;
CREATE INDEX tickets_requester_activity
    ON tickets(requester, last_activity_at, number, status, created_at, assignee, queue, subject);
