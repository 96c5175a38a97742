//! What every area's SQL shares, compiled once per backend (see `sql/mod.rs`): row mapping, write
//! transactions, the credential insert and the audit append inside a write transaction.

use credvault_core::model::{
    Credential, CredentialMeta, Domain, TokenInfo, User, UserKind, VersionInfo,
};
use sqlx::Row;
use uuid::Uuid;

use super::{dialect, Backend, Db};
use crate::migrate::{Cell, Kind, TableSpec};
use crate::sql::{corrupt, db_err};
use crate::{
    audit_head_mac, format_time, parse_time, AppRecord, AuditAppend, AuditRow, DeviceRecord,
    IntegrationRecord, NewVersion, Result, StoreError,
};

pub(super) type DbRow = <Db as sqlx::Database>::Row;
pub(super) type Conn = <Db as sqlx::Database>::Connection;

#[async_trait::async_trait]
impl crate::BackendStore for Backend {
    fn backend(&self) -> &'static str {
        dialect::NAME
    }

    fn feed(&self) -> &crate::feed::ChangeFeed {
        &self.feed
    }

    async fn poll_changes(&self) -> Result<()> {
        let rows = read_epochs(&self.reader).await?;
        self.feed.observe(&rows);
        Ok(())
    }

    fn health(&self) -> &crate::health::StoreHealth {
        &self.health
    }

    async fn probe(&self) -> Result<()> {
        self.probe_write().await
    }
}

impl Backend {
    /// A write transaction on the writer pool, begun with the backend's `BEGIN_WRITE`.
    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>> {
        self.writer
            .begin_with(dialect::BEGIN_WRITE)
            .await
            .map_err(db_err)
    }
}

// --- row mapping

pub(super) fn s(row: &DbRow, col: &str) -> Result<String> {
    row.try_get::<String, _>(col).map_err(db_err)
}

pub(super) fn os(row: &DbRow, col: &str) -> Result<Option<String>> {
    row.try_get::<Option<String>, _>(col).map_err(db_err)
}

pub(super) fn i(row: &DbRow, col: &str) -> Result<i64> {
    row.try_get::<i64, _>(col).map_err(db_err)
}

pub(super) fn b(row: &DbRow, col: &str) -> Result<bool> {
    row.try_get::<bool, _>(col).map_err(db_err)
}

pub(super) fn bytes(row: &DbRow, col: &str) -> Result<Vec<u8>> {
    row.try_get::<Vec<u8>, _>(col).map_err(db_err)
}

pub(super) fn uuid(row: &DbRow, col: &str) -> Result<Uuid> {
    Uuid::parse_str(&s(row, col)?).map_err(|_| corrupt("bad id"))
}

pub(super) fn time(row: &DbRow, col: &str) -> Result<time::OffsetDateTime> {
    parse_time(&s(row, col)?)
}

pub(super) fn user_from(row: &DbRow) -> Result<User> {
    Ok(User {
        name: s(row, "name")?,
        kind: UserKind::parse(&s(row, "kind")?).ok_or_else(|| corrupt("user kind"))?,
        admin: b(row, "admin")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn token_from(row: &DbRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: uuid(row, "id")?,
        user: s(row, "user_name")?,
        description: os(row, "description")?,
        created_at: time(row, "created_at")?,
        expires_at: os(row, "expires_at")?.map(|t| parse_time(&t)).transpose()?,
        revoked: b(row, "revoked")?,
    })
}

pub(super) fn meta_from(json: &str) -> Result<CredentialMeta> {
    serde_json::from_str(json).map_err(|_| corrupt("credential metadata"))
}

pub(super) fn meta_json(meta: &CredentialMeta) -> Result<String> {
    serde_json::to_string(meta).map_err(|_| corrupt("credential metadata"))
}

/// The columns [`cred_from`] reads.
pub(super) const CRED_COLS: &str =
    "id, meta, version, created_at, updated_at, created_by, updated_by";

pub(super) fn cred_from(row: &DbRow) -> Result<Credential> {
    Ok(Credential {
        id: uuid(row, "id")?,
        meta: meta_from(&s(row, "meta")?)?,
        version: i(row, "version")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        created_by: s(row, "created_by")?,
        updated_by: s(row, "updated_by")?,
    })
}

pub(super) fn version_info_from(row: &DbRow) -> Result<VersionInfo> {
    Ok(VersionInfo {
        version: i(row, "version")?,
        created_at: time(row, "created_at")?,
        created_by: s(row, "created_by")?,
        operation: s(row, "operation")?,
    })
}

pub(super) fn integration_from(row: &DbRow) -> Result<IntegrationRecord> {
    Ok(IntegrationRecord {
        name: s(row, "name")?,
        settings: s(row, "settings")?,
        secrets: bytes(row, "secrets")?,
        safe: s(row, "safe")?,
        enabled: b(row, "enabled")?,
        status: s(row, "status")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn domain_from(row: &DbRow) -> Result<Domain> {
    Ok(Domain {
        name: s(row, "name")?,
        abbreviation: os(row, "abbreviation")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn device_from(row: &DbRow) -> Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: uuid(row, "id")?,
        device: serde_json::from_str(&s(row, "meta")?).map_err(|_| corrupt("device"))?,
        version: i(row, "version")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub(super) fn app_from(row: &DbRow) -> Result<AppRecord> {
    Ok(AppRecord {
        app_id: s(row, "app_id")?,
        owner: s(row, "owner")?,
        description: os(row, "description")?,
        rules: s(row, "rules")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn audit_from(row: &DbRow) -> Result<AuditRow> {
    Ok(AuditRow {
        seq: i(row, "seq")?,
        time: s(row, "time")?,
        actor: s(row, "actor")?,
        door: s(row, "door")?,
        action: s(row, "action")?,
        target: s(row, "target")?,
        source: s(row, "source")?,
        outcome: s(row, "outcome")?,
        detail: s(row, "detail")?,
        hash: bytes(row, "hash")?,
    })
}

/// One row as cells of its table's column kinds.
pub(super) fn cells_of(r: &DbRow, t: &TableSpec) -> Result<Vec<Cell>> {
    t.columns
        .iter()
        .map(|(c, k)| {
            let cell = match k {
                Kind::Text => r
                    .try_get::<Option<String>, _>(*c)
                    .map(|v| v.map(Cell::Text)),
                Kind::Int => r.try_get::<Option<i64>, _>(*c).map(|v| v.map(Cell::Int)),
                Kind::Bool => r.try_get::<Option<bool>, _>(*c).map(|v| v.map(Cell::Bool)),
                Kind::Bytes => r
                    .try_get::<Option<Vec<u8>>, _>(*c)
                    .map(|v| v.map(Cell::Bytes)),
            };
            Ok(cell.map_err(db_err)?.unwrap_or(Cell::Null))
        })
        .collect()
}

// --- statements

/// Run a statement whose parameters are all text; returns the rows affected.
pub(super) async fn exec<'c, E>(conn: E, sql: &str, args: &[&str]) -> Result<u64>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    let mut q = sqlx::query(sql);
    for a in args {
        q = q.bind(*a);
    }
    Ok(q.execute(conn).await.map_err(db_err)?.rows_affected())
}

pub(super) fn not_found_if_zero(n: u64, what: &str) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound(what.to_owned()))
    } else {
        Ok(())
    }
}

/// `db_err`, with a unique or foreign-key violation (`Conflict`) replaced by `on_conflict`.
pub(super) fn conflict_as(on_conflict: StoreError) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match db_err(e) {
        StoreError::Conflict(_) => on_conflict,
        other => other,
    }
}

// --- credentials

/// The lookup columns copied out of the metadata.
pub(super) struct Lookup<'a> {
    pub(super) safe: Option<&'a str>,
    pub(super) folder: Option<&'a str>,
    pub(super) owner_kind: Option<&'static str>,
    pub(super) owner_name: Option<&'a str>,
    pub(super) hostname: Option<&'a str>,
    pub(super) ip: Option<&'a str>,
    pub(super) name_key: String,
    pub(super) username_key: String,
    pub(super) hostname_key: Option<String>,
}

pub(super) fn lookup(m: &CredentialMeta) -> Lookup<'_> {
    Lookup {
        safe: m.safe.as_deref(),
        folder: m.folder.as_deref(),
        owner_kind: m.owner.as_ref().map(|o| o.kind.as_str()),
        owner_name: m.owner.as_ref().map(|o| o.name.as_str()),
        hostname: m.device.as_ref().map(|d| d.hostname.as_str()),
        ip: m.device.as_ref().map(|d| d.ip.as_str()),
        name_key: credvault_core::ccp::fold(&m.name),
        username_key: credvault_core::ccp::fold(&m.username),
        hostname_key: m
            .device
            .as_ref()
            .map(|d| credvault_core::ccp::fold(&d.hostname)),
    }
}

pub(super) fn identifier_taken() -> StoreError {
    StoreError::Conflict("a credential with this identifier already exists".into())
}

/// Insert one version row of `cred` (at `cred.version`).
pub(super) async fn insert_version(
    tx: &mut Conn,
    cred: &Credential,
    meta: &str,
    v: &NewVersion,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO credential_versions
           (cred_id, version, meta, payload, created_at, created_by, operation)
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

/// Insert a new credential and its first version inside `tx`.
pub(super) async fn insert_one(tx: &mut Conn, cred: &Credential, v: &NewVersion) -> Result<()> {
    let meta = meta_json(&cred.meta)?;
    let l = lookup(&cred.meta);
    sqlx::query(
        "INSERT INTO credentials
           (id, identifier, name, username, safe, folder, owner_kind, owner_name,
            hostname, ip, meta, version, created_at, updated_at, created_by, updated_by,
            name_key, username_key, hostname_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                 $11, $12, $13, $14, $15, $16, $17, $18, $19)",
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
    .execute(&mut *tx)
    .await
    .map_err(conflict_as(identifier_taken()))?;
    insert_version(tx, cred, &meta, v).await
}

// --- audit

/// Append the call's audit record inside `tx` and commit: the write and its record together, or
/// neither.
impl Backend {
    /// Append `audit` and commit `tx`, then publish the change counters the write moved (read just
    /// before the commit) to this server's feed, before the write is acknowledged.
    pub(super) async fn commit_audited(
        &self,
        mut tx: sqlx::Transaction<'static, Db>,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        append_in(&mut tx, audit).await?;
        let epochs = read_epochs(&mut *tx).await?;
        tx.commit().await.map_err(db_err)?;
        self.feed.publish(&epochs);
        Ok(())
    }
}

/// Every `(area, counter)` row of `change_epochs`.
pub(super) async fn read_epochs<'e, E>(ex: E) -> Result<Vec<(i64, i64)>>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    sqlx::query_as::<_, (i64, i64)>("SELECT CAST(id AS BIGINT), epoch FROM change_epochs")
        .fetch_all(ex)
        .await
        .map_err(db_err)
}

/// Records per audit INSERT statement: 10 parameters each, well under both backends' limits.
const AUDIT_ROWS_PER_INSERT: usize = 64;

/// Append `audit`'s records inside the write transaction `tx`: take the chain lock, read the head,
/// chain and insert the rows, move the keyed checkpoint (`audit_head`) to the new head. Call it as
/// the last statement before commit: the chain lock (PostgreSQL) is then held only until the commit
/// and is never taken before a row lock, so it cannot form a lock cycle with the write's own locks.
///
/// The chain continues from the checkpoint, not from whatever row is last in the table: after the
/// newest records were removed, new records leave a visible gap instead of papering over it. A
/// checkpoint whose MAC is wrong refuses the append (fail closed). Failures are `AuditFailed`
/// (or `Corrupt` for a bad checkpoint), so the caller's whole transaction rolls back.
pub(super) async fn append_in(tx: &mut Conn, audit: &AuditAppend<'_>) -> Result<Vec<i64>> {
    if audit.records.is_empty() {
        return Ok(Vec::new());
    }
    let failed = |e: StoreError| match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(m),
        StoreError::AuditFailed(m) => StoreError::AuditFailed(m),
        other => StoreError::AuditFailed(other.to_string()),
    };
    if let Some(lock) = dialect::AUDIT_LOCK {
        sqlx::query(lock)
            .execute(&mut *tx)
            .await
            .map_err(db_err)
            .map_err(failed)?;
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
        Some(r) => (i(&r, "seq")?, bytes(&r, "hash")?),
        None => (0, Vec::new()),
    };
    let (mut seq, mut prev) = match head {
        Some(h) => {
            let (hseq, hhash, hmac) = (i(&h, "seq")?, bytes(&h, "hash")?, bytes(&h, "mac")?);
            if audit_head_mac(audit.chain, hseq, &hhash).as_slice() != hmac.as_slice() {
                return Err(StoreError::Corrupt(
                    "the audit checkpoint does not verify (tampered); no record can be appended"
                        .into(),
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
    // Chain every record first, then write them as multi-row INSERTs: one statement per
    // `AUDIT_ROWS_PER_INSERT` records instead of one per record (issue 15: each statement is a
    // round trip to the database or to sqlx's SQLite worker thread).
    let mut rows = Vec::with_capacity(audit.records.len());
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
        prev.clone_from(&row.hash);
        rows.push(row);
    }
    for chunk in rows.chunks(AUDIT_ROWS_PER_INSERT) {
        let mut q: sqlx::QueryBuilder<Db> = sqlx::QueryBuilder::new(
            "INSERT INTO audit_log (seq, time, actor, door, action, target, source, outcome, detail, hash) ",
        );
        q.push_values(chunk, |mut b, row| {
            b.push_bind(row.seq)
                .push_bind(&row.time)
                .push_bind(&row.actor)
                .push_bind(&row.door)
                .push_bind(&row.action)
                .push_bind(&row.target)
                .push_bind(&row.source)
                .push_bind(&row.outcome)
                .push_bind(&row.detail)
                .push_bind(&row.hash);
        });
        q.build()
            .execute(&mut *tx)
            .await
            .map_err(db_err)
            .map_err(failed)?;
    }
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let mac = audit_head_mac(audit.chain, seq, &prev);
    sqlx::query(
        "INSERT INTO audit_head (id, seq, hash, mac)
         VALUES (1, $1, $2, $3)
         ON CONFLICT (id) DO UPDATE
           SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
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
