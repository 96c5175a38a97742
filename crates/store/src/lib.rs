//! The storage layer: one [`Store`] trait, implemented by SQL backends.
//!
//! [`Store`] is the sum of one sub-trait per area ([`area`]): keyring, identities, credentials,
//! applications, audit, the PAM A2A door, integrations, backup. Bring them into scope with
//! `use credvault_store::prelude::*;`.
//!
//! The store sees only ciphertext for secrets: encryption happens above it, in the server's service
//! layer. Every backend must pass the same conformance tests (`tests/conformance.rs`).
//!
//! Backends: [`sqlite::SqliteStore`] (embedded default). PostgreSQL is the next backend.

pub mod area;
pub mod fault;
pub mod feed;
pub mod health;
pub mod migrate;
mod pool;
pub mod postgres;
mod sql;
pub mod sqlite;

pub use area::{
    AppStore, AuditStore, BackendStore, BackupStore, CredentialStore, IdentityStore,
    IntegrationStore, KeyringStore, PamStore, PasswordChangeStore,
};

/// Everything a caller of the store needs in scope: [`Store`] and its sub-traits (a sub-trait's
/// methods are callable only with the sub-trait in scope, except through `dyn Store`).
pub mod prelude {
    pub use crate::area::{
        AppStore, AuditStore, BackendStore, BackupStore, CredentialStore, IdentityStore,
        IntegrationStore, KeyringStore, PamStore, PasswordChangeStore,
    };
    pub use crate::Store;
}

use credvault_core::model::{AuditRecord, Credential, CredentialMeta, Owner, VersionInfo};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("version conflict: the credential is now at version {current}")]
    VersionMismatch { current: i64 },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database refused a value as text it cannot hold (PostgreSQL: a NUL character).
    #[error("{0}")]
    Invalid(String),
    /// The audit record of a write could not be appended, so the write was not made either.
    #[error("audit log unavailable: {0}")]
    AuditFailed(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Seal configuration written once by `operator init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealConfig {
    pub shares: u8,
    pub threshold: u8,
}

/// A wrapped key in the keyring table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub purpose: String,
    pub term: u32,
    pub wrapped: Vec<u8>,
}

/// A new version to store with a credential write.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub payload: Vec<u8>,
    pub operation: String,
}

/// A stored version: metadata snapshot plus the encrypted payload.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub info: VersionInfo,
    pub meta: CredentialMeta,
    pub payload: Vec<u8>,
}

/// Which credentials a listing may show. Restricted = owned by the user or one of its groups, or in
/// one of the given safes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Visibility {
    #[default]
    All,
    Restricted {
        user: String,
        groups: Vec<String>,
        safes: Vec<String>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CredentialFilter {
    pub safe: Option<String>,
    pub folder: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub identifier: Option<String>,
    /// Only identifiers that start with this (a Vault-KV folder: `LIST` reads the folder's
    /// descendants through the identifier index, not the whole mount). Compared bytewise on both
    /// backends; it must end in an ASCII character (KV folders end in `/`).
    pub identifier_prefix: Option<String>,
    pub hostname: Option<String>,
    pub ip: Option<String>,
    pub tag: Option<String>,
    pub owner: Option<Owner>,
    /// Keyset pagination: only ids greater than this.
    pub after: Option<Uuid>,
    pub limit: i64,
    pub visibility: Visibility,
}

/// An application as stored. `rules` is the JSON of its authentication rules (never secret values:
/// a header secret is kept as a keyed hash inside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub app_id: String,
    pub owner: String,
    pub description: Option<String>,
    pub rules: String,
    pub created_at: OffsetDateTime,
}

/// An integration (an external vault credvault pulls from) as stored. `settings` is the JSON of
/// its non-secret settings; `secrets` the sealed secret settings; `status` JSON of its last runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationRecord {
    pub name: String,
    pub settings: String,
    pub secrets: Vec<u8>,
    pub safe: String,
    pub enabled: bool,
    pub status: String,
    pub created_at: OffsetDateTime,
}

/// The automatic password change's state of one credential (`password_changes`, issue 17).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordChangeRow {
    pub cred_id: Uuid,
    /// The change in flight, if any.
    pub change_id: Option<String>,
    /// Its new value, sealed (binding `credvault:pwchange:<cred_id>:<change_id>`).
    pub pending: Option<Vec<u8>>,
    pub started_at: Option<OffsetDateTime>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<OffsetDateTime>,
    pub lease_seq: i64,
    /// Failed runs in a row (the retry backoff).
    pub failures: i64,
    pub next_run_at: Option<OffsetDateTime>,
    pub last_attempt_at: Option<OffsetDateTime>,
    pub last_success_at: Option<OffsetDateTime>,
    /// `ok`, `failed` or `reconciled`.
    pub last_result: Option<String>,
    /// Why the last run failed (the target's message, never a secret).
    pub last_error: Option<String>,
}

impl std::fmt::Debug for PasswordChangeRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChangeRow")
            .field("cred_id", &self.cred_id)
            .field("change_id", &self.change_id)
            .field("pending", &self.pending.as_ref().map(|_| "<sealed>"))
            .field("lease_owner", &self.lease_owner)
            .field("lease_seq", &self.lease_seq)
            .field("failures", &self.failures)
            .field("last_result", &self.last_result)
            .finish_non_exhaustive()
    }
}

/// A device of the registry (PAM A2A door): created on the fly, reused by host name + IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: Uuid,
    pub device: credvault_core::model::Device,
    /// Optimistic concurrency: bumped by every update.
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A secret version's ciphertext, as listed for a rewrap after a key rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCiphertext {
    pub id: Uuid,
    pub version: i64,
    pub payload: Vec<u8>,
}

/// An integration's sealed secret settings, as listed for a rewrap after a key rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationCiphertext {
    pub name: String,
    pub secrets: Vec<u8>,
}

/// A member of a safe as stored: `kind` is `user` or `group`, `perms` the permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeMemberRow {
    pub kind: String,
    pub name: String,
    pub perms: u8,
}

/// A credential with the encrypted payload of its current version.
#[derive(Debug, Clone)]
pub struct CredentialWithPayload {
    pub credential: Credential,
    pub payload: Vec<u8>,
}

/// One grant of an application: `kind` (`safe`, `safe-write`, `credential`, ...) and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppGrant {
    pub kind: String,
    pub target: String,
}

/// Where `Store::export_snapshot` sends each batch: (table index in `migrate::TABLES`, rows).
pub type SnapshotSink<'a> = &'a mut (dyn FnMut(
    usize,
    Vec<Vec<migrate::Cell>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
             + Send);

/// An indexed, case-folded lookup column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupKey {
    Name,
    Username,
    Hostname,
    /// The device IP (not folded).
    Ip,
}

impl LookupKey {
    pub fn column(self) -> &'static str {
        match self {
            LookupKey::Name => "name_key",
            LookupKey::Username => "username_key",
            LookupKey::Hostname => "hostname_key",
            LookupKey::Ip => "ip",
        }
    }
}

/// An audit record about to be appended.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub time: OffsetDateTime,
    pub actor: String,
    pub door: String,
    pub action: String,
    pub target: String,
    pub source: String,
    pub outcome: String,
    pub detail: serde_json::Value,
}

/// An audit row exactly as stored, for chain verification.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub time: String,
    pub actor: String,
    pub door: String,
    pub action: String,
    pub target: String,
    pub source: String,
    pub outcome: String,
    pub detail: String,
    pub hash: Vec<u8>,
}

impl AuditRow {
    /// The bytes the chain hash covers: every field, in a fixed JSON array form.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(&(
            self.seq,
            &self.time,
            &self.actor,
            &self.door,
            &self.action,
            &self.target,
            &self.source,
            &self.outcome,
            &self.detail,
        ))
        .unwrap_or_default()
    }

    pub fn to_record(&self) -> AuditRecord {
        AuditRecord {
            seq: self.seq,
            time: parse_time(&self.time).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            actor: self.actor.clone(),
            door: self.door.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            source: self.source.clone(),
            outcome: self.outcome.clone(),
            detail: serde_json::from_str(&self.detail).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Computes one chain link: `f(previous hash, canonical record) -> hash`.
pub type ChainFn<'a> = &'a (dyn Fn(&[u8], &[u8]) -> [u8; 32] + Send + Sync);

/// A test hook run inside a write transaction just before its audit rows are inserted; an error
/// fails the insert, so the whole transaction (the write too) rolls back. See [`fault::FaultStore`].
pub type AuditFaultFn<'a> = &'a (dyn Fn() -> Result<()> + Send + Sync);

/// The audit records a write commits with: appended, chained and checkpointed inside the write's own
/// transaction, so the change and its records are durable together or not at all.
#[derive(Clone, Copy)]
pub struct AuditAppend<'a> {
    pub records: &'a [NewAudit],
    pub chain: ChainFn<'a>,
    /// Fault injection (tests): see [`AuditFaultFn`].
    pub fault: Option<AuditFaultFn<'a>>,
}

impl<'a> AuditAppend<'a> {
    pub fn new(records: &'a [NewAudit], chain: ChainFn<'a>) -> Self {
        Self {
            records,
            chain,
            fault: None,
        }
    }

    /// No record: for store tests and tools that write below the service layer.
    pub fn none() -> AuditAppend<'static> {
        AuditAppend {
            records: &[],
            chain: &|_, _| [0; 32],
            fault: None,
        }
    }
}

impl std::fmt::Debug for AuditAppend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditAppend")
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

/// The keyed checkpoint of the audit chain's head (table `audit_head`, one row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub mac: Vec<u8>,
}

/// The checkpoint's MAC: one chain link over (seq, hash) with a prefix no record link has (a
/// record's previous hash is empty or 32 bytes), so neither can stand in for the other.
pub fn audit_head_mac(chain: ChainFn<'_>, seq: i64, hash: &[u8]) -> [u8; 32] {
    let mut msg = Vec::with_capacity(8 + hash.len());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(hash);
    chain(b"credvault:audit-head", &msg)
}

/// The archive checkpoint's MAC (`audit_base`, migration 0015): like [`audit_head_mac`] with a
/// prefix of its own, so neither checkpoint can stand in for the other.
pub fn audit_base_mac(chain: ChainFn<'_>, seq: i64, hash: &[u8]) -> [u8; 32] {
    let mut msg = Vec::with_capacity(8 + hash.len());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(hash);
    chain(b"credvault:audit-base", &msg)
}

pub fn format_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| StoreError::Corrupt(format!("bad timestamp '{s}'")))
}

/// The storage interface: every area's sub-trait. All methods are atomic; writes are durable when
/// they return. Implemented for every type that implements all the sub-traits, so a backend
/// implements the sub-traits and `Arc<dyn Store>` works as before.
pub trait Store:
    BackendStore
    + KeyringStore
    + IdentityStore
    + CredentialStore
    + AppStore
    + AuditStore
    + PamStore
    + IntegrationStore
    + PasswordChangeStore
    + BackupStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: BackendStore
        + KeyringStore
        + IdentityStore
        + CredentialStore
        + AppStore
        + AuditStore
        + PamStore
        + IntegrationStore
        + PasswordChangeStore
        + BackupStore
        + Send
        + Sync
        + 'static
{
}
