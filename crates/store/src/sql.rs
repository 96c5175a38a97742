//! The SQL shared by every backend, written once.
//!
//! `sql_store!` expands to the row helpers and the [`Store`](crate::Store) implementation for one
//! sqlx database type. Placeholders are `$1, $2, …` (PostgreSQL's form, which sqlx also accepts for
//! SQLite); the few statements that differ come from the backend module's `dialect` constants
//! (`NAME`, `TAG_FILTER`, `AUDIT_LOCK`). The backend struct provides `writer` and `reader` pools.

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

macro_rules! sql_store {
    ($store:ty, $db:ty) => {
use async_trait::async_trait;
use credvault_core::model::{
    Credential, CredentialMeta, Group, Safe, SafeMember, TokenInfo, User, UserKind, VersionInfo,
};
use sqlx::{QueryBuilder, Row};
use uuid::Uuid;
use $crate::sql::{corrupt, db_err};
use $crate::{
    format_time, parse_time, AuditRow, ChainFn, CredentialFilter, NewAudit, NewVersion, Result,
    SealConfig, StoreError, StoredVersion, Visibility, WrappedKey,
};

type Db = $db;
type DbRow = <Db as sqlx::Database>::Row;

fn s(row: &DbRow, col: &str) -> Result<String> {
    row.try_get::<String, _>(col).map_err(db_err)
}
fn os(row: &DbRow, col: &str) -> Result<Option<String>> {
    row.try_get::<Option<String>, _>(col).map_err(db_err)
}
fn uuid(row: &DbRow, col: &str) -> Result<Uuid> {
    Uuid::parse_str(&s(row, col)?).map_err(|_| corrupt("bad id"))
}

fn user_from(row: &DbRow) -> Result<User> {
    Ok(User {
        name: s(row, "name")?,
        kind: UserKind::parse(&s(row, "kind")?).ok_or_else(|| corrupt("user kind"))?,
        admin: row.try_get::<bool, _>("admin").map_err(db_err)?,
        created_at: parse_time(&s(row, "created_at")?)?,
    })
}

fn token_from(row: &DbRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: uuid(row, "id")?,
        user: s(row, "user_name")?,
        description: os(row, "description")?,
        created_at: parse_time(&s(row, "created_at")?)?,
        expires_at: os(row, "expires_at")?.map(|t| parse_time(&t)).transpose()?,
        revoked: row.try_get::<bool, _>("revoked").map_err(db_err)?,
    })
}

fn meta_from(json: &str) -> Result<CredentialMeta> {
    serde_json::from_str(json).map_err(|_| corrupt("credential metadata"))
}

fn meta_json(meta: &CredentialMeta) -> Result<String> {
    serde_json::to_string(meta).map_err(|_| corrupt("credential metadata"))
}

fn cred_from(row: &DbRow) -> Result<Credential> {
    Ok(Credential {
        id: uuid(row, "id")?,
        meta: meta_from(&s(row, "meta")?)?,
        version: row.try_get::<i64, _>("version").map_err(db_err)?,
        created_at: parse_time(&s(row, "created_at")?)?,
        updated_at: parse_time(&s(row, "updated_at")?)?,
        created_by: s(row, "created_by")?,
        updated_by: s(row, "updated_by")?,
    })
}

fn version_info_from(row: &DbRow) -> Result<VersionInfo> {
    Ok(VersionInfo {
        version: row.try_get::<i64, _>("version").map_err(db_err)?,
        created_at: parse_time(&s(row, "created_at")?)?,
        created_by: s(row, "created_by")?,
        operation: s(row, "operation")?,
    })
}

fn integration_from(row: &DbRow) -> Result<$crate::IntegrationRecord> {
    Ok($crate::IntegrationRecord {
        name: s(row, "name")?,
        settings: s(row, "settings")?,
        secrets: row.try_get::<Vec<u8>, _>("secrets").map_err(db_err)?,
        safe: s(row, "safe")?,
        enabled: row.try_get::<bool, _>("enabled").map_err(db_err)?,
        status: s(row, "status")?,
        created_at: parse_time(&s(row, "created_at")?)?,
    })
}

/// One row as cells of its table's column kinds.
fn cells_of(r: &DbRow, t: &$crate::migrate::TableSpec) -> Result<Vec<$crate::migrate::Cell>> {
    use $crate::migrate::{Cell, Kind};
    t.columns
        .iter()
        .map(|(c, k)| {
            Ok(match k {
                Kind::Text => r.try_get::<Option<String>, _>(*c).map_err(db_err)?.map(Cell::Text),
                Kind::Int => r.try_get::<Option<i64>, _>(*c).map_err(db_err)?.map(Cell::Int),
                Kind::Bool => r.try_get::<Option<bool>, _>(*c).map_err(db_err)?.map(Cell::Bool),
                Kind::Bytes => r.try_get::<Option<Vec<u8>>, _>(*c).map_err(db_err)?.map(Cell::Bytes),
            }
            .unwrap_or(Cell::Null))
        })
        .collect()
}

fn domain_from(row: &DbRow) -> Result<credvault_core::model::Domain> {
    Ok(credvault_core::model::Domain {
        name: s(row, "name")?,
        abbreviation: os(row, "abbreviation")?,
        created_at: parse_time(&s(row, "created_at")?)?,
    })
}

fn device_from(row: &DbRow) -> Result<$crate::DeviceRecord> {
    Ok($crate::DeviceRecord {
        id: uuid(row, "id")?,
        device: serde_json::from_str(&s(row, "meta")?).map_err(|_| corrupt("device"))?,
        version: row.try_get::<i64, _>("version").map_err(db_err)?,
        created_at: parse_time(&s(row, "created_at")?)?,
        updated_at: parse_time(&s(row, "updated_at")?)?,
    })
}

fn app_from(row: &DbRow) -> Result<$crate::AppRecord> {
    Ok($crate::AppRecord {
        app_id: s(row, "app_id")?,
        owner: s(row, "owner")?,
        description: os(row, "description")?,
        rules: s(row, "rules")?,
        created_at: parse_time(&s(row, "created_at")?)?,
    })
}

fn audit_from(row: &DbRow) -> Result<AuditRow> {
    Ok(AuditRow {
        seq: row.try_get::<i64, _>("seq").map_err(db_err)?,
        time: s(row, "time")?,
        actor: s(row, "actor")?,
        door: s(row, "door")?,
        action: s(row, "action")?,
        target: s(row, "target")?,
        source: s(row, "source")?,
        outcome: s(row, "outcome")?,
        detail: s(row, "detail")?,
        hash: row.try_get::<Vec<u8>, _>("hash").map_err(db_err)?,
    })
}

const CRED_COLS: &str = "id, meta, version, created_at, updated_at, created_by, updated_by";

async fn insert_version(
    tx: &mut <Db as sqlx::Database>::Connection,
    cred: &Credential,
    meta: &str,
    v: &NewVersion,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO credential_versions (cred_id, version, meta, payload, created_at, created_by, operation)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(cred.id.to_string())
    .bind(cred.version)
    .bind(meta)
    .bind(&v.payload)
    .bind(format_time(cred.updated_at))
    .bind(&cred.updated_by)
    .bind(&v.operation)
    .execute(tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The lookup columns copied out of the metadata.
struct Lookup<'a> {
    safe: Option<&'a str>,
    folder: Option<&'a str>,
    owner_kind: Option<&'static str>,
    owner_name: Option<&'a str>,
    hostname: Option<&'a str>,
    ip: Option<&'a str>,
    name_key: String,
    username_key: String,
    hostname_key: Option<String>,
}

fn lookup(m: &CredentialMeta) -> Lookup<'_> {
    Lookup {
        safe: m.safe.as_deref(),
        folder: m.folder.as_deref(),
        owner_kind: m.owner.as_ref().map(|o| o.kind.as_str()),
        owner_name: m.owner.as_ref().map(|o| o.name.as_str()),
        hostname: m.device.as_ref().map(|d| d.hostname.as_str()),
        ip: m.device.as_ref().map(|d| d.ip.as_str()),
        name_key: credvault_core::ccp::fold(&m.name),
        username_key: credvault_core::ccp::fold(&m.username),
        hostname_key: m.device.as_ref().map(|d| credvault_core::ccp::fold(&d.hostname)),
    }
}

/// Run a statement whose parameters are all text; returns the rows affected.
async fn exec<'c, E>(conn: E, sql: &str, args: &[&str]) -> Result<u64>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    let mut q = sqlx::query(sql);
    for a in args {
        q = q.bind(*a);
    }
    Ok(q.execute(conn).await.map_err(db_err)?.rows_affected())
}

/// Insert a new credential and its first version inside `tx`.
async fn insert_one(
    tx: &mut sqlx::Transaction<'_, Db>,
    cred: &Credential,
    v: &NewVersion,
) -> Result<()> {
    let meta = meta_json(&cred.meta)?;
    let l = lookup(&cred.meta);
    sqlx::query(
        "INSERT INTO credentials (id, identifier, name, username, safe, folder, owner_kind, owner_name,
           hostname, ip, meta, version, created_at, updated_at, created_by, updated_by,
           name_key, username_key, hostname_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(cred.id.to_string())
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
    .bind(format_time(cred.created_at))
    .bind(format_time(cred.updated_at))
    .bind(&cred.created_by)
    .bind(&cred.updated_by)
    .bind(&l.name_key)
    .bind(&l.username_key)
    .bind(&l.hostname_key)
    .execute(&mut **tx)
    .await
    .map_err(|e| match db_err(e) {
        StoreError::Conflict(_) => StoreError::Conflict("a credential with this identifier already exists".into()),
        other => other,
    })?;
    insert_version(tx, cred, &meta, v).await
}

fn not_found_if_zero(n: u64, what: &str) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound(what.to_owned()))
    } else {
        Ok(())
    }
}

/// Append `audit`'s records inside the write transaction `tx`: take the chain lock, read the head,
/// chain and insert the rows, move the keyed checkpoint (`audit_head`) to the new head. Call it as
/// the last statement before commit: the chain lock (PostgreSQL) is then held only until the commit
/// and is never taken before a row lock, so it cannot form a lock cycle with the write's own locks.
///
/// The chain continues from the checkpoint, not from whatever row is last in the table: after the
/// newest records were removed, new records leave a visible gap instead of papering over it. A
/// checkpoint whose MAC is wrong refuses the append (fail closed). Failures are `AuditFailed`
/// (or `Corrupt` for a bad checkpoint), so the caller's whole transaction rolls back.
async fn append_in(
    tx: &mut <Db as sqlx::Database>::Connection,
    audit: &$crate::AuditAppend<'_>,
) -> Result<Vec<i64>> {
    if audit.records.is_empty() {
        return Ok(Vec::new());
    }
    let failed = |e: StoreError| match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(m),
        StoreError::AuditFailed(m) => StoreError::AuditFailed(m),
        other => StoreError::AuditFailed(other.to_string()),
    };
    if let Some(lock) = dialect::AUDIT_LOCK {
        sqlx::query(lock).execute(&mut *tx).await.map_err(db_err).map_err(failed)?;
    }
    let head = sqlx::query("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)
        .map_err(failed)?;
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)
        .map_err(failed)?;
    let last: (i64, Vec<u8>) = match last {
        Some(r) => (
            r.try_get("seq").map_err(db_err)?,
            r.try_get("hash").map_err(db_err)?,
        ),
        None => (0, Vec::new()),
    };
    let (mut seq, mut prev) = match head {
        Some(h) => {
            let (hseq, hhash, hmac): (i64, Vec<u8>, Vec<u8>) = (
                h.try_get("seq").map_err(db_err)?,
                h.try_get("hash").map_err(db_err)?,
                h.try_get("mac").map_err(db_err)?,
            );
            if $crate::audit_head_mac(audit.chain, hseq, &hhash).as_slice() != hmac.as_slice() {
                return Err(StoreError::Corrupt(
                    "the audit checkpoint does not verify (tampered); no record can be appended".into(),
                ));
            }
            if last.0 > hseq {
                // Appended by a server that does not keep the checkpoint (an older version).
                last
            } else {
                (hseq, hhash)
            }
        }
        None => {
            if last.0 > 0 {
                tracing::warn!(
                    records = last.0,
                    "the audit log has no checkpoint yet: starting one at its current end \
                     (first append after the upgrade, or the checkpoint was deleted)"
                );
            }
            last
        }
    };
    if let Some(fault) = audit.fault {
        fault().map_err(failed)?;
    }
    let mut seqs = Vec::with_capacity(audit.records.len());
    for rec in audit.records {
        seq += 1;
        let mut row = AuditRow {
            seq,
            time: format_time(rec.time),
            actor: rec.actor.clone(),
            door: rec.door.clone(),
            action: rec.action.clone(),
            target: rec.target.clone(),
            source: rec.source.clone(),
            outcome: rec.outcome.clone(),
            detail: rec.detail.to_string(),
            hash: Vec::new(),
        };
        row.hash = (audit.chain)(&prev, &row.canonical()).to_vec();
        sqlx::query(
            "INSERT INTO audit_log (seq, time, actor, door, action, target, source, outcome, detail, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(row.seq)
        .bind(&row.time)
        .bind(&row.actor)
        .bind(&row.door)
        .bind(&row.action)
        .bind(&row.target)
        .bind(&row.source)
        .bind(&row.outcome)
        .bind(&row.detail)
        .bind(&row.hash)
        .execute(&mut *tx)
        .await
        .map_err(db_err)
        .map_err(failed)?;
        prev = row.hash;
        seqs.push(seq);
    }
    let mac = $crate::audit_head_mac(audit.chain, seq, &prev);
    sqlx::query(
        "INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, $1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
    )
    .bind(seq)
    .bind(&prev)
    .bind(mac.to_vec())
    .execute(&mut *tx)
    .await
    .map_err(db_err)
    .map_err(failed)?;
    Ok(seqs)
}

#[async_trait]
impl $crate::Store for $store {
    fn backend(&self) -> &'static str {
        dialect::NAME
    }

    async fn seal_config(&self) -> Result<Option<SealConfig>> {
        let row = sqlx::query("SELECT shares, threshold FROM seal_config WHERE id = 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            let shares: i64 = r.try_get("shares").map_err(db_err)?;
            let threshold: i64 = r.try_get("threshold").map_err(db_err)?;
            Ok(SealConfig {
                shares: u8::try_from(shares).map_err(|_| corrupt("shares"))?,
                threshold: u8::try_from(threshold).map_err(|_| corrupt("threshold"))?,
            })
        })
        .transpose()
    }

    async fn initialize(&self, cfg: &SealConfig, keys: &[WrappedKey]) -> Result<()> {
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        let now = format_time(time::OffsetDateTime::now_utc());
        sqlx::query(
            "INSERT INTO seal_config (id, shares, threshold, created_at) VALUES (1, $1, $2, $3)",
        )
        .bind(i64::from(cfg.shares))
        .bind(i64::from(cfg.threshold))
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db_err(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict("the vault is already initialised".into())
            }
            other => other,
        })?;
        for k in keys {
            sqlx::query(
                "INSERT INTO keyring (purpose, term, wrapped, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&k.purpose)
            .bind(i64::from(k.term))
            .bind(&k.wrapped)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn keys(&self) -> Result<Vec<WrappedKey>> {
        let rows = sqlx::query("SELECT purpose, term, wrapped FROM keyring ORDER BY purpose, term")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let term: i64 = r.try_get("term").map_err(db_err)?;
                Ok(WrappedKey {
                    purpose: s(r, "purpose")?,
                    term: u32::try_from(term).map_err(|_| corrupt("key term"))?,
                    wrapped: r.try_get("wrapped").map_err(db_err)?,
                })
            })
            .collect()
    }

    async fn add_key(&self, key: &WrappedKey) -> Result<()> {
        sqlx::query("INSERT INTO keyring (purpose, term, wrapped, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&key.purpose)
            .bind(i64::from(key.term))
            .bind(&key.wrapped)
            .bind(format_time(time::OffsetDateTime::now_utc()))
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn newest_data_term(&self) -> Result<u32> {
        let t: Option<i64> = sqlx::query_scalar("SELECT MAX(term) FROM keyring WHERE purpose = 'data'")
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?;
        u32::try_from(t.unwrap_or(0)).map_err(|_| corrupt("key term"))
    }

    async fn data_key_created(&self, term: u32) -> Result<Option<time::OffsetDateTime>> {
        let t: Option<String> = sqlx::query_scalar("SELECT created_at FROM keyring WHERE purpose = 'data' AND term = $1")
            .bind(i64::from(term))
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        t.map(|t| parse_time(&t)).transpose()
    }

    async fn versions_not_of_term(&self, term: u32, after: Option<(Uuid, i64)>, limit: i64) -> Result<Vec<(Uuid, i64, Vec<u8>)>> {
        // The term is bytes 2..=5 of a value (after the format byte), big-endian.
        let (a_id, a_v) = after.map_or((String::new(), 0), |(i, v)| (i.to_string(), v));
        let rows = sqlx::query(
            "SELECT cred_id, version, payload FROM credential_versions
             WHERE length(payload) > 0 AND substr(payload, 2, 4) <> $1
               AND (cred_id > $2 OR (cred_id = $2 AND version > $3))
             ORDER BY cred_id, version LIMIT $4",
        )
        .bind(term.to_be_bytes().to_vec())
        .bind(a_id)
        .bind(a_v)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    uuid(r, "cred_id")?,
                    r.try_get::<i64, _>("version").map_err(db_err)?,
                    r.try_get::<Vec<u8>, _>("payload").map_err(db_err)?,
                ))
            })
            .collect()
    }

    async fn rewrap_version(&self, id: Uuid, version: i64, old: &[u8], new: &[u8]) -> Result<bool> {
        let n = sqlx::query("UPDATE credential_versions SET payload = $1 WHERE cred_id = $2 AND version = $3 AND payload = $4")
            .bind(new.to_vec())
            .bind(id.to_string())
            .bind(version)
            .bind(old.to_vec())
            .execute(&self.writer)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn integration_secrets_not_of_term(&self, term: u32) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT name, secrets FROM integrations WHERE length(secrets) > 0 AND substr(secrets, 2, 4) <> $1 ORDER BY name")
            .bind(term.to_be_bytes().to_vec())
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((s(r, "name")?, r.try_get::<Vec<u8>, _>("secrets").map_err(db_err)?)))
            .collect()
    }

    async fn rewrap_integration(&self, name: &str, old: &[u8], new: &[u8]) -> Result<bool> {
        let n = sqlx::query("UPDATE integrations SET secrets = $1 WHERE name = $2 AND secrets = $3")
            .bind(new.to_vec())
            .bind(name)
            .bind(old.to_vec())
            .execute(&self.writer)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn retire_data_keys_below(&self, term: u32) -> Result<Vec<u32>> {
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        if let Some(lock) = dialect::AUDIT_LOCK {
            // Serialise with other servers' retirements (and audit appends: harmless).
            sqlx::query(lock).execute(&mut *tx).await.map_err(db_err)?;
        }
        let t = term.to_be_bytes().to_vec();
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM credential_versions WHERE length(payload) > 0 AND substr(payload, 2, 4) <> $1)
                  + (SELECT COUNT(*) FROM integrations WHERE length(secrets) > 0 AND substr(secrets, 2, 4) <> $1)",
        )
        .bind(&t)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if left > 0 {
            return Ok(vec![]);
        }
        let terms: Vec<i64> = sqlx::query_scalar("SELECT term FROM keyring WHERE purpose = 'data' AND term < $1 ORDER BY term")
            .bind(i64::from(term))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("DELETE FROM keyring WHERE purpose = 'data' AND term < $1")
            .bind(i64::from(term))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        terms.into_iter().map(|t| u32::try_from(t).map_err(|_| corrupt("key term"))).collect()
    }

    async fn create_user(&self, user: &User, password_hash: Option<&str>) -> Result<()> {
        sqlx::query("INSERT INTO users (name, kind, admin, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&user.name)
            .bind(user.kind.as_str())
            .bind(user.admin)
            .bind(password_hash)
            .bind(format_time(user.created_at))
            .execute(&self.writer)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("user '{}' already exists", user.name)),
                other => other,
            })?;
        Ok(())
    }

    async fn get_user(&self, name: &str) -> Result<Option<User>> {
        sqlx::query("SELECT name, kind, admin, created_at FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(user_from)
            .transpose()
    }

    async fn user_password_hash(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| os(&r, "password_hash")).transpose()?.flatten())
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT name, kind, admin, created_at FROM users ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(user_from).collect()
    }

    async fn delete_user(&self, name: &str) -> Result<()> {
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        not_found_if_zero(
            exec(&mut *tx, "DELETE FROM users WHERE name = $1", &[name]).await?,
            "user",
        )?;
        exec(
            &mut *tx,
            "UPDATE tokens SET revoked = TRUE WHERE user_name = $1",
            &[name],
        )
        .await?;
        exec(
            &mut *tx,
            "DELETE FROM safe_members WHERE kind = 'user' AND name = $1",
            &[name],
        )
        .await?;
        tx.commit().await.map_err(db_err)
    }

    async fn create_group(&self, name: &str) -> Result<()> {
        sqlx::query("INSERT INTO groups (name, created_at) VALUES ($1, $2)")
            .bind(name)
            .bind(format_time(time::OffsetDateTime::now_utc()))
            .execute(&self.writer)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("group '{name}' already exists"))
                }
                other => other,
            })?;
        Ok(())
    }

    async fn get_group(&self, name: &str) -> Result<Option<Group>> {
        let exists = sqlx::query("SELECT name FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            return Ok(None);
        }
        let members = sqlx::query(
            "SELECT user_name FROM group_members WHERE group_name = $1 ORDER BY user_name",
        )
        .bind(name)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| s(r, "user_name"))
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(Group {
            name: name.to_owned(),
            members,
        }))
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        let rows = sqlx::query(
            "SELECT g.name AS name, m.user_name AS user_name FROM groups g
             LEFT JOIN group_members m ON m.group_name = g.name ORDER BY g.name, m.user_name",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let mut out: Vec<Group> = Vec::new();
        for r in &rows {
            let name = s(r, "name")?;
            let member = os(r, "user_name")?;
            match out.last_mut() {
                Some(g) if g.name == name => g.members.extend(member),
                _ => out.push(Group {
                    name,
                    members: member.into_iter().collect(),
                }),
            }
        }
        Ok(out)
    }

    async fn delete_group(&self, name: &str) -> Result<()> {
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        not_found_if_zero(
            exec(&mut *tx, "DELETE FROM groups WHERE name = $1", &[name]).await?,
            "group",
        )?;
        exec(
            &mut *tx,
            "DELETE FROM safe_members WHERE kind = 'group' AND name = $1",
            &[name],
        )
        .await?;
        tx.commit().await.map_err(db_err)
    }

    async fn add_group_member(&self, group: &str, user: &str) -> Result<()> {
        sqlx::query("INSERT INTO group_members (group_name, user_name) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(group)
            .bind(user)
            .execute(&self.writer)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => StoreError::NotFound("group or user".into()),
                other => other,
            })?;
        Ok(())
    }

    async fn remove_group_member(&self, group: &str, user: &str) -> Result<()> {
        let n = exec(
            &self.writer,
            "DELETE FROM group_members WHERE group_name = $1 AND user_name = $2",
            &[group, user],
        )
        .await?;
        not_found_if_zero(n, "group member")
    }

    async fn groups_of(&self, user: &str) -> Result<Vec<String>> {
        sqlx::query("SELECT group_name FROM group_members WHERE user_name = $1 ORDER BY group_name")
            .bind(user)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| s(r, "group_name"))
            .collect()
    }

    async fn insert_token(&self, info: &TokenInfo, hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, hash, user_name, description, created_at, expires_at, revoked)
             VALUES ($1, $2, $3, $4, $5, $6, FALSE)",
        )
        .bind(info.id.to_string())
        .bind(hash)
        .bind(&info.user)
        .bind(&info.description)
        .bind(format_time(info.created_at))
        .bind(info.expires_at.map(format_time))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        sqlx::query(
            "SELECT id, user_name, description, created_at, expires_at, revoked FROM tokens WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(token_from)
        .transpose()
    }

    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, user_name, description, created_at, expires_at, revoked FROM tokens
             WHERE (CAST($1 AS TEXT) IS NULL OR user_name = $1) ORDER BY id",
        )
        .bind(user)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(token_from).collect()
    }

    async fn get_token(&self, id: Uuid) -> Result<Option<TokenInfo>> {
        sqlx::query("SELECT id, user_name, description, created_at, expires_at, revoked FROM tokens WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(token_from)
            .transpose()
    }

    async fn revoke_token(&self, id: Uuid) -> Result<()> {
        let n = exec(
            &self.writer,
            "UPDATE tokens SET revoked = TRUE WHERE id = $1",
            &[&id.to_string()],
        )
        .await?;
        not_found_if_zero(n, "token")
    }

    async fn create_safe(&self, safe: &Safe) -> Result<()> {
        sqlx::query("INSERT INTO safes (name, description, created_at) VALUES ($1, $2, $3)")
            .bind(&safe.name)
            .bind(&safe.description)
            .bind(format_time(time::OffsetDateTime::now_utc()))
            .execute(&self.writer)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("safe '{}' already exists", safe.name))
                }
                other => other,
            })?;
        Ok(())
    }

    async fn get_safe(&self, name: &str) -> Result<Option<Safe>> {
        let row = sqlx::query("SELECT name, description FROM safes WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok(Safe {
                name: s(&r, "name")?,
                description: os(&r, "description")?,
            })
        })
        .transpose()
    }

    async fn list_safes(&self) -> Result<Vec<Safe>> {
        let rows = sqlx::query("SELECT name, description FROM safes ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(Safe {
                    name: s(r, "name")?,
                    description: os(r, "description")?,
                })
            })
            .collect()
    }

    async fn delete_safe(&self, name: &str) -> Result<()> {
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE safe = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "safe '{name}' still holds {used} credential(s)"
            )));
        }
        not_found_if_zero(
            exec(&mut *tx, "DELETE FROM safes WHERE name = $1", &[name]).await?,
            "safe",
        )?;
        tx.commit().await.map_err(db_err)
    }

    async fn set_safe_member(&self, safe: &str, member: &SafeMember, perms: u8) -> Result<()> {
        sqlx::query(
            "INSERT INTO safe_members (safe_name, kind, name, perms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (safe_name, kind, name) DO UPDATE SET perms = excluded.perms",
        )
        .bind(safe)
        .bind(member.kind.as_str())
        .bind(&member.name)
        .bind(i64::from(perms))
        .execute(&self.writer)
        .await
        .map_err(|e| match db_err(e) {
            StoreError::Conflict(_) => StoreError::NotFound("safe".into()),
            other => other,
        })?;
        Ok(())
    }

    async fn remove_safe_member(&self, safe: &str, kind: &str, name: &str) -> Result<()> {
        let n =
            sqlx::query("DELETE FROM safe_members WHERE safe_name = $1 AND kind = $2 AND name = $3")
                .bind(safe)
                .bind(kind)
                .bind(name)
                .execute(&self.writer)
                .await
                .map_err(db_err)?
                .rows_affected();
        not_found_if_zero(n, "safe member")
    }

    async fn safe_members(&self, safe: &str) -> Result<Vec<(String, String, u8)>> {
        let rows = sqlx::query(
            "SELECT kind, name, perms FROM safe_members WHERE safe_name = $1 ORDER BY kind, name",
        )
        .bind(safe)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let p: i64 = r.try_get("perms").map_err(db_err)?;
                Ok((
                    s(r, "kind")?,
                    s(r, "name")?,
                    u8::try_from(p).map_err(|_| corrupt("perms"))?,
                ))
            })
            .collect()
    }

    async fn safes_with(&self, user: &str, groups: &[String], perms: u8) -> Result<Vec<String>> {
        let mut q: QueryBuilder<Db> =
            QueryBuilder::new("SELECT DISTINCT safe_name FROM safe_members WHERE (perms & ");
        q.push_bind(i64::from(perms))
            .push(") = ")
            .push_bind(i64::from(perms));
        q.push(" AND ((kind = 'user' AND name = ")
            .push_bind(user)
            .push(")");
        if !groups.is_empty() {
            q.push(" OR (kind = 'group' AND name IN (");
            let mut sep = q.separated(", ");
            for g in groups {
                sep.push_bind(g);
            }
            q.push("))");
        }
        q.push(") ORDER BY safe_name");
        q.build()
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| s(r, "safe_name"))
            .collect()
    }

    async fn insert_credential(&self, cred: &Credential, v: &NewVersion, audit: &$crate::AuditAppend<'_>) -> Result<()> {
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        insert_one(&mut tx, cred, v).await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn insert_credentials(&self, batch: &[(Credential, NewVersion)], audit: &$crate::AuditAppend<'_>) -> Result<()> {
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        for (cred, v) in batch {
            insert_one(&mut tx, cred, v).await?;
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn update_credential(
        &self,
        cred: &Credential,
        expected_version: i64,
        v: &NewVersion,
        audit: &$crate::AuditAppend<'_>,
    ) -> Result<()> {
        let meta = meta_json(&cred.meta)?;
        let l = lookup(&cred.meta);
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        let n = sqlx::query(
            "UPDATE credentials SET identifier = $1, name = $2, username = $3, safe = $4, folder = $5, owner_kind = $6,
               owner_name = $7, hostname = $8, ip = $9, meta = $10, version = $11, updated_at = $12, updated_by = $13,
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
        .map_err(|e| match db_err(e) {
            StoreError::Conflict(_) => StoreError::Conflict("a credential with this identifier already exists".into()),
            other => other,
        })?
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
        insert_version(&mut tx, cred, &meta, v).await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_credential(&self, id: Uuid) -> Result<Option<Credential>> {
        sqlx::query(&format!("SELECT {CRED_COLS} FROM credentials WHERE id = $1"))
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

    async fn credential_with_payload(&self, id: Uuid) -> Result<Option<(Credential, Vec<u8>)>> {
        let row = sqlx::query(
            "SELECT c.id, c.meta, c.version, c.created_at, c.updated_at, c.created_by, c.updated_by, v.payload
             FROM credentials c JOIN credential_versions v ON v.cred_id = c.id AND v.version = c.version
             WHERE c.id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        row.map(|r| {
            Ok((
                cred_from(&r)?,
                r.try_get::<Vec<u8>, _>("payload").map_err(db_err)?,
            ))
        })
        .transpose()
    }

    async fn list_credentials(&self, f: &CredentialFilter) -> Result<Vec<Credential>> {
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
        if let Some(t) = &f.tag {
            q.push(dialect::TAG_FILTER.0).push_bind(t.clone()).push(dialect::TAG_FILTER.1);
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
            q.push(" AND ((owner_kind = 'user' AND owner_name = ")
                .push_bind(user.clone())
                .push(")");
            if !groups.is_empty() {
                q.push(" OR (owner_kind = 'group' AND owner_name IN (");
                let mut sep = q.separated(", ");
                for g in groups {
                    sep.push_bind(g.clone());
                }
                q.push("))");
            }
            if !safes.is_empty() {
                q.push(" OR safe IN (");
                let mut sep = q.separated(", ");
                for sf in safes {
                    sep.push_bind(sf.clone());
                }
                q.push(")");
            }
            q.push(")");
        }
        q.push(" ORDER BY id LIMIT ").push_bind(f.limit);
        let rows = q.build().fetch_all(&self.reader).await.map_err(db_err)?;
        rows.iter().map(cred_from).collect()
    }

    async fn find_by_key(&self, key: $crate::LookupKey, value: &str, safes: &[String], ids: &[String], limit: i64) -> Result<Vec<(Credential, Vec<u8>)>> {
        if safes.is_empty() && ids.is_empty() {
            return Ok(Vec::new());
        }
        // The current version's payload comes with the row: one round trip for the CCP read.
        let mut q: QueryBuilder<Db> = QueryBuilder::new(format!(
            "SELECT c.id, c.meta, c.version, c.created_at, c.updated_at, c.created_by, c.updated_by, v.payload
             FROM credentials c JOIN credential_versions v ON v.cred_id = c.id AND v.version = c.version
             WHERE c.{} = ",
            key.column()
        ));
        q.push_bind(value.to_owned()).push(" AND (1=0");
        if !safes.is_empty() {
            q.push(" OR c.safe IN (");
            let mut sep = q.separated(", ");
            for s in safes {
                sep.push_bind(s.clone());
            }
            q.push(")");
        }
        if !ids.is_empty() {
            q.push(" OR c.id IN (");
            let mut sep = q.separated(", ");
            for i in ids {
                sep.push_bind(i.clone());
            }
            q.push(")");
        }
        q.push(") ORDER BY c.id LIMIT ").push_bind(limit);
        let rows = q.build().fetch_all(&self.reader).await.map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((cred_from(r)?, r.try_get::<Vec<u8>, _>("payload").map_err(db_err)?)))
            .collect()
    }

    async fn delete_credential(&self, id: Uuid, audit: &$crate::AuditAppend<'_>) -> Result<()> {
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        let n = exec(&mut *tx, "DELETE FROM credentials WHERE id = $1", &[&id.to_string()]).await?;
        not_found_if_zero(n, "credential")?;
        append_in(&mut tx, audit).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn list_versions(&self, id: Uuid) -> Result<Vec<VersionInfo>> {
        let rows = sqlx::query(
            "SELECT version, created_at, created_by, operation FROM credential_versions WHERE cred_id = $1 ORDER BY version",
        )
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(version_info_from).collect()
    }

    async fn get_version(&self, id: Uuid, version: i64) -> Result<Option<StoredVersion>> {
        let row = sqlx::query(
            "SELECT version, created_at, created_by, operation, meta, payload FROM credential_versions
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
                payload: r.try_get("payload").map_err(db_err)?,
            })
        })
        .transpose()
    }

    async fn append_audit(&self, records: &[NewAudit], chain: ChainFn<'_>) -> Result<Vec<i64>> {
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        let seqs = append_in(&mut tx, &$crate::AuditAppend::new(records, chain)).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(seqs)
    }

    async fn audit_head(&self) -> Result<Option<$crate::AuditHead>> {
        sqlx::query("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .map(|r| {
                Ok($crate::AuditHead {
                    seq: r.try_get("seq").map_err(db_err)?,
                    hash: r.try_get("hash").map_err(db_err)?,
                    mac: r.try_get("mac").map_err(db_err)?,
                })
            })
            .transpose()
    }

    async fn audit_rows(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn audit_tail(&self, n: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM audit_log ORDER BY seq DESC LIMIT $1) AS t ORDER BY seq",
        )
        .bind(n)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn create_app(&self, app: &$crate::AppRecord) -> Result<()> {
        sqlx::query("INSERT INTO apps (app_id, owner, description, rules, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&app.app_id)
            .bind(&app.owner)
            .bind(&app.description)
            .bind(&app.rules)
            .bind(format_time(app.created_at))
            .execute(&self.writer)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("application '{}' already exists", app.app_id)),
                other => other,
            })?;
        Ok(())
    }

    async fn get_app(&self, app_id: &str) -> Result<Option<$crate::AppRecord>> {
        sqlx::query("SELECT app_id, owner, description, rules, created_at FROM apps WHERE app_id = $1")
            .bind(app_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(app_from)
            .transpose()
    }

    async fn list_apps(&self) -> Result<Vec<$crate::AppRecord>> {
        let rows = sqlx::query("SELECT app_id, owner, description, rules, created_at FROM apps ORDER BY app_id")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(app_from).collect()
    }

    async fn delete_app(&self, app_id: &str) -> Result<()> {
        not_found_if_zero(exec(&self.writer, "DELETE FROM apps WHERE app_id = $1", &[app_id]).await?, "application")
    }

    async fn set_app_rules(&self, app_id: &str, rules: &str) -> Result<()> {
        let n = exec(&self.writer, "UPDATE apps SET rules = $1 WHERE app_id = $2", &[rules, app_id]).await?;
        not_found_if_zero(n, "application")
    }

    async fn grant_app(&self, app_id: &str, kind: &str, target: &str) -> Result<()> {
        exec(
            &self.writer,
            "INSERT INTO app_grants (app_id, kind, target) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[app_id, kind, target],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::NotFound("application".into()),
            other => other,
        })?;
        Ok(())
    }

    async fn revoke_app(&self, app_id: &str, kind: &str, target: &str) -> Result<()> {
        let n = exec(&self.writer, "DELETE FROM app_grants WHERE app_id = $1 AND kind = $2 AND target = $3", &[app_id, kind, target]).await?;
        not_found_if_zero(n, "grant")
    }

    async fn app_grants(&self, app_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT kind, target FROM app_grants WHERE app_id = $1 ORDER BY kind, target")
            .bind(app_id)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| Ok((s(r, "kind")?, s(r, "target")?))).collect()
    }

    // --- caches (issue 4) ---
    async fn change_epoch(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT epoch FROM change_epochs WHERE id = 1")
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)
    }

    // --- Vault KV door (issue 7) ---
    async fn kv_meta(&self, id: Uuid) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT meta FROM kv_meta WHERE cred_id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)
    }

    async fn set_kv_meta(&self, id: Uuid, meta: &str) -> Result<()> {
        exec(
            &self.writer,
            "INSERT INTO kv_meta (cred_id, meta) VALUES ($1, $2) ON CONFLICT (cred_id) DO UPDATE SET meta = excluded.meta",
            &[&id.to_string(), meta],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::NotFound("credential".into()),
            other => other,
        })
        .map(|_| ())
    }

    async fn destroy_version(&self, id: Uuid, version: i64) -> Result<()> {
        let n = sqlx::query("UPDATE credential_versions SET payload = $1 WHERE cred_id = $2 AND version = $3")
            .bind(Vec::<u8>::new())
            .bind(id.to_string())
            .bind(version)
            .execute(&self.writer)
            .await
            .map_err(db_err)?
            .rows_affected();
        not_found_if_zero(n, "version")
    }

    // --- integrations (issue 7) ---
    async fn create_integration(&self, rec: &$crate::IntegrationRecord) -> Result<()> {
        sqlx::query("INSERT INTO integrations (name, settings, secrets, safe, enabled, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&rec.name)
            .bind(&rec.settings)
            .bind(&rec.secrets)
            .bind(&rec.safe)
            .bind(rec.enabled)
            .bind(&rec.status)
            .bind(format_time(rec.created_at))
            .execute(&self.writer)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("integration '{}' already exists", rec.name)),
                other => other,
            })?;
        Ok(())
    }

    async fn get_integration(&self, name: &str) -> Result<Option<$crate::IntegrationRecord>> {
        sqlx::query("SELECT name, settings, secrets, safe, enabled, status, created_at FROM integrations WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(integration_from)
            .transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<$crate::IntegrationRecord>> {
        let rows = sqlx::query("SELECT name, settings, secrets, safe, enabled, status, created_at FROM integrations ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(integration_from).collect()
    }

    async fn update_integration(&self, rec: &$crate::IntegrationRecord) -> Result<()> {
        let n = sqlx::query("UPDATE integrations SET settings = $1, secrets = $2, safe = $3, enabled = $4 WHERE name = $5")
            .bind(&rec.settings)
            .bind(&rec.secrets)
            .bind(&rec.safe)
            .bind(rec.enabled)
            .bind(&rec.name)
            .execute(&self.writer)
            .await
            .map_err(db_err)?
            .rows_affected();
        not_found_if_zero(n, "integration")
    }

    async fn set_integration_status(&self, name: &str, status: &str) -> Result<()> {
        let n = exec(&self.writer, "UPDATE integrations SET status = $1 WHERE name = $2", &[status, name]).await?;
        not_found_if_zero(n, "integration")
    }

    async fn delete_integration(&self, name: &str) -> Result<()> {
        not_found_if_zero(exec(&self.writer, "DELETE FROM integrations WHERE name = $1", &[name]).await?, "integration")
    }

    // --- PAM A2A door (issue 5) ---
    async fn create_domain(&self, d: &credvault_core::model::Domain) -> Result<()> {
        sqlx::query("INSERT INTO domains (name, name_key, abbreviation, abbreviation_key, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&d.name)
            .bind(d.name.to_lowercase())
            .bind(&d.abbreviation)
            .bind(d.abbreviation.as_ref().map(|a| a.to_lowercase()))
            .bind(format_time(d.created_at))
            .execute(&self.writer)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("domain '{}' (or its abbreviation) already exists", d.name)),
                other => other,
            })?;
        Ok(())
    }

    async fn list_domains(&self) -> Result<Vec<credvault_core::model::Domain>> {
        let rows = sqlx::query("SELECT name, abbreviation, created_at FROM domains ORDER BY name_key")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(domain_from).collect()
    }

    async fn find_domain(&self, name: &str) -> Result<Option<credvault_core::model::Domain>> {
        let key = name.to_lowercase();
        sqlx::query("SELECT name, abbreviation, created_at FROM domains WHERE name_key = $1 OR abbreviation_key = $1 ORDER BY name_key LIMIT 1")
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(domain_from)
            .transpose()
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        not_found_if_zero(exec(&self.writer, "DELETE FROM domains WHERE name_key = $1", &[&name.to_lowercase()]).await?, "domain")
    }

    async fn get_device(&self, hostname_key: &str, ip: &str) -> Result<Option<$crate::DeviceRecord>> {
        sqlx::query("SELECT id, meta, version, created_at, updated_at FROM devices WHERE hostname_key = $1 AND ip = $2")
            .bind(hostname_key)
            .bind(ip)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(device_from)
            .transpose()
    }

    async fn insert_device(&self, d: &$crate::DeviceRecord) -> Result<()> {
        let meta = serde_json::to_string(&d.device).map_err(|_| corrupt("device"))?;
        sqlx::query("INSERT INTO devices (id, hostname_key, ip, meta, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(d.id.to_string())
            .bind(credvault_core::ccp::fold(&d.device.hostname))
            .bind(&d.device.ip)
            .bind(meta)
            .bind(d.version)
            .bind(format_time(d.created_at))
            .bind(format_time(d.updated_at))
            .execute(&self.writer)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict("a device with this host name and IP already exists".into()),
                other => other,
            })?;
        Ok(())
    }

    async fn update_device(&self, d: &$crate::DeviceRecord, expected_version: i64) -> Result<()> {
        let meta = serde_json::to_string(&d.device).map_err(|_| corrupt("device"))?;
        let n = sqlx::query("UPDATE devices SET meta = $1, version = $2, updated_at = $3 WHERE id = $4 AND version = $5")
            .bind(meta)
            .bind(d.version)
            .bind(format_time(d.updated_at))
            .bind(d.id.to_string())
            .bind(expected_version)
            .execute(&self.writer)
            .await
            .map_err(db_err)?
            .rows_affected();
        if n == 0 {
            let current: Option<i64> = sqlx::query_scalar("SELECT version FROM devices WHERE id = $1")
                .bind(d.id.to_string())
                .fetch_optional(&self.writer)
                .await
                .map_err(db_err)?;
            return Err(match current {
                Some(current) => StoreError::VersionMismatch { current },
                None => StoreError::NotFound("device".into()),
            });
        }
        Ok(())
    }

    async fn credentials_on_device(&self, hostname_key: &str, ip: &str, username_key: &str) -> Result<Vec<Credential>> {
        let rows = sqlx::query(
            "SELECT id, meta, version, created_at, updated_at, created_by, updated_by FROM credentials
             WHERE hostname_key = $1 AND ip = $2 AND username_key = $3 ORDER BY id LIMIT 100",
        )
        .bind(hostname_key)
        .bind(ip)
        .bind(username_key)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(cred_from).collect()
    }

    async fn insert_credential_unless_on_device_audited(&self, cred: &Credential, v: &NewVersion, audit: &$crate::AuditAppend<'_>) -> Result<Option<Uuid>> {
        let l = lookup(&cred.meta);
        let (Some(hostname_key), Some(ip)) = (l.hostname_key.clone(), l.ip) else {
            return Err(StoreError::Conflict("a credential without a device".into()));
        };
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        if let Some(lock) = dialect::DEVICE_USER_LOCK {
            sqlx::query(lock)
                .bind(format!("{hostname_key}\u{1f}{ip}\u{1f}{}", l.username_key))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT id FROM credentials WHERE hostname_key = $1 AND ip = $2 AND username_key = $3 ORDER BY id LIMIT 1",
        )
        .bind(&hostname_key)
        .bind(ip)
        .bind(&l.username_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(id) = existing {
            return Ok(Some(Uuid::parse_str(&id).map_err(|_| corrupt("bad id"))?));
        }
        insert_one(&mut tx, cred, v).await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(None)
    }

    async fn take_custody(&self, id: Uuid, holder: &str, since: time::OffsetDateTime) -> Result<()> {
        exec(
            &self.writer,
            "INSERT INTO custody (cred_id, holder, since) VALUES ($1, $2, $3)
             ON CONFLICT (cred_id) DO UPDATE SET holder = excluded.holder, since = excluded.since",
            &[&id.to_string(), holder, &format_time(since)],
        )
        .await?;
        Ok(())
    }

    async fn release_custody(&self, id: Uuid, holder: &str) -> Result<bool> {
        let n = exec(&self.writer, "DELETE FROM custody WHERE cred_id = $1 AND holder = $2", &[&id.to_string(), holder]).await?;
        Ok(n > 0)
    }

    async fn count_rows(&self, t: &$crate::migrate::TableSpec) -> Result<i64> {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", t.name))
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)
    }

    async fn export_rows(&self, t: &$crate::migrate::TableSpec, offset: i64, limit: i64) -> Result<Vec<Vec<$crate::migrate::Cell>>> {
        let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        let sql = format!("SELECT {} FROM {} ORDER BY {} LIMIT $1 OFFSET $2", cols.join(", "), t.name, t.order_by);
        let rows = sqlx::query(&sql).bind(limit).bind(offset).fetch_all(&self.reader).await.map_err(db_err)?;
        rows.iter().map(|r| cells_of(r, t)).collect()
    }

    async fn export_snapshot(&self, sink: $crate::SnapshotSink<'_>) -> Result<()> {
        use futures_util::TryStreamExt;
        const BATCH: usize = 500;
        let mut tx = self.reader.begin().await.map_err(db_err)?;
        if let Some(s) = dialect::SNAPSHOT {
            sqlx::query(s).execute(&mut *tx).await.map_err(db_err)?;
        }
        for (i, t) in $crate::migrate::TABLES.iter().enumerate() {
            let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
            let sql = format!("SELECT {} FROM {} ORDER BY {}", cols.join(", "), t.name, t.order_by);
            let mut batch = Vec::with_capacity(BATCH);
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(r) = rows.try_next().await.map_err(db_err)? {
                batch.push(cells_of(&r, t)?);
                if batch.len() == BATCH && !sink(i, std::mem::take(&mut batch)).await {
                    return Err(StoreError::Unavailable("the export was stopped".into()));
                }
            }
            drop(rows);
            if !batch.is_empty() && !sink(i, batch).await {
                return Err(StoreError::Unavailable("the export was stopped".into()));
            }
        }
        tx.rollback().await.map_err(db_err)
    }

    async fn import_rows(&self, t: &$crate::migrate::TableSpec, rows: &[Vec<$crate::migrate::Cell>]) -> Result<()> {
        use $crate::migrate::{Cell, Kind};
        let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
        let sql = format!("INSERT INTO {} ({}) VALUES ({})", t.name, cols.join(", "), marks.join(", "));
        let mut tx = self.writer.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
        for row in rows {
            let mut q = sqlx::query(&sql);
            for ((_, kind), cell) in t.columns.iter().zip(row) {
                q = match (kind, cell) {
                    (Kind::Text, Cell::Text(v)) => q.bind(Some(v.clone())),
                    (Kind::Text, Cell::Null) => q.bind(None::<String>),
                    (Kind::Int, Cell::Int(v)) => q.bind(Some(*v)),
                    (Kind::Int, Cell::Null) => q.bind(None::<i64>),
                    (Kind::Bool, Cell::Bool(v)) => q.bind(Some(*v)),
                    (Kind::Bool, Cell::Null) => q.bind(None::<bool>),
                    (Kind::Bytes, Cell::Bytes(v)) => q.bind(Some(v.clone())),
                    (Kind::Bytes, Cell::Null) => q.bind(None::<Vec<u8>>),
                    _ => return Err(corrupt("a value does not match its column's kind")),
                };
            }
            q.execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }
}
    };
}

pub(crate) use sql_store;
