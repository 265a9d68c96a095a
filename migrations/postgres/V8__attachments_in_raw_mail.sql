-- Issue 16 §1: an attachment is kept once, in the raw mail that carries
-- it, and served from there: raw_offset and raw_length say where its
-- encoded bytes sit in raw_mails.bytes of its message's raw mail, and
-- encoding how to decode them ('base64', 'quoted-printable', 'plain').
-- Ingest records them only when decoding them gives the bytes the parser
-- gave. Where encoding is NULL (older rows, or a part whose decoded bytes
-- differ from any span of the raw mail, such as a text part converted to
-- UTF-8) the bytes are in blobs, as before. sha256 no longer references
-- blobs, which a row with a span has no row in. SQLite makes the table
-- again for that; PostgreSQL alters it in place, to the same end state
-- (same columns in the same order, same checks, ids unchanged).
ALTER TABLE attachments DROP CONSTRAINT attachments_sha256_fkey;
ALTER TABLE attachments
    ADD COLUMN raw_offset BIGINT,
    ADD COLUMN raw_length BIGINT,
    ADD COLUMN encoding   TEXT CHECK (encoding IN ('base64', 'quoted-printable', 'plain')),
    ADD CHECK ((encoding IS NULL) = (raw_offset IS NULL) AND (encoding IS NULL) = (raw_length IS NULL));
