-- Automatic password change (issue 17): the engine's state, one row per credential it has worked
-- on. A change in flight has a `change_id` and its new value sealed in `pending` (binding
-- `credvault:pwchange:<cred_id>:<change_id>`); the credential's current version stays the working
-- value until the target accepted the new one. `lease_owner`/`lease_until` let one server at a time
-- work on a credential; `lease_seq` moves on every take, and every write of the row is conditional
-- on it (compare-and-swap), so a server whose lease was taken over writes nothing.
CREATE TABLE password_changes (
    cred_id          TEXT PRIMARY KEY REFERENCES credentials(id) ON DELETE CASCADE,
    change_id        TEXT,
    pending          BYTEA,
    started_at       TEXT,
    lease_owner      TEXT,
    lease_until      TEXT,
    lease_seq        BIGINT NOT NULL DEFAULT 0,
    failures         BIGINT NOT NULL DEFAULT 0,
    next_run_at      TEXT,
    last_attempt_at  TEXT,
    last_success_at  TEXT,
    last_result      TEXT,
    last_error       TEXT
);

-- A change in flight changes what the CCP door answers (`PasswordChangeInProcess`): area 3.
CREATE TRIGGER password_changes_epoch AFTER INSERT OR UPDATE OR DELETE ON password_changes
    FOR EACH STATEMENT EXECUTE FUNCTION credvault_bump_area('3');
