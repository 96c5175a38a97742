use async_trait::async_trait;
use credvault_core::model::Credential;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{AuditAppend, NewVersion, PasswordChangeRow, Result};

/// Automatic password change (issue 17): the engine's state per credential (`password_changes`).
///
/// One server at a time works on a credential: [`Self::take_change_lease`] takes the row's lease
/// when it is free or expired and returns the row with its new `lease_seq`; every later write of
/// the row is conditional on that `lease_seq` and fails with `Conflict` once another server took
/// the lease over.
#[async_trait]
pub trait PasswordChangeStore: Send + Sync {
    async fn password_change(&self, cred_id: Uuid) -> Result<Option<PasswordChangeRow>>;
    /// Rows with a change in flight or a run due at `now` (whatever their lease), at most `limit`.
    async fn password_changes_due(
        &self,
        now: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<PasswordChangeRow>>;
    /// Take the lease of `cred_id`'s row (created when missing) for `owner` until `until`, when it
    /// is free, expired at `now`, or already `owner`'s. `None`: another server holds it.
    async fn take_change_lease(
        &self,
        cred_id: Uuid,
        owner: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Option<PasswordChangeRow>>;
    /// Write `row` (its change in flight, schedule and last result) if its lease is still at
    /// `row.lease_seq`, with the audit records of the step, in one transaction.
    async fn save_password_change(
        &self,
        row: &PasswordChangeRow,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    /// Pending values sealed under another data key term than `term`: (credential, change, sealed).
    async fn pending_not_of_term(&self, term: u32) -> Result<Vec<(Uuid, String, Vec<u8>)>>;
    /// Replace a pending value sealed under an old term by `new` if it is still `old` (key
    /// rotation's rewrap); false when it changed meanwhile.
    async fn rewrap_pending(&self, cred_id: Uuid, old: &[u8], new: &[u8]) -> Result<bool>;
    /// Settle a change: write `row` (no change in flight any more) and, when `cred` is given, make
    /// its new version current (`cred.version`, over `expected_version`), with the audit records,
    /// in one transaction. `VersionMismatch` when the credential moved (re-read and retry),
    /// `Conflict` when the lease was lost.
    async fn finish_password_change(
        &self,
        row: &PasswordChangeRow,
        cred: Option<(&Credential, i64, &NewVersion)>,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
}
