//! The PAM A2A operations over the vault: create-or-update (seed 003's rules), read with custody,
//! list, deactivate/activate, custody release, and the registries they need (domains, devices).
//!
//! How an A2A credential sits in the one model:
//! - `identifier` is the credential's identifier (unique within a safe, database constraint;
//!   looked up only in the application's safes, see `policy::app_scope_contains`);
//! - the device is `meta.device`, copied from the device registry (`devices`, one row per host name
//!   + IP, created on the fly, attributes updated by later writes);
//! - `content` is the secret, `additional_settings.secret_key` the secret parameter `secret_key`;
//! - `meta.settings` holds the A2A state: `tag` (the identifier the credential was registered
//!   with, see below), `active`, `parent_password`, `session_remote_config` and the four blocks.
//!
//! The response's `tag` (seed 003): `null` for a created credential; for an updated one, the
//! identifier it was first registered with (`null` when it had none), which stays when the
//! identifier later changes. This is the one reading under which all five of the seed's examples
//! hold with their own labels (valid / invalid identifier); see `tests/api/pam.rs`.

use credvault_core::model::{Credential, CredentialMeta, Device, Perms, SecretPayload};
use credvault_core::pam::{self, code, DeviceInput, PamError, Upsert};
use credvault_core::policy::{self, ActorKind};
use credvault_core::validate::Reserved;
use credvault_core::{ccp, DomainError};
use credvault_store::{CredentialFilter, DeviceRecord, StoreError, Visibility};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::error::ServiceError;
use crate::{Ctx, SecretRead, Vault};

pub const DOOR: &str = "pam";

/// Secret parameter `auth_field_<i>`: the value of `additional_authentication_fields[i]`.
pub const AUTH_FIELD_PREFIX: &str = "auth_field_";

/// A failure of an A2A call: the dialect's own error, or a service failure (sealed, storage, audit).
#[derive(Debug)]
pub enum PamFail {
    Pam(PamError, Option<String>),
    Service(ServiceError),
}

impl From<PamError> for PamFail {
    fn from(e: PamError) -> Self {
        Self::Pam(e, None)
    }
}

impl From<ServiceError> for PamFail {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Domain(d) => Self::Pam(d.into(), None),
            other => Self::Service(other),
        }
    }
}

impl From<StoreError> for PamFail {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

pub type PamResult<T> = Result<T, PamFail>;

fn no_access(why: &str) -> PamFail {
    PamFail::Pam(PamError::no_access(), Some(why.to_owned()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
}

pub struct Upserted {
    pub id: Uuid,
    pub outcome: Outcome,
    pub tag: Option<String>,
}

/// The A2A state kept in `meta.settings`.
/// A record of the KV or entity door: not an A2A credential (mirrors are).
fn another_doors_record(meta: &CredentialMeta) -> bool {
    meta.identifier
        .as_deref()
        .and_then(Reserved::of)
        .is_some_and(|r| matches!(r, Reserved::Kv | Reserved::Entity))
}

pub fn pam_settings(meta: &CredentialMeta) -> Map<String, Value> {
    match &meta.settings {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    }
}

pub fn is_active(meta: &CredentialMeta) -> bool {
    meta.is_active()
}

pub fn tag_of(meta: &CredentialMeta) -> Option<String> {
    pam_settings(meta)
        .get("tag")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The documented defaults of a new credential's settings.
fn default_settings() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "execution_settings".into(),
        json!({"automatic_change": false, "use_own_credential_to_connect": false, "status": false}),
    );
    m.insert(
        "session_settings".into(),
        json!({"SSH": false, "Telnet": false, "MySQL": false, "SQL Server": false, "HTTP": false,
               "HTTPS": false, "RDP": false, "X11 Forward": false, "VNC": false,
               "restrict_access_to_remote_application": false, "use_own_credential_to_connect": true}),
    );
    m.insert(
        "additional_settings".into(),
        json!({"criticality": pam::DEFAULT_CRITICALITY}),
    );
    m.insert(
        "jit_settings".into(),
        json!({"jit": false, "use_own_credential_to_connect": true}),
    );
    m
}

/// Apply a request to a credential's metadata and secret (create and update alike).
fn apply(
    up: &Upsert,
    domain: &Option<String>,
    device: &Device,
    meta: &mut CredentialMeta,
    p: &mut SecretPayload,
) {
    let old_default_name = meta
        .device
        .as_ref()
        .map(|d| format!("{}@{}", meta.username, d.hostname));
    if meta.name.is_empty() || old_default_name.as_deref() == Some(meta.name.as_str()) {
        meta.name = format!("{}@{}", up.username, device.hostname);
    }
    meta.username = up.username.clone();
    meta.device = Some(device.clone());
    if let Some(i) = &up.identifier {
        meta.identifier = Some(i.clone());
    }
    if let Some(a) = &up.additional {
        meta.additional_info = Some(a.clone());
    }
    if let Some(t) = &up.tags {
        meta.tags = t.clone();
    }
    if let Some(t) = &up.credential_type {
        meta.credential_type = Some(t.clone());
    }
    if domain.is_some() {
        meta.domain = domain.clone();
    }
    if let Some(c) = &up.content {
        p.secret = c.clone();
    }
    if let Some(k) = &up.secret_key {
        p.parameters.insert("secret_key".into(), k.clone());
    }
    if let Some(values) = &up.auth_field_values {
        // The list was given: it replaces the stored one, values included.
        p.parameters
            .retain(|k, _| !k.starts_with(AUTH_FIELD_PREFIX));
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                p.parameters
                    .insert(format!("{AUTH_FIELD_PREFIX}{i}"), v.clone());
            }
        }
    }
    let mut s = pam_settings(meta);
    if let Some(pp) = &up.parent_password {
        s.insert("parent_password".into(), Value::String(pp.clone()));
    }
    if let Some(r) = &up.session_remote_config {
        s.insert("session_remote_config".into(), Value::String(r.clone()));
    }
    for (name, block) in &up.settings {
        let entry = s
            .entry((*name).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(m) = entry {
            for (k, v) in block {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    meta.settings = Value::Object(s);
}

fn merge_device(d: &mut Device, input: &DeviceInput, domain: &Option<String>) -> bool {
    let before = d.clone();
    let set = |slot: &mut Option<String>, v: &Option<String>| {
        if v.is_some() {
            slot.clone_from(v);
        }
    };
    set(&mut d.device_type, &input.device_type);
    set(&mut d.vendor, &input.vendor);
    set(&mut d.model, &input.model);
    set(&mut d.site, &input.site);
    set(&mut d.domain, domain);
    if let Some(t) = &input.tags {
        d.tags = t.clone();
    }
    if let Some(c) = &input.connectivities {
        d.connectivities = c.clone();
    }
    *d != before
}

impl Vault {
    /// The A2A door serves applications (OAuth client-credentials tokens) only.
    fn pam_app<'a>(&self, ctx: &'a Ctx) -> PamResult<&'a str> {
        match ctx.actor.kind {
            ActorKind::App => Ok(ctx.actor.name.strip_prefix("app:").unwrap_or_default()),
            _ => Err(PamFail::Pam(
                PamError::new(code::UNAUTHENTICATED, "Invalid or expired access token"),
                Some("the A2A API takes application tokens from /iso/oauth2/token".into()),
            )),
        }
    }

    /// A registered domain's name, from its name or abbreviation.
    async fn pam_domain(&self, field: &str, name: &Option<String>) -> PamResult<Option<String>> {
        let Some(n) = name else { return Ok(None) };
        match self.store.find_domain(n).await? {
            Some(d) => Ok(Some(d.name)),
            None => Err(PamError::new(
                code::DOMAIN_UNKNOWN,
                format!("The domain in '{field}' is not registered"),
            )
            .into()),
        }
    }

    /// Find or create the device (host name + IP) and apply the request's device attributes.
    /// The device as the registry will hold it after this call (read and merged, not written):
    /// the credential is written with it first, with the call's one audit record, and the
    /// registry follows (`pam_device`), so a call whose audit fails leaves the registry as it was.
    async fn pam_device_preview(
        &self,
        input: &DeviceInput,
        domain: &Option<String>,
    ) -> PamResult<Device> {
        let key = ccp::fold(&input.hostname);
        let mut device = match self.store.get_device(&key, &input.ip).await? {
            Some(rec) => rec.device,
            None => Device {
                hostname: input.hostname.clone(),
                ip: input.ip.clone(),
                ..Default::default()
            },
        };
        merge_device(&mut device, input, domain);
        Ok(device)
    }

    /// Record the device in the registry (created on the fly, attributes merged with optimistic
    /// versions), after the credential that names it was written.
    async fn pam_device(&self, input: &DeviceInput, domain: &Option<String>) -> PamResult<Device> {
        let key = ccp::fold(&input.hostname);
        for _ in 0..16 {
            let now = self.clock.now();
            match self.store.get_device(&key, &input.ip).await? {
                None => {
                    let mut device = Device {
                        hostname: input.hostname.clone(),
                        ip: input.ip.clone(),
                        ..Default::default()
                    };
                    merge_device(&mut device, input, domain);
                    let rec = DeviceRecord {
                        id: Uuid::now_v7(),
                        device: device.clone(),
                        version: 1,
                        created_at: now,
                        updated_at: now,
                    };
                    match self.store.insert_device(&rec).await {
                        Ok(()) => return Ok(device),
                        // Created by a concurrent request: go round and update it.
                        Err(StoreError::Conflict(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(mut rec) => {
                    if !merge_device(&mut rec.device, input, domain) {
                        return Ok(rec.device);
                    }
                    let expected = rec.version;
                    rec.version += 1;
                    rec.updated_at = now;
                    match self.store.update_device(&rec, expected).await {
                        Ok(()) => return Ok(rec.device),
                        Err(StoreError::VersionMismatch { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(PamError::new(
            code::BUSY,
            "The device is being changed concurrently; try again",
        )
        .into())
    }

    /// The safe an application's new credentials go in: the first safe it may write, by name.
    async fn pam_creation_safe(&self, app_id: &str) -> PamResult<String> {
        let entry = self.app_entry(app_id).await?;
        let mut safes: Vec<&String> = entry
            .iter()
            .flat_map(|e| e.grants.iter())
            .filter(|g| g.kind == "safe-write")
            .map(|g| &g.target)
            .collect();
        safes.sort();
        safes
            .first()
            .map(|s| (*s).clone())
            .ok_or_else(|| no_access("the application may not create credentials: grant it a safe with `credvault app allow APP --safe SAFE --write`"))
    }

    /// The safes an application may read (every write grant has its read row too).
    async fn pam_read_safes(&self, app_id: &str) -> PamResult<Vec<String>> {
        Ok(self
            .app_entry(app_id)
            .await?
            .iter()
            .flat_map(|e| e.grants.iter())
            .filter(|g| g.kind == "safe")
            .map(|g| g.target.clone())
            .collect())
    }

    /// The credentials within the application's reach (`policy::app_scope_contains`: its granted
    /// safes) with this identifier, oldest first. What lies outside is no match at all: it can
    /// neither block the application's create-or-update nor be probed by its reads.
    async fn pam_by_identifier(
        &self,
        ctx: &Ctx,
        safes: &[String],
        identifier: &str,
    ) -> PamResult<Vec<Credential>> {
        self.pam_scoped(
            ctx,
            safes,
            CredentialFilter {
                identifier: Some(identifier.to_owned()),
                ..Default::default()
            },
        )
        .await
    }

    /// The credentials within the application's reach on this device (host name + IP, host name
    /// case-folded) for this user name (case-folded), oldest first.
    async fn pam_on_device(
        &self,
        ctx: &Ctx,
        safes: &[String],
        hostname_key: &str,
        ip: &str,
        username_key: &str,
    ) -> PamResult<Vec<Credential>> {
        let all = self
            .pam_scoped(
                ctx,
                safes,
                CredentialFilter {
                    ip: Some(ip.to_owned()),
                    ..Default::default()
                },
            )
            .await?;
        Ok(all
            .into_iter()
            .filter(|c| {
                ccp::fold(&c.meta.username) == username_key
                    && c.meta
                        .device
                        .as_ref()
                        .is_some_and(|d| ccp::fold(&d.hostname) == hostname_key)
            })
            .collect())
    }

    async fn pam_scoped(
        &self,
        ctx: &Ctx,
        safes: &[String],
        filter: CredentialFilter,
    ) -> PamResult<Vec<Credential>> {
        if safes.is_empty() {
            return Ok(vec![]);
        }
        let found = self
            .store
            .list_credentials(&CredentialFilter {
                limit: 1000,
                visibility: Visibility::Restricted {
                    user: ctx.actor.name.clone(),
                    groups: vec![],
                    safes: safes.to_vec(),
                },
                ..filter
            })
            .await?;
        Ok(found
            .into_iter()
            .filter(|c| policy::app_scope_contains(safes, c.meta.safe.as_deref()))
            .collect())
    }

    /// Create or update, by seed 003's rules: a known `identifier` names the credential; otherwise
    /// host name + IP + user name do; otherwise a new credential is created.
    pub async fn pam_upsert(&self, ctx: &Ctx, up: Upsert) -> PamResult<Upserted> {
        let app_id = self.pam_app(ctx)?.to_owned();
        let domain = self.pam_domain("domain", &up.domain).await?;
        let device_domain = self.pam_domain("device_domain", &up.device.domain).await?;
        let hostname_key = ccp::fold(&up.device.hostname);
        let username_key = ccp::fold(&up.username);
        for _ in 0..8 {
            // Only within the application's safes: a credential anywhere else (another user's,
            // another application's) neither blocks this call nor is touched by it.
            let safes = self.pam_read_safes(&app_id).await?;
            let mut found = match &up.identifier {
                Some(i) => self
                    .pam_by_identifier(ctx, &safes, i)
                    .await?
                    .into_iter()
                    .next(),
                None => None,
            };
            if found.is_none() {
                found = self
                    .pam_on_device(ctx, &safes, &hostname_key, &up.device.ip, &username_key)
                    .await?
                    .into_iter()
                    .next();
            }
            if let Some(cur) = found {
                if !self
                    .perms_on(&ctx.actor, &cur.meta)
                    .await?
                    .contains(Perms::WRITE)
                {
                    self.audit_denied(ctx, "credential.update", cur.id.to_string())
                        .await;
                    return Err(no_access("the application may not write this credential"));
                }
                // The device registry changes only for a write that is allowed, after it.
                let device = self.pam_device_preview(&up.device, &device_domain).await?;
                let tag = tag_of(&cur.meta);
                let (up2, dom, dev) = (up.clone(), domain.clone(), device);
                let res = self
                    .update_credential(ctx, cur.id, None, "update", move |meta, payload| {
                        apply(&up2, &dom, &dev, meta, payload);
                        Ok(())
                    })
                    .await;
                match res {
                    Ok(c) => {
                        self.pam_device(&up.device, &device_domain).await?;
                        return Ok(Upserted {
                            id: c.id,
                            outcome: Outcome::Updated,
                            tag,
                        });
                    }
                    // Deleted in between: look again.
                    Err(ServiceError::Domain(DomainError::NotFound(_))) => continue,
                    Err(ServiceError::Domain(DomainError::Conflict(m))) => {
                        // Another writer just gave the identifier to another credential: look
                        // again (found by identifier then). Anything else (a read-only mirror) is
                        // the answer.
                        let taken = match &up.identifier {
                            Some(i) => self
                                .pam_by_identifier(ctx, &safes, i)
                                .await?
                                .iter()
                                .any(|o| o.id != cur.id),
                            None => false,
                        };
                        if taken {
                            continue;
                        }
                        return Err(PamError::new(code::CONFLICT, m).into());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // Create.
            let safe = self.pam_creation_safe(&app_id).await?;
            let device = self.pam_device_preview(&up.device, &device_domain).await?;
            let mut meta = CredentialMeta {
                credential_type: Some(pam::DEFAULT_CREDENTIAL_TYPE.to_owned()),
                safe: Some(safe),
                settings: Value::Object(default_settings()),
                ..CredentialMeta::named(String::new())
            };
            let mut payload = SecretPayload::default();
            apply(&up, &domain, &device, &mut meta, &mut payload);
            let mut s = pam_settings(&meta);
            s.insert("active".into(), Value::Bool(true));
            s.insert(
                "tag".into(),
                up.identifier.clone().map_or(Value::Null, Value::String),
            );
            meta.settings = Value::Object(s);
            match self.pam_create(ctx, &safes, meta, payload).await {
                Ok(Some(id)) => {
                    self.pam_device(&up.device, &device_domain).await?;
                    return Ok(Upserted {
                        id,
                        outcome: Outcome::Created,
                        tag: None,
                    });
                }
                // Someone created it first (same device and user, or same identifier): update it.
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(PamError::new(
            code::BUSY,
            "The credential is being changed concurrently; try again",
        )
        .into())
    }

    /// Insert a new A2A credential unless its device already has one for the user (`None` then).
    async fn pam_create(
        &self,
        ctx: &Ctx,
        safes: &[String],
        mut meta: CredentialMeta,
        payload: SecretPayload,
    ) -> PamResult<Option<Uuid>> {
        self.prepare_new(ctx, &mut meta, &payload)?;
        let keys = self.write_keys().await?;
        let (cred, v) = self.new_record(ctx, &keys, self.clock.now(), meta, &payload)?;
        // The credential and its audit record commit together (or neither does).
        let audit = self.create_audit(ctx, &cred).await?;
        // Only the application's safes count (see `pam_upsert`): a credential for this device
        // and user elsewhere is no match, and the store checks and inserts under one lock on the
        // device + user, so concurrent creators on any server make one credential.
        match self
            .store
            .insert_credential_unless_on_device_audited(&cred, &v, safes, &audit.append())
            .await
        {
            Ok(None) => {}
            // The device already has one for this user in its safes, or the identifier was
            // just taken: update that one.
            Ok(Some(_)) | Err(StoreError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.reschedule(&cred, None).await;
        Ok(Some(cred.id))
    }

    /// A credential by its id, its identifier, or `username@hostname`, that the application may
    /// see: only its granted safes are searched, so a credential outside them answers 1007 like
    /// one that does not exist (`policy::app_scope_contains`); 1009 is for a credential it sees
    /// but may not read or change.
    pub async fn pam_find(&self, ctx: &Ctx, key: &str) -> PamResult<(Credential, Perms)> {
        let app_id = self.pam_app(ctx)?.to_owned();
        let safes = self.pam_read_safes(&app_id).await?;
        let by_id = match Uuid::parse_str(key) {
            Ok(id) => match self.credential(id).await? {
                Some(c) if policy::app_scope_contains(&safes, c.meta.safe.as_deref()) => Some(c),
                Some(c) => {
                    self.audit_denied(ctx, "credential.read", c.id.to_string())
                        .await;
                    None
                }
                None => None,
            },
            Err(_) => None,
        };
        let mut by_identifier = if by_id.is_some() {
            vec![]
        } else {
            self.pam_by_identifier(ctx, &safes, key).await?
        };
        if by_identifier.len() > 1 {
            return Err(PamFail::Pam(
                PamError::invalid(
                    "credential",
                    "several credentials have this identifier in the application's safes; use the id",
                ),
                None,
            ));
        }
        let cred = if by_id.is_some() {
            by_id
        } else if let Some(c) = by_identifier.pop() {
            Some(c)
        } else if let Some((user, host)) = key.rsplit_once('@') {
            // Only among what the application can see: no hint of what it cannot.
            let mut all = self
                .store
                .list_credentials(&CredentialFilter {
                    username: Some(user.to_owned()),
                    hostname: Some(host.to_owned()),
                    limit: 2,
                    visibility: Visibility::Restricted {
                        user: ctx.actor.name.clone(),
                        groups: vec![],
                        safes: safes.clone(),
                    },
                    ..Default::default()
                })
                .await?;
            if all.len() > 1 {
                return Err(PamFail::Pam(
                    PamError::invalid(
                        "credential",
                        "several credentials match; use the id or the identifier",
                    ),
                    None,
                ));
            }
            all.pop()
        } else {
            None
        };
        let Some(cred) =
            cred.filter(|c| policy::app_scope_contains(&safes, c.meta.safe.as_deref()))
        else {
            return Err(PamError::not_found().into());
        };
        // Reserved doors' records (KV, entity) are not A2A credentials.
        if another_doors_record(&cred.meta) {
            return Err(PamError::not_found().into());
        }
        let perms = self.perms_on(&ctx.actor, &cred.meta).await?;
        if !perms.contains(Perms::LIST) {
            // The actor (`app:<AppID>`) names the application.
            self.audit_denied(ctx, "credential.read", cred.id.to_string())
                .await;
            return Err(no_access(
                "the application's grants do not cover this credential",
            ));
        }
        Ok((cred, perms))
    }

    /// Read a credential with its secrets (audited, fail-closed) and take custody of it.
    pub async fn pam_read(&self, ctx: &Ctx, key: &str) -> PamResult<(Credential, SecretRead)> {
        let (cred, perms) = self.pam_find(ctx, key).await?;
        if !perms.contains(Perms::READ) {
            return Err(no_access(
                "the application may not read this credential's secret",
            ));
        }
        if !is_active(&cred.meta) {
            return Err(PamError::inactive().into());
        }
        let secret = self.read_secret(ctx, cred.id, None).await?;
        self.store
            .take_custody(cred.id, &ctx.actor.name, self.clock.now())
            .await?;
        // The read may have refreshed a mirror: show the metadata of the version read.
        let cred = self.credential(cred.id).await?.unwrap_or(cred);
        Ok((cred, secret))
    }

    /// The credentials the application's grants cover (up to `limit`, after `after`).
    pub async fn pam_list(
        &self,
        ctx: &Ctx,
        after: Option<Uuid>,
        limit: i64,
    ) -> PamResult<Vec<Credential>> {
        let app_id = self.pam_app(ctx)?.to_owned();
        let safes = self.pam_read_safes(&app_id).await?;
        if safes.is_empty() {
            return Ok(vec![]);
        }
        let list = self
            .store
            .list_credentials(&CredentialFilter {
                after,
                limit: limit.clamp(1, 1000),
                visibility: Visibility::Restricted {
                    user: ctx.actor.name.clone(),
                    groups: vec![],
                    safes,
                },
                ..Default::default()
            })
            .await?;
        Ok(list
            .into_iter()
            .filter(|c| !another_doors_record(&c.meta))
            .collect())
    }

    /// Deactivate (`active = false`, 1017 when already inactive) or activate a credential.
    pub async fn pam_set_active(
        &self,
        ctx: &Ctx,
        key: &str,
        active: bool,
    ) -> PamResult<Credential> {
        let (cred, perms) = self.pam_find(ctx, key).await?;
        if !perms.contains(Perms::WRITE) {
            return Err(no_access("the application may not change this credential"));
        }
        if !active && !is_active(&cred.meta) {
            return Err(PamError::already_inactive().into());
        }
        let op = if active { "activate" } else { "deactivate" };
        let updated = self
            .update_credential(ctx, cred.id, None, op, move |meta, _| {
                if !active && !is_active(meta) {
                    return Err(DomainError::Conflict("already inactive".into()).into());
                }
                let mut s = pam_settings(meta);
                s.insert("active".into(), Value::Bool(active));
                meta.settings = Value::Object(s);
                Ok(())
            })
            .await;
        match updated {
            Ok(c) => Ok(c),
            Err(ServiceError::Domain(DomainError::Conflict(_))) if !active => {
                Err(PamError::already_inactive().into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Release the caller's custody of a credential (1018 when it does not hold it).
    pub async fn pam_release(&self, ctx: &Ctx, key: &str) -> PamResult<Credential> {
        let (cred, _) = self.pam_find(ctx, key).await?;
        let audit = self
            .write_audit(
                ctx,
                "credential.custody_release",
                cred.id.to_string(),
                json!({}),
            )
            .await?;
        let released = self
            .store
            .release_custody(cred.id, &ctx.actor.name, &audit.append())
            .await?;
        if !released {
            return Err(PamError::not_in_custody().into());
        }
        self.after_release(&cred).await;
        Ok(cred)
    }

    // ------------------------------------------------------------------ domains (admins)

    pub async fn create_domain(
        &self,
        ctx: &Ctx,
        name: &str,
        abbreviation: Option<String>,
    ) -> Result<credvault_core::model::Domain, ServiceError> {
        self.require_admin(ctx)?;
        let check = |field: &str, v: &str| -> Result<(), ServiceError> {
            let ok = !v.is_empty()
                && v.len() <= 253
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            if ok {
                Ok(())
            } else {
                Err(DomainError::invalid(
                    field,
                    "must be 1 to 253 letters, digits, '.', '-' or '_'",
                )
                .into())
            }
        };
        check("name", name)?;
        if let Some(a) = &abbreviation {
            check("abbreviation", a)?;
        }
        // A name or abbreviation must not be taken by another domain's name or abbreviation.
        for n in std::iter::once(name).chain(abbreviation.as_deref()) {
            if self.store.find_domain(n).await?.is_some() {
                return Err(
                    DomainError::Conflict(format!("a domain named '{n}' already exists")).into(),
                );
            }
        }
        let d = credvault_core::model::Domain {
            name: name.to_owned(),
            abbreviation,
            created_at: self.clock.now(),
        };
        let audit = self
            .write_audit(
                ctx,
                "domain.create",
                name,
                json!({"abbreviation": d.abbreviation}),
            )
            .await?;
        self.store.create_domain(&d, &audit.append()).await?;
        Ok(d)
    }

    pub async fn list_domains(
        &self,
        ctx: &Ctx,
    ) -> Result<Vec<credvault_core::model::Domain>, ServiceError> {
        let _ = ctx;
        Ok(self.store.list_domains().await?)
    }

    pub async fn delete_domain(&self, ctx: &Ctx, name: &str) -> Result<(), ServiceError> {
        self.require_admin(ctx)?;
        let audit = self
            .write_audit(ctx, "domain.delete", name, json!({}))
            .await?;
        self.store.delete_domain(name, &audit.append()).await?;
        Ok(())
    }
}
