-- The change feed of the read caches (issue 15). Row 1 (applications, migration 0009) gets two
-- siblings: 2 for identity and access (users, groups and their members, changed or removed tokens,
-- safes and their members) and 3 for credentials (credentials, their versions, KV metadata). Every
-- change to one of these tables bumps its area's counter inside its own transaction, on every
-- server; each server drops cached values of an area whose counter moved (store/src/feed.rs).
-- New tokens do not bump: a token nobody has used yet cannot be in a cache.
INSERT INTO change_epochs (id, epoch) VALUES (2, 0);
INSERT INTO change_epochs (id, epoch) VALUES (3, 0);

CREATE TRIGGER users_epoch_ins AFTER INSERT ON users BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER users_epoch_upd AFTER UPDATE ON users BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER users_epoch_del AFTER DELETE ON users BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER groups_epoch_ins AFTER INSERT ON groups BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER groups_epoch_upd AFTER UPDATE ON groups BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER groups_epoch_del AFTER DELETE ON groups BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER group_members_epoch_ins AFTER INSERT ON group_members BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER group_members_epoch_upd AFTER UPDATE ON group_members BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER group_members_epoch_del AFTER DELETE ON group_members BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER tokens_epoch_upd AFTER UPDATE ON tokens BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER tokens_epoch_del AFTER DELETE ON tokens BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER safes_epoch_ins AFTER INSERT ON safes BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER safes_epoch_upd AFTER UPDATE ON safes BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER safes_epoch_del AFTER DELETE ON safes BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER safe_members_epoch_ins AFTER INSERT ON safe_members BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER safe_members_epoch_upd AFTER UPDATE ON safe_members BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER safe_members_epoch_del AFTER DELETE ON safe_members BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 2; END;
CREATE TRIGGER credentials_epoch_ins AFTER INSERT ON credentials BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 3; END;
CREATE TRIGGER credentials_epoch_upd AFTER UPDATE ON credentials BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 3; END;
CREATE TRIGGER credentials_epoch_del AFTER DELETE ON credentials BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 3; END;
CREATE TRIGGER credential_versions_epoch_ins AFTER INSERT ON credential_versions BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 3; END;
CREATE TRIGGER credential_versions_epoch_upd AFTER UPDATE ON credential_versions BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 3; END;
CREATE TRIGGER credential_versions_epoch_del AFTER DELETE ON credential_versions BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 3; END;
CREATE TRIGGER kv_meta_epoch_ins AFTER INSERT ON kv_meta BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 3; END;
CREATE TRIGGER kv_meta_epoch_upd AFTER UPDATE ON kv_meta BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 3; END;
CREATE TRIGGER kv_meta_epoch_del AFTER DELETE ON kv_meta BEGIN UPDATE change_epochs SET epoch = epoch + 1 WHERE id = 3; END;
