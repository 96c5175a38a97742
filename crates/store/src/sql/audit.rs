//! [`AuditStore`]: the audit log and its checkpoint. The append itself (`append_in`) is shared with
//! every credential write, so it lives in `common.rs`.

use async_trait::async_trait;

use super::common::{append_in, audit_from, bytes, i};
use super::{dialect, Backend};
use crate::sql::db_err;
use crate::{
    audit_base_mac, AuditAppend, AuditHead, AuditRow, AuditStore, ChainFn, NewAudit, Result,
    StoreError,
};

#[async_trait]
impl AuditStore for Backend {
    async fn append_audit(&self, records: &[NewAudit], chain: ChainFn<'_>) -> Result<Vec<i64>> {
        let mut tx = self.begin_write().await?;
        let seqs = append_in(&mut tx, &AuditAppend::new(records, chain)).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(seqs)
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>> {
        self.checkpoint("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
            .await
    }

    async fn audit_rows(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT *
             FROM audit_log
             WHERE seq > $1
             ORDER BY seq
             LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn audit_tail(&self, n: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT *
             FROM (SELECT * FROM audit_log ORDER BY seq DESC LIMIT $1) AS t
             ORDER BY seq",
        )
        .bind(n)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn audit_base(&self) -> Result<Option<AuditHead>> {
        self.checkpoint("SELECT seq, hash, mac FROM audit_base WHERE id = 1")
            .await
    }

    async fn archive_audit(
        &self,
        through_seq: i64,
        hash: &[u8],
        audit: &AuditAppend<'_>,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        // The chain's lock first (PostgreSQL; SQLite's write transaction already serialises), so
        // no append or other archive runs between the checks and the delete.
        if let Some(lock) = dialect::AUDIT_LOCK {
            sqlx::query(lock).execute(&mut *tx).await.map_err(db_err)?;
        }
        let row = sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
            .bind(through_seq)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        match row {
            Some(r) if bytes(&r, "hash")? == hash => {}
            Some(_) => {
                return Err(StoreError::Conflict(format!(
                    "audit record {through_seq} is not the one archived"
                )))
            }
            None => {
                return Err(StoreError::Conflict(format!(
                    "audit record {through_seq} is not in the log (archived already?)"
                )))
            }
        }
        let deleted = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
            .bind(through_seq)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        let mac = audit_base_mac(audit.chain, through_seq, hash);
        sqlx::query(
            "INSERT INTO audit_base (id, seq, hash, mac)
             VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
        )
        .bind(through_seq)
        .bind(hash)
        .bind(mac.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_in(&mut tx, audit).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(deleted)
    }
}

impl Backend {
    /// A keyed checkpoint of the chain (`audit_head` or `audit_base`): its one row, if any.
    async fn checkpoint(&self, sql: &'static str) -> Result<Option<AuditHead>> {
        sqlx::query(sql)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .map(|r| {
                Ok(AuditHead {
                    seq: i(&r, "seq")?,
                    hash: bytes(&r, "hash")?,
                    mac: bytes(&r, "mac")?,
                })
            })
            .transpose()
    }
}
