-- Issue 12 §4: the quarantine holds only what could not be processed.
-- Machine mail that answers no ticket (auto-replies, bounces, bulk mail)
-- is kept in the same table, with its reason, as kind 'ignored', so that
-- `quarantine retry` and `drop` work for both; `quarantine list` and the
-- quarantine metric show the faults only. Rows from before are faults.
ALTER TABLE quarantine ADD COLUMN kind TEXT NOT NULL DEFAULT 'fault'
    CHECK (kind IN ('fault', 'ignored'));
