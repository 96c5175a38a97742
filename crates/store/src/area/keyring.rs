use async_trait::async_trait;

use crate::AuditAppend;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{IntegrationCiphertext, Result, SealConfig, VersionCiphertext, WrappedKey};

/// Seal configuration, the wrapped keys, and what a key rotation does to stored ciphertexts
/// (rewrap, retirement of old data keys).
#[async_trait]
pub trait KeyringStore: Send + Sync {
    async fn seal_config(&self) -> Result<Option<SealConfig>>;
    /// Write the seal config and the first keys in one transaction; Conflict if already initialised.
    async fn initialize(&self, cfg: &SealConfig, keys: &[WrappedKey]) -> Result<()>;
    async fn keys(&self) -> Result<Vec<WrappedKey>>;
    async fn add_key(&self, key: &WrappedKey, audit: &AuditAppend<'_>) -> Result<()>;
    /// The newest data key term (another server may have rotated since this one loaded the keyring).
    async fn newest_data_term(&self) -> Result<u32>;
    /// When the data key of `term` was added (rotation time), if it exists.
    async fn data_key_created(&self, term: u32) -> Result<Option<OffsetDateTime>>;
    /// Secret versions (non-empty ciphertexts) not encrypted under `term`, in (id, version) order
    /// after `after`: what a rewrap after rotation has left to do.
    async fn versions_not_of_term(
        &self,
        term: u32,
        after: Option<(Uuid, i64)>,
        limit: i64,
    ) -> Result<Vec<VersionCiphertext>>;
    /// Replace one version's ciphertext if it is still `old` (a concurrent destroy wins).
    async fn rewrap_version(&self, id: Uuid, version: i64, old: &[u8], new: &[u8]) -> Result<bool>;
    /// Integrations' sealed secrets not under `term`.
    async fn integration_secrets_not_of_term(
        &self,
        term: u32,
    ) -> Result<Vec<IntegrationCiphertext>>;
    /// Replace an integration's sealed secrets if they are still `old`.
    async fn rewrap_integration(&self, name: &str, old: &[u8], new: &[u8]) -> Result<bool>;
    /// In one transaction: if no credential version and no integration secret is under a data key
    /// older than `term`, delete those keys and return their terms; otherwise delete nothing.
    async fn retire_data_keys_below(&self, term: u32) -> Result<Vec<u32>>;
}
