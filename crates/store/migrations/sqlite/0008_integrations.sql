-- Integrations: external vaults credvault pulls credentials from, read-only (issue 7).
-- settings: JSON of the non-secret settings (kind, url, credential_names, cache_expiry_seconds, ...).
-- secrets: the secret settings (tokens, secret_id, client key), sealed by the barrier with the binding
--   credvault:integration:<name>.
-- status: JSON {last_attempt, last_success, last_error, fetched}.
-- Mirrored credentials are ordinary credentials in the integration's safe with identifiers
-- 'mirror:<integration>/...'.
CREATE TABLE integrations (
    name         TEXT PRIMARY KEY,
    settings     TEXT NOT NULL,
    secrets      BLOB NOT NULL,
    safe         TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL,
    status       TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
