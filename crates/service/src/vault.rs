//! The vault service: every door calls these methods. Each one authorises the actor with
//! `credvault_core::policy`, encrypts or decrypts through the barrier's keyring, talks to the store
//! and appends the audit record. Doors only translate their dialect to and from these calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use credvault_core::model::{
    Credential, CredentialMeta, Owner, OwnerKind, Perms, SecretPayload, VersionInfo,
};
use credvault_core::policy::{self, Actor, Membership};
use credvault_core::{validate, DomainError};
use credvault_crypto::SecretString;
use credvault_store::{
    CredentialFilter, CredentialWithPayload, NewVersion, Store, StoreError, Visibility,
};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{Auditor, Event, WriteAudit};
use crate::auth::FailureLimiter;
use crate::barrier::Barrier;
use crate::clock::Clock;
use crate::error::{ServiceError, ServiceResult};

/// Who is calling, from where, through which door.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub actor: Actor,
    pub source: String,
    pub door: &'static str,
}

pub struct Vault {
    /// Striped per-credential write locks: writers in this process queue instead of racing, so the
    /// optimistic retry below is only needed against other servers.
    write_locks: Vec<tokio::sync::Mutex<()>>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) barrier: Arc<Barrier>,
    pub(crate) auditor: Auditor,
    pub(crate) limiter: FailureLimiter,
    /// Repeated refusals from one source, counted into summaries (`refusals.rs`).
    pub(crate) refusals: crate::refusals::Refusals,
    /// The data directory's free space and its floor, where the store is on a local disk.
    pub(crate) disk: std::sync::OnceLock<crate::disk::DiskWatch>,
    /// Where the audit trail is copied (`audit_sink.rs`); the audit writer holds them too.
    pub(crate) sinks: Arc<crate::audit_sink::Sinks>,
    /// When this server last fetched each integration mirror (the short-lived mirror cache).
    pub(crate) mirror_clock: crate::integrations::MirrorClock,
    /// The read caches of the hot paths (see `cache.rs` for their invalidation).
    pub(crate) caches: crate::cache::Caches,
    /// How long after a rotation the old data keys may be retired (see `rotation.rs`).
    pub(crate) retire_grace_ms: std::sync::atomic::AtomicU64,
    /// The time the core goes by (see `clock.rs`).
    pub(crate) clock: Clock,
    /// The automatic password change's state in this server (see `pwchange.rs`).
    pub(crate) pwchange: crate::pwchange::Engine,
}

/// A credential a lookup found, with the sealed payload of the version to read.
pub(crate) struct Found {
    pub cred: Credential,
    pub version: i64,
    pub blob: Vec<u8>,
    /// The latest version (a mirror past its cache expiry is then fetched afresh).
    pub latest: bool,
}

/// Whose rules decide a write to an existing credential: the generic policy (safe memberships,
/// owner), or the entity rules (`policy::entity_may_write`: the creator and the owner group's
/// members write an entity credential, which the generic policy does not know). The caller stays
/// the caller either way: nobody writes "as admin".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteRules {
    Generic,
    Entity,
    /// Removing a connection `PKG.CONN` that no longer stands in its package's namespace, by a
    /// writer of the package: `entity_set` decided it (`policy::entity_connection_allowed` for the
    /// caller on the package, and not for the connection's creator) just before.
    EntityReplace,
    /// An integration writing its own mirrors: the credentials whose identifier lies in its
    /// `mirror:<integration>/` namespace (`integrations::owns_mirror`), in the safe it was given.
    Mirror,
}

/// A decrypted secret read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecretRead {
    pub id: Uuid,
    pub version: i64,
    pub secret: SecretString,
    pub parameters: BTreeMap<String, SecretString>,
}

const MAX_RETRIES: usize = 16;

fn binding(id: Uuid, version: i64) -> String {
    format!("credvault:cred:{id}:v{version}")
}

pub(crate) fn forbidden() -> ServiceError {
    DomainError::Forbidden.into()
}

impl Vault {
    pub fn new(store: Arc<dyn Store>, auth_failures_per_minute: u32, clock: Clock) -> Arc<Self> {
        let barrier = Arc::new(Barrier::new(store.clone()));
        let sinks = Arc::new(crate::audit_sink::Sinks::default());
        let auditor = Auditor::start(store.clone(), barrier.clone(), sinks.clone());
        let write_locks = (0..64).map(|_| tokio::sync::Mutex::new(())).collect();
        let vault = Arc::new(Self {
            write_locks,
            store,
            barrier,
            auditor,
            limiter: FailureLimiter::new(auth_failures_per_minute),
            refusals: Default::default(),
            disk: Default::default(),
            sinks,
            mirror_clock: Default::default(),
            caches: Default::default(),
            retire_grace_ms: std::sync::atomic::AtomicU64::new(60_000),
            clock,
            pwchange: Default::default(),
        });
        tokio::spawn(crate::refusals::flusher(Arc::downgrade(&vault)));
        vault
    }

    pub(crate) async fn audit(
        &self,
        ctx: &Ctx,
        action: &'static str,
        target: impl Into<String>,
        outcome: &'static str,
        detail: serde_json::Value,
    ) -> ServiceResult<i64> {
        self.auditor
            .record(Event {
                actor: ctx.actor.name.clone(),
                door: ctx.door,
                action,
                target: target.into(),
                source: ctx.source.clone(),
                outcome,
                detail,
            })
            .await
    }

    /// The audit record of a write, to commit in the write's own transaction (pass
    /// `WriteAudit::append()` to the store's credential write).
    pub(crate) async fn write_audit(
        &self,
        ctx: &Ctx,
        action: &'static str,
        target: impl Into<String>,
        detail: serde_json::Value,
    ) -> ServiceResult<WriteAudit> {
        self.write_audit_many(vec![Event {
            actor: ctx.actor.name.clone(),
            door: ctx.door,
            action,
            target: target.into(),
            source: ctx.source.clone(),
            outcome: "ok",
            detail,
        }])
        .await
    }

    /// The audit record of a new credential, to commit with it.
    pub(crate) async fn create_audit(
        &self,
        ctx: &Ctx,
        cred: &Credential,
    ) -> ServiceResult<WriteAudit> {
        self.write_audit(
            ctx,
            "credential.create",
            cred.id.to_string(),
            json!({"name": cred.meta.name, "version": 1}),
        )
        .await
    }

    /// Several records committed with one write (bulk import).
    /// Every write comes here first, so this is where a write is refused while free disk space is
    /// below the floor (`disk.rs`).
    pub(crate) async fn write_audit_many(&self, events: Vec<Event>) -> ServiceResult<WriteAudit> {
        self.check_disk()?;
        self.check_sinks()?;
        let keys = self.barrier.keys().await?;
        Ok(WriteAudit::new(events, keys.audit.clone()))
    }

    /// Audit a refusal (best effort: the request is refused either way).
    pub(crate) async fn audit_denied(
        &self,
        ctx: &Ctx,
        action: &'static str,
        target: impl Into<String>,
    ) {
        let _ = self.audit(ctx, action, target, "denied", json!({})).await;
    }

    /// The clock this vault goes by (tests move it forward).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn require_admin(&self, ctx: &Ctx) -> ServiceResult<()> {
        if ctx.actor.is_admin() {
            Ok(())
        } else {
            Err(forbidden())
        }
    }

    // ---------------------------------------------------------------- policy helpers

    pub(crate) async fn memberships(&self, safe: &str) -> ServiceResult<Arc<Vec<Membership>>> {
        let (feed, cache) = (self.store.feed(), &self.caches.members);
        let key = safe.to_owned();
        if let Some(m) = cache.get(feed, &key) {
            return Ok(m);
        }
        let ticket = cache.ticket(feed);
        let members = Arc::new(self.read_memberships(safe).await?);
        cache.fill(feed, ticket, key, members.clone());
        Ok(members)
    }

    async fn read_memberships(&self, safe: &str) -> ServiceResult<Vec<Membership>> {
        Ok(self
            .store
            .safe_members(safe)
            .await?
            .into_iter()
            .filter_map(|m| {
                OwnerKind::parse(&m.kind).map(|kind| Membership {
                    kind,
                    name: m.name,
                    perms: Perms(m.perms),
                })
            })
            .collect())
    }

    pub(crate) async fn perms_on(
        &self,
        actor: &Actor,
        meta: &CredentialMeta,
    ) -> ServiceResult<Perms> {
        if actor.is_admin() {
            return Ok(Perms::ALL);
        }
        if actor.kind == policy::ActorKind::App {
            return match &meta.safe {
                Some(s) => self.app_safe_perms(actor, s).await,
                None => Ok(Perms::NONE),
            };
        }
        let members = match &meta.safe {
            Some(s) => self.memberships(s).await?,
            None => Arc::default(),
        };
        Ok(policy::credential_perms(actor, meta, &members))
    }

    pub(crate) async fn safe_perms(&self, actor: &Actor, safe: &str) -> ServiceResult<Perms> {
        if !self.safe_exists(safe).await? {
            return Err(DomainError::NotFound(format!("safe '{safe}'")).into());
        }
        if actor.kind == policy::ActorKind::App {
            return self.app_safe_perms(actor, safe).await;
        }
        Ok(policy::safe_perms(actor, &self.memberships(safe).await?))
    }

    /// Check that `ctx` may place a credential with this metadata (safe write, owner rules).
    async fn check_placement(&self, ctx: &Ctx, meta: &CredentialMeta) -> ServiceResult<()> {
        if let Some(s) = &meta.safe {
            if !self.safe_perms(&ctx.actor, s).await?.contains(Perms::WRITE) {
                return Err(forbidden());
            }
        }
        if let Some(o) = &meta.owner {
            match o.kind {
                OwnerKind::User if self.store.get_user(&o.name).await?.is_none() => {
                    return Err(
                        DomainError::invalid("owner", format!("no user '{}'", o.name)).into(),
                    )
                }
                OwnerKind::Group
                    if o.name != policy::ALL_USERS
                        && self.store.get_group(&o.name).await?.is_none() =>
                {
                    return Err(
                        DomainError::invalid("owner", format!("no group '{}'", o.name)).into(),
                    )
                }
                _ => {}
            }
            if !policy::owner_allowed_through(o, ctx.door == crate::entity::DOOR) {
                return Err(DomainError::invalid(
                    "owner",
                    "all-users owns entity credentials only (the entity door); share through a safe or a group",
                )
                .into());
            }
            if !policy::may_give_ownership(&ctx.actor, o) {
                return Err(DomainError::invalid(
                    "owner",
                    "you can only give ownership to yourself or a group you belong to",
                )
                .into());
            }
        }
        Ok(())
    }

    async fn load(&self, id: Uuid) -> ServiceResult<Credential> {
        self.store
            .get_credential(id)
            .await?
            .ok_or_else(|| DomainError::NotFound("credential".into()).into())
    }

    /// The keys to encrypt a new value with: if another server rotated, reload first so new writes
    /// use the newest term everywhere.
    pub(crate) async fn write_keys(&self) -> ServiceResult<Arc<crate::barrier::Keys>> {
        let keys = self.barrier.keys().await?;
        if self.store.newest_data_term().await? > keys.keyring.active_term().unwrap_or(0) {
            self.barrier.refresh().await?;
            return self.barrier.keys().await;
        }
        Ok(keys)
    }

    fn encrypt(
        &self,
        keys: &crate::barrier::Keys,
        id: Uuid,
        version: i64,
        p: &SecretPayload,
    ) -> ServiceResult<Vec<u8>> {
        let plain =
            zeroize::Zeroizing::new(serde_json::to_vec(p).map_err(|_| ServiceError::Integrity)?);
        Ok(keys.keyring.encrypt(&plain, &binding(id, version))?)
    }

    /// The keys to open `blob` with: reloaded once when its term is unknown here (another server
    /// rotated).
    pub(crate) async fn keys_for(&self, blob: &[u8]) -> ServiceResult<Arc<crate::barrier::Keys>> {
        let keys = self.barrier.keys().await?;
        if let Ok(term) = credvault_crypto::barrier::parse_header(blob) {
            if !keys.keyring.terms().any(|t| t == term) {
                self.barrier.refresh().await?;
                return self.barrier.keys().await;
            }
        }
        Ok(keys)
    }

    pub(crate) async fn decrypt_payload(
        &self,
        id: Uuid,
        version: i64,
        blob: &[u8],
    ) -> ServiceResult<SecretPayload> {
        if blob.is_empty() {
            // Destroyed (Vault KV `destroy`): the ciphertext is gone for good.
            return Err(DomainError::NotFound(format!("version {version} (destroyed)")).into());
        }
        let keys = self.keys_for(blob).await?;
        let plain = keys
            .keyring
            .decrypt(blob, &binding(id, version))
            .map_err(|e| {
                tracing::error!(credential = %id, version, error = %e, "secret failed to decrypt");
                ServiceError::Integrity
            })?;
        serde_json::from_slice(plain.expose()).map_err(|_| ServiceError::Integrity)
    }

    // ---------------------------------------------------------------- credentials

    /// Fill in and check a new credential's metadata (default owner, parameter names, shape rules,
    /// reserved identifiers, mirrors). Placement (`check_placement`) is the caller's.
    pub(crate) fn prepare_new(
        &self,
        ctx: &Ctx,
        meta: &mut CredentialMeta,
        payload: &SecretPayload,
    ) -> ServiceResult<()> {
        if meta.owner.is_none()
            && meta.safe.is_none()
            && !matches!(ctx.actor.kind, policy::ActorKind::Root)
        {
            meta.owner = Some(Owner {
                kind: OwnerKind::User,
                name: ctx.actor.name.clone(),
            });
        }
        meta.parameter_names = payload.parameters.keys().cloned().collect();
        validate::credential(meta, payload)?;
        crate::pwchange::check_settings(&meta.settings)?;
        if let Some(identifier) = &meta.identifier {
            validate::identifier_for_door(identifier, ctx.door)?;
        }
        self.refuse_mirror_write(ctx, meta)
    }

    /// A new credential at version 1 and its encrypted first version.
    pub(crate) fn new_record(
        &self,
        ctx: &Ctx,
        keys: &crate::barrier::Keys,
        now: OffsetDateTime,
        meta: CredentialMeta,
        payload: &SecretPayload,
    ) -> ServiceResult<(Credential, NewVersion)> {
        let id = Uuid::now_v7();
        let v = NewVersion {
            payload: self.encrypt(keys, id, 1, payload)?,
            operation: "create".into(),
        };
        let cred = Credential {
            id,
            meta,
            version: 1,
            created_at: now,
            updated_at: now,
            created_by: ctx.actor.name.clone(),
            updated_by: ctx.actor.name.clone(),
        };
        Ok((cred, v))
    }

    pub async fn create_credential(
        &self,
        ctx: &Ctx,
        meta: CredentialMeta,
        payload: SecretPayload,
    ) -> ServiceResult<Credential> {
        self.create_with(ctx, WriteRules::Generic, meta, payload)
            .await
    }

    /// [`Self::create_credential`] under the given rules (a mirror is placed by its integration).
    pub(crate) async fn create_with(
        &self,
        ctx: &Ctx,
        rules: WriteRules,
        mut meta: CredentialMeta,
        payload: SecretPayload,
    ) -> ServiceResult<Credential> {
        self.prepare_new(ctx, &mut meta, &payload)?;
        let placed = rules == WriteRules::Mirror && crate::integrations::owns_mirror(ctx, &meta);
        if !placed {
            self.check_placement(ctx, &meta).await?;
        }
        let keys = self.write_keys().await?;
        let (cred, v) = self.new_record(ctx, &keys, self.clock.now(), meta, &payload)?;
        let audit = self.create_audit(ctx, &cred).await?;
        self.store
            .insert_credential(&cred, &v, &audit.append())
            .await?;
        self.reschedule(&cred, None).await;
        Ok(cred)
    }

    /// Create many credentials at once (bulk import): every one is checked like `create_credential`,
    /// then all are written in one transaction, all or nothing, with one audit record each.
    pub async fn import_credentials(
        &self,
        ctx: &Ctx,
        items: Vec<(CredentialMeta, SecretPayload)>,
    ) -> ServiceResult<Vec<Credential>> {
        const MAX_IMPORT: usize = 1000;
        if items.is_empty() || items.len() > MAX_IMPORT {
            return Err(DomainError::invalid(
                "credentials",
                format!("give 1 to {MAX_IMPORT} credentials per import"),
            )
            .into());
        }
        let keys = self.write_keys().await?;
        let now = self.clock.now();
        let mut placed: Vec<(Option<String>, Option<Owner>)> = Vec::new();
        let mut batch = Vec::with_capacity(items.len());
        for (i, (mut meta, payload)) in items.into_iter().enumerate() {
            // Errors name the item: `credentials[i].field`.
            self.prepare_new(ctx, &mut meta, &payload)
                .map_err(|e| match e {
                    ServiceError::Domain(DomainError::Invalid { field, message }) => {
                        DomainError::invalid(&format!("credentials[{i}].{field}"), message).into()
                    }
                    other => other,
                })?;
            // Placement is checked once per distinct (safe, owner).
            let place = (meta.safe.clone(), meta.owner.clone());
            if !placed.contains(&place) {
                self.check_placement(ctx, &meta).await?;
                placed.push(place);
            }
            batch.push(self.new_record(ctx, &keys, now, meta, &payload)?);
        }
        let events = batch
            .iter()
            .map(|(c, _)| crate::audit::Event {
                actor: ctx.actor.name.clone(),
                door: ctx.door,
                action: "credential.create",
                target: c.id.to_string(),
                source: ctx.source.clone(),
                outcome: "ok",
                detail: json!({"name": c.meta.name, "version": 1, "import": true}),
            })
            .collect();
        let audit = self.write_audit_many(events).await?;
        self.store
            .insert_credentials(&batch, &audit.append())
            .await?;
        Ok(batch.into_iter().map(|(c, _)| c).collect())
    }

    /// Read-modify-write with optimistic versioning. `change` gets the current metadata and secret
    /// payload and edits them; on a concurrent write the change is re-applied to the fresh state, so
    /// no update is lost. With `expected` set, a stale version is a conflict instead.
    pub async fn update_credential<F>(
        &self,
        ctx: &Ctx,
        id: Uuid,
        expected: Option<i64>,
        operation: &str,
        change: F,
    ) -> ServiceResult<Credential>
    where
        F: Fn(&mut CredentialMeta, &mut SecretPayload) -> ServiceResult<()>,
    {
        self.update_with(ctx, WriteRules::Generic, id, expected, operation, change)
            .await
    }

    /// The caller's permissions on a stored credential under `rules`.
    async fn write_perms(
        &self,
        ctx: &Ctx,
        rules: WriteRules,
        cur: &Credential,
    ) -> ServiceResult<Perms> {
        let allowed = match rules {
            WriteRules::Generic => false,
            WriteRules::Entity => {
                policy::entity_may_write(&ctx.actor, cur.meta.owner.as_ref(), &cur.created_by)
            }
            // Only ever an entity credential, whatever id a caller passes.
            WriteRules::EntityReplace => cur
                .meta
                .identifier
                .as_deref()
                .is_some_and(|i| validate::Reserved::of(i) == Some(validate::Reserved::Entity)),
            WriteRules::Mirror => crate::integrations::owns_mirror(ctx, &cur.meta),
        };
        if allowed {
            return Ok(Perms::ALL);
        }
        self.perms_on(&ctx.actor, &cur.meta).await
    }

    /// [`Self::update_credential`] under the given rules.
    pub(crate) async fn update_with<F>(
        &self,
        ctx: &Ctx,
        rules: WriteRules,
        id: Uuid,
        expected: Option<i64>,
        operation: &str,
        change: F,
    ) -> ServiceResult<Credential>
    where
        F: Fn(&mut CredentialMeta, &mut SecretPayload) -> ServiceResult<()>,
    {
        let stripe = (id.as_u128() % self.write_locks.len() as u128) as usize;
        let _guard = match self.write_locks.get(stripe) {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        for _ in 0..MAX_RETRIES {
            let CredentialWithPayload {
                credential: cur,
                payload: blob,
            } = self
                .store
                .credential_with_payload(id)
                .await?
                .ok_or_else(|| ServiceError::from(DomainError::NotFound("credential".into())))?;
            let perms = self.write_perms(ctx, rules, &cur).await?;
            if !perms.contains(Perms::WRITE) {
                self.audit_denied(ctx, "credential.update", id.to_string())
                    .await;
                return Err(forbidden());
            }
            self.refuse_mirror_write(ctx, &cur.meta)?;
            if let Some(e) = expected {
                if e != cur.version {
                    return Err(ServiceError::VersionConflict {
                        current: cur.version,
                    });
                }
            }
            // A destroyed current version leaves nothing to change: start from an empty payload.
            let mut payload = if blob.is_empty() {
                SecretPayload::default()
            } else {
                self.decrypt_payload(id, cur.version, &blob).await?
            };
            let mut meta = cur.meta.clone();
            change(&mut meta, &mut payload)?;
            meta.parameter_names = payload.parameters.keys().cloned().collect();
            validate::credential(&meta, &payload)?;
            if meta.settings != cur.meta.settings {
                crate::pwchange::check_settings(&meta.settings)?;
            }
            if meta.identifier != cur.meta.identifier {
                if let Some(identifier) = &meta.identifier {
                    validate::identifier_for_door(identifier, ctx.door)?;
                }
            }
            self.refuse_mirror_write(ctx, &meta)?;
            if meta.safe != cur.meta.safe || meta.owner != cur.meta.owner {
                if !perms.contains(Perms::MANAGE) {
                    return Err(forbidden());
                }
                self.check_placement(ctx, &meta).await?;
            }
            let keys = self.write_keys().await?;
            let next = cur.version + 1;
            let cred = Credential {
                meta,
                version: next,
                updated_at: self.clock.now(),
                updated_by: ctx.actor.name.clone(),
                ..cur.clone()
            };
            let v = NewVersion {
                payload: self.encrypt(&keys, id, next, &payload)?,
                operation: operation.into(),
            };
            let audit = self
                .write_audit(
                    ctx,
                    "credential.update",
                    id.to_string(),
                    json!({"version": next, "operation": operation}),
                )
                .await?;
            match self
                .store
                .update_credential(&cred, cur.version, &v, &audit.append())
                .await
            {
                Ok(()) => {
                    self.reschedule(&cred, Some(&cur.meta)).await;
                    return Ok(cred);
                }
                Err(StoreError::VersionMismatch { current }) if expected.is_some() => {
                    return Err(ServiceError::VersionConflict { current })
                }
                Err(StoreError::VersionMismatch { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::Conflict(
            "the credential is being changed by too many writers; try again".into(),
        )
        .into())
    }

    pub async fn get_credential(&self, ctx: &Ctx, id: Uuid) -> ServiceResult<Credential> {
        let cred = self.load(id).await?;
        if !self
            .perms_on(&ctx.actor, &cred.meta)
            .await?
            .contains(Perms::LIST)
        {
            return Err(forbidden());
        }
        Ok(cred)
    }

    pub async fn list_credentials(
        &self,
        ctx: &Ctx,
        mut filter: CredentialFilter,
    ) -> ServiceResult<Vec<Credential>> {
        filter.limit = filter.limit.clamp(1, 1000);
        let filter = self.visible_to(ctx, filter).await?;
        Ok(self.store.list_credentials(&filter).await?)
    }

    /// `filter` restricted to what the caller may see.
    async fn visible_to(
        &self,
        ctx: &Ctx,
        mut filter: CredentialFilter,
    ) -> ServiceResult<CredentialFilter> {
        if !ctx.actor.is_admin() {
            filter.visibility = Visibility::Restricted {
                user: ctx.actor.name.clone(),
                groups: ctx.actor.groups.clone(),
                safes: self.listable_safes(&ctx.actor).await?,
            };
        }
        Ok(filter)
    }

    /// The safes whose credentials `actor` may list: its memberships with `list`, or for an
    /// application the safes it was granted (`policy::app_safe_perms`).
    async fn listable_safes(&self, actor: &Actor) -> ServiceResult<Vec<String>> {
        if actor.kind != policy::ActorKind::App {
            return Ok(self.listable_by(&actor.name, &actor.groups).await?.to_vec());
        }
        let app_id = actor.name.strip_prefix("app:").unwrap_or_default();
        let Some(entry) = self.app_entry(app_id).await? else {
            return Ok(vec![]);
        };
        let grants = || {
            entry
                .grants
                .iter()
                .map(|g| (g.kind.as_str(), g.target.as_str()))
        };
        let mut safes: Vec<String> = grants()
            .map(|(_, t)| t)
            .filter(|t| policy::app_safe_perms(grants(), t).contains(Perms::LIST))
            .map(str::to_owned)
            .collect();
        safes.sort();
        safes.dedup();
        Ok(safes)
    }

    /// The credentials named `name` that take part when the caller resolves that name
    /// (fetch-credentials): visible ones, less those it sees only through the `all-users`
    /// ownership and did not create (`policy::resolves_name_for`), so nobody's credential can
    /// shadow or join what another caller's name answers.
    pub(crate) async fn credentials_named(
        &self,
        ctx: &Ctx,
        name: &str,
    ) -> ServiceResult<Vec<Credential>> {
        let filter = CredentialFilter {
            name: Some(name.to_owned()),
            limit: 100,
            ..CredentialFilter::default()
        };
        let found = self.list_named(self.visible_to(ctx, filter).await?).await?;
        // Each safe's members are read once, however many of the credentials it holds.
        let mut members: BTreeMap<String, Arc<Vec<Membership>>> = BTreeMap::new();
        let mut out = Vec::with_capacity(found.len());
        for c in found.iter().cloned() {
            if let Some(s) = c.meta.safe.as_deref().filter(|s| !members.contains_key(*s)) {
                members.insert(s.to_owned(), self.memberships(s).await?);
            }
            let of_safe = c
                .meta
                .safe
                .as_deref()
                .and_then(|s| members.get(s))
                .map_or(&[][..], |m| m.as_slice());
            if policy::resolves_name_for(&ctx.actor, &c.meta, &c.created_by, of_safe) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Decrypt and return a credential's secret (current or given version). Audited, fail-closed.
    pub async fn read_secret(
        &self,
        ctx: &Ctx,
        id: Uuid,
        version: Option<i64>,
    ) -> ServiceResult<SecretRead> {
        let (cred, ver, blob) = match version {
            None => {
                let CredentialWithPayload {
                    credential: c,
                    payload: blob,
                } = self.current(id).await?.ok_or_else(|| {
                    ServiceError::from(DomainError::NotFound("credential".into()))
                })?;
                let v = c.version;
                (c, v, blob)
            }
            Some(v) => {
                let c = self.load(id).await?;
                let sv = self.store.get_version(id, v).await?.ok_or_else(|| {
                    ServiceError::from(DomainError::NotFound(format!("version {v}")))
                })?;
                (c, v, sv.payload)
            }
        };
        let found = Found {
            cred,
            version: ver,
            blob,
            latest: version.is_none(),
        };
        self.read_found(ctx, found).await
    }

    /// A secret read once its credential and version are found (`read_secret`, the KV door): the
    /// caller may read it and it is active, then [`Self::open_found`].
    pub(crate) async fn read_found(&self, ctx: &Ctx, found: Found) -> ServiceResult<SecretRead> {
        let (cred, id) = (&found.cred, found.cred.id);
        if !self
            .perms_on(&ctx.actor, &cred.meta)
            .await?
            .contains(Perms::READ)
        {
            self.audit_denied(ctx, "credential.read_secret", id.to_string())
                .await;
            return Err(forbidden());
        }
        if !cred.meta.is_active() {
            self.audit_denied(ctx, "credential.read_secret", id.to_string())
                .await;
            return Err(DomainError::Conflict(
                "the credential is deactivated; activate it (PAM A2A PUT) to use it".into(),
            )
            .into());
        }
        self.open_found(ctx, found, "credential.read_secret", json!({}))
            .await
    }

    /// The one read path's last steps, for every door, once a lookup has found a credential and the
    /// caller's right to read it has been decided: decrypt (or, for the latest version of a mirror
    /// past its cache expiry, fetch it from its integration), audit (`action`, `detail` plus the
    /// version read), count. No audit record, no secret.
    pub(crate) async fn open_found(
        &self,
        ctx: &Ctx,
        found: Found,
        action: &'static str,
        mut detail: serde_json::Value,
    ) -> ServiceResult<SecretRead> {
        let Found {
            cred,
            version,
            blob,
            latest,
        } = found;
        let id = cred.id;
        let fresh = match latest {
            true => self.refresh_mirror(&cred, &ctx.source).await?,
            false => None,
        };
        let (ver, payload) = match fresh {
            Some((c, p)) => (c.version, p),
            None => (version, self.decrypt_payload(id, version, &blob).await?),
        };
        if let Some(d) = detail.as_object_mut() {
            d.insert("version".into(), ver.into());
        }
        self.audit(ctx, action, id.to_string(), "ok", detail)
            .await?;
        metrics::counter!("credvault_secret_reads_total", "door" => ctx.door).increment(1);
        Ok(SecretRead {
            id,
            version: ver,
            secret: payload.secret,
            parameters: payload.parameters,
        })
    }

    pub async fn delete_credential(&self, ctx: &Ctx, id: Uuid) -> ServiceResult<()> {
        self.delete_with(ctx, WriteRules::Generic, id).await
    }

    /// [`Self::delete_credential`] under the given rules.
    pub(crate) async fn delete_with(
        &self,
        ctx: &Ctx,
        rules: WriteRules,
        id: Uuid,
    ) -> ServiceResult<()> {
        let cred = self.load(id).await?;
        if !self
            .write_perms(ctx, rules, &cred)
            .await?
            .contains(Perms::WRITE)
        {
            self.audit_denied(ctx, "credential.delete", id.to_string())
                .await;
            return Err(forbidden());
        }
        self.refuse_mirror_write(ctx, &cred.meta)?;
        let audit = self
            .write_audit(
                ctx,
                "credential.delete",
                id.to_string(),
                json!({"name": cred.meta.name}),
            )
            .await?;
        self.store.delete_credential(id, &audit.append()).await?;
        Ok(())
    }

    pub async fn versions(&self, ctx: &Ctx, id: Uuid) -> ServiceResult<Vec<VersionInfo>> {
        self.get_credential(ctx, id).await?;
        Ok(self.store.list_versions(id).await?)
    }

    /// Metadata of one past version (no secret).
    pub async fn version_meta(
        &self,
        ctx: &Ctx,
        id: Uuid,
        version: i64,
    ) -> ServiceResult<(VersionInfo, CredentialMeta)> {
        self.get_credential(ctx, id).await?;
        let v = self.store.get_version(id, version).await?.ok_or_else(|| {
            ServiceError::from(DomainError::NotFound(format!("version {version}")))
        })?;
        Ok((v.info, v.meta))
    }

    /// Make a new version whose metadata and secret are those of `to`.
    pub async fn rollback(&self, ctx: &Ctx, id: Uuid, to: i64) -> ServiceResult<Credential> {
        let target =
            self.store.get_version(id, to).await?.ok_or_else(|| {
                ServiceError::from(DomainError::NotFound(format!("version {to}")))
            })?;
        let old_payload = self.decrypt_payload(id, to, &target.payload).await?;
        let old_meta = target.meta;
        self.update_credential(
            ctx,
            id,
            None,
            &format!("rollback:{to}"),
            move |meta, payload| {
                *meta = old_meta.clone();
                *payload = old_payload.clone();
                Ok(())
            },
        )
        .await
    }
}
