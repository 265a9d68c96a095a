-- The requester's list (/r/TOKEN, issue 16 §2) reads the counts per status
-- and one page of a requester's tickets, newest activity first: one range
-- of this index, in the list's order, with the short columns included (the
-- counts need no table row). The subject is not included: a B-tree entry
-- is limited to about 2.7 KB and a subject has no length limit, so the 50
-- rows of a page fetch it from the table. It replaces tickets_requester,
-- of which it is a prefix.
DROP INDEX tickets_requester;
CREATE INDEX tickets_requester_activity
    ON tickets(requester, last_activity_at, number) INCLUDE (status, created_at, assignee, queue);
