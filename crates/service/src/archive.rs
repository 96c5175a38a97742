//! Audit retention (issue 16.2): old records move out into an archive file the vault's audit key
//! signs, and a keyed checkpoint (`audit_base`, migration 0015) says where the remaining chain
//! starts, so `audit verify` still proves what is left and the archive proves itself.
//!
//! Two steps, so no record leaves the database before its archive is safely written: the export
//! ([`Vault::audit_archive_export`]: the records older than a date, chain-checked, as JSON lines)
//! and, once the caller has written and synced the file, the commit
//! ([`Vault::audit_archive_commit`]: delete up to that record and move the base, with an
//! `audit.archive` record, in one transaction).
//!
//! The file: a header line `{"format": "credvault-audit-archive", "version": 1, "first_seq",
//! "last_seq", "prev_hash", "before", "created"}`, one line per record (every stored field, the
//! chain hash in hex), and an end line `{"end": true, "count", "last_hash", "mac"}` where `mac` is
//! HMAC(audit key, "credvault:audit-archive" ‖ JSON [first_seq, last_seq, prev_hash, last_hash,
//! count, before]). Each record's hash chains from `prev_hash` under the audit key, and the MAC
//! binds both ends and the count, so an edited, reordered, removed, added or cut-off record fails
//! [`Vault::audit_verify_archive`]. Verifying needs the vault's audit key: the server checks it.

use credvault_core::DomainError;
use credvault_store::{audit_base_mac, parse_time, AuditRow};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::audit::{Verification, WriteAudit};
use crate::error::{ServiceError, ServiceResult};
use crate::{Ctx, Vault};

const FORMAT: &str = "credvault-audit-archive";
const PAGE: i64 = 1000;
/// Records in one archive at most (the export is built in memory).
pub const MAX_RECORDS: usize = 1_000_000;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    first_seq: i64,
    last_seq: i64,
    prev_hash: String,
    before: String,
    created: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: i64,
    time: String,
    actor: String,
    door: String,
    action: String,
    target: String,
    source: String,
    outcome: String,
    detail: String,
    hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    end: bool,
    count: i64,
    last_hash: String,
    mac: String,
}

impl From<&AuditRow> for Line {
    fn from(r: &AuditRow) -> Self {
        Line {
            seq: r.seq,
            time: r.time.clone(),
            actor: r.actor.clone(),
            door: r.door.clone(),
            action: r.action.clone(),
            target: r.target.clone(),
            source: r.source.clone(),
            outcome: r.outcome.clone(),
            detail: r.detail.clone(),
            hash: hex::encode(&r.hash),
        }
    }
}

impl Line {
    fn row(&self) -> Option<AuditRow> {
        Some(AuditRow {
            seq: self.seq,
            time: self.time.clone(),
            actor: self.actor.clone(),
            door: self.door.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            source: self.source.clone(),
            outcome: self.outcome.clone(),
            detail: self.detail.clone(),
            hash: hex::decode(&self.hash).ok()?,
        })
    }
}

fn archive_mac(
    chain: credvault_store::ChainFn<'_>,
    h: &Header,
    last_hash: &str,
    count: i64,
) -> [u8; 32] {
    let msg = serde_json::to_vec(&(
        h.first_seq,
        h.last_seq,
        &h.prev_hash,
        last_hash,
        count,
        &h.before,
    ))
    .unwrap_or_default();
    chain(b"credvault:audit-archive", &msg)
}

/// An archive ready to be written: the file's text and what to commit once it is safe.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ArchiveExport {
    /// The file (JSON lines).
    pub archive: String,
    /// The last record in it: commit with this seq and hash.
    pub through_seq: i64,
    pub last_hash: String,
    pub records: i64,
}

/// What an archive commit did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ArchiveCommitted {
    /// Records deleted from the log.
    pub deleted: u64,
    /// The remaining chain starts after this record.
    pub base_seq: i64,
}

fn invalid(m: impl Into<String>) -> ServiceError {
    DomainError::invalid("archive", m).into()
}

impl Vault {
    /// Refuse anyone but an admin (a door checks before reading a large body).
    pub fn require_admin_caller(&self, ctx: &Ctx) -> ServiceResult<()> {
        self.require_admin(ctx)
    }

    /// The records older than `before` (after the current base), chain-checked, as an archive file.
    pub async fn audit_archive_export(
        &self,
        ctx: &Ctx,
        before: OffsetDateTime,
    ) -> ServiceResult<ArchiveExport> {
        self.require_admin(ctx)?;
        let keys = self.barrier.keys().await?;
        let chain = |p: &[u8], r: &[u8]| keys.audit.chain(p, r);
        let (mut after, mut prev) = match self.store.audit_base().await? {
            Some(b) => {
                let mac = audit_base_mac(&chain, b.seq, &b.hash);
                if !credvault_crypto::token::ct_eq(&mac, &b.mac) {
                    return Err(ServiceError::Integrity);
                }
                (b.seq, b.hash)
            }
            None => (0, Vec::new()),
        };
        let prev_hash = hex::encode(&prev);
        let mut lines: Vec<Line> = Vec::new();
        'pages: loop {
            let rows = self.store.audit_rows(after, PAGE).await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let time = parse_time(&row.time).map_err(ServiceError::from)?;
                if time >= before || lines.len() >= MAX_RECORDS {
                    break 'pages;
                }
                let h = chain(&prev, &row.canonical());
                if row.seq != after + 1 || !credvault_crypto::token::ct_eq(&h, &row.hash) {
                    return Err(DomainError::Conflict(format!(
                        "audit record {} does not verify: nothing archived (run `credvault audit verify`)",
                        after + 1
                    ))
                    .into());
                }
                prev = row.hash.clone();
                after = row.seq;
                lines.push(Line::from(&row));
            }
        }
        let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
            return Err(invalid("no audit records before that date"));
        };
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let header = Header {
            format: FORMAT.into(),
            version: 1,
            first_seq: first.seq,
            last_seq: last.seq,
            prev_hash,
            before: fmt(before),
            created: fmt(self.clock.now()),
        };
        let count = i64::try_from(lines.len()).unwrap_or(i64::MAX);
        let last_hash = last.hash.clone();
        let end = End {
            end: true,
            count,
            last_hash: last_hash.clone(),
            mac: hex::encode(archive_mac(&chain, &header, &last_hash, count)),
        };
        let mut text = String::new();
        let mut push = |v: Result<String, serde_json::Error>| {
            text.push_str(&v.unwrap_or_default());
            text.push('\n');
        };
        push(serde_json::to_string(&header));
        for l in &lines {
            push(serde_json::to_string(l));
        }
        push(serde_json::to_string(&end));
        Ok(ArchiveExport {
            archive: text,
            through_seq: header.last_seq,
            last_hash,
            records: count,
        })
    }

    /// Delete the archived records up to `through_seq` (whose hash must be `last_hash`) and start
    /// the chain after it. Not refused below the free-space floor: archiving is how space is freed.
    pub async fn audit_archive_commit(
        &self,
        ctx: &Ctx,
        through_seq: i64,
        last_hash: &str,
    ) -> ServiceResult<ArchiveCommitted> {
        self.require_admin(ctx)?;
        let hash = hex::decode(last_hash).map_err(|_| invalid("last_hash must be hex"))?;
        let keys = self.barrier.keys().await?;
        let audit = WriteAudit::new(
            vec![crate::audit::Event {
                actor: ctx.actor.name.clone(),
                door: ctx.door,
                action: "audit.archive",
                target: "audit_log".into(),
                source: ctx.source.clone(),
                outcome: "ok",
                detail: json!({"through_seq": through_seq, "last_hash": last_hash}),
            }],
            keys.audit.clone(),
        );
        let deleted = self
            .store
            .archive_audit(through_seq, &hash, &audit.append())
            .await?;
        Ok(ArchiveCommitted {
            deleted,
            base_seq: through_seq,
        })
    }

    /// Check an archive file: every record chains from its start under this vault's audit key, and
    /// the end line's MAC covers both ends and the count.
    pub async fn audit_verify_archive(&self, ctx: &Ctx, text: &str) -> ServiceResult<Verification> {
        self.require_admin(ctx)?;
        let keys = self.barrier.keys().await?;
        let chain = |p: &[u8], r: &[u8]| keys.audit.chain(p, r);
        let bad = |records: i64, first_bad_seq: Option<i64>, message: String| {
            Ok(Verification {
                ok: false,
                records,
                first_bad_seq,
                message,
            })
        };
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Header = match lines.next().map(serde_json::from_str) {
            Some(Ok(h)) => h,
            _ => return bad(0, None, "not a credvault audit archive (no header)".into()),
        };
        if header.format != FORMAT || header.version != 1 {
            return bad(0, None, "not a credvault audit archive (format)".into());
        }
        let Ok(mut prev) = hex::decode(&header.prev_hash) else {
            return bad(0, None, "the archive's header is malformed".into());
        };
        let mut expected = header.first_seq;
        let mut count = 0i64;
        let mut end: Option<End> = None;
        for l in lines {
            if end.is_some() {
                return bad(
                    count,
                    Some(expected),
                    "lines after the archive's end".into(),
                );
            }
            if let Ok(e) = serde_json::from_str::<End>(l) {
                end = Some(e);
                continue;
            }
            let Some(row) = serde_json::from_str::<Line>(l).ok().and_then(|l| l.row()) else {
                return bad(
                    count,
                    Some(expected),
                    format!("record {expected} is malformed"),
                );
            };
            let h = chain(&prev, &row.canonical());
            if row.seq != expected {
                return bad(
                    count,
                    Some(expected),
                    format!("record {expected} is missing"),
                );
            }
            if !credvault_crypto::token::ct_eq(&h, &row.hash) {
                return bad(
                    count,
                    Some(row.seq),
                    format!(
                        "record {} does not match its hash chain (tampered)",
                        row.seq
                    ),
                );
            }
            prev = row.hash;
            expected += 1;
            count += 1;
        }
        let Some(end) = end else {
            return bad(
                count,
                Some(expected),
                "the archive has no end: it was cut off".into(),
            );
        };
        let last_hash = hex::encode(&prev);
        let mac = archive_mac(&chain, &header, &last_hash, count);
        let mac_ok = hex::decode(&end.mac).is_ok_and(|m| credvault_crypto::token::ct_eq(&m, &mac));
        if !end.end
            || end.count != count
            || end.last_hash != last_hash
            || header.last_seq != expected - 1
            || !mac_ok
        {
            return bad(
                count,
                None,
                "the archive's signature does not verify (records removed, added or edited, or another vault's archive)"
                    .into(),
            );
        }
        Ok(Verification {
            ok: true,
            records: count,
            first_bad_seq: None,
            message: format!(
                "{count} archived records verified (records {} to {})",
                header.first_seq, header.last_seq
            ),
        })
    }
}
