//! [`CredentialStore`]: credentials, their versions, and the Vault KV door's per-secret state.

use async_trait::async_trait;
use credvault_core::model::{Credential, VersionInfo};
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::common::{
    bytes, conflict_as, cred_from, exec, identifier_taken, insert_one, insert_version, lookup,
    meta_from, meta_json, not_found_if_zero, s, version_info_from, Conn, DbRow, CRED_COLS,
};
use super::{dialect, Backend, Db};
use crate::sql::db_err;
use crate::{
    format_time, AuditAppend, CredentialFilter, CredentialStore, CredentialWithPayload, LookupKey,
    NewVersion, Result, StoreError, StoredVersion, Visibility,
};

/// A credential and its current version's payload: [`CRED_COLS`] of `c` joined with `v`.
const CRED_WITH_PAYLOAD: &str =
    "SELECT c.id, c.meta, c.version, c.created_at, c.updated_at, c.created_by, c.updated_by,
            v.payload
     FROM credentials c
     JOIN credential_versions v ON v.cred_id = c.id AND v.version = c.version";

fn with_payload_from(r: &DbRow) -> Result<CredentialWithPayload> {
    Ok(CredentialWithPayload {
        credential: cred_from(r)?,
        payload: bytes(r, "payload")?,
    })
}

/// `q` += ` IN ($1, $2, …)` over `values` (not empty).
fn push_in(q: &mut QueryBuilder<'_, Db>, values: &[String]) {
    q.push(" IN (");
    let mut sep = q.separated(", ");
    for v in values {
        sep.push_bind(v.clone());
    }
    q.push(")");
}

/// Replace the current state of `cred` inside `tx` when it is still at `expected_version`, and
/// insert its new version (`cred.version`). `VersionMismatch` or `NotFound` otherwise.
pub(super) async fn update_in(
    tx: &mut Conn,
    cred: &Credential,
    expected_version: i64,
    v: &NewVersion,
) -> Result<()> {
    let meta = meta_json(&cred.meta)?;
    let l = lookup(&cred.meta);
    let n = sqlx::query(
        "UPDATE credentials
         SET identifier = $1, name = $2, username = $3, safe = $4, folder = $5,
             owner_kind = $6, owner_name = $7, hostname = $8, ip = $9, meta = $10,
             version = $11, updated_at = $12, updated_by = $13,
             name_key = $16, username_key = $17, hostname_key = $18
         WHERE id = $14 AND version = $15",
    )
    .bind(&cred.meta.identifier)
    .bind(&cred.meta.name)
    .bind(&cred.meta.username)
    .bind(l.safe)
    .bind(l.folder)
    .bind(l.owner_kind)
    .bind(l.owner_name)
    .bind(l.hostname)
    .bind(l.ip)
    .bind(&meta)
    .bind(cred.version)
    .bind(format_time(cred.updated_at))
    .bind(&cred.updated_by)
    .bind(cred.id.to_string())
    .bind(expected_version)
    .bind(&l.name_key)
    .bind(&l.username_key)
    .bind(&l.hostname_key)
    .execute(&mut *tx)
    .await
    .map_err(conflict_as(identifier_taken()))?
    .rows_affected();
    if n == 0 {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM credentials WHERE id = $1")
                .bind(cred.id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        return Err(match current {
            Some(current) => StoreError::VersionMismatch { current },
            None => StoreError::NotFound("credential".into()),
        });
    }
    insert_version(tx, cred, &meta, v).await
}

#[async_trait]
impl CredentialStore for Backend {
    async fn insert_credential(
        &self,
        cred: &Credential,
        v: &NewVersion,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_one(&mut tx, cred, v).await?;
        self.commit_audited(tx, audit).await
    }

    async fn insert_credentials(
        &self,
        batch: &[(Credential, NewVersion)],
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (cred, v) in batch {
            insert_one(&mut tx, cred, v).await?;
        }
        self.commit_audited(tx, audit).await
    }

    async fn update_credential(
        &self,
        cred: &Credential,
        expected_version: i64,
        v: &NewVersion,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        update_in(&mut tx, cred, expected_version, v).await?;
        self.commit_audited(tx, audit).await
    }

    async fn get_credential(&self, id: Uuid) -> Result<Option<Credential>> {
        sqlx::query(&format!(
            "SELECT {CRED_COLS} FROM credentials WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(cred_from)
        .transpose()
    }

    async fn credential_by_identifier(&self, identifier: &str) -> Result<Option<Credential>> {
        sqlx::query(&format!(
            "SELECT {CRED_COLS} FROM credentials WHERE identifier = $1"
        ))
        .bind(identifier)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(cred_from)
        .transpose()
    }

    async fn credential_with_payload(&self, id: Uuid) -> Result<Option<CredentialWithPayload>> {
        sqlx::query(&format!("{CRED_WITH_PAYLOAD} WHERE c.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(with_payload_from)
            .transpose()
    }

    async fn list_credentials(&self, f: &CredentialFilter) -> Result<Vec<Credential>> {
        // SELECT … FROM credentials WHERE 1=1 [AND <filter>…] [AND <visibility>]
        // ORDER BY id LIMIT $n
        let mut q: QueryBuilder<Db> =
            QueryBuilder::new(format!("SELECT {CRED_COLS} FROM credentials WHERE 1=1"));
        let eq = [
            ("safe", &f.safe),
            ("folder", &f.folder),
            ("name", &f.name),
            ("username", &f.username),
            ("identifier", &f.identifier),
            ("hostname", &f.hostname),
            ("ip", &f.ip),
        ];
        for (col, val) in eq {
            if let Some(v) = val {
                q.push(format!(" AND {col} = ")).push_bind(v.clone());
            }
        }
        if let Some(p) = &f.identifier_prefix {
            // A range on the identifier index: [prefix, prefix with its last byte + 1).
            let (lower, upper) = dialect::IDENTIFIER_RANGE;
            q.push(lower)
                .push_bind(p.clone())
                .push(upper)
                .push_bind(prefix_end(p));
        }
        if let Some(t) = &f.tag {
            let (before, after) = dialect::TAG_FILTER;
            q.push(before).push_bind(t.clone()).push(after);
        }
        if let Some(o) = &f.owner {
            q.push(" AND owner_kind = ")
                .push_bind(o.kind.as_str())
                .push(" AND owner_name = ")
                .push_bind(o.name.clone());
        }
        if let Some(a) = f.after {
            q.push(" AND id > ").push_bind(a.to_string());
        }
        if let Visibility::Restricted {
            user,
            groups,
            safes,
        } = &f.visibility
        {
            // Owned by the user or one of its groups, or in one of the safes.
            q.push(" AND ((owner_kind = 'user' AND owner_name = ")
                .push_bind(user.clone())
                .push(")");
            if !groups.is_empty() {
                q.push(" OR (owner_kind = 'group' AND owner_name");
                push_in(&mut q, groups);
                q.push(")");
            }
            if !safes.is_empty() {
                q.push(" OR safe");
                push_in(&mut q, safes);
            }
            q.push(")");
        }
        q.push(" ORDER BY id LIMIT ").push_bind(f.limit);
        let rows = q.build().fetch_all(&self.reader).await.map_err(db_err)?;
        rows.iter().map(cred_from).collect()
    }

    async fn find_by_key(
        &self,
        key: LookupKey,
        value: &str,
        safes: &[String],
        ids: &[String],
        limit: i64,
    ) -> Result<Vec<CredentialWithPayload>> {
        if safes.is_empty() && ids.is_empty() {
            return Ok(Vec::new());
        }
        // The current version's payload comes with the row: one round trip for the CCP read.
        // … WHERE c.<key> = $1 AND (1=0 [OR c.safe IN (…)] [OR c.id IN (…)])
        // ORDER BY c.id LIMIT $n
        let mut q: QueryBuilder<Db> =
            QueryBuilder::new(format!("{CRED_WITH_PAYLOAD} WHERE c.{} = ", key.column()));
        q.push_bind(value.to_owned()).push(" AND (1=0");
        if !safes.is_empty() {
            q.push(" OR c.safe");
            push_in(&mut q, safes);
        }
        if !ids.is_empty() {
            q.push(" OR c.id");
            push_in(&mut q, ids);
        }
        q.push(") ORDER BY c.id LIMIT ").push_bind(limit);
        let rows = q.build().fetch_all(&self.reader).await.map_err(db_err)?;
        rows.iter().map(with_payload_from).collect()
    }

    async fn delete_credential(&self, id: Uuid, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = exec(
            &mut *tx,
            "DELETE FROM credentials WHERE id = $1",
            &[&id.to_string()],
        )
        .await?;
        not_found_if_zero(n, "credential")?;
        self.commit_audited(tx, audit).await
    }

    async fn list_versions(&self, id: Uuid) -> Result<Vec<VersionInfo>> {
        let rows = sqlx::query(
            "SELECT version, created_at, created_by, operation
             FROM credential_versions
             WHERE cred_id = $1
             ORDER BY version",
        )
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(version_info_from).collect()
    }

    async fn get_version(&self, id: Uuid, version: i64) -> Result<Option<StoredVersion>> {
        let row = sqlx::query(
            "SELECT version, created_at, created_by, operation, meta, payload
             FROM credential_versions
             WHERE cred_id = $1 AND version = $2",
        )
        .bind(id.to_string())
        .bind(version)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        row.map(|r| {
            Ok(StoredVersion {
                info: version_info_from(&r)?,
                meta: meta_from(&s(&r, "meta")?)?,
                payload: bytes(&r, "payload")?,
            })
        })
        .transpose()
    }

    // --- Vault KV door (issue 7)

    async fn kv_meta(&self, id: Uuid) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT meta FROM kv_meta WHERE cred_id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)
    }

    async fn set_kv_meta(
        &self,
        id: Uuid,
        expected: Option<&str>,
        meta: &str,
        destroy: &[i64],
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let changed = match expected {
            Some(old) => {
                exec(
                    &mut *tx,
                    "UPDATE kv_meta SET meta = $1 WHERE cred_id = $2 AND meta = $3",
                    &[meta, &id.to_string(), old],
                )
                .await?
            }
            None => sqlx::query(
                "INSERT INTO kv_meta (cred_id, meta)
                 VALUES ($1, $2)",
            )
            .bind(id.to_string())
            .bind(meta)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as(StoreError::VersionMismatch { current: 0 }))?
            .rows_affected(),
        };
        if changed == 0 {
            return Err(StoreError::VersionMismatch { current: 0 });
        }
        for version in destroy {
            sqlx::query(
                "UPDATE credential_versions
                 SET payload = $1
                 WHERE cred_id = $2 AND version = $3",
            )
            .bind(Vec::<u8>::new())
            .bind(id.to_string())
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        self.commit_audited(tx, audit).await
    }
}

/// The least string greater than every string starting with `prefix` whose last character is ASCII
/// (`a/b/` → `a/b0`); a prefix ending otherwise gets itself followed by U+10FFFF, which no stored
/// identifier exceeds in practice.
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_owned();
    match end.pop() {
        Some(c) if c.is_ascii() && c != '\x7f' => end.push(char::from(c as u8 + 1)),
        Some(c) => {
            end.push(c);
            end.push(char::MAX);
        }
        None => end.push(char::MAX),
    }
    end
}
