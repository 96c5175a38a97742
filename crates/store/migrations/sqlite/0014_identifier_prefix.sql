-- Listings cost what they return (issue 15): a Vault-KV LIST of one folder reads the folder's
-- descendants in its safe (the mount) by a range on the identifier. With only credentials_safe,
-- SQLite read the whole safe to find them; this index serves the safe and the range together.
CREATE INDEX credentials_safe_identifier_range ON credentials(safe, identifier);

-- Fetch-credentials resolves a name (`name = $1`): with 1,000,000 credentials and no index on the
-- name alone (credentials_safe leads with the safe) every fetch read the whole table.
CREATE INDEX credentials_name ON credentials(name);
