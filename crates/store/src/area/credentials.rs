use async_trait::async_trait;
use credvault_core::model::{Credential, VersionInfo};
use uuid::Uuid;

use crate::{
    AuditAppend, CredentialFilter, CredentialWithPayload, LookupKey, NewVersion, Result,
    StoredVersion,
};

/// Credentials and their versions, and the Vault KV door's per-secret state.
///
/// Every credential write takes the audit records it commits with (`AuditAppend`): the change
/// and its records are one transaction (issue 14.5).
#[async_trait]
pub trait CredentialStore: Send + Sync {
    async fn insert_credential(
        &self,
        cred: &Credential,
        v: &NewVersion,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    /// Insert many new credentials in one transaction: all or nothing (bulk import).
    async fn insert_credentials(
        &self,
        batch: &[(Credential, NewVersion)],
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    /// Replace the current state when it is still at `expected_version`; `cred.version` is the new one.
    async fn update_credential(
        &self,
        cred: &Credential,
        expected_version: i64,
        v: &NewVersion,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    async fn get_credential(&self, id: Uuid) -> Result<Option<Credential>>;
    async fn credential_by_identifier(&self, identifier: &str) -> Result<Option<Credential>>;
    /// The current credential and its current encrypted payload, in one read.
    async fn credential_with_payload(&self, id: Uuid) -> Result<Option<CredentialWithPayload>>;
    async fn list_credentials(&self, filter: &CredentialFilter) -> Result<Vec<Credential>>;
    /// Credentials whose case-folded lookup key equals `value` (already folded), inside the given safes
    /// or among the given ids, each with its current version's payload: the indexed path of
    /// application reads (one round trip).
    async fn find_by_key(
        &self,
        key: LookupKey,
        value: &str,
        safes: &[String],
        ids: &[String],
        limit: i64,
    ) -> Result<Vec<CredentialWithPayload>>;
    async fn delete_credential(&self, id: Uuid, audit: &AuditAppend<'_>) -> Result<()>;
    async fn list_versions(&self, id: Uuid) -> Result<Vec<VersionInfo>>;
    async fn get_version(&self, id: Uuid, version: i64) -> Result<Option<StoredVersion>>;

    // --- Vault KV door (issue 7): per-secret KV state, version destruction
    async fn kv_meta(&self, id: Uuid) -> Result<Option<String>>;
    /// Replace a KV secret's state (`meta`, JSON) if it is still `expected` (`None`: it has none
    /// yet), destroying the ciphertext of the `destroy` versions (their rows stay, with an empty
    /// payload), and append the call's audit record, all in one transaction.
    /// `VersionMismatch` when another writer changed the state first (read it again and retry).
    async fn set_kv_meta(
        &self,
        id: Uuid,
        expected: Option<&str>,
        meta: &str,
        destroy: &[i64],
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
}
