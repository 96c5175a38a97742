use async_trait::async_trait;
use credvault_core::model::{Credential, Domain};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{AuditAppend, DeviceRecord, NewVersion, Result};

/// The PAM A2A door (issue 5): domains, the device registry, credentials by device, custody.
#[async_trait]
pub trait PamStore: Send + Sync {
    async fn create_domain(&self, d: &Domain, audit: &AuditAppend<'_>) -> Result<()>;
    async fn list_domains(&self) -> Result<Vec<Domain>>;
    /// A domain by its name or abbreviation, ignoring case.
    async fn find_domain(&self, name: &str) -> Result<Option<Domain>>;
    async fn delete_domain(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()>;
    /// The device with this folded host name and IP.
    async fn get_device(&self, hostname_key: &str, ip: &str) -> Result<Option<DeviceRecord>>;
    /// Insert a new device; `Conflict` when one with the same host name + IP exists.
    async fn insert_device(&self, d: &DeviceRecord) -> Result<()>;
    /// Replace a device's attributes when it is still at `expected_version` (else `VersionMismatch`).
    async fn update_device(&self, d: &DeviceRecord, expected_version: i64) -> Result<()>;
    /// Credentials on a device (folded host name + IP) with this folded user name, oldest first.
    async fn credentials_on_device(
        &self,
        hostname_key: &str,
        ip: &str,
        username_key: &str,
    ) -> Result<Vec<Credential>>;
    /// Insert a credential unless one with the same device and user name exists in one of the
    /// safes `within` (an application's reach), atomically (across servers too: the check and the
    /// insert hold a lock on the device + user); returns the existing credential's id instead of
    /// inserting. The audit records are appended in the same transaction, only when it inserts.
    async fn insert_credential_unless_on_device_audited(
        &self,
        cred: &Credential,
        v: &NewVersion,
        within: &[String],
        audit: &AuditAppend<'_>,
    ) -> Result<Option<Uuid>>;
    /// Record that `holder` holds the credential since `since` (replacing any earlier holder). A
    /// holder that already holds it keeps its first `since`, and nothing is written: on SQLite a
    /// statement that changes no row commits without a log write or fsync, so the A2A read, which
    /// takes custody on every read, is not one durable write per read (issue 15).
    async fn take_custody(&self, id: Uuid, holder: &str, since: OffsetDateTime) -> Result<()>;
    /// Release the credential if `holder` holds it; false when it does not.
    async fn release_custody(
        &self,
        id: Uuid,
        holder: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<bool>;
}
