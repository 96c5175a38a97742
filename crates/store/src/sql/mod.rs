//! The SQL shared by every backend, written once, one file per area of [`Store`](crate::Store).
//!
//! The files beside this one are compiled once per backend: `sqlite.rs` and `postgres.rs` each
//! declare them as their own child modules with `#[path = "sql/<area>.rs"]`, after defining
//!
//! * `type Db` (the sqlx database type) and `type Backend` (the store struct, with `writer` and
//!   `reader` pools),
//! * `mod dialect`: the few statements that differ (`BEGIN_WRITE`, `NAME`, `TAG_FILTER`,
//!   `AUDIT_LOCK`, `SNAPSHOT`, `DEVICE_USER_LOCK`).
//!
//! So each area file is plain Rust over `super::Db`, written once, with no macro: `common.rs`
//! (row mapping, write transactions, the credential insert, `append_in`: the audit append inside
//! a write transaction), `keyring.rs`, `identity.rs`, `credentials.rs`, `apps.rs`, `audit.rs`,
//! `pam.rs`, `integrations.rs`, `backup.rs`. Placeholders are `$1, $2, …` (PostgreSQL's form,
//! which sqlx also accepts for SQLite). This module holds what does not depend on the backend.

use crate::StoreError;

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() || d.is_foreign_key_violation() => {
            StoreError::Conflict(d.message().to_owned())
        }
        // PostgreSQL text cannot hold NUL (22021: character not in repertoire; 22P05: untranslatable
        // character): the caller's input, not an outage.
        sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("22021" | "22P05")) => {
            StoreError::Invalid("text may not contain NUL characters".into())
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}
