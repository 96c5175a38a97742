-- A keyed checkpoint of the audit chain's head (issue 14.5), written in the same transaction as every
-- append: the newest record's seq and hash, and mac = HMAC(audit key, "credvault:audit-head" ‖ seq ‖
-- hash) (`credvault_store::audit_head_mac`). Removing the newest audit records leaves the log ending
-- before the checkpoint, and the checkpoint cannot be moved back without the audit key, so
-- `audit verify` detects truncation. No row until the first append after this migration.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    mac   BLOB NOT NULL
);
