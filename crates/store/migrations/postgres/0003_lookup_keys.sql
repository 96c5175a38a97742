-- Case-folded lookup keys (written by the application with the same folding the doors match with),
-- so application reads by object name, user name or address are index lookups, not scans.
ALTER TABLE credentials ADD COLUMN name_key TEXT;
ALTER TABLE credentials ADD COLUMN username_key TEXT;
ALTER TABLE credentials ADD COLUMN hostname_key TEXT;
UPDATE credentials SET name_key = lower(name), username_key = lower(username), hostname_key = lower(hostname);
CREATE INDEX credentials_name_key ON credentials(name_key);
CREATE INDEX credentials_username_key ON credentials(username_key);
CREATE INDEX credentials_hostname_key ON credentials(hostname_key);
CREATE INDEX credentials_ip ON credentials(ip);
