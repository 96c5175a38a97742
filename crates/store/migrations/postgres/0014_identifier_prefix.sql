-- Listings cost what they return (issue 15): a Vault-KV LIST of one folder reads the folder's
-- descendants in its safe (the mount) by a bytewise range on the identifier. The database's
-- collation may not be bytewise, so the range is taken under COLLATE "C", served by this index.
CREATE INDEX credentials_safe_identifier_range ON credentials(safe, identifier COLLATE "C");

-- Fetch-credentials resolves a name (`name = $1`): with 1,000,000 credentials and no index on the
-- name alone (credentials_safe leads with the safe) every fetch read the whole table.
CREATE INDEX credentials_name ON credentials(name);
