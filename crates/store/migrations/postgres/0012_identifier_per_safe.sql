-- Names that cannot be squatted (issue 14): an identifier is unique within its safe (credentials
-- without a safe, e.g. entity credentials, form one more namespace), no longer across the vault, so
-- a credential in one safe cannot block an application that registers the same identifier in its
-- own.
ALTER TABLE credentials DROP CONSTRAINT IF EXISTS credentials_identifier_key;
CREATE UNIQUE INDEX credentials_safe_identifier ON credentials(COALESCE(safe, ''), identifier);
CREATE INDEX credentials_identifier ON credentials(identifier);
