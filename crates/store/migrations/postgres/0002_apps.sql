-- Applications: non-human callers identified by an AppID (Central Credential Provider door).
-- rules: JSON {"sources": [...], "certificates": [...], "header_secret_hash": "..."}.
CREATE TABLE apps (
    app_id       TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    description  TEXT,
    rules        TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

-- What an application may read: whole safes or single credentials.
CREATE TABLE app_grants (
    app_id  TEXT NOT NULL REFERENCES apps(app_id) ON DELETE CASCADE,
    kind    TEXT NOT NULL CHECK (kind IN ('safe', 'credential')),
    target  TEXT NOT NULL,
    PRIMARY KEY (app_id, kind, target)
);
