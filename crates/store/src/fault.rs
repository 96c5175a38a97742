//! A fault-injecting [`Store`] wrapper for tests, in the spirit of OpenBao's physical error
//! injector: wrap any store, then make chosen calls fail with a [`StoreError`] or take longer.
//!
//! * [`FaultStore::fail`] / [`FaultStore::delay`]: by method name (`"update_credential"`, …); the
//!   call fails before it reaches the wrapped store.
//! * [`FaultStore::fail_audit`]: every audit append fails *where the audit rows are inserted*: the
//!   group-committed [`AuditStore::append_audit`], and inside the transaction of every write that carries
//!   its audit records ([`AuditAppend`]), after the write's own statements ran, so the test sees what
//!   a real audit-insert failure leaves behind (the whole transaction rolled back).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credvault_core::model::{Credential, Group, Safe, SafeMember, TokenInfo, User, VersionInfo};

use async_trait::async_trait;

use super::*;

/// What to do to one method's calls.
#[derive(Debug, Clone, Default)]
struct Fault {
    error: Option<StoreError>,
    latency: Option<Duration>,
}

/// See the module documentation.
pub struct FaultStore {
    inner: Arc<dyn Store>,
    faults: Mutex<HashMap<String, Fault>>,
    audit: Mutex<Option<StoreError>>,
}

impl FaultStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            faults: Mutex::default(),
            audit: Mutex::default(),
        })
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Make every call of `method` fail with `error` until cleared.
    pub fn fail(&self, method: &str, error: StoreError) {
        if let Ok(mut f) = self.faults.lock() {
            f.entry(method.to_owned()).or_default().error = Some(error);
        }
    }

    /// Make every call of `method` wait `latency` first (then fail or proceed).
    pub fn delay(&self, method: &str, latency: Duration) {
        if let Ok(mut f) = self.faults.lock() {
            f.entry(method.to_owned()).or_default().latency = Some(latency);
        }
    }

    /// Make every audit append fail with `error` at the point its rows are inserted.
    pub fn fail_audit(&self, error: StoreError) {
        if let Ok(mut a) = self.audit.lock() {
            *a = Some(error);
        }
    }

    /// Remove every fault and delay.
    pub fn clear(&self) {
        if let Ok(mut f) = self.faults.lock() {
            f.clear();
        }
        if let Ok(mut a) = self.audit.lock() {
            *a = None;
        }
    }

    async fn hit(&self, method: &str) -> Result<()> {
        let fault = self.faults.lock().ok().and_then(|f| f.get(method).cloned());
        let Some(fault) = fault else {
            return Ok(());
        };
        if let Some(d) = fault.latency {
            tokio::time::sleep(d).await;
        }
        fault.error.map_or(Ok(()), Err)
    }

    fn audit_fault(&self) -> Option<StoreError> {
        self.audit.lock().ok().and_then(|a| a.clone())
    }

    /// `audit` with `hook` as its fault hook when an audit fault is set.
    fn with_hook<'a>(&self, audit: &AuditAppend<'a>, hook: AuditFaultFn<'a>) -> AuditAppend<'a> {
        let mut a = *audit;
        if self.audit_fault().is_some() {
            a.fault = Some(hook);
        }
        a
    }
}

#[async_trait]
impl BackendStore for FaultStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn feed(&self) -> &crate::feed::ChangeFeed {
        self.inner.feed()
    }

    async fn poll_changes(&self) -> Result<()> {
        self.hit("poll_changes").await?;
        self.inner.poll_changes().await
    }

    fn health(&self) -> &crate::health::StoreHealth {
        self.inner.health()
    }

    async fn probe(&self) -> Result<()> {
        self.hit("probe").await?;
        self.inner.probe().await
    }
}

#[async_trait]
impl KeyringStore for FaultStore {
    async fn seal_config(&self) -> Result<Option<SealConfig>> {
        self.hit("seal_config").await?;
        self.inner.seal_config().await
    }

    async fn initialize(&self, cfg: &SealConfig, keys: &[WrappedKey]) -> Result<()> {
        self.hit("initialize").await?;
        self.inner.initialize(cfg, keys).await
    }

    async fn keys(&self) -> Result<Vec<WrappedKey>> {
        self.hit("keys").await?;
        self.inner.keys().await
    }

    async fn add_key(&self, key: &WrappedKey, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("add_key").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.add_key(key, &audit).await
    }

    async fn newest_data_term(&self) -> Result<u32> {
        self.hit("newest_data_term").await?;
        self.inner.newest_data_term().await
    }

    async fn data_key_created(&self, term: u32) -> Result<Option<OffsetDateTime>> {
        self.hit("data_key_created").await?;
        self.inner.data_key_created(term).await
    }

    async fn versions_not_of_term(
        &self,
        term: u32,
        after: Option<(Uuid, i64)>,
        limit: i64,
    ) -> Result<Vec<VersionCiphertext>> {
        self.hit("versions_not_of_term").await?;
        self.inner.versions_not_of_term(term, after, limit).await
    }

    async fn rewrap_version(&self, id: Uuid, version: i64, old: &[u8], new: &[u8]) -> Result<bool> {
        self.hit("rewrap_version").await?;
        self.inner.rewrap_version(id, version, old, new).await
    }

    async fn integration_secrets_not_of_term(
        &self,
        term: u32,
    ) -> Result<Vec<IntegrationCiphertext>> {
        self.hit("integration_secrets_not_of_term").await?;
        self.inner.integration_secrets_not_of_term(term).await
    }

    async fn rewrap_integration(&self, name: &str, old: &[u8], new: &[u8]) -> Result<bool> {
        self.hit("rewrap_integration").await?;
        self.inner.rewrap_integration(name, old, new).await
    }

    async fn retire_data_keys_below(&self, term: u32) -> Result<Vec<u32>> {
        self.hit("retire_data_keys_below").await?;
        self.inner.retire_data_keys_below(term).await
    }
}

#[async_trait]
impl IdentityStore for FaultStore {
    async fn create_user(
        &self,
        user: &User,
        password_hash: Option<&str>,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("create_user").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.create_user(user, password_hash, &audit).await
    }

    async fn get_user(&self, name: &str) -> Result<Option<User>> {
        self.hit("get_user").await?;
        self.inner.get_user(name).await
    }

    async fn user_password_hash(&self, name: &str) -> Result<Option<String>> {
        self.hit("user_password_hash").await?;
        self.inner.user_password_hash(name).await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.hit("list_users").await?;
        self.inner.list_users().await
    }

    async fn delete_user(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("delete_user").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.delete_user(name, &audit).await
    }

    async fn create_group(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("create_group").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.create_group(name, &audit).await
    }

    async fn get_group(&self, name: &str) -> Result<Option<Group>> {
        self.hit("get_group").await?;
        self.inner.get_group(name).await
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        self.hit("list_groups").await?;
        self.inner.list_groups().await
    }

    async fn delete_group(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("delete_group").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.delete_group(name, &audit).await
    }

    async fn add_group_member(
        &self,
        group: &str,
        user: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("add_group_member").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.add_group_member(group, user, &audit).await
    }

    async fn remove_group_member(
        &self,
        group: &str,
        user: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("remove_group_member").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.remove_group_member(group, user, &audit).await
    }

    async fn groups_of(&self, user: &str) -> Result<Vec<String>> {
        self.hit("groups_of").await?;
        self.inner.groups_of(user).await
    }

    async fn insert_token(
        &self,
        info: &TokenInfo,
        hash: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("insert_token").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.insert_token(info, hash, &audit).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        self.hit("token_by_hash").await?;
        self.inner.token_by_hash(hash).await
    }

    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>> {
        self.hit("list_tokens").await?;
        self.inner.list_tokens(user).await
    }

    async fn get_token(&self, id: Uuid) -> Result<Option<TokenInfo>> {
        self.hit("get_token").await?;
        self.inner.get_token(id).await
    }

    async fn revoke_token(&self, id: Uuid, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("revoke_token").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.revoke_token(id, &audit).await
    }

    async fn create_safe(&self, safe: &Safe, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("create_safe").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.create_safe(safe, &audit).await
    }

    async fn get_safe(&self, name: &str) -> Result<Option<Safe>> {
        self.hit("get_safe").await?;
        self.inner.get_safe(name).await
    }

    async fn list_safes(&self) -> Result<Vec<Safe>> {
        self.hit("list_safes").await?;
        self.inner.list_safes().await
    }

    async fn delete_safe(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("delete_safe").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.delete_safe(name, &audit).await
    }

    async fn set_safe_member(
        &self,
        safe: &str,
        member: &SafeMember,
        perms: u8,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("set_safe_member").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner
            .set_safe_member(safe, member, perms, &audit)
            .await
    }

    async fn remove_safe_member(
        &self,
        safe: &str,
        kind: &str,
        name: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("remove_safe_member").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner
            .remove_safe_member(safe, kind, name, &audit)
            .await
    }

    async fn safe_members(&self, safe: &str) -> Result<Vec<SafeMemberRow>> {
        self.hit("safe_members").await?;
        self.inner.safe_members(safe).await
    }

    async fn safes_with(&self, user: &str, groups: &[String], perms: u8) -> Result<Vec<String>> {
        self.hit("safes_with").await?;
        self.inner.safes_with(user, groups, perms).await
    }
}

#[async_trait]
impl CredentialStore for FaultStore {
    async fn insert_credential(
        &self,
        cred: &Credential,
        v: &NewVersion,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("insert_credential").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.insert_credential(cred, v, &audit).await
    }

    async fn insert_credentials(
        &self,
        batch: &[(Credential, NewVersion)],
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("insert_credentials").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.insert_credentials(batch, &audit).await
    }

    async fn update_credential(
        &self,
        cred: &Credential,
        expected_version: i64,
        v: &NewVersion,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("update_credential").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner
            .update_credential(cred, expected_version, v, &audit)
            .await
    }

    async fn get_credential(&self, id: Uuid) -> Result<Option<Credential>> {
        self.hit("get_credential").await?;
        self.inner.get_credential(id).await
    }

    async fn credential_by_identifier(&self, identifier: &str) -> Result<Option<Credential>> {
        self.hit("credential_by_identifier").await?;
        self.inner.credential_by_identifier(identifier).await
    }

    async fn credential_with_payload(&self, id: Uuid) -> Result<Option<CredentialWithPayload>> {
        self.hit("credential_with_payload").await?;
        self.inner.credential_with_payload(id).await
    }

    async fn list_credentials(&self, filter: &CredentialFilter) -> Result<Vec<Credential>> {
        self.hit("list_credentials").await?;
        self.inner.list_credentials(filter).await
    }

    async fn find_by_key(
        &self,
        key: LookupKey,
        value: &str,
        safes: &[String],
        ids: &[String],
        limit: i64,
    ) -> Result<Vec<CredentialWithPayload>> {
        self.hit("find_by_key").await?;
        self.inner.find_by_key(key, value, safes, ids, limit).await
    }

    async fn delete_credential(&self, id: Uuid, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("delete_credential").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.delete_credential(id, &audit).await
    }

    async fn list_versions(&self, id: Uuid) -> Result<Vec<VersionInfo>> {
        self.hit("list_versions").await?;
        self.inner.list_versions(id).await
    }

    async fn get_version(&self, id: Uuid, version: i64) -> Result<Option<StoredVersion>> {
        self.hit("get_version").await?;
        self.inner.get_version(id, version).await
    }

    async fn kv_meta(&self, id: Uuid) -> Result<Option<String>> {
        self.hit("kv_meta").await?;
        self.inner.kv_meta(id).await
    }

    async fn set_kv_meta(
        &self,
        id: Uuid,
        expected: Option<&str>,
        meta: &str,
        destroy: &[i64],
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("set_kv_meta").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner
            .set_kv_meta(id, expected, meta, destroy, &audit)
            .await
    }
}

#[async_trait]
impl AppStore for FaultStore {
    async fn create_app(&self, app: &AppRecord, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("create_app").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.create_app(app, &audit).await
    }

    async fn get_app(&self, app_id: &str) -> Result<Option<AppRecord>> {
        self.hit("get_app").await?;
        self.inner.get_app(app_id).await
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>> {
        self.hit("list_apps").await?;
        self.inner.list_apps().await
    }

    async fn delete_app(&self, app_id: &str, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("delete_app").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.delete_app(app_id, &audit).await
    }

    async fn set_app_rules(
        &self,
        app_id: &str,
        rules: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("set_app_rules").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.set_app_rules(app_id, rules, &audit).await
    }

    async fn grant_app(
        &self,
        app_id: &str,
        kinds: &[&str],
        target: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("grant_app").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.grant_app(app_id, kinds, target, &audit).await
    }

    async fn revoke_app(
        &self,
        app_id: &str,
        kind: &str,
        target: &str,
        and_if_present: &[&str],
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("revoke_app").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner
            .revoke_app(app_id, kind, target, and_if_present, &audit)
            .await
    }

    async fn app_grants(&self, app_id: &str) -> Result<Vec<AppGrant>> {
        self.hit("app_grants").await?;
        self.inner.app_grants(app_id).await
    }
}

#[async_trait]
impl AuditStore for FaultStore {
    async fn append_audit(&self, records: &[NewAudit], chain: ChainFn<'_>) -> Result<Vec<i64>> {
        self.hit("append_audit").await?;
        if let Some(e) = self.audit_fault() {
            return Err(e);
        }
        self.inner.append_audit(records, chain).await
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>> {
        self.hit("audit_head").await?;
        self.inner.audit_head().await
    }

    async fn audit_rows(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        self.hit("audit_rows").await?;
        self.inner.audit_rows(after, limit).await
    }

    async fn audit_tail(&self, n: i64) -> Result<Vec<AuditRow>> {
        self.hit("audit_tail").await?;
        self.inner.audit_tail(n).await
    }

    async fn audit_base(&self) -> Result<Option<AuditHead>> {
        self.hit("audit_base").await?;
        self.inner.audit_base().await
    }

    async fn archive_audit(
        &self,
        through_seq: i64,
        hash: &[u8],
        audit: &AuditAppend<'_>,
    ) -> Result<u64> {
        self.hit("archive_audit").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.archive_audit(through_seq, hash, &audit).await
    }
}

#[async_trait]
impl PamStore for FaultStore {
    async fn create_domain(
        &self,
        d: &credvault_core::model::Domain,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("create_domain").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.create_domain(d, &audit).await
    }

    async fn list_domains(&self) -> Result<Vec<credvault_core::model::Domain>> {
        self.hit("list_domains").await?;
        self.inner.list_domains().await
    }

    async fn find_domain(&self, name: &str) -> Result<Option<credvault_core::model::Domain>> {
        self.hit("find_domain").await?;
        self.inner.find_domain(name).await
    }

    async fn delete_domain(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("delete_domain").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.delete_domain(name, &audit).await
    }

    async fn get_device(&self, hostname_key: &str, ip: &str) -> Result<Option<DeviceRecord>> {
        self.hit("get_device").await?;
        self.inner.get_device(hostname_key, ip).await
    }

    async fn insert_device(&self, d: &DeviceRecord) -> Result<()> {
        self.hit("insert_device").await?;
        self.inner.insert_device(d).await
    }

    async fn update_device(&self, d: &DeviceRecord, expected_version: i64) -> Result<()> {
        self.hit("update_device").await?;
        self.inner.update_device(d, expected_version).await
    }

    async fn credentials_on_device(
        &self,
        hostname_key: &str,
        ip: &str,
        username_key: &str,
    ) -> Result<Vec<Credential>> {
        self.hit("credentials_on_device").await?;
        self.inner
            .credentials_on_device(hostname_key, ip, username_key)
            .await
    }

    async fn insert_credential_unless_on_device_audited(
        &self,
        cred: &Credential,
        v: &NewVersion,
        within: &[String],
        audit: &AuditAppend<'_>,
    ) -> Result<Option<Uuid>> {
        self.hit("insert_credential_unless_on_device_audited")
            .await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner
            .insert_credential_unless_on_device_audited(cred, v, within, &audit)
            .await
    }

    async fn take_custody(&self, id: Uuid, holder: &str, since: OffsetDateTime) -> Result<()> {
        self.hit("take_custody").await?;
        self.inner.take_custody(id, holder, since).await
    }

    async fn release_custody(
        &self,
        id: Uuid,
        holder: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<bool> {
        self.hit("release_custody").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.release_custody(id, holder, &audit).await
    }
}

#[async_trait]
impl IntegrationStore for FaultStore {
    async fn create_integration(
        &self,
        rec: &IntegrationRecord,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("create_integration").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.create_integration(rec, &audit).await
    }

    async fn get_integration(&self, name: &str) -> Result<Option<IntegrationRecord>> {
        self.hit("get_integration").await?;
        self.inner.get_integration(name).await
    }

    async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>> {
        self.hit("list_integrations").await?;
        self.inner.list_integrations().await
    }

    async fn update_integration(
        &self,
        rec: &IntegrationRecord,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("update_integration").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.update_integration(rec, &audit).await
    }

    async fn set_integration_status(&self, name: &str, status: &str) -> Result<()> {
        self.hit("set_integration_status").await?;
        self.inner.set_integration_status(name, status).await
    }

    async fn delete_integration(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        self.hit("delete_integration").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.delete_integration(name, &audit).await
    }
}

#[async_trait]
impl BackupStore for FaultStore {
    async fn count_rows(&self, table: &migrate::TableSpec) -> Result<i64> {
        self.hit("count_rows").await?;
        self.inner.count_rows(table).await
    }

    async fn export_rows(
        &self,
        table: &migrate::TableSpec,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Vec<migrate::Cell>>> {
        self.hit("export_rows").await?;
        self.inner.export_rows(table, offset, limit).await
    }

    async fn export_snapshot(&self, sink: SnapshotSink<'_>) -> Result<()> {
        self.hit("export_snapshot").await?;
        self.inner.export_snapshot(sink).await
    }

    async fn import_rows(
        &self,
        table: &migrate::TableSpec,
        rows: &[Vec<migrate::Cell>],
    ) -> Result<()> {
        self.hit("import_rows").await?;
        self.inner.import_rows(table, rows).await
    }
}

#[async_trait]
impl PasswordChangeStore for FaultStore {
    async fn password_change(&self, cred_id: Uuid) -> Result<Option<PasswordChangeRow>> {
        self.hit("password_change").await?;
        self.inner.password_change(cred_id).await
    }

    async fn password_changes_due(
        &self,
        now: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<PasswordChangeRow>> {
        self.hit("password_changes_due").await?;
        self.inner.password_changes_due(now, limit).await
    }

    async fn take_change_lease(
        &self,
        cred_id: Uuid,
        owner: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Option<PasswordChangeRow>> {
        self.hit("take_change_lease").await?;
        self.inner
            .take_change_lease(cred_id, owner, now, until)
            .await
    }

    async fn save_password_change(
        &self,
        row: &PasswordChangeRow,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("save_password_change").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.save_password_change(row, &audit).await
    }

    async fn pending_not_of_term(&self, term: u32) -> Result<Vec<(Uuid, String, Vec<u8>)>> {
        self.hit("pending_not_of_term").await?;
        self.inner.pending_not_of_term(term).await
    }

    async fn rewrap_pending(&self, cred_id: Uuid, old: &[u8], new: &[u8]) -> Result<bool> {
        self.hit("rewrap_pending").await?;
        self.inner.rewrap_pending(cred_id, old, new).await
    }

    async fn finish_password_change(
        &self,
        row: &PasswordChangeRow,
        cred: Option<(&Credential, i64, &NewVersion)>,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        self.hit("finish_password_change").await?;
        let injected = self.audit_fault();
        let hook = move || injected.clone().map_or(Ok(()), Err);
        let audit = self.with_hook(audit, &hook);
        self.inner.finish_password_change(row, cred, &audit).await
    }
}
