-- Names that cannot be squatted (issue 14): an identifier is unique within its safe (credentials
-- without a safe, e.g. entity credentials, form one more namespace), no longer across the vault, so
-- a credential in one safe cannot block an application that registers the same identifier in its
-- own. SQLite cannot drop a column-level UNIQUE (its automatic index) without rebuilding the table,
-- which would fight the foreign keys of credential_versions, kv_meta and custody; instead the old
-- column is renamed and emptied (its unique index then holds only NULLs) and a new `identifier`
-- column takes its values.
ALTER TABLE credentials RENAME COLUMN identifier TO identifier_0001_unused;
ALTER TABLE credentials ADD COLUMN identifier TEXT;
UPDATE credentials SET identifier = identifier_0001_unused, identifier_0001_unused = NULL;
CREATE UNIQUE INDEX credentials_safe_identifier ON credentials(COALESCE(safe, ''), identifier);
CREATE INDEX credentials_identifier ON credentials(identifier);
