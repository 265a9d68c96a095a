-- The requester's list (/r/TOKEN, issue 16 §2) reads the counts per status
-- and one page of a requester's tickets, newest activity first. With an
-- index on requester alone, each of the page's rows was a visit to its own
-- table page (a requester's tickets lie far apart) and the rows were sorted
-- afterwards. This index holds every column the list shows but the subject, in the list's
-- order (number is the rowid: ties in last_activity_at stay in order), so
-- both reads are one range of it. The subject is left out (as on
-- PostgreSQL): every mail on a ticket moves its entry, and with the
-- subject in it the index was half again as large and its updates ~40%
-- slower; the 50 rows of a page read their subjects from the table. It
-- replaces tickets_requester, of which it is a prefix.
DROP INDEX tickets_requester;
CREATE INDEX tickets_requester_activity
    ON tickets(requester, last_activity_at, number, status, created_at, assignee, queue);
