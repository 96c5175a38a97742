//! Applications (AppID callers) in the service layer: management for admins, and the Get Password
//! read the CCP door calls. Policy for applications is their grants (`credvault_core::app`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use credvault_core::app::{AppRules, CertRule, ClientCert, Grant};
use credvault_core::ccp::{self, CcpError};
use credvault_core::model::Credential;
use credvault_core::policy::{Actor, ActorKind};
use credvault_core::{validate, DomainError};
use credvault_crypto::SecretString;
use credvault_store::{AppGrant, AppRecord, CredentialFilter, CredentialWithPayload, LookupKey};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Event;
use crate::error::{ServiceError, ServiceResult};
use crate::vault::Found;
use crate::{Ctx, Vault};

/// An application as the API shows it (never the header secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AppView {
    pub app_id: String,
    pub owner: String,
    pub description: Option<String>,
    pub sources: Vec<String>,
    pub certificates: Vec<CertRule>,
    /// Whether a header secret is required (`X-CCP-App-Secret`).
    pub header_secret: bool,
    /// Whether the application has a client secret (Vault AppRole login, OAuth client credentials).
    pub client_secret: bool,
    pub grants: Vec<Grant>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// A new application.
#[derive(Debug, Clone, Default)]
pub struct NewApp {
    pub app_id: String,
    pub description: Option<String>,
    pub sources: Vec<String>,
    pub certificates: Vec<CertRule>,
    pub header_secret: Option<SecretString>,
    /// Generate a client secret (shown once) for logins as this application.
    pub client_secret: bool,
}

/// Why a Get Password failed: the dialect's own error, or a service failure (sealed, storage, audit).
#[derive(Debug)]
pub enum GetPasswordError {
    Ccp(CcpError),
    Service(ServiceError),
}

impl From<ServiceError> for GetPasswordError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

/// A successful Get Password: the account fields and the password.
pub struct Password {
    pub fields: BTreeMap<String, String>,
    pub content: SecretString,
}

/// An Argon2id hash nobody knows the password of, verified for unknown clients.
fn unknown_client_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let random = credvault_crypto::token::generate_token();
        credvault_crypto::password::hash_password(random.expose()).unwrap_or_default()
    })
}

fn rules_of(app: &AppRecord) -> ServiceResult<AppRules> {
    serde_json::from_str(&app.rules).map_err(|_| ServiceError::Integrity)
}

fn grant_parts(g: &Grant) -> (&'static str, &str) {
    match g {
        Grant::Safe(s) => ("safe", s),
        Grant::SafeWrite(s) => ("safe-write", s),
        Grant::Credential(c) => ("credential", c),
    }
}

impl Vault {
    async fn app_view(&self, app: AppRecord) -> ServiceResult<AppView> {
        let rules = rules_of(&app)?;
        let rows = self.store.app_grants(&app.app_id).await?;
        // A write grant is stored as two rows ("safe" for every read path, "safe-write"): show one.
        let writable = |t: &str| rows.iter().any(|g| g.kind == "safe-write" && g.target == t);
        let grants = rows
            .iter()
            .filter_map(|AppGrant { kind: k, target: t }| match k.as_str() {
                "safe" if !writable(t) => Some(Grant::Safe(t.clone())),
                "safe-write" => Some(Grant::SafeWrite(t.clone())),
                "credential" => Some(Grant::Credential(t.clone())),
                _ => None,
            })
            .collect();
        Ok(AppView {
            app_id: app.app_id,
            owner: app.owner,
            description: app.description,
            sources: rules.sources,
            certificates: rules.certificates,
            header_secret: rules.header_secret_hash.is_some(),
            client_secret: rules.client_secret_hash.is_some(),
            grants,
            created_at: app.created_at,
        })
    }

    async fn load_app(&self, app_id: &str) -> ServiceResult<AppRecord> {
        self.store
            .get_app(app_id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("application '{app_id}'")).into())
    }

    /// Create an application. With `client_secret`, the generated secret is returned once.
    pub async fn create_app(
        &self,
        ctx: &Ctx,
        new: NewApp,
    ) -> ServiceResult<(AppView, Option<SecretString>)> {
        self.require_admin(ctx)?;
        validate::principal_name("app_id", &new.app_id)?;
        let keys = self.barrier.keys().await?;
        let client_secret = new
            .client_secret
            .then(|| credvault_crypto::token::random_b64(32));
        let client_secret_hash = match &client_secret {
            Some(s) => Some(credvault_crypto::password::hash_password(s.expose())?),
            None => None,
        };
        let rules = AppRules {
            client_secret_hash,
            sources: new.sources,
            certificates: new.certificates,
            header_secret_hash: new
                .header_secret
                .as_ref()
                .map(|s| keys.tokens.app_secret_hash(s.expose())),
        };
        rules.validate()?;
        if let Some(s) = &new.header_secret {
            if s.len() < 16 {
                return Err(DomainError::invalid(
                    "header_secret",
                    "must be at least 16 characters",
                )
                .into());
            }
        }
        let rec = AppRecord {
            app_id: new.app_id.clone(),
            owner: ctx.actor.name.clone(),
            description: new.description,
            rules: serde_json::to_string(&rules).map_err(|_| ServiceError::Integrity)?,
            created_at: self.clock.now(),
        };
        let detail = json!({"sources": rules.sources, "certificates": rules.certificates.len(), "header_secret": rules.header_secret_hash.is_some(), "client_secret": rules.client_secret_hash.is_some()});
        let audit = self
            .write_audit(ctx, "app.create", &rec.app_id, detail)
            .await?;
        self.store.create_app(&rec, &audit.append()).await?;
        self.caches.apps.invalidate();
        Ok((self.app_view(rec).await?, client_secret))
    }

    /// An application and its grants, from the cache when it is live (`cache.rs`).
    pub(crate) async fn app_entry(
        &self,
        app_id: &str,
    ) -> ServiceResult<Option<std::sync::Arc<crate::cache::AppEntry>>> {
        let (feed, cache) = (self.store.feed(), &self.caches.apps);
        let key = app_id.to_owned();
        if let Some(e) = cache.get(feed, &key) {
            return Ok(Some(e));
        }
        let ticket = cache.ticket(feed);
        let Some(app) = self.store.get_app(app_id).await? else {
            return Ok(None);
        };
        let grants = self.store.app_grants(app_id).await?;
        let entry = std::sync::Arc::new(crate::cache::AppEntry { app, grants });
        cache.fill(feed, ticket, key, entry.clone());
        Ok(Some(entry))
    }

    /// Check an application's client secret and source rules (Vault AppRole login; OAuth client
    /// credentials). Failures count against the source's failed-authentication limit.
    pub async fn authenticate_app_client(
        &self,
        app_id: &str,
        secret: &str,
        source: IpAddr,
    ) -> ServiceResult<AppRecord> {
        self.limiter.check(source)?;
        let app = self.store.get_app(app_id).await?;
        let ok = match &app {
            Some(a) => {
                let rules = rules_of(a)?;
                let secret_ok = rules
                    .client_secret_hash
                    .as_deref()
                    .is_some_and(|h| credvault_crypto::password::verify_password(secret, h));
                secret_ok && rules.source_allowed(source)
            }
            None => {
                // As long as for a known client: the time does not tell which AppIDs exist.
                let _ = credvault_crypto::password::verify_password(secret, unknown_client_hash());
                false
            }
        };
        match app {
            Some(a) if ok => Ok(a),
            _ => Err(self
                .limiter
                .refuse(source, DomainError::Unauthenticated.into())),
        }
    }

    /// Log in as an application: a token acting as `app:<AppID>` for `ttl`, limited to its grants.
    pub async fn app_login(
        &self,
        app_id: &str,
        secret: &str,
        source: IpAddr,
        door: &'static str,
        ttl: time::Duration,
    ) -> ServiceResult<(credvault_core::model::TokenInfo, SecretString)> {
        let result = self.authenticate_app_client(app_id, secret, source).await;
        if result.is_err() {
            // A refusal leaves its own record (best effort: refused either way); a login's record
            // commits with its token.
            // Summarised per source and period when repeated (`refusals.rs`).
            self.audit_refusal(Event {
                actor: format!("app:{app_id}"),
                door,
                action: "app.login",
                target: app_id.to_owned(),
                source: source.to_string(),
                outcome: "denied",
                detail: json!({}),
            })
            .await;
        }
        let app = result?;
        let ctx = Ctx {
            actor: Actor {
                name: format!("app:{app_id}"),
                kind: ActorKind::App,
                groups: vec![],
            },
            source: source.to_string(),
            door,
        };
        self.issue_token(
            &ctx,
            "app.login",
            &format!("app:{}", app.app_id),
            Some(self.clock.now() + ttl),
            Some(format!("{door} login")),
            |_| (app_id.to_owned(), json!({})),
        )
        .await
    }

    /// An application actor's permissions: read (and list) on the safes it was granted, and write
    /// on those granted for writing (`safe-write`).
    pub(crate) async fn app_safe_perms(
        &self,
        actor: &credvault_core::policy::Actor,
        safe: &str,
    ) -> ServiceResult<credvault_core::model::Perms> {
        let app_id = actor.name.strip_prefix("app:").unwrap_or_default();
        let Some(entry) = self.app_entry(app_id).await? else {
            return Ok(credvault_core::model::Perms::NONE);
        };
        Ok(credvault_core::policy::app_safe_perms(
            entry
                .grants
                .iter()
                .map(|g| (g.kind.as_str(), g.target.as_str())),
            safe,
        ))
    }

    pub async fn list_apps(&self, ctx: &Ctx) -> ServiceResult<Vec<AppView>> {
        self.require_admin(ctx)?;
        let mut out = Vec::new();
        for a in self.store.list_apps().await? {
            out.push(self.app_view(a).await?);
        }
        Ok(out)
    }

    pub async fn get_app(&self, ctx: &Ctx, app_id: &str) -> ServiceResult<AppView> {
        self.require_admin(ctx)?;
        let app = self.load_app(app_id).await?;
        self.app_view(app).await
    }

    /// Give an application a new client secret (the first one, or a replacement: the old one stops
    /// working at once). Returned this once; stored as an Argon2id hash.
    pub async fn new_app_client_secret(
        &self,
        ctx: &Ctx,
        app_id: &str,
    ) -> ServiceResult<(AppView, SecretString)> {
        self.require_admin(ctx)?;
        let app = self.load_app(app_id).await?;
        let mut rules = rules_of(&app)?;
        let secret = credvault_crypto::token::random_b64(32);
        rules.client_secret_hash =
            Some(credvault_crypto::password::hash_password(secret.expose())?);
        let json = serde_json::to_string(&rules).map_err(|_| ServiceError::Integrity)?;
        let audit = self
            .write_audit(ctx, "app.client_secret", app_id, json!({}))
            .await?;
        self.store
            .set_app_rules(app_id, &json, &audit.append())
            .await?;
        self.caches.apps.invalidate();
        let app = self.load_app(app_id).await?;
        Ok((self.app_view(app).await?, secret))
    }

    pub async fn delete_app(&self, ctx: &Ctx, app_id: &str) -> ServiceResult<()> {
        self.require_admin(ctx)?;
        let audit = self
            .write_audit(ctx, "app.delete", app_id, json!({}))
            .await?;
        self.store.delete_app(app_id, &audit.append()).await?;
        self.caches.apps.invalidate();
        Ok(())
    }

    /// Allow (`true`) or deny an application a safe or a credential.
    pub async fn set_app_grant(
        &self,
        ctx: &Ctx,
        app_id: &str,
        grant: &Grant,
        allow: bool,
    ) -> ServiceResult<AppView> {
        self.require_admin(ctx)?;
        let app = self.load_app(app_id).await?;
        let (kind, target) = grant_parts(grant);
        if allow {
            let exists = match grant {
                Grant::Safe(s) | Grant::SafeWrite(s) => self.store.get_safe(s).await?.is_some(),
                Grant::Credential(c) => match Uuid::parse_str(c) {
                    Ok(id) => self.store.get_credential(id).await?.is_some(),
                    Err(_) => false,
                },
            };
            if !exists {
                return Err(DomainError::invalid("name", format!("no {kind} '{target}'")).into());
            }
        }
        let action = if allow { "app.allow" } else { "app.deny" };
        let audit = self
            .write_audit(ctx, action, app_id, json!({"type": kind, "name": target}))
            .await?;
        let audit = audit.append();
        match (allow, grant) {
            // Writing implies reading: every read path looks for the "safe" row.
            (true, Grant::SafeWrite(_)) => {
                self.store
                    .grant_app(app_id, &[kind, "safe"], target, &audit)
                    .await?
            }
            (true, _) => {
                self.store
                    .grant_app(app_id, &[kind], target, &audit)
                    .await?
            }
            // Taking a safe away takes writing too (if it was given).
            (false, Grant::Safe(_)) => {
                self.store
                    .revoke_app(app_id, kind, target, &["safe-write"], &audit)
                    .await?
            }
            (false, _) => {
                self.store
                    .revoke_app(app_id, kind, target, &[], &audit)
                    .await?
            }
        }
        self.caches.apps.invalidate();
        self.app_view(app).await
    }

    /// Audit a CCP call refused before it could be parsed (no AppID, malformed query). Best effort:
    /// the call is refused either way.
    pub async fn audit_unparsed_ccp_call(
        &self,
        params: &[(String, String)],
        source: IpAddr,
        code: &str,
    ) {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let app_id = get("AppID").unwrap_or_default();
        self.audit_refusal(Event {
            actor: format!("app:{app_id}"),
            door: "ccp",
            action: "ccp.get_password",
            target: String::new(),
            source: source.to_string(),
            outcome: "refused",
            detail: json!({"app_id": app_id, "query": get("Query"), "reason": get("Reason"), "error_code": code}),
        })
        .await;
    }

    /// Get Password for an application (the CCP door): the CCP lookup (`find_for_app`: the
    /// application's rules, then its query inside its grants), then the one read path
    /// (`open_found`). Every call is audited, granted or refused.
    pub async fn app_get_password(
        &self,
        req: &ccp::Request,
        source: IpAddr,
        header_secret: Option<&str>,
        cert: Option<&ClientCert>,
    ) -> Result<Password, GetPasswordError> {
        let ctx = Ctx {
            actor: Actor {
                name: format!("app:{}", req.app_id),
                kind: ActorKind::App,
                groups: vec![],
            },
            source: source.to_string(),
            door: "ccp",
        };
        let detail = |code: Option<&str>| json!({"app_id": req.app_id, "query": req.query_text, "reason": req.reason, "error_code": code});
        let found = match self.find_for_app(req, source, header_secret, cert).await {
            Ok(found) => found,
            Err(e) => {
                let (outcome, code) = match &e {
                    GetPasswordError::Ccp(c) if c.status == 403 => ("denied", Some(c.code)),
                    GetPasswordError::Ccp(c) => ("refused", Some(c.code)),
                    GetPasswordError::Service(ServiceError::RateLimited) => {
                        ("refused", Some("rate_limited"))
                    }
                    GetPasswordError::Service(_) => ("error", None),
                };
                // Best effort: the call is refused either way. Refusals (not service errors) are
                // summarised per source and period when repeated (`refusals.rs`).
                let event = Event {
                    actor: ctx.actor.name.clone(),
                    door: ctx.door,
                    action: "ccp.get_password",
                    target: String::new(),
                    source: ctx.source.clone(),
                    outcome,
                    detail: detail(code),
                };
                if code.is_some() {
                    self.audit_refusal(event).await;
                } else {
                    let _ = self.auditor.record(event).await;
                }
                return Err(e);
            }
        };
        let mut fields = ccp::account(&found.cred.meta);
        // A change in flight (`pwchange.rs`): the working value is still the one answered.
        if self.change_in_flight(found.cred.id).await? {
            fields.insert("PasswordChangeInProcess".into(), "True".into());
        }
        let read = self
            .open_found(&ctx, found, "ccp.get_password", detail(None))
            .await?;
        Ok(Password {
            fields,
            content: read.secret,
        })
    }

    /// Candidates through a case-folded index (object name, user name or address), inside the grants.
    async fn indexed_candidates(
        &self,
        req: &ccp::Request,
        grants: &[AppGrant],
        (prop, value): (&'static str, String),
    ) -> Result<Vec<CredentialWithPayload>, GetPasswordError> {
        let pick = |kind: &str| {
            grants
                .iter()
                .filter(|g| g.kind == kind)
                .map(|g| g.target.clone())
                .collect::<Vec<_>>()
        };
        let (safes, ids) = (pick("safe"), pick("credential"));
        let keys: &[LookupKey] = match prop {
            "Object" => &[LookupKey::Name],
            "UserName" => &[LookupKey::Username],
            _ => &[LookupKey::Hostname, LookupKey::Ip],
        };
        let mut out = Vec::new();
        for key in keys {
            let q = crate::cache::LookupQuery {
                key: *key,
                value: value.clone(),
                safes: safes.clone(),
                ids: ids.clone(),
            };
            let rows = self.lookup(q).await?;
            out.extend(
                rows.iter()
                    .filter(|r| ccp::matches(req, &r.credential.meta))
                    .cloned(),
            );
        }
        Ok(out)
    }

    /// Candidates by walking the granted safes page by page (regular expressions, prefixes, or a
    /// query without object, user name or address). Stops as soon as two match.
    async fn scanned_candidates(
        &self,
        req: &ccp::Request,
        grants: &[AppGrant],
    ) -> Result<Vec<Credential>, GetPasswordError> {
        let mut found: Vec<Credential> = Vec::new();
        for AppGrant { kind, target } in grants {
            match kind.as_str() {
                // A query naming another safe cannot match here: not a page of it is read.
                "safe" if !ccp::may_match_safe(req, target) => {}
                "safe" => {
                    let mut after = None;
                    loop {
                        let page = self
                            .store
                            .list_credentials(&CredentialFilter {
                                safe: Some(target.clone()),
                                after,
                                limit: 1000,
                                ..Default::default()
                            })
                            .await
                            .map_err(ServiceError::from)?;
                        after = page.last().map(|c| c.id);
                        let done = page.len() < 1000;
                        found.extend(page.into_iter().filter(|c| ccp::matches(req, &c.meta)));
                        if done || found.len() > 1 {
                            break;
                        }
                    }
                }
                "credential" => {
                    if let Ok(id) = Uuid::parse_str(target) {
                        if let Some(c) = self
                            .store
                            .get_credential(id)
                            .await
                            .map_err(ServiceError::from)?
                        {
                            if ccp::matches(req, &c.meta) {
                                found.push(c);
                            }
                        }
                    }
                }
                _ => {}
            }
            if found.len() > 1 {
                break;
            }
        }
        Ok(found)
    }

    /// The CCP lookup: the application and its rules, then the one credential its query names
    /// inside its grants ("not granted" and "not found" are the same answer).
    async fn find_for_app(
        &self,
        req: &ccp::Request,
        source: IpAddr,
        header_secret: Option<&str>,
        cert: Option<&ClientCert>,
    ) -> Result<Found, GetPasswordError> {
        // Unknown AppIDs and failed authentications count against the source, like wrong tokens:
        // neither AppIDs nor header secrets can be guessed at full speed.
        self.limiter.check(source)?;
        let keys = self.barrier.keys().await?;
        let Some(entry) = self.app_entry(&req.app_id).await? else {
            return Err(self.limiter.refuse(
                source,
                GetPasswordError::Ccp(CcpError::unknown_app(&req.app_id)),
            ));
        };
        let rules = rules_of(&entry.app)?;
        let sent_hash = header_secret.map(|s| keys.tokens.app_secret_hash(s));
        let header_ok = |stored: &str| {
            sent_hash
                .as_deref()
                .is_some_and(|h| credvault_crypto::token::ct_eq(h.as_bytes(), stored.as_bytes()))
        };
        if !rules.authenticate(source, header_ok, cert) {
            // A wrong header secret, a missing or wrong client certificate, or a source outside
            // the rules: counted like a wrong token, answered 429 once over the quota.
            return Err(self.limiter.refuse(
                source,
                GetPasswordError::Ccp(CcpError::authentication_failed(&req.app_id)),
            ));
        }
        let grants = &entry.grants;
        // Candidates with their payload when the indexed lookup brought it (one round trip).
        let mut found: Vec<(Credential, Option<Vec<u8>>)> = match ccp::index_hint(req) {
            Some(hint) => self
                .indexed_candidates(req, grants, hint)
                .await?
                .into_iter()
                .map(|r| (r.credential, Some(r.payload)))
                .collect(),
            None => self
                .scanned_candidates(req, grants)
                .await?
                .into_iter()
                .map(|c| (c, None))
                .collect(),
        };
        found.sort_by_key(|(c, _)| c.id);
        found.dedup_by_key(|(c, _)| c.id);
        if found.len() > 1 {
            return Err(GetPasswordError::Ccp(CcpError::too_many(&req.query_text)));
        }
        let Some((cred, payload)) = found.pop() else {
            return Err(GetPasswordError::Ccp(CcpError::not_found(&req.query_text)));
        };
        if req.fail_on_password_change
            && (ccp::password_changing(&cred.meta) || self.change_in_flight(cred.id).await?)
        {
            return Err(GetPasswordError::Ccp(CcpError::password_changing(
                &req.query_text,
            )));
        }
        let (cred, blob) = match payload {
            Some(p) => (cred, p),
            None => self
                .current(cred.id)
                .await?
                .map(|r| (r.credential, r.payload))
                .ok_or_else(|| GetPasswordError::Ccp(CcpError::not_found(&req.query_text)))?,
        };
        Ok(Found {
            version: cred.version,
            cred,
            blob,
            latest: true,
        })
    }
}
