-- Issue 16 (growth): every customer mail put its Message-ID into two
-- unique indexes, raw_mails.dedup_key and messages.message_id, each an
-- entry at a random place. One is enough (see the SQLite migration of the
-- same name): a received message is found through its raw mail; messages
-- without one (ours, and notes) keep a unique index on their ID.
ALTER TABLE messages DROP CONSTRAINT messages_message_id_key;
CREATE UNIQUE INDEX messages_raw_mail ON messages(raw_mail_id);
CREATE UNIQUE INDEX messages_without_raw ON messages(message_id) WHERE raw_mail_id IS NULL;
