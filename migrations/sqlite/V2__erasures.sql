-- One line per `postdesk erase`: when, which address (as the hex SHA-256
-- of its lower-cased form, never the address itself) and what was removed
-- (a JSON object of counts).
CREATE TABLE erasures (
    id             INTEGER PRIMARY KEY,
    erased_at      TEXT NOT NULL,
    address_sha256 TEXT NOT NULL,
    counts         TEXT NOT NULL
);
