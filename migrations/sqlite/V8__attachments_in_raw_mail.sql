-- Issue 16 §1: an attachment is kept once, in the raw mail that carries
-- it, and served from there: raw_offset and raw_length say where its
-- encoded bytes sit in raw_mails.bytes of its message's raw mail, and
-- encoding how to decode them ('base64', 'quoted-printable', 'plain').
-- Ingest records them only when decoding them gives the bytes the parser
-- gave. Where encoding is NULL (older rows, or a part whose decoded bytes
-- differ from any span of the raw mail, such as a text part converted to
-- UTF-8) the bytes are in blobs, as before. The table is made again
-- because its sha256 column referenced blobs, which a row with a span no
-- longer has; ids stay the same (they are in download links).
CREATE TABLE attachments_v8 (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES messages(id),
    filename    TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    content_id  TEXT,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    raw_offset  INTEGER,
    raw_length  INTEGER,
    encoding    TEXT CHECK (encoding IN ('base64', 'quoted-printable', 'plain')),
    CHECK ((encoding IS NULL) = (raw_offset IS NULL) AND (encoding IS NULL) = (raw_length IS NULL))
);
INSERT INTO attachments_v8 (id, message_id, filename, media_type, content_id, sha256, size)
    SELECT id, message_id, filename, media_type, content_id, sha256, size FROM attachments;
DROP TABLE attachments;
ALTER TABLE attachments_v8 RENAME TO attachments;
CREATE INDEX attachments_message ON attachments(message_id);
