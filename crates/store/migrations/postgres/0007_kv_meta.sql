-- Vault KV v2 door (issue 7): per-secret state Vault has and the credential model does not.
-- meta: JSON {max_versions, cas_required, custom_metadata, delete_version_after,
--             deleted: {"<version>": "<rfc3339 deletion time>"}, destroyed: [versions]}.
-- A destroyed version's ciphertext is overwritten with an empty payload in credential_versions.
CREATE TABLE kv_meta (
    cred_id  TEXT PRIMARY KEY REFERENCES credentials(id) ON DELETE CASCADE,
    meta     TEXT NOT NULL
);
