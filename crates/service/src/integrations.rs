//! Integrations: external vaults credvault pulls credentials from, read-only (issue 7, part 2).
//!
//! An integration is a row (`integrations` table) with non-secret settings, secret settings sealed
//! by the barrier (binding `credvault:integration:<name>`), a target safe, an enabled flag and a
//! status (last attempt, last success, last error). Pulling is done by `credvault-connectors`.
//!
//! What is pulled becomes **mirrors**: ordinary credentials in the integration's safe, identifier
//! `mirror:<integration>/<name>/<user>`, property `MirroredFrom = <integration>`, tag `mirrored`, written
//! only through the door `integration` (every other door's writes are refused, see
//! [`Vault::refuse_mirror_write`]). They appear wherever the safe is visible (native API, CCP, ...).
//! A sync (on add, enable and `sync`) fetches all configured names and replaces the mirrors; a secret
//! read of a mirror whose last fetch is older than `cache_expiry_seconds` (always, when 0) fetches that
//! one credential again first ([`Vault::refresh_mirror`]). Disabling or removing an integration removes
//! its mirrors. A remote failure is recorded in the status and answered as `ServiceError::Integration`;
//! it never takes the server down.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use credvault_connectors::{Connector, FetchError, Fetched, Secrets, Settings};
use credvault_core::model::{Credential, CredentialMeta, SecretPayload};
use credvault_core::policy::{Actor, ActorKind};
use credvault_core::validate::{self, Reserved};
use credvault_core::DomainError;
use credvault_store::{CredentialFilter, CredentialWithPayload, IntegrationRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::error::{ServiceError, ServiceResult};
use crate::vault::WriteRules;
use crate::{Ctx, Vault};

/// The door name integration writes go through (`Ctx::door`, audit records).
pub const DOOR: &str = "integration";
/// The credential property naming the integration a mirror comes from.
pub const MIRRORED_FROM: &str = "MirroredFrom";
const MIRROR_TAG: &str = "mirrored";

pub(crate) fn binding(name: &str) -> String {
    format!("credvault:integration:{name}")
}

/// Whether `ctx` is the integration whose mirror namespace holds this credential.
pub(crate) fn owns_mirror(ctx: &Ctx, meta: &CredentialMeta) -> bool {
    let Some(name) = ctx.actor.name.strip_prefix("integration:") else {
        return false;
    };
    ctx.door == DOOR
        && meta
            .identifier
            .as_deref()
            .is_some_and(|i| i.starts_with(&mirror_prefix(name)))
}

fn mirror_prefix(integration: &str) -> String {
    Reserved::Mirror.identifier(&format!("{integration}/"))
}

/// What the last runs of an integration did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    pub last_attempt: Option<String>,
    pub last_success: Option<String>,
    /// Why the last run failed as a whole (remote down, login refused, ...).
    pub last_error: Option<String>,
    /// How many credentials the last successful run mirrored.
    pub fetched: usize,
    /// Names that failed in the last run, with why.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// An integration as the API shows it (never its secrets, only which are set).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    pub name: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Which secret settings are set (`token`, `secret_id`, `client_identity`, `header_secret`).
    pub secrets: Vec<&'static str>,
    pub safe: String,
    pub enabled: bool,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// A new integration.
#[derive(Debug)]
pub struct NewIntegration {
    pub name: String,
    pub settings: Settings,
    pub secrets: Secrets,
    pub safe: String,
    pub enabled: bool,
}

/// One fetched credential as a test run shows it (no password).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Seen {
    pub name: String,
    pub user: String,
}

/// What `integration test` saw.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TestReport {
    pub ok: bool,
    pub error: Option<String>,
    pub fetched: Vec<Seen>,
    pub errors: Vec<String>,
}

/// When each mirror was last fetched, per server: the short-lived cache of the fetch-credentials
/// contract. A server that has not fetched a mirror itself fetches it on its first read.
#[derive(Default)]
pub struct MirrorClock(std::sync::Mutex<HashMap<String, Instant>>);

impl MirrorClock {
    fn touch(&self, identifier: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(identifier.to_owned(), Instant::now());
        }
    }
    fn fresh(&self, identifier: &str, expiry_seconds: u64) -> bool {
        expiry_seconds > 0
            && self.0.lock().is_ok_and(|m| {
                m.get(identifier)
                    .is_some_and(|t| t.elapsed().as_secs() < expiry_seconds)
            })
    }
    fn forget_prefix(&self, prefix: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|k, _| !k.starts_with(prefix));
        }
    }
}

fn secret_names(s: &Secrets) -> Vec<&'static str> {
    [
        ("token", s.token.is_some()),
        ("secret_id", s.secret_id.is_some()),
        ("client_identity", s.client_identity.is_some()),
        ("header_secret", s.header_secret.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect()
}

fn fetch_failed(name: &str, e: &FetchError) -> ServiceError {
    ServiceError::Integration(format!("integration '{name}': {e}"))
}

/// A loaded integration: its record, settings and unsealed secrets.
struct Loaded {
    rec: IntegrationRecord,
    settings: Settings,
    secrets: Secrets,
}

impl Loaded {
    fn connector(&self) -> ServiceResult<Connector> {
        Connector::new(self.settings.clone(), self.secrets.clone())
            .map_err(|e| fetch_failed(&self.rec.name, &e))
    }
}

impl Vault {
    /// The integration as the writer of its mirrors: no admin, no memberships; what it may write
    /// is its own mirror namespace (`WriteRules::Mirror`, `owns_mirror`).
    fn integration_ctx(&self, name: &str, source: &str) -> Ctx {
        Ctx {
            actor: Actor {
                name: format!("integration:{name}"),
                kind: ActorKind::User,
                groups: vec![],
            },
            source: source.to_owned(),
            door: DOOR,
        }
    }

    /// Mirrors are read-only everywhere but through their integration.
    pub(crate) fn refuse_mirror_write(
        &self,
        ctx: &Ctx,
        meta: &CredentialMeta,
    ) -> ServiceResult<()> {
        match meta.properties.get(MIRRORED_FROM) {
            Some(from) if ctx.door != DOOR => Err(DomainError::Conflict(format!(
                "this credential is mirrored read-only from integration '{from}'; change it in the source vault"
            ))
            .into()),
            _ => Ok(()),
        }
    }

    async fn load_integration(&self, name: &str) -> ServiceResult<Loaded> {
        let rec = self
            .store
            .get_integration(name)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("integration '{name}'")))?;
        let settings: Settings =
            serde_json::from_str(&rec.settings).map_err(|_| ServiceError::Integrity)?;
        let keys = self.keys_for(&rec.secrets).await?;
        let plain = keys
            .keyring
            .decrypt(&rec.secrets, &binding(name))
            .map_err(|_| ServiceError::Integrity)?;
        let secrets: Secrets =
            serde_json::from_slice(plain.expose()).map_err(|_| ServiceError::Integrity)?;
        Ok(Loaded {
            rec,
            settings,
            secrets,
        })
    }

    fn view(rec: &IntegrationRecord, settings: &Settings, secrets: &Secrets) -> IntegrationView {
        IntegrationView {
            name: rec.name.clone(),
            kind: settings.kind.as_str().to_owned(),
            settings: serde_json::to_value(settings).unwrap_or_default(),
            secrets: secret_names(secrets),
            safe: rec.safe.clone(),
            enabled: rec.enabled,
            status: serde_json::from_str(&rec.status).unwrap_or_default(),
            created_at: rec.created_at,
        }
    }

    async fn audit_integration(
        &self,
        ctx: &Ctx,
        action: &'static str,
        name: &str,
        detail: serde_json::Value,
    ) -> ServiceResult<()> {
        self.auditor
            .record(crate::audit::Event {
                actor: ctx.actor.name.clone(),
                door: ctx.door,
                action,
                target: name.to_owned(),
                source: ctx.source.clone(),
                outcome: "ok",
                detail,
            })
            .await
            .map(|_| ())
    }

    pub async fn add_integration(
        &self,
        ctx: &Ctx,
        new: NewIntegration,
    ) -> ServiceResult<IntegrationView> {
        self.require_admin(ctx)?;
        validate::principal_name("name", &new.name)?;
        new.settings
            .validate(&new.secrets)
            .map_err(|e| DomainError::invalid(e.field, e.reason))?;
        if self.store.get_safe(&new.safe).await?.is_none() {
            return Err(DomainError::invalid("safe", format!("no safe '{}'", new.safe)).into());
        }
        // The newest term, as every write (see `rotation.rs` on retiring old keys).
        let keys = self.write_keys().await?;
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(&new.secrets).map_err(|_| ServiceError::Integrity)?,
        );
        let rec = IntegrationRecord {
            name: new.name.clone(),
            settings: serde_json::to_string(&new.settings).map_err(|_| ServiceError::Integrity)?,
            secrets: keys.keyring.encrypt(&plain, &binding(&new.name))?,
            safe: new.safe,
            enabled: new.enabled,
            status: "{}".into(),
            created_at: self.clock.now(),
        };
        let audit = self.write_audit(
            ctx,
            "integration.create",
            &rec.name,
            json!({"kind": new.settings.kind.as_str(), "url": new.settings.url, "safe": rec.safe, "enabled": rec.enabled}),
        )
        .await?;
        self.store.create_integration(&rec, &audit.append()).await?;
        if rec.enabled {
            // A failing first sync is recorded in the status; the integration exists either way.
            let _ = self.sync_integration(ctx, &rec.name).await;
        }
        self.get_integration(ctx, &rec.name).await
    }

    pub async fn list_integrations(&self, ctx: &Ctx) -> ServiceResult<Vec<IntegrationView>> {
        self.require_admin(ctx)?;
        let mut out = Vec::new();
        for rec in self.store.list_integrations().await? {
            let l = self.load_integration(&rec.name).await?;
            out.push(Self::view(&l.rec, &l.settings, &l.secrets));
        }
        Ok(out)
    }

    pub async fn get_integration(&self, ctx: &Ctx, name: &str) -> ServiceResult<IntegrationView> {
        self.require_admin(ctx)?;
        let l = self.load_integration(name).await?;
        Ok(Self::view(&l.rec, &l.settings, &l.secrets))
    }

    pub async fn remove_integration(&self, ctx: &Ctx, name: &str) -> ServiceResult<()> {
        self.require_admin(ctx)?;
        let l = self.load_integration(name).await?;
        self.remove_mirrors(&l, &ctx.source, &[]).await?;
        let audit = self
            .write_audit(ctx, "integration.delete", name, json!({}))
            .await?;
        self.store.delete_integration(name, &audit.append()).await?;
        Ok(())
    }

    /// Enable (and sync) or disable (and remove the mirrors of) an integration.
    pub async fn set_integration_enabled(
        &self,
        ctx: &Ctx,
        name: &str,
        enabled: bool,
    ) -> ServiceResult<IntegrationView> {
        self.require_admin(ctx)?;
        let mut l = self.load_integration(name).await?;
        l.rec.enabled = enabled;
        let action = if enabled {
            "integration.enable"
        } else {
            "integration.disable"
        };
        let audit = self.write_audit(ctx, action, name, json!({})).await?;
        self.store
            .update_integration(&l.rec, &audit.append())
            .await?;
        if enabled {
            let _ = self.sync_integration(ctx, name).await;
        } else {
            self.remove_mirrors(&l, &ctx.source, &[]).await?;
        }
        self.get_integration(ctx, name).await
    }

    async fn set_status(&self, name: &str, status: &Status) -> ServiceResult<()> {
        let text = serde_json::to_string(status).map_err(|_| ServiceError::Integrity)?;
        Ok(self.store.set_integration_status(name, &text).await?)
    }

    async fn status_of(&self, l: &Loaded) -> Status {
        serde_json::from_str(&l.rec.status).unwrap_or_default()
    }

    /// Record a failed run in the status and turn it into the service error.
    async fn record_failure(&self, l: &Loaded, e: &FetchError) -> ServiceError {
        let mut st = self.status_of(l).await;
        st.last_attempt = Some(credvault_store::format_time(self.clock.now()));
        st.last_error = Some(e.to_string());
        tracing::warn!(integration = %l.rec.name, error = %e, "integration fetch failed");
        metrics::counter!("credvault_integration_failures_total").increment(1);
        let _ = self.set_status(&l.rec.name, &st).await;
        fetch_failed(&l.rec.name, e)
    }

    /// Fetch every configured credential and make the mirrors match: new ones created, changed ones
    /// given a new version, vanished ones removed.
    pub async fn sync_integration(&self, ctx: &Ctx, name: &str) -> ServiceResult<IntegrationView> {
        self.require_admin(ctx)?;
        let l = self.load_integration(name).await?;
        if !l.rec.enabled {
            return Err(DomainError::Conflict(format!(
                "integration '{name}' is disabled; enable it first"
            ))
            .into());
        }
        let report = match l.connector()?.fetch_all().await {
            Ok(r) => r,
            Err(e) => return Err(self.record_failure(&l, &e).await),
        };
        let mut kept = Vec::new();
        let mut errors: Vec<String> = report
            .errors
            .iter()
            .map(|(n, e)| format!("{n}: {e}"))
            .collect();
        for f in &report.fetched {
            match self.upsert_mirror(&l, &ctx.source, f).await {
                Ok(id) => kept.push(id),
                Err(ServiceError::Domain(e)) => errors.push(format!("{}: {e}", f.name)),
                Err(e) => return Err(e),
            }
        }
        self.remove_mirrors(&l, &ctx.source, &kept).await?;
        let st = Status {
            last_attempt: Some(credvault_store::format_time(self.clock.now())),
            last_success: Some(credvault_store::format_time(self.clock.now())),
            last_error: None,
            fetched: kept.len(),
            errors,
        };
        self.set_status(name, &st).await?;
        self.audit_integration(
            ctx,
            "integration.sync",
            name,
            json!({"fetched": kept.len(), "errors": st.errors.len()}),
        )
        .await?;
        self.get_integration(ctx, name).await
    }

    /// Run the fetch once and report what it saw, without changing the mirrors (the contract's
    /// troubleshooting command). Passwords are not shown.
    pub async fn test_integration(&self, ctx: &Ctx, name: &str) -> ServiceResult<TestReport> {
        self.require_admin(ctx)?;
        let l = self.load_integration(name).await?;
        let result = l.connector()?.fetch_all().await;
        self.audit_integration(ctx, "integration.test", name, json!({"ok": result.is_ok()}))
            .await?;
        Ok(match result {
            Ok(r) => {
                let mut st = self.status_of(&l).await;
                st.last_attempt = Some(credvault_store::format_time(self.clock.now()));
                st.last_success = Some(credvault_store::format_time(self.clock.now()));
                st.last_error = None;
                let _ = self.set_status(name, &st).await;
                TestReport {
                    ok: r.errors.is_empty(),
                    error: None,
                    fetched: r
                        .fetched
                        .iter()
                        .map(|f| Seen {
                            name: f.name.clone(),
                            user: f.user.clone(),
                        })
                        .collect(),
                    errors: r.errors.iter().map(|(n, e)| format!("{n}: {e}")).collect(),
                }
            }
            Err(e) => {
                let _ = self.record_failure(&l, &e).await;
                TestReport {
                    ok: false,
                    error: Some(e.to_string()),
                    fetched: vec![],
                    errors: vec![],
                }
            }
        })
    }

    /// Fetch one credential by its name (identifier) on demand and mirror it. Several matches are
    /// refused (the contract never hands out more than one).
    pub async fn fetch_integration_credential(
        &self,
        ctx: &Ctx,
        name: &str,
        identifier: &str,
    ) -> ServiceResult<Credential> {
        self.require_admin(ctx)?;
        let l = self.load_integration(name).await?;
        if !l.rec.enabled {
            return Err(DomainError::Conflict(format!("integration '{name}' is disabled")).into());
        }
        let found = match l.connector()?.fetch_one(identifier).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                return Err(DomainError::NotFound(format!(
                    "credential '{identifier}' in integration '{name}'"
                ))
                .into())
            }
            Err(e @ FetchError::Ambiguous(_)) => {
                return Err(DomainError::Conflict(format!("integration '{name}': {e}")).into())
            }
            Err(e) => return Err(self.record_failure(&l, &e).await),
        };
        let id = self.upsert_mirror(&l, &ctx.source, &found).await?;
        self.store
            .get_credential(id)
            .await?
            .ok_or_else(|| DomainError::NotFound("credential".into()).into())
    }

    fn mirror_identifier(integration: &str, f: &Fetched) -> String {
        format!("{}{}/{}", mirror_prefix(integration), f.name, f.user)
    }

    /// Create the mirror of `f`, or give it a new version when the remote value changed.
    async fn upsert_mirror(
        &self,
        l: &Loaded,
        source: &str,
        f: &Fetched,
    ) -> ServiceResult<uuid::Uuid> {
        let ctx = self.integration_ctx(&l.rec.name, source);
        let identifier = Self::mirror_identifier(&l.rec.name, f);
        let payload = SecretPayload {
            secret: f.password.clone(),
            parameters: BTreeMap::new(),
        };
        // Two rounds at most: a create that loses a race with another server updates the winner's.
        for _ in 0..2 {
            if let Some(cur) = self.store.credential_by_identifier(&identifier).await? {
                let blob = self
                    .store
                    .credential_with_payload(cur.id)
                    .await?
                    .ok_or_else(|| ServiceError::from(DomainError::NotFound("credential".into())))?
                    .payload;
                let old = self.decrypt_payload(cur.id, cur.version, &blob).await?;
                if old.secret != payload.secret {
                    self.update_with(&ctx, WriteRules::Mirror, cur.id, None, "mirror", |_, p| {
                        *p = payload.clone();
                        Ok(())
                    })
                    .await?;
                }
                self.mirror_clock.touch(&identifier);
                return Ok(cur.id);
            }
            let mut properties = BTreeMap::new();
            properties.insert(MIRRORED_FROM.to_owned(), l.rec.name.clone());
            let meta = CredentialMeta {
                identifier: Some(identifier.clone()),
                username: f.user.clone(),
                tags: vec![MIRROR_TAG.to_owned()],
                safe: Some(l.rec.safe.clone()),
                properties,
                ..CredentialMeta::named(f.name.clone())
            };
            match self
                .create_with(&ctx, WriteRules::Mirror, meta, payload.clone())
                .await
            {
                Ok(c) => {
                    self.mirror_clock.touch(&identifier);
                    return Ok(c.id);
                }
                Err(ServiceError::Domain(DomainError::Conflict(_))) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(
            DomainError::Conflict(format!("mirror '{identifier}' is being written elsewhere"))
                .into(),
        )
    }

    /// Every mirror of an integration.
    async fn mirrors(&self, l: &Loaded) -> ServiceResult<Vec<Credential>> {
        let prefix = mirror_prefix(&l.rec.name);
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_credentials(&CredentialFilter {
                    safe: Some(l.rec.safe.clone()),
                    after,
                    limit: 1000,
                    ..CredentialFilter::default()
                })
                .await?;
            after = page.last().map(|c| c.id);
            let done = page.len() < 1000;
            out.extend(page.into_iter().filter(|c| {
                c.meta
                    .identifier
                    .as_deref()
                    .is_some_and(|i| i.starts_with(&prefix))
            }));
            if done {
                return Ok(out);
            }
        }
    }

    /// Remove the mirrors of an integration, except those in `keep`.
    async fn remove_mirrors(
        &self,
        l: &Loaded,
        source: &str,
        keep: &[uuid::Uuid],
    ) -> ServiceResult<()> {
        let ctx = self.integration_ctx(&l.rec.name, source);
        for c in self.mirrors(l).await? {
            if !keep.contains(&c.id) {
                match self.delete_with(&ctx, WriteRules::Mirror, c.id).await {
                    Ok(()) | Err(ServiceError::Domain(DomainError::NotFound(_))) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if keep.is_empty() {
            self.mirror_clock.forget_prefix(&mirror_prefix(&l.rec.name));
        }
        Ok(())
    }

    /// Before a mirror's secret is served: fetch it again unless it was fetched within the cache
    /// expiry. Returns the fresh credential and payload when it was fetched, `None` to serve the
    /// stored value.
    pub(crate) async fn refresh_mirror(
        &self,
        cred: &Credential,
        source: &str,
    ) -> ServiceResult<Option<(Credential, SecretPayload)>> {
        let (Some(from), Some(identifier)) = (
            cred.meta.properties.get(MIRRORED_FROM),
            cred.meta.identifier.as_deref(),
        ) else {
            return Ok(None);
        };
        if Reserved::of(identifier) != Some(Reserved::Mirror) {
            return Ok(None);
        }
        let l = self.load_integration(from).await?;
        if !l.rec.enabled {
            return Err(DomainError::NotFound("credential".into()).into());
        }
        if self
            .mirror_clock
            .fresh(identifier, l.settings.cache_expiry_seconds)
        {
            return Ok(None);
        }
        let found = match l.connector()?.fetch_matching(&cred.meta.name).await {
            Ok(found) => found,
            Err(e) => return Err(self.record_failure(&l, &e).await),
        };
        let Some(f) = found.into_iter().find(|f| f.user == cred.meta.username) else {
            // Gone from the remote: the mirror goes too.
            let ctx = self.integration_ctx(from, source);
            self.delete_with(&ctx, WriteRules::Mirror, cred.id).await?;
            return Err(DomainError::NotFound("credential".into()).into());
        };
        self.upsert_mirror(&l, source, &f).await?;
        let CredentialWithPayload {
            credential: fresh,
            payload: blob,
        } = self
            .store
            .credential_with_payload(cred.id)
            .await?
            .ok_or_else(|| ServiceError::from(DomainError::NotFound("credential".into())))?;
        let payload = self.decrypt_payload(fresh.id, fresh.version, &blob).await?;
        Ok(Some((fresh, payload)))
    }
}
