use async_trait::async_trait;

use crate::{AuditAppend, AuditHead, AuditRow, ChainFn, NewAudit, Result};

/// The hash-chained audit log and its keyed checkpoint. (Credential writes append their records
/// inside their own transaction: see [`AuditAppend`](crate::AuditAppend).)
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append records in one transaction, chaining each to the previous hash and moving the keyed
    /// checkpoint (`audit_head`) to the new head. Returns their seqs.
    async fn append_audit(&self, records: &[NewAudit], chain: ChainFn<'_>) -> Result<Vec<i64>>;
    /// The keyed checkpoint of the chain's head; `None` before the first append.
    async fn audit_head(&self) -> Result<Option<AuditHead>>;
    /// Rows with seq > after, oldest first.
    async fn audit_rows(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>>;
    /// The newest `n` rows, oldest first.
    async fn audit_tail(&self, n: i64) -> Result<Vec<AuditRow>>;
    /// Where the chain starts after an archive (the last archived record's seq and hash, keyed);
    /// `None` before the first archive.
    async fn audit_base(&self) -> Result<Option<AuditHead>>;
    /// Archive: in one transaction, delete the records up to `through_seq` (whose hash must be
    /// `hash`, and which must be past the current base), make it the new base (its MAC by
    /// `audit.chain`), and append `audit`'s records. Returns how many records were deleted.
    async fn archive_audit(
        &self,
        through_seq: i64,
        hash: &[u8],
        audit: &AuditAppend<'_>,
    ) -> Result<u64>;
}
