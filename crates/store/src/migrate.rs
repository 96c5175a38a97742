//! Copying a whole vault between backends (`credvault operator migrate`).
//!
//! Rows are copied as they are stored (ciphertexts, wrapped keys, token hashes and audit hashes
//! unchanged: the AEAD bindings and the chain do not depend on the backend), table by table in
//! foreign-key order, then verified: equal row counts everywhere and an identical, gap-free audit chain.

use crate::{Result, Store, StoreError};

/// The kind of a column, for moving values between backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Bool,
    Bytes,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
    Bytes(Vec<u8>),
}

pub struct TableSpec {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    pub order_by: &'static str,
}

use Kind::{Bool, Bytes, Int, Text};

/// Every table, in an order that satisfies foreign keys.
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "seal_config",
        columns: &[
            ("id", Int),
            ("shares", Int),
            ("threshold", Int),
            ("created_at", Text),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "keyring",
        columns: &[
            ("purpose", Text),
            ("term", Int),
            ("wrapped", Bytes),
            ("created_at", Text),
        ],
        order_by: "purpose, term",
    },
    TableSpec {
        name: "users",
        columns: &[
            ("name", Text),
            ("kind", Text),
            ("admin", Bool),
            ("password_hash", Text),
            ("created_at", Text),
        ],
        order_by: "name",
    },
    TableSpec {
        name: "groups",
        columns: &[("name", Text), ("created_at", Text)],
        order_by: "name",
    },
    TableSpec {
        name: "group_members",
        columns: &[("group_name", Text), ("user_name", Text)],
        order_by: "group_name, user_name",
    },
    TableSpec {
        name: "tokens",
        columns: &[
            ("id", Text),
            ("hash", Text),
            ("user_name", Text),
            ("description", Text),
            ("created_at", Text),
            ("expires_at", Text),
            ("revoked", Bool),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "safes",
        columns: &[("name", Text), ("description", Text), ("created_at", Text)],
        order_by: "name",
    },
    TableSpec {
        name: "safe_members",
        columns: &[
            ("safe_name", Text),
            ("kind", Text),
            ("name", Text),
            ("perms", Int),
        ],
        order_by: "safe_name, kind, name",
    },
    TableSpec {
        name: "credentials",
        columns: &[
            ("id", Text),
            ("identifier", Text),
            ("name", Text),
            ("username", Text),
            ("safe", Text),
            ("folder", Text),
            ("owner_kind", Text),
            ("owner_name", Text),
            ("hostname", Text),
            ("ip", Text),
            ("meta", Text),
            ("version", Int),
            ("created_at", Text),
            ("updated_at", Text),
            ("created_by", Text),
            ("updated_by", Text),
            ("name_key", Text),
            ("username_key", Text),
            ("hostname_key", Text),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "credential_versions",
        columns: &[
            ("cred_id", Text),
            ("version", Int),
            ("meta", Text),
            ("payload", Bytes),
            ("created_at", Text),
            ("created_by", Text),
            ("operation", Text),
        ],
        order_by: "cred_id, version",
    },
    TableSpec {
        name: "apps",
        columns: &[
            ("app_id", Text),
            ("owner", Text),
            ("description", Text),
            ("rules", Text),
            ("created_at", Text),
        ],
        order_by: "app_id",
    },
    TableSpec {
        name: "app_grants",
        columns: &[("app_id", Text), ("kind", Text), ("target", Text)],
        order_by: "app_id, kind, target",
    },
    // --- Vault KV door (issue 7) ---
    TableSpec {
        name: "kv_meta",
        columns: &[("cred_id", Text), ("meta", Text)],
        order_by: "cred_id",
    },
    // --- integrations (issue 7) ---
    TableSpec {
        name: "integrations",
        columns: &[
            ("name", Text),
            ("settings", Text),
            ("secrets", Bytes),
            ("safe", Text),
            ("enabled", Bool),
            ("status", Text),
            ("created_at", Text),
        ],
        order_by: "name",
    },
    // --- PAM A2A door (issue 5) ---
    TableSpec {
        name: "domains",
        columns: &[
            ("name", Text),
            ("name_key", Text),
            ("abbreviation", Text),
            ("abbreviation_key", Text),
            ("created_at", Text),
        ],
        order_by: "name",
    },
    TableSpec {
        name: "devices",
        columns: &[
            ("id", Text),
            ("hostname_key", Text),
            ("ip", Text),
            ("meta", Text),
            ("version", Int),
            ("created_at", Text),
            ("updated_at", Text),
        ],
        order_by: "id",
    },
    TableSpec {
        name: "custody",
        columns: &[("cred_id", Text), ("holder", Text), ("since", Text)],
        order_by: "cred_id",
    },
    // --- automatic password change (issue 17) ---
    TableSpec {
        name: "password_changes",
        columns: &[
            ("cred_id", Text),
            ("change_id", Text),
            ("pending", Bytes),
            ("started_at", Text),
            ("lease_owner", Text),
            ("lease_until", Text),
            ("lease_seq", Int),
            ("failures", Int),
            ("next_run_at", Text),
            ("last_attempt_at", Text),
            ("last_success_at", Text),
            ("last_result", Text),
            ("last_error", Text),
        ],
        order_by: "cred_id",
    },
    TableSpec {
        name: "audit_log",
        columns: &[
            ("seq", Int),
            ("time", Text),
            ("actor", Text),
            ("door", Text),
            ("action", Text),
            ("target", Text),
            ("source", Text),
            ("outcome", Text),
            ("detail", Text),
            ("hash", Bytes),
        ],
        order_by: "seq",
    },
    TableSpec {
        name: "audit_head",
        columns: &[("id", Int), ("seq", Int), ("hash", Bytes), ("mac", Bytes)],
        order_by: "id",
    },
    TableSpec {
        name: "audit_base",
        columns: &[("id", Int), ("seq", Int), ("hash", Bytes), ("mac", Bytes)],
        order_by: "id",
    },
];

const BATCH: i64 = 1000;

/// What a migration did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// (table, rows) for every table.
    pub tables: Vec<(&'static str, i64)>,
    pub audit_records: i64,
}

/// Total rows to copy (for a progress bar).
pub async fn total_rows(src: &dyn Store) -> Result<u64> {
    let mut n = 0;
    for t in TABLES {
        n += u64::try_from(src.count_rows(t).await?).unwrap_or(0);
    }
    Ok(n)
}

/// Copy every row from `src` to the empty `dst`, calling `progress(rows)` as rows land, then verify.
pub async fn copy(
    src: &dyn Store,
    dst: &dyn Store,
    mut progress: impl FnMut(u64),
) -> Result<Report> {
    if dst.seal_config().await?.is_some() {
        return Err(StoreError::Conflict(
            "the destination already holds a vault; migrate into an empty one".into(),
        ));
    }
    if src.seal_config().await?.is_none() {
        return Err(StoreError::NotFound("a vault at the source".into()));
    }
    for t in TABLES {
        let mut offset = 0;
        loop {
            let rows = src.export_rows(t, offset, BATCH).await?;
            if rows.is_empty() {
                break;
            }
            dst.import_rows(t, &rows).await?;
            progress(rows.len() as u64);
            offset += rows.len() as i64;
        }
    }
    verify(src, dst).await
}

/// Equal counts in every table, and the same gap-free audit chain on both sides.
pub async fn verify(src: &dyn Store, dst: &dyn Store) -> Result<Report> {
    let mut report = Report::default();
    for t in TABLES {
        let (a, b) = (src.count_rows(t).await?, dst.count_rows(t).await?);
        if a != b {
            return Err(StoreError::Corrupt(format!(
                "table {}: {a} rows at the source, {b} at the destination",
                t.name
            )));
        }
        report.tables.push((t.name, a));
    }
    let mut after = 0;
    loop {
        let (a, b) = (
            src.audit_rows(after, BATCH).await?,
            dst.audit_rows(after, BATCH).await?,
        );
        if a.len() != b.len() {
            return Err(StoreError::Corrupt(
                "the audit logs differ in length".into(),
            ));
        }
        if a.is_empty() {
            break;
        }
        for (x, y) in a.iter().zip(&b) {
            if x.seq != after + 1
                || x.seq != y.seq
                || x.hash != y.hash
                || x.canonical() != y.canonical()
            {
                return Err(StoreError::Corrupt(format!(
                    "audit record {} differs or is missing",
                    after + 1
                )));
            }
            after = x.seq;
        }
    }
    report.audit_records = after;
    Ok(report)
}
