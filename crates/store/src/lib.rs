//! The storage layer: one [`Store`] trait, implemented by SQL backends.
//!
//! The store sees only ciphertext for secrets: encryption happens above it, in the server's service
//! layer. Every backend must pass the same conformance tests (`tests/conformance.rs`).
//!
//! Backends: [`sqlite::SqliteStore`] (embedded default). PostgreSQL is the next backend.

pub mod fault;
pub mod migrate;
pub mod postgres;
mod sql;
pub mod sqlite;

use async_trait::async_trait;
use credvault_core::model::{
    AuditRecord, Credential, CredentialMeta, Group, Owner, Safe, SafeMember, TokenInfo, User,
    VersionInfo,
};
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
#[derive(Debug, Clone, Default)]
pub enum Visibility {
    #[default]
    All,
    Restricted {
        user: String,
        groups: Vec<String>,
        safes: Vec<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    pub safe: Option<String>,
    pub folder: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub identifier: Option<String>,
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

/// Where `Store::export_snapshot` sends each batch: (table index in `migrate::TABLES`, rows).
pub type SnapshotSink<'a> = &'a mut (dyn FnMut(
    usize,
    Vec<Vec<migrate::Cell>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
             + Send);

/// An indexed, case-folded lookup column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

pub fn format_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| StoreError::Corrupt(format!("bad timestamp '{s}'")))
}

/// The storage interface. All methods are atomic; writes are durable when they return.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for health output (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    // --- seal and keys
    async fn seal_config(&self) -> Result<Option<SealConfig>>;
    /// Write the seal config and the first keys in one transaction; Conflict if already initialised.
    async fn initialize(&self, cfg: &SealConfig, keys: &[WrappedKey]) -> Result<()>;
    async fn keys(&self) -> Result<Vec<WrappedKey>>;
    async fn add_key(&self, key: &WrappedKey) -> Result<()>;
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
    ) -> Result<Vec<(Uuid, i64, Vec<u8>)>>;
    /// Replace one version's ciphertext if it is still `old` (a concurrent destroy wins).
    async fn rewrap_version(&self, id: Uuid, version: i64, old: &[u8], new: &[u8]) -> Result<bool>;
    /// Integrations' sealed secrets not under `term` (name, ciphertext).
    async fn integration_secrets_not_of_term(&self, term: u32) -> Result<Vec<(String, Vec<u8>)>>;
    /// Replace an integration's sealed secrets if they are still `old`.
    async fn rewrap_integration(&self, name: &str, old: &[u8], new: &[u8]) -> Result<bool>;
    /// In one transaction: if no credential version and no integration secret is under a data key
    /// older than `term`, delete those keys and return their terms; otherwise delete nothing.
    async fn retire_data_keys_below(&self, term: u32) -> Result<Vec<u32>>;

    // --- users, groups
    async fn create_user(&self, user: &User, password_hash: Option<&str>) -> Result<()>;
    async fn get_user(&self, name: &str) -> Result<Option<User>>;
    async fn user_password_hash(&self, name: &str) -> Result<Option<String>>;
    async fn list_users(&self) -> Result<Vec<User>>;
    async fn delete_user(&self, name: &str) -> Result<()>;
    async fn create_group(&self, name: &str) -> Result<()>;
    async fn get_group(&self, name: &str) -> Result<Option<Group>>;
    async fn list_groups(&self) -> Result<Vec<Group>>;
    async fn delete_group(&self, name: &str) -> Result<()>;
    async fn add_group_member(&self, group: &str, user: &str) -> Result<()>;
    async fn remove_group_member(&self, group: &str, user: &str) -> Result<()>;
    async fn groups_of(&self, user: &str) -> Result<Vec<String>>;

    // --- tokens
    async fn insert_token(&self, info: &TokenInfo, hash: &str) -> Result<()>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>>;
    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>>;
    async fn get_token(&self, id: Uuid) -> Result<Option<TokenInfo>>;
    async fn revoke_token(&self, id: Uuid) -> Result<()>;

    // --- safes
    async fn create_safe(&self, safe: &Safe) -> Result<()>;
    async fn get_safe(&self, name: &str) -> Result<Option<Safe>>;
    async fn list_safes(&self) -> Result<Vec<Safe>>;
    async fn delete_safe(&self, name: &str) -> Result<()>;
    async fn set_safe_member(&self, safe: &str, member: &SafeMember, perms: u8) -> Result<()>;
    async fn remove_safe_member(&self, safe: &str, kind: &str, name: &str) -> Result<()>;
    /// (kind, name, perms bits) of every member.
    async fn safe_members(&self, safe: &str) -> Result<Vec<(String, String, u8)>>;
    /// Safes in which the user (directly or through the groups) holds all of `perms`.
    async fn safes_with(&self, user: &str, groups: &[String], perms: u8) -> Result<Vec<String>>;

    // --- credentials
    //
    // Every credential write takes the audit records it commits with (`AuditAppend`): the change
    // and its records are one transaction (issue 14.5).
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
    async fn credential_with_payload(&self, id: Uuid) -> Result<Option<(Credential, Vec<u8>)>>;
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
    ) -> Result<Vec<(Credential, Vec<u8>)>>;
    async fn delete_credential(&self, id: Uuid, audit: &AuditAppend<'_>) -> Result<()>;
    async fn list_versions(&self, id: Uuid) -> Result<Vec<VersionInfo>>;
    async fn get_version(&self, id: Uuid, version: i64) -> Result<Option<StoredVersion>>;

    // --- audit
    /// Append records in one transaction, chaining each to the previous hash and moving the keyed
    /// checkpoint (`audit_head`) to the new head. Returns their seqs.
    async fn append_audit(&self, records: &[NewAudit], chain: ChainFn<'_>) -> Result<Vec<i64>>;
    /// The keyed checkpoint of the chain's head; `None` before the first append.
    async fn audit_head(&self) -> Result<Option<AuditHead>>;
    /// Rows with seq > after, oldest first.
    async fn audit_rows(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>>;
    /// The newest `n` rows, oldest first.
    async fn audit_tail(&self, n: i64) -> Result<Vec<AuditRow>>;

    // --- applications (AppID callers)
    async fn create_app(&self, app: &AppRecord) -> Result<()>;
    async fn get_app(&self, app_id: &str) -> Result<Option<AppRecord>>;
    async fn list_apps(&self) -> Result<Vec<AppRecord>>;
    async fn delete_app(&self, app_id: &str) -> Result<()>;
    async fn set_app_rules(&self, app_id: &str, rules: &str) -> Result<()>;
    /// Grant (`allow`) or revoke an application's access to a safe or a credential.
    async fn grant_app(&self, app_id: &str, kind: &str, target: &str) -> Result<()>;
    async fn revoke_app(&self, app_id: &str, kind: &str, target: &str) -> Result<()>;
    /// (kind, target) pairs.
    async fn app_grants(&self, app_id: &str) -> Result<Vec<(String, String)>>;

    // --- caches (issue 4)
    /// A counter bumped by triggers whenever an application's rules or grants change (any server).
    async fn change_epoch(&self) -> Result<i64>;

    // --- Vault KV door (issue 7): per-secret KV state, version destruction
    async fn kv_meta(&self, id: Uuid) -> Result<Option<String>>;
    async fn set_kv_meta(&self, id: Uuid, meta: &str) -> Result<()>;
    /// Overwrite one version's ciphertext with an empty payload (KV `destroy`); its row stays.
    async fn destroy_version(&self, id: Uuid, version: i64) -> Result<()>;

    // --- integrations (issue 7): external vaults pulled from
    async fn create_integration(&self, rec: &IntegrationRecord) -> Result<()>;
    async fn get_integration(&self, name: &str) -> Result<Option<IntegrationRecord>>;
    async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>>;
    /// Replace settings, secrets, safe and enabled (not the status).
    async fn update_integration(&self, rec: &IntegrationRecord) -> Result<()>;
    async fn set_integration_status(&self, name: &str, status: &str) -> Result<()>;
    async fn delete_integration(&self, name: &str) -> Result<()>;

    // --- PAM A2A door (issue 5): domains, devices, device lookup, custody
    async fn create_domain(&self, d: &credvault_core::model::Domain) -> Result<()>;
    async fn list_domains(&self) -> Result<Vec<credvault_core::model::Domain>>;
    /// A domain by its name or abbreviation, ignoring case.
    async fn find_domain(&self, name: &str) -> Result<Option<credvault_core::model::Domain>>;
    async fn delete_domain(&self, name: &str) -> Result<()>;
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
    /// Insert a credential unless one with the same device and user name exists, atomically
    /// (across servers too); returns the existing credential's id instead of inserting. The audit
    /// records are appended in the same transaction, only when it inserts.
    async fn insert_credential_unless_on_device_audited(
        &self,
        cred: &Credential,
        v: &NewVersion,
        audit: &AuditAppend<'_>,
    ) -> Result<Option<Uuid>>;
    /// [`Store::insert_credential_unless_on_device_audited`] with no audit record (the caller audits
    /// afterwards: not atomic with the write).
    async fn insert_credential_unless_on_device(
        &self,
        cred: &Credential,
        v: &NewVersion,
    ) -> Result<Option<Uuid>> {
        self.insert_credential_unless_on_device_audited(cred, v, &AuditAppend::none())
            .await
    }
    /// Record that `holder` holds the credential (replacing any earlier holder).
    async fn take_custody(&self, id: Uuid, holder: &str, since: OffsetDateTime) -> Result<()>;
    /// Release the credential if `holder` holds it; false when it does not.
    async fn release_custody(&self, id: Uuid, holder: &str) -> Result<bool>;

    // --- whole-vault copy (see `migrate`)
    async fn count_rows(&self, table: &migrate::TableSpec) -> Result<i64>;
    async fn export_rows(
        &self,
        table: &migrate::TableSpec,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Vec<migrate::Cell>>>;
    /// Every row of every table (`migrate::TABLES` order) as of one instant, in one read
    /// transaction (PostgreSQL: repeatable read), handed to `sink` in batches with the table's
    /// index while the vault keeps serving. `sink` returning false stops the export.
    async fn export_snapshot(&self, sink: SnapshotSink<'_>) -> Result<()>;
    /// Insert rows as they are, in one transaction.
    async fn import_rows(
        &self,
        table: &migrate::TableSpec,
        rows: &[Vec<migrate::Cell>],
    ) -> Result<()>;
}
