-- A counter bumped inside every transaction that changes what an application may do (its rules and
-- grants), so each server can drop its cached application authorisation when another server changed
-- it (issue 4). Servers poll it; local changes also clear the cache at once.
CREATE TABLE change_epochs (
    id     INTEGER PRIMARY KEY,
    epoch  BIGINT NOT NULL
);
INSERT INTO change_epochs (id, epoch) VALUES (1, 0);

CREATE TRIGGER apps_epoch_ins AFTER INSERT ON apps BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 1; END;
CREATE TRIGGER apps_epoch_upd AFTER UPDATE ON apps BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 1; END;
CREATE TRIGGER apps_epoch_del AFTER DELETE ON apps BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 1; END;
CREATE TRIGGER app_grants_epoch_ins AFTER INSERT ON app_grants BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 1; END;
CREATE TRIGGER app_grants_epoch_upd AFTER UPDATE ON app_grants BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 1; END;
CREATE TRIGGER app_grants_epoch_del AFTER DELETE ON app_grants BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 1; END;
