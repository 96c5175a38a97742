//! [`AuditStore`]: the audit log and its checkpoint. The append itself (`append_in`) is shared with
//! every credential write, so it lives in `common.rs`.

use async_trait::async_trait;

use super::common::{append_in, audit_from, bytes, i};
use super::Backend;
use crate::sql::db_err;
use crate::{AuditAppend, AuditHead, AuditRow, AuditStore, ChainFn, NewAudit, Result};

#[async_trait]
impl AuditStore for Backend {
    async fn append_audit(&self, records: &[NewAudit], chain: ChainFn<'_>) -> Result<Vec<i64>> {
        let mut tx = self.begin_write().await?;
        let seqs = append_in(&mut tx, &AuditAppend::new(records, chain)).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(seqs)
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>> {
        sqlx::query("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
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
}
