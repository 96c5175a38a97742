-- credvault schema, PostgreSQL edition (same tables and columns as the SQLite one). Times are RFC 3339 text (UTC); ids are UUIDv7 text.

CREATE TABLE seal_config (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    shares      BIGINT  NOT NULL,
    threshold   BIGINT  NOT NULL,
    created_at  TEXT NOT NULL
);

-- Key material wrapped by the root key. purpose: 'data' (numbered terms), 'token', 'audit'.
CREATE TABLE keyring (
    purpose     TEXT NOT NULL,
    term        BIGINT  NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (purpose, term)
);

CREATE TABLE users (
    name           TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('human', 'service')),
    admin          BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash  TEXT,
    created_at     TEXT NOT NULL
);

CREATE TABLE groups (
    name        TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);

CREATE TABLE group_members (
    group_name  TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    user_name   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_name)
);
CREATE INDEX group_members_user ON group_members(user_name);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    user_name    TEXT NOT NULL,
    description  TEXT,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked      BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX tokens_user ON tokens(user_name);

CREATE TABLE safes (
    name         TEXT PRIMARY KEY,
    description  TEXT,
    created_at   TEXT NOT NULL
);

CREATE TABLE safe_members (
    safe_name  TEXT NOT NULL REFERENCES safes(name) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    name       TEXT NOT NULL,
    perms      BIGINT  NOT NULL,
    PRIMARY KEY (safe_name, kind, name)
);

-- The current state of each credential. Lookup columns are copied out of `meta` for indexes.
CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    identifier  TEXT UNIQUE,
    name        TEXT NOT NULL,
    username    TEXT NOT NULL,
    safe        TEXT,
    folder      TEXT,
    owner_kind  TEXT,
    owner_name  TEXT,
    hostname    TEXT,
    ip          TEXT,
    meta        TEXT NOT NULL,
    version     BIGINT  NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    updated_by  TEXT NOT NULL
);
CREATE INDEX credentials_safe ON credentials(safe, folder, name);
CREATE INDEX credentials_username ON credentials(username);
CREATE INDEX credentials_device ON credentials(hostname, ip, username);
CREATE INDEX credentials_owner ON credentials(owner_kind, owner_name);

-- Every version: metadata snapshot plus the encrypted secret payload, bound to (id, version).
CREATE TABLE credential_versions (
    cred_id     TEXT NOT NULL REFERENCES credentials(id) ON DELETE CASCADE,
    version     BIGINT  NOT NULL,
    meta        TEXT NOT NULL,
    payload     BYTEA NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    operation   TEXT NOT NULL,
    PRIMARY KEY (cred_id, version)
);

-- Append-only, hash-chained audit log. hash = HMAC(audit key, previous hash ‖ canonical record).
CREATE TABLE audit_log (
    seq      BIGINT  PRIMARY KEY,
    time     TEXT NOT NULL,
    actor    TEXT NOT NULL,
    door     TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    source   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    detail   TEXT NOT NULL,
    hash     BYTEA NOT NULL
);
