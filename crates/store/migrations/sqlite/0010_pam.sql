-- PAM A2A door (issue 5): registered domains, the device registry, custody of read credentials.
-- Domains must be registered before a credential or device names them (`credvault domain add`).
-- name_key / abbreviation_key are lower-cased so lookups ignore case.
CREATE TABLE domains (
    name              TEXT PRIMARY KEY,
    name_key          TEXT NOT NULL UNIQUE,
    abbreviation      TEXT,
    abbreviation_key  TEXT UNIQUE,
    created_at        TEXT NOT NULL
);
-- Devices are created on the fly by A2A writes and reused by host name + IP. meta: the Device JSON
-- (type, vendor, model, site, domain, tags, connectivities). version: optimistic concurrency.
CREATE TABLE devices (
    id            TEXT PRIMARY KEY,
    hostname_key  TEXT NOT NULL,
    ip            TEXT NOT NULL,
    meta          TEXT NOT NULL,
    version       BIGINT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (hostname_key, ip)
);
-- Who holds a credential read through the A2A door until they release it.
CREATE TABLE custody (
    cred_id  TEXT PRIMARY KEY REFERENCES credentials(id) ON DELETE CASCADE,
    holder   TEXT NOT NULL,
    since    TEXT NOT NULL
);
-- The A2A fallback lookup: host name + IP + user name.
CREATE INDEX credentials_device_user ON credentials(hostname_key, ip, username_key);
-- Applications may be granted a safe for writing ('safe-write', stored beside the 'safe' read row).
-- SQLite cannot change a CHECK constraint: rebuild the table and its change-epoch triggers (0009).
CREATE TABLE app_grants_new (
    app_id  TEXT NOT NULL REFERENCES apps(app_id) ON DELETE CASCADE,
    kind    TEXT NOT NULL CHECK (kind IN ('safe', 'safe-write', 'credential')),
    target  TEXT NOT NULL,
    PRIMARY KEY (app_id, kind, target)
);
INSERT INTO app_grants_new (app_id, kind, target) SELECT app_id, kind, target FROM app_grants;
DROP TABLE app_grants;
ALTER TABLE app_grants_new RENAME TO app_grants;
CREATE TRIGGER app_grants_epoch_ins AFTER INSERT ON app_grants BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 1; END;
CREATE TRIGGER app_grants_epoch_upd AFTER UPDATE ON app_grants BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 1; END;
CREATE TRIGGER app_grants_epoch_del AFTER DELETE ON app_grants BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 1; END;
