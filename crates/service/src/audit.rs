//! The audit log: append-only, hash-chained, fail-closed, group-committed.
//!
//! Callers [`Auditor::record`] and await the durable commit before answering; if the append fails the
//! caller gets [`ServiceError::AuditFailed`] and must not return the secret. One background task
//! drains the queue and writes everything waiting in one transaction (one fsync for the whole group),
//! so concurrent readers share commits instead of queueing behind one fsync each.

use std::sync::Arc;

use credvault_store::{AuditAppend, AuditRow, NewAudit, Store};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::barrier::Barrier;
use crate::error::{ServiceError, ServiceResult};

const MAX_BATCH: usize = 512;
const QUEUE: usize = 8192;

type Pending = (NewAudit, oneshot::Sender<Result<i64, ()>>);

/// What one audited event is about. `detail` must never hold a secret value.
#[derive(Debug, Clone)]
pub struct Event {
    pub actor: String,
    pub door: &'static str,
    pub action: &'static str,
    pub target: String,
    pub source: String,
    pub outcome: &'static str,
    pub detail: Value,
}

/// The most bytes of one caller-given text kept in a record: an outsider's 20 KB AppID or query
/// must not turn each refused request into 80 KB of audit (issue 16).
pub const MAX_FIELD: usize = 256;

/// Caller-given text as a record keeps it: at most [`MAX_FIELD`] bytes (cut at a character
/// boundary and marked with the original length), and NUL, which PostgreSQL text cannot hold,
/// replaced by a visible character instead of failing the request closed.
fn bounded(s: String) -> String {
    let s = if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    };
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut cut = MAX_FIELD;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…[truncated: {} bytes]", &s[..cut], s.len())
}

/// Every string in a record's detail, bounded as [`bounded`]; at most 64 keys or items per level.
fn bounded_json(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(bounded(s)),
        Value::Array(a) => Value::Array(a.into_iter().take(64).map(bounded_json).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .take(64)
                .map(|(k, v)| (bounded(k), bounded_json(v)))
                .collect(),
        ),
        other => other,
    }
}

#[derive(Clone)]
pub struct Auditor {
    tx: mpsc::Sender<Pending>,
}

impl Auditor {
    pub(crate) fn start(
        store: Arc<dyn Store>,
        barrier: Arc<Barrier>,
        sinks: Arc<crate::audit_sink::Sinks>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, barrier, sinks, rx));
        Self { tx }
    }

    /// Append one record and wait until it is durable. Returns its sequence number.
    /// Record several events and wait until all are committed (they share group commits).
    pub async fn record_many(&self, events: Vec<Event>) -> ServiceResult<()> {
        let mut waits = Vec::with_capacity(events.len());
        for e in events {
            let (done, wait) = oneshot::channel();
            self.tx
                .send((Self::new_audit(e), done))
                .await
                .map_err(|_| ServiceError::AuditFailed)?;
            waits.push(wait);
        }
        for w in waits {
            w.await
                .map_err(|_| ServiceError::AuditFailed)?
                .map_err(|_| ServiceError::AuditFailed)?;
        }
        Ok(())
    }

    pub(crate) fn new_audit(e: Event) -> NewAudit {
        NewAudit {
            time: now_micros(),
            actor: bounded(e.actor),
            door: e.door.to_owned(),
            action: e.action.to_owned(),
            target: bounded(e.target),
            source: bounded(e.source),
            outcome: e.outcome.to_owned(),
            detail: bounded_json(e.detail),
        }
    }

    pub async fn record(&self, e: Event) -> ServiceResult<i64> {
        let rec = Self::new_audit(e);
        let (done, wait) = oneshot::channel();
        self.tx
            .send((rec, done))
            .await
            .map_err(|_| ServiceError::AuditFailed)?;
        wait.await
            .map_err(|_| ServiceError::AuditFailed)?
            .map_err(|_| ServiceError::AuditFailed)
    }
}

/// Type of the chain closure a [`WriteAudit`] holds.
type Chain = dyn Fn(&[u8], &[u8]) -> [u8; 32] + Send + Sync;

/// The audit records of one write, made before the write and committed in its transaction
/// (`Store::insert_credential` and the other credential writes take [`WriteAudit::append`]): the
/// change and its records are durable together or not at all. Made by `Vault::write_audit`.
pub struct WriteAudit {
    records: Vec<NewAudit>,
    chain: Box<Chain>,
}

impl WriteAudit {
    pub(crate) fn new(events: Vec<Event>, audit_key: credvault_crypto::token::Hasher) -> Self {
        Self {
            records: events.into_iter().map(Auditor::new_audit).collect(),
            chain: Box::new(move |p, r| audit_key.chain(p, r)),
        }
    }

    /// What the store appends inside the write's transaction.
    pub fn append(&self) -> AuditAppend<'_> {
        AuditAppend::new(&self.records, &*self.chain)
    }
}

fn now_micros() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

async fn writer(
    store: Arc<dyn Store>,
    barrier: Arc<Barrier>,
    sinks: Arc<crate::audit_sink::Sinks>,
    mut rx: mpsc::Receiver<Pending>,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // The records move into the append; their waiters stay to be answered (no copy per record).
        let (records, waiters): (Vec<NewAudit>, Vec<_>) = batch.drain(..).unzip();
        let result = match barrier.keys().await {
            Ok(keys) => {
                let h = keys.audit.clone();
                let appended = store
                    .append_audit(&records, &move |p, r| h.chain(p, r))
                    .await;
                // Health (issue 16.1): an audit that cannot be written degrades the server.
                crate::health::audit_appended(store.as_ref(), appended.as_ref().err());
                let appended = appended.map_err(|e| {
                    tracing::error!(error = %e, "audit append failed; refusing the requests that needed it");
                });
                // Required sinks (`audit_sink.rs`) must have the records before they are answered.
                match appended {
                    Ok(seqs) => sinks
                        .committed(seqs.last().copied().unwrap_or(0))
                        .await
                        .map(|()| seqs),
                    Err(()) => Err(()),
                }
            }
            Err(_) => {
                tracing::error!("audit append refused: the vault is sealed");
                Err(())
            }
        };
        metrics::histogram!("credvault_audit_batch_size").record(waiters.len() as f64);
        match result {
            Ok(seqs) => {
                for (done, seq) in waiters.into_iter().zip(seqs) {
                    let _ = done.send(Ok(seq));
                }
            }
            Err(()) => {
                metrics::counter!("credvault_audit_failures_total").increment(1);
                for done in waiters {
                    let _ = done.send(Err(()));
                }
            }
        }
    }
}

/// Result of walking the chain.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub ok: bool,
    pub records: i64,
    /// The first record whose hash does not match (tampered, reordered or removed before it), or
    /// the first record missing after the log's end when its checkpoint says there were more.
    pub first_bad_seq: Option<i64>,
    pub message: String,
}

/// Walk the whole chain from its start (the first record, or the one after the archive checkpoint
/// `audit_base`, see `archive.rs`) and report the first record that does not verify.
pub async fn verify(store: &dyn Store, barrier: &Barrier) -> ServiceResult<Verification> {
    let keys = barrier.keys().await?;
    let mut prev: Vec<u8> = Vec::new();
    let mut expected_seq = 1i64;
    let mut count = 0i64;
    if let Some(base) = store.audit_base().await? {
        let chain = |p: &[u8], r: &[u8]| keys.audit.chain(p, r);
        let mac = credvault_store::audit_base_mac(&chain, base.seq, &base.hash);
        if !credvault_crypto::token::ct_eq(&mac, &base.mac) {
            return Ok(Verification {
                ok: false,
                records: 0,
                first_bad_seq: None,
                message: "the archive checkpoint does not verify (tampered)".to_owned(),
            });
        }
        prev = base.hash;
        expected_seq = base.seq + 1;
    }
    let first_seq = expected_seq;
    loop {
        let rows: Vec<AuditRow> = store.audit_rows(expected_seq - 1, 1000).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let h = keys.audit.chain(&prev, &row.canonical());
            if row.seq != expected_seq || !credvault_crypto::token::ct_eq(&h, &row.hash) {
                let why = if row.seq != expected_seq {
                    format!("record {expected_seq} is missing")
                } else {
                    format!(
                        "record {} does not match its hash chain (tampered)",
                        row.seq
                    )
                };
                return Ok(Verification {
                    ok: false,
                    records: count,
                    first_bad_seq: Some(expected_seq.min(row.seq)),
                    message: why,
                });
            }
            prev = row.hash;
            expected_seq += 1;
            count += 1;
        }
    }
    // Truncation: the walked chain must end where the keyed checkpoint says it does.
    let last = expected_seq - 1;
    let chain = |p: &[u8], r: &[u8]| keys.audit.chain(p, r);
    let bad = |first_bad_seq: Option<i64>, message: String| -> ServiceResult<Verification> {
        Ok(Verification {
            ok: false,
            records: count,
            first_bad_seq,
            message,
        })
    };
    match store.audit_head().await? {
        None if count > 0 => {
            return bad(
                Some(last + 1),
                format!(
                    "the log ends at record {last} but has no checkpoint: records may have been \
                     removed (or nothing was written since the upgrade that added checkpoints)"
                ),
            )
        }
        None => {}
        Some(head) => {
            let mac = credvault_store::audit_head_mac(&chain, head.seq, &head.hash);
            if !credvault_crypto::token::ct_eq(&mac, &head.mac) {
                return bad(
                    None,
                    "the audit checkpoint does not verify (tampered)".to_owned(),
                );
            }
            if head.seq != last || !credvault_crypto::token::ct_eq(&head.hash, &prev) {
                let message = if head.seq == last {
                    format!(
                        "record {last} is not the one the checkpoint names: records were replaced"
                    )
                } else {
                    format!(
                        "the log ends at record {last} but its checkpoint says {}: records were removed",
                        head.seq
                    )
                };
                return bad(Some(last.min(head.seq) + 1), message);
            }
        }
    }
    Ok(Verification {
        ok: true,
        records: count,
        first_bad_seq: None,
        message: if first_seq > 1 {
            format!(
                "{count} records verified (records {first_seq} to {last}; the ones before are archived)"
            )
        } else {
            format!("{count} records verified")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_text_is_bounded_in_records() {
        let long = "é".repeat(10_000);
        let e = Event {
            actor: format!("app:{long}"),
            door: "ccp",
            action: "ccp.get_password",
            target: long.clone(),
            source: "127.0.0.1".into(),
            outcome: "refused",
            detail: serde_json::json!({"query": long, "nested": [{"reason": long}], "nul": "a\0b"}),
        };
        let rec = Auditor::new_audit(e);
        let size = serde_json::to_string(&rec.detail).unwrap_or_default().len()
            + rec.actor.len()
            + rec.target.len();
        assert!(size < 2_000, "{size} bytes kept");
        assert!(
            rec.target.ends_with("[truncated: 20000 bytes]"),
            "{}",
            rec.target
        );
        assert!(rec.actor.starts_with("app:é"));
        assert_eq!(rec.detail["nul"], "a\u{FFFD}b");
        assert!(rec.detail["nested"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("truncated")));
    }
}
