//! Automatic password change (issue 17): the engine that sets a new password on a credential's
//! target system through a plugin (`credvault_connectors::change`) without ever losing the
//! working one. (Key rotation, the rewrap of ciphertexts, is `rotation.rs`.)
//!
//! A change runs in two phases, each step committed before the next begins:
//!
//! 1. a new value is generated and stored, sealed, as the credential's **pending** value
//!    (`password_changes.pending`, binding `credvault:pwchange:<id>:<change_id>`), with the audit
//!    record `credential.rotate` / `started`; the credential's current version is untouched, so
//!    every door still hands out the working value (the CCP door answers
//!    `PasswordChangeInProcess: "True"` meanwhile);
//! 2. the plugin sets it on the target, logged in as the authentication credential (or the
//!    account itself);
//! 3. the plugin logs in with it;
//! 4. it becomes the credential's new current version (operation `rotate`) in the same transaction
//!    that clears the pending value, with the record `credential.rotate` / `ok`.
//!
//! **Settling.** A run that finds a pending value (a crash, a lost connection, a timeout after the
//! target may have changed) first asks the target which value it accepts: the pending one becomes
//! current; if the current one still works, the pending one is dropped; if the target cannot be
//! reached the pending value stays until it can. So after a crash at any point the vault holds a
//! value the target accepts, or the pending value that it accepts, which the next run makes current.
//!
//! **One change at a time.** A run takes the row's lease (`lease_owner`, `lease_until`,
//! compare-and-swap on `lease_seq`) in the store, so across every server on one database only one
//! works on a credential; a lease left by a dead server expires after [`LEASE`].
//!
//! **When.** On demand (`Vault::rotate_now`), every `change_every_hours`/`change_every_days` of
//! `execution_settings` after the last success (`next_run_at`), after a custody release when
//! `change_after_release` is set, and on retry after a failure with exponential backoff
//! ([`backoff`]). The background loop (`start_background`) runs due changes every [`TICK`] and when
//! woken. Time comes from the vault's `Clock`, so tests move schedules without editing rows.
//!
//! Every attempt is audited (door `pwchange` for the engine's own runs, or the caller's door):
//! `started`, `ok`, `failed` with the reason, `settled`, `abandoned`; never a secret.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use credvault_connectors::change::{self, ChangeError, ChangePlugin, Login, Target};
use credvault_core::model::{Credential, CredentialMeta, Perms, SecretPayload, VersionInfo};
use credvault_core::policy::{Actor, ActorKind};
use credvault_core::{ccp, DomainError};
use credvault_crypto::SecretString;
use credvault_store::feed::Area;
use credvault_store::{NewVersion, PasswordChangeRow, StoreError};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cache::EpochCache;
use crate::error::{ServiceError, ServiceResult};
use crate::vault::forbidden;
use crate::{Ctx, Vault};

/// The audit door of the engine's own runs (schedule, retry, after a custody release).
pub const DOOR: &str = "pwchange";
/// How long a lease lasts: longer than any run (each target call is bounded by [`TARGET_TIMEOUT`]).
pub const LEASE: Duration = Duration::from_secs(300);
/// How often the background loop looks for due changes.
pub const TICK: Duration = Duration::from_secs(30);
/// One connection to a target.
pub const TARGET_TIMEOUT: Duration = Duration::from_secs(10);
/// Generated passwords' length unless `execution_settings.password_length` says otherwise.
pub const PASSWORD_LENGTH: usize = 32;
/// The operation of a version made by a change.
pub const OPERATION: &str = "rotate";

/// The wait before the next try after `failures` failures in a row: 1 minute, doubling, at most
/// 6 hours.
pub fn backoff(failures: i64) -> Duration {
    let exp = u32::try_from(failures.clamp(1, 16) - 1).unwrap_or(0);
    Duration::from_secs(60u64.saturating_mul(1u64 << exp).min(6 * 3600))
}

/// Where a test stops a run, as a crash would: after the pending value is stored (1), after the
/// target was changed (2).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAfter {
    Never = 0,
    Pending = 1,
    TargetChanged = 2,
}

/// The engine's state in a server.
pub(crate) struct Engine {
    /// This server's name on the leases it takes.
    owner: String,
    wake: Arc<tokio::sync::Notify>,
    stop_after: AtomicU8,
    /// Whether a credential has a change in flight (the CCP door asks on every read).
    in_flight: EpochCache<Uuid, bool>,
    /// The credentials this server is running a change of (the lease keeps other servers out).
    running: std::sync::Mutex<std::collections::HashSet<Uuid>>,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            owner: format!("server:{}", Uuid::now_v7()),
            wake: Arc::new(tokio::sync::Notify::new()),
            stop_after: AtomicU8::new(0),
            in_flight: EpochCache::new(Area::Credentials, 20_000),
            running: Default::default(),
        }
    }
}

/// The change settings of a credential (`execution_settings`).
#[derive(Clone)]
struct Plan {
    plugin: &'static dyn ChangePlugin,
    template: &'static str,
    use_own: bool,
    authentication: Option<String>,
    /// Reconciliation (`status` on, a `reconciliation_credential` set): when the login that makes
    /// the change is refused (somebody changed the password on the target), the change is made
    /// again through this credential, plugin and template.
    reconcile: Option<Recon>,
}

#[derive(Clone)]
struct Recon {
    plugin: &'static dyn ChangePlugin,
    template: &'static str,
    credential: String,
}

fn execution(meta: &CredentialMeta) -> Option<&Map<String, Value>> {
    meta.settings.get("execution_settings")?.as_object()
}

fn text<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn flag(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).and_then(Value::as_bool).unwrap_or(false)
}

/// The interval of the scheduled change, if any.
fn every(meta: &CredentialMeta) -> Option<time::Duration> {
    let e = execution(meta)?;
    if !flag(e, "automatic_change") {
        return None;
    }
    let hours = e.get("change_every_hours").and_then(Value::as_u64);
    let days = e.get("change_every_days").and_then(Value::as_u64);
    let h = hours.unwrap_or(0) + days.unwrap_or(0) * 24;
    (h > 0).then(|| time::Duration::hours(i64::try_from(h).unwrap_or(i64::MAX / 7200)))
}

fn plan_of(meta: &CredentialMeta) -> Result<Plan, String> {
    let e = execution(meta).ok_or("the credential has no execution_settings")?;
    let name = text(e, "change_plugin").ok_or("execution_settings.change_plugin is not set")?;
    let plugin = change::plugin(name).ok_or_else(|| format!("unknown plugin '{name}'"))?;
    let template =
        change::template_of(plugin, text(e, "change_template")).ok_or("unknown change_template")?;
    let reconcile = match text(e, "reconciliation_credential") {
        Some(c) if flag(e, "status") => {
            let rp = match text(e, "reconciliation_plugin") {
                Some(n) => change::plugin(n).ok_or_else(|| format!("unknown plugin '{n}'"))?,
                None => plugin,
            };
            let rt = change::template_of(rp, text(e, "reconciliation_template"))
                .ok_or("unknown reconciliation_template")?;
            Some(Recon {
                plugin: rp,
                template: rt,
                credential: c.to_owned(),
            })
        }
        _ => None,
    };
    Ok(Plan {
        plugin,
        template,
        use_own: flag(e, "use_own_credential_to_connect"),
        authentication: text(e, "authentication_credential").map(str::to_owned),
        reconcile,
    })
}

/// Check the plugin and template names a credential's settings give (execution and JIT blocks):
/// unknown ones are refused at write time (native: 400; A2A: 1000).
pub(crate) fn check_settings(settings: &Value) -> ServiceResult<()> {
    let pairs: &[(&str, &str, &str)] = &[
        ("execution_settings", "change_plugin", "change_template"),
        (
            "execution_settings",
            "reconciliation_plugin",
            "reconciliation_template",
        ),
        (
            "jit_settings",
            "credential_creation_plugin",
            "credential_creation_template",
        ),
        (
            "jit_settings",
            "credential_deletion_plugin",
            "credential_deletion_template",
        ),
        (
            "jit_settings",
            "credential_enable_plugin",
            "credential_enable_template",
        ),
        (
            "jit_settings",
            "credential_disable_plugin",
            "credential_disable_template",
        ),
    ];
    if let Some(e) = settings
        .get("execution_settings")
        .and_then(Value::as_object)
    {
        let (len, avoid) =
            rules_of(e).map_err(|m| DomainError::invalid("execution_settings", m))?;
        credvault_crypto::password::check_rules(len, &avoid).map_err(|m| {
            DomainError::invalid("execution_settings.password_length/password_avoid", m)
        })?;
    }
    for (block, plugin, template) in pairs {
        let Some(b) = settings.get(block).and_then(Value::as_object) else {
            continue;
        };
        let t = text(b, template);
        match text(b, plugin) {
            Some(p) => change::check(p, t)
                .map_err(|m| DomainError::invalid(&format!("{block}.{plugin}"), m))?,
            None if t.is_some() => {
                return Err(DomainError::invalid(
                    &format!("{block}.{template}"),
                    format!("a template needs its plugin ({block}.{plugin})"),
                )
                .into())
            }
            None => {}
        }
    }
    Ok(())
}

/// The password rules of `execution_settings`: `password_length` (default [`PASSWORD_LENGTH`])
/// and `password_avoid` (characters never to use).
fn rules_of(e: &Map<String, Value>) -> Result<(usize, String), String> {
    let len = match e.get("password_length") {
        None | Some(Value::Null) => PASSWORD_LENGTH,
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("password_length must be a whole number")?,
    };
    let avoid = match e.get("password_avoid") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("password_avoid must be a string".into()),
    };
    Ok((len, avoid))
}

/// Where the plugin connects for this credential: its device's IP (else host name), the port from
/// the `Port` property or a connectivity named like the plugin, the `Database` property.
fn target_of(meta: &CredentialMeta, plugin: &dyn ChangePlugin) -> Result<Target, String> {
    let d = meta
        .device
        .as_ref()
        .ok_or("the credential has no device (host name or IP) to change the password on")?;
    let host = if d.ip.trim().is_empty() {
        d.hostname.trim()
    } else {
        d.ip.trim()
    };
    if host.is_empty() {
        return Err("the credential's device has no host name or IP".into());
    }
    let port = meta
        .properties
        .get("Port")
        .and_then(|p| p.trim().parse().ok())
        .or_else(|| {
            d.connectivities
                .iter()
                .find(|c| {
                    c.protocol.eq_ignore_ascii_case(plugin.name())
                        || c.protocol.eq_ignore_ascii_case("postgres")
                })
                .map(|c| c.port)
        });
    Ok(Target {
        host: host.to_owned(),
        port,
        database: meta.properties.get("Database").cloned(),
        timeout: TARGET_TIMEOUT,
    })
}

fn same_device(a: &CredentialMeta, b: &CredentialMeta) -> bool {
    match (&a.device, &b.device) {
        (Some(x), Some(y)) => ccp::fold(&x.hostname) == ccp::fold(&y.hostname) && x.ip == y.ip,
        _ => false,
    }
}

/// What a run did, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The new value is current and the target accepts it.
    Changed,
    /// A pending value left by an earlier run was found accepted by the target and made current.
    Settled,
    /// The login that makes the change was refused (the password was changed out of band), and
    /// the reconciliation credential set a new one, now current.
    Reconciled,
    /// The run failed; the working value is unchanged (`error` says why).
    Failed,
    /// Another server is changing this credential now.
    Busy,
}

/// The answer of `rotate_now`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RunReport {
    pub outcome: RunOutcome,
    /// The credential's current version after the run.
    pub version: i64,
    pub error: Option<String>,
}

/// A credential's automatic change: settings, schedule, last result and history.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RotationStatus {
    pub id: Uuid,
    pub automatic_change: bool,
    pub plugin: Option<String>,
    pub template: Option<String>,
    /// The scheduled interval in hours (`change_every_hours` + 24 × `change_every_days`).
    pub every_hours: Option<i64>,
    pub change_after_release: bool,
    /// The length of generated passwords.
    pub password_length: usize,
    /// Characters generated passwords never contain.
    pub password_avoid: String,
    /// A change is in flight (its new value is pending).
    pub in_flight: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_run_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<OffsetDateTime>,
    pub last_result: Option<String>,
    pub last_error: Option<String>,
    /// Failed runs in a row.
    pub failures: i64,
    /// The versions made by changes (operation `rotate`), oldest first.
    pub history: Vec<VersionInfo>,
}

/// Why one step failed, and whether the target might have taken the new value.
struct Failure {
    reason: String,
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Self { reason }
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        Self {
            reason: reason.to_owned(),
        }
    }
}

pub(crate) fn pending_binding(id: Uuid, change_id: &str) -> String {
    format!("credvault:pwchange:{id}:{change_id}")
}

fn engine_ctx() -> Ctx {
    Ctx {
        actor: Actor {
            name: "pwchange".into(),
            kind: ActorKind::Service,
            groups: vec![],
        },
        source: "engine".into(),
        door: DOOR,
    }
}

impl Vault {
    // ------------------------------------------------------------------ API

    /// Change a credential's password now (the caller needs `write` on it). Answers when the run
    /// is over: changed, settled, failed (the working value unchanged) or busy elsewhere.
    pub async fn rotate_now(&self, ctx: &Ctx, id: Uuid) -> ServiceResult<RunReport> {
        let cred = self
            .load_for(ctx, id, Perms::WRITE, "credential.rotate")
            .await?;
        plan_of(&cred.meta).map_err(|m| DomainError::invalid("execution_settings", m))?;
        self.run_change(ctx, id).await
    }

    /// Reconcile now: set a new password through the reconciliation credential (settings `status`
    /// and `reconciliation_credential`), whatever the current value is (the caller needs `write`).
    pub async fn reconcile_now(&self, ctx: &Ctx, id: Uuid) -> ServiceResult<RunReport> {
        let cred = self
            .load_for(ctx, id, Perms::WRITE, "credential.reconcile")
            .await?;
        let plan =
            plan_of(&cred.meta).map_err(|m| DomainError::invalid("execution_settings", m))?;
        if plan.reconcile.is_none() {
            return Err(DomainError::invalid(
                "execution_settings",
                "reconciliation is off: set status true and a reconciliation_credential",
            )
            .into());
        }
        self.run_change_with(ctx, id, true).await
    }

    /// A credential's automatic change status (the caller needs `list` on it).
    pub async fn rotation_status(&self, ctx: &Ctx, id: Uuid) -> ServiceResult<RotationStatus> {
        let cred = self
            .load_for(ctx, id, Perms::LIST, "credential.rotation")
            .await?;
        let row = self.store.password_change(id).await?;
        let history = self
            .store
            .list_versions(id)
            .await?
            .into_iter()
            .filter(|v| v.operation == OPERATION)
            .collect();
        let e = execution(&cred.meta);
        let plan = plan_of(&cred.meta).ok();
        let rules = e
            .and_then(|e| rules_of(e).ok())
            .unwrap_or((PASSWORD_LENGTH, String::new()));
        let row = row.as_ref();
        Ok(RotationStatus {
            id,
            automatic_change: e.is_some_and(|e| flag(e, "automatic_change")),
            plugin: plan.as_ref().map(|p| p.plugin.name().to_owned()),
            template: plan.as_ref().map(|p| p.template.to_owned()),
            every_hours: every(&cred.meta).map(|d| d.whole_hours()),
            change_after_release: e.is_some_and(|e| flag(e, "change_after_release")),
            password_length: rules.0,
            password_avoid: rules.1,
            in_flight: row.is_some_and(|r| r.change_id.is_some()),
            next_run_at: row.and_then(|r| r.next_run_at),
            last_attempt_at: row.and_then(|r| r.last_attempt_at),
            last_success_at: row.and_then(|r| r.last_success_at),
            last_result: row.and_then(|r| r.last_result.clone()),
            last_error: row.and_then(|r| r.last_error.clone()),
            failures: row.map_or(0, |r| r.failures),
            history,
        })
    }

    async fn load_for(
        &self,
        ctx: &Ctx,
        id: Uuid,
        need: Perms,
        action: &'static str,
    ) -> ServiceResult<Credential> {
        let cred = self
            .store
            .get_credential(id)
            .await?
            .ok_or_else(|| ServiceError::from(DomainError::NotFound("credential".into())))?;
        let perms = self.perms_on(&ctx.actor, &cred.meta).await?;
        if !perms.contains(Perms::LIST) {
            // Not visible: the same answer as a missing credential.
            return Err(DomainError::NotFound("credential".into()).into());
        }
        if !perms.contains(need) {
            self.audit_denied(ctx, action, id.to_string()).await;
            return Err(forbidden());
        }
        Ok(cred)
    }

    /// Whether a change of `id` is in flight (the CCP door's `PasswordChangeInProcess`).
    pub(crate) async fn change_in_flight(&self, id: Uuid) -> ServiceResult<bool> {
        let (feed, cache) = (self.store.feed(), &self.pwchange.in_flight);
        if let Some(v) = cache.get(feed, &id) {
            return Ok(*v);
        }
        let ticket = cache.ticket(feed);
        let v = self
            .store
            .password_change(id)
            .await?
            .is_some_and(|r| r.change_id.is_some());
        cache.fill(feed, ticket, id, Arc::new(v));
        Ok(v)
    }

    /// Tests: stop every later run at this point, as a crash would (nothing released or recorded).
    #[doc(hidden)]
    pub fn pwchange_stop_after(&self, at: StopAfter) {
        self.pwchange.stop_after.store(at as u8, Ordering::Relaxed);
    }

    fn stops_at(&self, at: StopAfter) -> bool {
        self.pwchange.stop_after.load(Ordering::Relaxed) == at as u8
    }

    // ------------------------------------------------------------------ schedule

    /// After a credential write: keep its schedule in step with its settings (best effort; the
    /// write is done either way).
    pub(crate) async fn reschedule(&self, cred: &Credential, before: Option<&CredentialMeta>) {
        let now_every = every(&cred.meta);
        let unchanged = match before {
            Some(b) => every(b) == now_every,
            // A new credential: only one with a schedule has anything to do.
            None => now_every.is_none(),
        };
        if unchanged {
            return;
        }
        let r = async {
            let row = self.store.password_change(cred.id).await?;
            if now_every.is_none() && row.as_ref().is_none_or(|r| r.next_run_at.is_none()) {
                return Ok(());
            }
            let at = now_every.map(|e| {
                row.as_ref()
                    .and_then(|r| r.last_success_at)
                    .unwrap_or_else(|| self.clock.now())
                    + e
            });
            self.set_next_run(cred.id, at).await
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(credential = %cred.id, error = %e, "could not schedule the password change");
        }
    }

    /// Set when the next run is due (taking the lease briefly). Unaudited: its cause is.
    async fn set_next_run(&self, id: Uuid, at: Option<OffsetDateTime>) -> ServiceResult<()> {
        // A run of this credential in this server sets the next run itself when it ends.
        let Some(_running) = Running::enter(&self.pwchange.running, id) else {
            return Ok(());
        };
        let now = self.clock.now();
        let Some(mut row) = self
            .store
            .take_change_lease(
                id,
                &self.pwchange.owner,
                now,
                now + time::Duration::seconds(30),
            )
            .await?
        else {
            // Another server is running it; it will schedule the next run itself.
            return Ok(());
        };
        row.next_run_at = at;
        row.lease_owner = None;
        row.lease_until = None;
        self.store
            .save_password_change(&row, &credvault_store::AuditAppend::none())
            .await?;
        self.pwchange.wake.notify_one();
        Ok(())
    }

    /// After a custody release: change the password when the settings ask for it.
    pub(crate) async fn after_release(&self, cred: &Credential) {
        let wants = execution(&cred.meta).is_some_and(|e| flag(e, "change_after_release"));
        if wants {
            if let Err(e) = self.set_next_run(cred.id, Some(self.clock.now())).await {
                tracing::warn!(credential = %cred.id, error = %e, "could not schedule the change after release");
            }
        }
    }

    /// Run every change that is due (scheduled, retrying, or left pending). Returns how many ran.
    pub async fn run_due_changes(&self) -> ServiceResult<usize> {
        let due = self
            .store
            .password_changes_due(self.clock.now(), 100)
            .await?;
        let mut n = 0;
        for row in due {
            let now = self.clock.now();
            if row.lease_owner.is_some() && row.lease_until.is_some_and(|t| t > now) {
                continue;
            }
            let _ = self.run_change(&engine_ctx(), row.cred_id).await;
            n += 1;
        }
        Ok(n)
    }

    /// The background loop: due changes every [`TICK`], or at once when woken (a schedule set, a
    /// custody released). Quiet while sealed. Also settles what a crash left pending.
    pub fn start_password_changes(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(v) = weak.upgrade() else { return };
                if !v.is_sealed().await {
                    if let Err(e) = v.run_due_changes().await {
                        tracing::warn!(error = %e, "password change run");
                    }
                }
                let wake = v.pwchange.wake.clone();
                drop(v);
                let _ = tokio::time::timeout(TICK, wake.notified()).await;
            }
        });
    }

    // ------------------------------------------------------------------ one run

    /// One run for one credential under its lease: settle a pending value, then change.
    async fn run_change(&self, ctx: &Ctx, id: Uuid) -> ServiceResult<RunReport> {
        self.run_change_with(ctx, id, false).await
    }

    /// [`Self::run_change`], through the reconciliation credential from the start with `reconcile`.
    async fn run_change_with(
        &self,
        ctx: &Ctx,
        id: Uuid,
        reconcile: bool,
    ) -> ServiceResult<RunReport> {
        let Some(_running) = Running::enter(&self.pwchange.running, id) else {
            return self.busy(id).await;
        };
        let now = self.clock.now();
        let until = now + time::Duration::try_from(LEASE).unwrap_or(time::Duration::minutes(5));
        let Some(row) = self
            .store
            .take_change_lease(id, &self.pwchange.owner, now, until)
            .await?
        else {
            return self.busy(id).await;
        };
        let res = self.run_leased(ctx, id, row, reconcile).await;
        if let Err(e) = &res {
            tracing::warn!(credential = %id, error = %e, "password change run stopped");
        }
        res
    }

    async fn busy(&self, id: Uuid) -> ServiceResult<RunReport> {
        let version = self
            .store
            .get_credential(id)
            .await?
            .map_or(0, |c| c.version);
        Ok(RunReport {
            outcome: RunOutcome::Busy,
            version,
            error: Some("a change of this password is running now".into()),
        })
    }

    async fn run_leased(
        &self,
        ctx: &Ctx,
        id: Uuid,
        mut row: PasswordChangeRow,
        mut reconcile: bool,
    ) -> ServiceResult<RunReport> {
        let (cred, payload) = self.current_plain(id).await?;
        let plan = match plan_of(&cred.meta) {
            Ok(p) => p,
            Err(m) => return self.fail(ctx, row, &cred, None, m.into()).await,
        };
        let target = match target_of(&cred.meta, plan.plugin) {
            Ok(t) => t,
            Err(m) => return self.fail(ctx, row, &cred, None, m.into()).await,
        };
        let account = cred.meta.username.clone();
        let own = Login {
            username: account.clone(),
            password: payload.secret.clone(),
        };

        // A value left pending by an earlier run: which one does the target accept?
        if let (Some(change_id), Some(blob)) = (row.change_id.clone(), row.pending.clone()) {
            let pending = self.open_pending(id, &change_id, &blob).await?;
            let with_pending = Login {
                username: account.clone(),
                password: pending.clone(),
            };
            match plan.plugin.verify(&target, &with_pending).await {
                Ok(()) => return self.finish(ctx, row, &change_id, pending, "settled").await,
                Err(ChangeError::Rejected(_)) => {}
                Err(e) => {
                    // Cannot tell: keep the pending value for the next run.
                    let reason = format!("could not settle the pending change: {e}");
                    return self
                        .fail(ctx, row, &cred, Some(&change_id), reason.into())
                        .await;
                }
            }
            match plan.plugin.verify(&target, &own).await {
                Ok(()) => {
                    // The target kept the working value: drop the pending one and go on.
                    row.change_id = None;
                    row.pending = None;
                    row.started_at = None;
                    let audit = self
                        .write_audit_outcome(ctx, id, "abandoned", json!({"change": change_id}))
                        .await?;
                    self.store
                        .save_password_change(&row, &audit.append())
                        .await?;
                }
                Err(ChangeError::Rejected(_)) if plan.reconcile.is_some() => {
                    // Neither logs in: somebody changed it on the target. Reconcile.
                    row.change_id = None;
                    row.pending = None;
                    row.started_at = None;
                    let audit = self
                        .write_audit_outcome(
                            ctx,
                            id,
                            "abandoned",
                            json!({"change": change_id, "reason": "neither the current nor the pending value logs in"}),
                        )
                        .await?;
                    self.store
                        .save_password_change(&row, &audit.append())
                        .await?;
                    reconcile = true;
                }
                Err(e) => {
                    let reason = format!(
                        "neither the current nor the pending value logs in ({e}); reconcile the account"
                    );
                    return self
                        .fail(ctx, row, &cred, Some(&change_id), reason.into())
                        .await;
                }
            }
        }

        // Who logs in to make the change.
        let first = if reconcile {
            match &plan.reconcile {
                Some(r) => self.named_login(&cred, &r.credential).await,
                None => Err("reconciliation is off".to_owned()),
            }
        } else {
            match plan.authentication.as_deref().filter(|_| !plan.use_own) {
                Some(name) => self.named_login(&cred, name).await,
                None => Ok(own.clone()),
            }
        };
        let mut auth = match first {
            Ok(a) => a,
            Err(m) => return self.fail(ctx, row, &cred, None, m.into()).await,
        };

        // Phase 1: the new value, pending.
        let change_id = Uuid::now_v7().to_string();
        let rules = execution(&cred.meta).map(rules_of).transpose();
        let new = match rules.and_then(|r| {
            let (len, avoid) = r.unwrap_or((PASSWORD_LENGTH, String::new()));
            credvault_crypto::password::generate_with(len, &avoid)
        }) {
            Ok(p) => p,
            Err(m) => return self.fail(ctx, row, &cred, None, m.into()).await,
        };
        let sealed = {
            let keys = self.write_keys().await?;
            let plain = zeroize::Zeroizing::new(new.expose().as_bytes().to_vec());
            keys.keyring
                .encrypt(&plain, &pending_binding(id, &change_id))?
        };
        row.change_id = Some(change_id.clone());
        row.pending = Some(sealed);
        row.started_at = Some(self.clock.now());
        row.last_attempt_at = row.started_at;
        let audit = self
            .write_audit_outcome(
                ctx,
                id,
                "started",
                json!({"change": change_id, "plugin": plan.plugin.name(), "template": plan.template}),
            )
            .await?;
        self.store
            .save_password_change(&row, &audit.append())
            .await?;
        if self.stops_at(StopAfter::Pending) {
            return Err(ServiceError::Integration(
                "stopped after phase 1 (test)".into(),
            ));
        }

        // Phase 2: the target (again through the reconciliation credential when the login that
        // makes the change is refused and reconciliation is on).
        let (plugin, outcome) = loop {
            let (plugin, template, outcome) = match (&plan.reconcile, reconcile) {
                (Some(r), true) => (r.plugin, r.template, "reconciled"),
                _ => (plan.plugin, plan.template, "ok"),
            };
            let changed = plugin
                .change(template, &target, &auth, &account, &new)
                .await;
            if self.stops_at(StopAfter::TargetChanged) {
                return Err(ServiceError::Integration(
                    "stopped after phase 2 (test)".into(),
                ));
            }
            match changed {
                Ok(()) => break (plugin, outcome),
                // The answer was lost: did it take? The new value decides; else the target kept
                // the working one, unless it cannot be reached at all (the next run asks again).
                Err(e @ ChangeError::Uncertain(_)) => {
                    let with_new = Login {
                        username: account.clone(),
                        password: new.clone(),
                    };
                    return match plugin.verify(&target, &with_new).await {
                        Ok(()) => self.finish(ctx, row, &change_id, new, outcome).await,
                        Err(ChangeError::Rejected(_)) => {
                            self.fail(ctx, row, &cred, None, e.to_string().into()).await
                        }
                        Err(_) => {
                            self.fail(ctx, row, &cred, Some(&change_id), e.to_string().into())
                                .await
                        }
                    };
                }
                Err(e @ ChangeError::Rejected(_)) if !reconcile && plan.reconcile.is_some() => {
                    let r = plan.reconcile.as_ref().map(|r| r.credential.clone());
                    match self
                        .named_login(&cred, r.as_deref().unwrap_or_default())
                        .await
                    {
                        Ok(a) => {
                            tracing::info!(credential = %id, reason = %e, "login refused: reconciling");
                            auth = a;
                            reconcile = true;
                        }
                        Err(m) => {
                            let reason = format!("{e}; reconciliation: {m}");
                            return self.fail(ctx, row, &cred, None, reason.into()).await;
                        }
                    }
                }
                // The target did not take it: the working value stands.
                Err(e) => return self.fail(ctx, row, &cred, None, e.to_string().into()).await,
            }
        };

        // Phase 3: log in with it.
        let with_new = Login {
            username: account,
            password: new.clone(),
        };
        match plugin.verify(&target, &with_new).await {
            // Phase 4: current.
            Ok(()) => self.finish(ctx, row, &change_id, new, outcome).await,
            Err(e) => {
                let reason = format!("the new password was set but does not log in: {e}");
                // Keep it pending: the next run asks the target again.
                self.fail(ctx, row, &cred, Some(&change_id), reason.into())
                    .await
            }
        }
    }

    /// The current credential and its decrypted payload (from the store, not a cache).
    async fn current_plain(&self, id: Uuid) -> ServiceResult<(Credential, SecretPayload)> {
        let c = self
            .store
            .credential_with_payload(id)
            .await?
            .ok_or_else(|| ServiceError::from(DomainError::NotFound("credential".into())))?;
        let p = self
            .decrypt_payload(id, c.credential.version, &c.payload)
            .await?;
        Ok((c.credential, p))
    }

    async fn open_pending(
        &self,
        id: Uuid,
        change_id: &str,
        blob: &[u8],
    ) -> ServiceResult<SecretString> {
        let keys = self.keys_for(blob).await?;
        let plain = keys
            .keyring
            .decrypt(blob, &pending_binding(id, change_id))
            .map_err(|_| ServiceError::Integrity)?;
        let s = std::str::from_utf8(plain.expose()).map_err(|_| ServiceError::Integrity)?;
        Ok(SecretString::from(s))
    }

    /// The login of another credential named in the settings (authentication or reconciliation):
    /// by id, identifier or name, in the same safe and on the same device as `cred`, so its
    /// password only ever goes to its own host.
    async fn named_login(&self, cred: &Credential, name: &str) -> Result<Login, String> {
        let found = match Uuid::parse_str(name) {
            Ok(aid) => self.store.get_credential(aid).await.ok().flatten(),
            Err(_) => {
                let by = |f: credvault_store::CredentialFilter| async move {
                    self.store.list_credentials(&f).await.unwrap_or_default()
                };
                let base = credvault_store::CredentialFilter {
                    safe: cred.meta.safe.clone(),
                    limit: 2,
                    ..Default::default()
                };
                let mut c = by(credvault_store::CredentialFilter {
                    identifier: Some(name.to_owned()),
                    ..base.clone()
                })
                .await;
                if c.is_empty() {
                    c = by(credvault_store::CredentialFilter {
                        name: Some(name.to_owned()),
                        ..base
                    })
                    .await;
                }
                if c.len() > 1 {
                    return Err(format!(
                        "authentication credential '{name}' names several credentials"
                    ));
                }
                c.pop()
            }
        };
        // The same safe (or, for credentials in no safe, the same owner).
        let near = |a: &Credential| {
            a.id != cred.id
                && a.meta.safe == cred.meta.safe
                && (cred.meta.safe.is_some() || a.meta.owner == cred.meta.owner)
        };
        let Some(a) = found.filter(near) else {
            return Err(format!(
                "authentication credential '{name}' not found in the credential's safe"
            ));
        };
        if !same_device(&a.meta, &cred.meta) {
            return Err(format!(
                "authentication credential '{name}' is for another device"
            ));
        }
        let (_, p) = self
            .current_plain(a.id)
            .await
            .map_err(|e| format!("authentication credential '{name}': {e}"))?;
        Ok(Login {
            username: a.meta.username,
            password: p.secret,
        })
    }

    async fn write_audit_outcome(
        &self,
        ctx: &Ctx,
        id: Uuid,
        outcome: &'static str,
        detail: Value,
    ) -> ServiceResult<crate::audit::WriteAudit> {
        self.write_audit_many(vec![crate::audit::Event {
            actor: ctx.actor.name.clone(),
            door: ctx.door,
            action: "credential.rotate",
            target: id.to_string(),
            source: ctx.source.clone(),
            outcome,
            detail,
        }])
        .await
    }

    /// Record a failed run: the reason, the next try (backoff), the lease released. `keep` is the
    /// change whose pending value stays (the target may hold it); otherwise it is dropped.
    async fn fail(
        &self,
        ctx: &Ctx,
        mut row: PasswordChangeRow,
        cred: &Credential,
        keep: Option<&str>,
        f: Failure,
    ) -> ServiceResult<RunReport> {
        let now = self.clock.now();
        if keep.is_none() {
            row.change_id = None;
            row.pending = None;
            row.started_at = None;
        }
        row.failures += 1;
        row.last_attempt_at = Some(now);
        row.last_result = Some("failed".into());
        row.last_error = Some(f.reason.chars().take(500).collect());
        let wait = time::Duration::try_from(backoff(row.failures)).unwrap_or(time::Duration::HOUR);
        // Scheduled credentials and pending values are retried; a one-off run is not.
        if keep.is_some() || every(&cred.meta).is_some() || row.next_run_at.is_some() {
            row.next_run_at = Some(now + wait);
        }
        row.lease_owner = None;
        row.lease_until = None;
        let audit = self
            .write_audit_outcome(
                ctx,
                cred.id,
                "failed",
                json!({"reason": row.last_error, "change": keep, "failures": row.failures}),
            )
            .await?;
        self.store
            .save_password_change(&row, &audit.append())
            .await?;
        Ok(RunReport {
            outcome: RunOutcome::Failed,
            version: cred.version,
            error: row.last_error,
        })
    }

    /// Phase 4: `new` becomes the credential's current version and the pending value goes, in one
    /// transaction; the next scheduled run is set; the lease is released.
    async fn finish(
        &self,
        ctx: &Ctx,
        row: PasswordChangeRow,
        change_id: &str,
        new: SecretString,
        outcome: &'static str,
    ) -> ServiceResult<RunReport> {
        let id = row.cred_id;
        let run_outcome = match outcome {
            "settled" => RunOutcome::Settled,
            "reconciled" => RunOutcome::Reconciled,
            _ => RunOutcome::Changed,
        };
        for _ in 0..16 {
            let (cur, mut payload) = self.current_plain(id).await?;
            let now = self.clock.now();
            payload.secret = new.clone();
            let next = cur.version + 1;
            let keys = self.write_keys().await?;
            let plain = zeroize::Zeroizing::new(
                serde_json::to_vec(&payload).map_err(|_| ServiceError::Integrity)?,
            );
            let v = NewVersion {
                payload: keys
                    .keyring
                    .encrypt(&plain, &format!("credvault:cred:{id}:v{next}"))?,
                operation: OPERATION.into(),
            };
            let cred = Credential {
                version: next,
                updated_at: now,
                updated_by: ctx.actor.name.clone(),
                ..cur.clone()
            };
            let mut done = row.clone();
            done.change_id = None;
            done.pending = None;
            done.started_at = None;
            done.failures = 0;
            done.last_attempt_at = Some(now);
            done.last_success_at = Some(now);
            done.last_result = Some(outcome.into());
            done.last_error = None;
            done.next_run_at = every(&cur.meta).map(|e| now + e);
            done.lease_owner = None;
            done.lease_until = None;
            let audit = self
                .write_audit_outcome(
                    ctx,
                    id,
                    outcome,
                    json!({"change": change_id, "version": next}),
                )
                .await?;
            match self
                .store
                .finish_password_change(&done, Some((&cred, cur.version, &v)), &audit.append())
                .await
            {
                Ok(()) => {
                    return Ok(RunReport {
                        outcome: run_outcome,
                        version: next,
                        error: None,
                    })
                }
                // The credential moved meanwhile (another write): apply the change to it again.
                Err(StoreError::VersionMismatch { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(
            DomainError::Conflict("the credential is being changed by too many writers".into())
                .into(),
        )
    }
}

/// A run's place in the engine's set of running credentials, left when dropped.
struct Running<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<Uuid>>,
    id: Uuid,
}

impl<'a> Running<'a> {
    fn enter(set: &'a std::sync::Mutex<std::collections::HashSet<Uuid>>, id: Uuid) -> Option<Self> {
        let mut s = set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.insert(id).then_some(Self { set, id })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_up_to_six_hours() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(4), Duration::from_secs(480));
        assert_eq!(backoff(30), Duration::from_secs(6 * 3600));
        assert_eq!(backoff(0), Duration::from_secs(60));
    }

    #[test]
    fn unknown_plugins_and_templates_are_refused_in_both_blocks() {
        assert!(check_settings(&json!({})).is_ok());
        assert!(check_settings(&json!({"execution_settings": {"automatic_change": true}})).is_ok());
        assert!(check_settings(
            &json!({"execution_settings": {"change_plugin": "postgresql", "change_template": "alter-role"}})
        )
        .is_ok());
        for bad in [
            json!({"execution_settings": {"change_plugin": "SSH", "change_template": "3COM"}}),
            json!({"execution_settings": {"change_plugin": "postgresql", "change_template": "3COM"}}),
            json!({"execution_settings": {"change_template": "alter-role"}}),
            json!({"execution_settings": {"reconciliation_plugin": "telnet"}}),
            json!({"jit_settings": {"credential_creation_plugin": "Windows RM"}}),
        ] {
            assert!(
                matches!(
                    check_settings(&bad),
                    Err(ServiceError::Domain(DomainError::Invalid { .. }))
                ),
                "{bad}"
            );
        }
    }
}
