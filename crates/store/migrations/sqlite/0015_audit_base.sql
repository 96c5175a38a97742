-- Where the audit chain starts after an archive (issue 16.2, `credvault audit archive`): the seq and
-- hash of the last record moved out to an archive file, and mac = HMAC(audit key,
-- "credvault:audit-base" ‖ seq ‖ hash) (`credvault_store::audit_base_mac`). `audit verify` walks the
-- chain from here; records removed before it without an archive (no checkpoint moved) are missing.
-- No row until the first archive.
CREATE TABLE audit_base (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    mac   BLOB NOT NULL
);
