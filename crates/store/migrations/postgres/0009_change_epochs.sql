-- A counter bumped inside every transaction that changes what an application may do (its rules and
-- grants), so each server can drop its cached application authorisation when another server changed
-- it (issue 4). Servers poll it; local changes also clear the cache at once.
CREATE TABLE change_epochs (
    id     INTEGER PRIMARY KEY,
    epoch  BIGINT NOT NULL
);
INSERT INTO change_epochs (id, epoch) VALUES (1, 0);

CREATE FUNCTION credvault_bump_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER apps_epoch AFTER INSERT OR UPDATE OR DELETE ON apps
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_epoch();
CREATE TRIGGER app_grants_epoch AFTER INSERT OR UPDATE OR DELETE ON app_grants
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_epoch();
