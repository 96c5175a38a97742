-- The change feed of the read caches (issue 15). Row 1 (applications, migration 0009) gets two
-- siblings: 2 for identity and access (users, groups and their members, changed or removed tokens,
-- safes and their members) and 3 for credentials (credentials, their versions, KV metadata). Every
-- change to one of these tables bumps its area's counter inside its own transaction, on every
-- server; each server drops cached values of an area whose counter moved (store/src/feed.rs).
-- New tokens do not bump: a token nobody has used yet cannot be in a cache.
INSERT INTO change_epochs (id, epoch) VALUES (2, 0);
INSERT INTO change_epochs (id, epoch) VALUES (3, 0);

CREATE FUNCTION credvault_bump_area() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_epochs SET epoch = epoch + 1 WHERE id = TG_ARGV[0]::integer;
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_epoch AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_area('2');
CREATE TRIGGER groups_epoch AFTER INSERT OR UPDATE OR DELETE ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_area('2');
CREATE TRIGGER group_members_epoch AFTER INSERT OR UPDATE OR DELETE ON group_members
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_area('2');
CREATE TRIGGER tokens_epoch AFTER UPDATE OR DELETE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_area('2');
CREATE TRIGGER safes_epoch AFTER INSERT OR UPDATE OR DELETE ON safes
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_area('2');
CREATE TRIGGER safe_members_epoch AFTER INSERT OR UPDATE OR DELETE ON safe_members
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_area('2');
CREATE TRIGGER credentials_epoch AFTER INSERT OR UPDATE OR DELETE ON credentials
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_area('3');
CREATE TRIGGER credential_versions_epoch AFTER INSERT OR UPDATE OR DELETE ON credential_versions
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_area('3');
CREATE TRIGGER kv_meta_epoch AFTER INSERT OR UPDATE OR DELETE ON kv_meta
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_area('3');
