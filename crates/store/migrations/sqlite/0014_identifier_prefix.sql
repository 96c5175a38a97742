-- Listings cost what they return (issue 15): a Vault-KV LIST of one folder reads the folder's
-- descendants by a range on the identifier, served by credentials_identifier (0012; SQLite compares
-- text bytewise). Nothing to add here; the migration keeps both dialects' numbering in step.
SELECT 1;
