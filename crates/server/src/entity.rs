//! Entity credentials (seed 004): key/value parameters bound to a package (`PKG`) or a connection of
//! a package (`PKG.CONN`), written and read with an API key.
//!
//! - Legacy form: `POST|GET /api/credentials/for/{entity}`; a GET answers `{"parameters": {...}}` or
//!   `null` ("not set"), and a caller who may not read gets the same `null` (audited as denied).
//! - Public REST form: `GET /api/public/v1/credentials/for/{entity}`, `POST /api/public/v1/credentials`,
//!   `DELETE /api/public/v1/credentials/{id}` with `parameters`, redacted `openParameters`,
//!   `entityBindId` and `group` (the owner; a user owner is its personal group, `personal: true`).
//!   Nothing set, or nothing the caller may read, is the same 404 with an error body. A save keeps
//!   the owner unless `group` names another one (`owner_change`), whatever fields a client adds to
//!   or drops from the `group` it read.
//!
//! Each entity is one ordinary credential with identifier `entity:<entity>` (prefix owned by the door
//! `entity`), its parameters the payload's `parameters`, versioned and audited like any credential.
//! Owner: given on write, default the built-in group `all-users` (everyone reads). Who may read: the
//! owner's members (everyone for `all-users`), the creator, admins. Who may write or change the owner:
//! the creator, a user owner or member of an owner group other than `all-users`, admins. A connection
//! `PKG.CONN` under an existing package also needs the package's writers (`policy::entity_connection_allowed`).
//! API keys are tokens (`credvault apikey ...`): `Authorization: <key>` or `Bearer <key>`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use credvault_core::model::{Credential, CredentialMeta, Owner, OwnerKind, SecretPayload};
use credvault_core::policy::{self, is_all_users, Actor, ActorKind, ALL_USERS};
use credvault_core::{validate, DomainError};
use credvault_crypto::SecretString;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::error::{ServiceError, ServiceResult};
use crate::native::{source_ip, ApiError, ApiPath, ApiQuery};
use crate::service::{Ctx, Vault};
use crate::AppState;

pub const DOOR: &str = "entity";

/// `PKG` or `PKG.CONN`, each 1..=64 of `[A-Za-z0-9_-]`.
pub fn check_entity(entity: &str) -> Result<(), DomainError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let mut parts = entity.split('.');
    let valid = match (parts.next(), parts.next(), parts.next()) {
        (Some(p), None, None) => ok_part(p),
        (Some(p), Some(c), None) => ok_part(p) && ok_part(c),
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "entity",
            "must be PACKAGE or PACKAGE.CONNECTION, each 1 to 64 letters, digits, '_' or '-'",
        ))
    }
}

fn identifier(entity: &str) -> String {
    format!("entity:{entity}")
}

/// A stored entity credential, decrypted.
pub struct EntityCredential {
    pub id: Uuid,
    pub entity: String,
    pub owner: Owner,
    pub version: i64,
    pub parameters: BTreeMap<String, SecretString>,
}

fn may_read(actor: &Actor, cred: &Credential) -> bool {
    policy::entity_may_read(actor, cred.meta.owner.as_ref(), &cred.created_by)
}

fn may_write(actor: &Actor, cred: &Credential) -> bool {
    policy::entity_may_write(actor, cred.meta.owner.as_ref(), &cred.created_by)
}

fn as_package(cred: &Credential) -> policy::EntityPackage<'_> {
    policy::EntityPackage {
        owner: cred.meta.owner.as_ref(),
        created_by: &cred.created_by,
    }
}

impl Vault {
    /// The same caller with the right to write what the entity rules above allowed: the generic
    /// policy does not know "creator", so the entity door decides and then writes as admin. The
    /// audit still names the caller.
    fn entity_writer(ctx: &Ctx) -> Ctx {
        Ctx {
            actor: Actor {
                kind: ActorKind::Admin,
                ..ctx.actor.clone()
            },
            ..ctx.clone()
        }
    }

    async fn entity_find(&self, entity: &str) -> ServiceResult<Option<Credential>> {
        check_entity(entity)?;
        Ok(self
            .store
            .credential_by_identifier(&identifier(entity))
            .await?)
    }

    /// The package `PKG` of a connection `PKG.CONN` (`None` for a package or a missing package).
    async fn entity_package(&self, entity: &str) -> ServiceResult<Option<Credential>> {
        match entity.split_once('.') {
            Some((pkg, _)) => self.entity_find(pkg).await,
            None => Ok(None),
        }
    }

    /// The actor a credential's creator would be now (its admin flag and groups), for rules that
    /// ask what the creator may do; a user that no longer exists may do nothing.
    async fn actor_named(&self, name: &str) -> ServiceResult<Actor> {
        if name == "root" {
            return Ok(Actor::root());
        }
        match self.store.get_user(name).await? {
            Some(user) => self.actor_of_user(user).await,
            None => Ok(Actor {
                name: name.to_owned(),
                kind: ActorKind::User,
                groups: vec![],
            }),
        }
    }

    /// Whether a stored connection stands in its package's namespace: its creator may write the
    /// package (`policy::entity_connection_allowed`), or there is no package. One that does not
    /// (made before the package by someone else) reads as not set and may be replaced.
    async fn entity_stands(
        &self,
        cred: &Credential,
        package: Option<&Credential>,
    ) -> ServiceResult<bool> {
        let Some(pkg) = package else { return Ok(true) };
        let creator = self.actor_named(&cred.created_by).await?;
        Ok(policy::entity_connection_allowed(
            &creator,
            Some(as_package(pkg)),
        ))
    }

    /// Read an entity's parameters: `None` when not set or when the caller may not read it
    /// (indistinguishable, as the contract requires; a refusal is audited as denied).
    pub async fn entity_get(
        &self,
        ctx: &Ctx,
        entity: &str,
    ) -> ServiceResult<Option<EntityCredential>> {
        let Some(cred) = self.entity_find(entity).await? else {
            return Ok(None);
        };
        let package = self.entity_package(entity).await?;
        if !may_read(&ctx.actor, &cred) || !self.entity_stands(&cred, package.as_ref()).await? {
            let _ = self
                .audit(
                    ctx,
                    "credential.read_secret",
                    cred.id.to_string(),
                    "denied",
                    json!({"entity": entity}),
                )
                .await;
            return Ok(None);
        }
        let read = self
            .read_secret(&Self::entity_writer(ctx), cred.id, None)
            .await?;
        Ok(Some(EntityCredential {
            id: cred.id,
            entity: entity.to_owned(),
            owner: cred.meta.owner.clone().unwrap_or(Owner {
                kind: OwnerKind::Group,
                name: ALL_USERS.into(),
            }),
            version: read.version,
            parameters: read.parameters,
        }))
    }

    /// Check that the caller may give ownership to `owner`: itself, a group it belongs to, or
    /// `all-users`; admins any existing principal.
    fn entity_owner_allowed(ctx: &Ctx, owner: &Owner) -> ServiceResult<()> {
        if ctx.actor.is_admin()
            || is_all_users(owner)
            || ctx.actor.is_principal(owner.kind, &owner.name)
        {
            Ok(())
        } else {
            Err(DomainError::invalid(
                "owner",
                "you can only give ownership to yourself, a group you belong to, or all-users",
            )
            .into())
        }
    }

    /// Set an entity's parameters (a new version), creating it on first write. `owner` None keeps the
    /// current owner (default `all-users` for a new entity).
    pub async fn entity_set(
        &self,
        ctx: &Ctx,
        entity: &str,
        parameters: BTreeMap<String, SecretString>,
        owner: Option<Owner>,
    ) -> ServiceResult<Credential> {
        if ctx.actor.kind == ActorKind::App {
            return Err(DomainError::Forbidden.into());
        }
        for k in parameters.keys() {
            validate::parameter_key(k)?;
        }
        let writer = Self::entity_writer(ctx);
        let payload = SecretPayload {
            secret: SecretString::default(),
            parameters,
        };
        for _ in 0..2 {
            // A connection lives in its package's namespace: under an existing package only
            // someone who may write the package makes one (or replaces one that does not stand).
            let package = self.entity_package(entity).await?;
            let allowed_here =
                policy::entity_connection_allowed(&ctx.actor, package.as_ref().map(as_package));
            let mut current = self.entity_find(entity).await?;
            if let Some(cur) = &current {
                if !self.entity_stands(cur, package.as_ref()).await? {
                    if !allowed_here {
                        self.audit_denied(ctx, "credential.update", cur.id.to_string())
                            .await;
                        return Err(DomainError::Forbidden.into());
                    }
                    if let Some(o) = &owner {
                        Self::entity_owner_allowed(ctx, o)?;
                    }
                    match self.delete_credential(&writer, cur.id).await {
                        Ok(()) | Err(ServiceError::Domain(DomainError::NotFound(_))) => {}
                        Err(e) => return Err(e),
                    }
                    current = None;
                }
            } else if !allowed_here {
                self.audit_denied(ctx, "credential.create", identifier(entity))
                    .await;
                return Err(DomainError::Forbidden.into());
            }
            if let Some(cur) = current {
                if !may_write(&ctx.actor, &cur) {
                    let _ = self
                        .audit(
                            ctx,
                            "credential.update",
                            cur.id.to_string(),
                            "denied",
                            json!({"entity": entity}),
                        )
                        .await;
                    return Err(DomainError::Forbidden.into());
                }
                if let Some(o) = &owner {
                    Self::entity_owner_allowed(ctx, o)?;
                }
                let p = payload.clone();
                let o = owner.clone();
                return self
                    .update_credential(&writer, cur.id, None, "entity.set", move |meta, pl| {
                        *pl = p.clone();
                        if let Some(o) = &o {
                            meta.owner = Some(o.clone());
                        }
                        Ok(())
                    })
                    .await;
            }
            if let Some(o) = &owner {
                Self::entity_owner_allowed(ctx, o)?;
            }
            let meta = CredentialMeta {
                identifier: Some(identifier(entity)),
                owner: Some(owner.clone().unwrap_or(Owner {
                    kind: OwnerKind::Group,
                    name: ALL_USERS.into(),
                })),
                ..CredentialMeta::named(entity.to_owned())
            };
            match self.create_credential(&writer, meta, payload.clone()).await {
                // Another writer created it first: go again as an update (with its rules).
                Err(ServiceError::Domain(DomainError::Conflict(_))) => continue,
                other => return other,
            }
        }
        Err(
            DomainError::Conflict("the entity is being written concurrently; try again".into())
                .into(),
        )
    }

    /// Delete an entity credential by its id (public REST form).
    pub async fn entity_delete(&self, ctx: &Ctx, id: Uuid) -> ServiceResult<()> {
        let cred = self
            .store
            .get_credential(id)
            .await?
            .filter(|c| {
                c.meta
                    .identifier
                    .as_deref()
                    .is_some_and(|i| i.starts_with("entity:"))
            })
            .ok_or_else(|| DomainError::NotFound("credential".into()))?;
        if !may_write(&ctx.actor, &cred) {
            return Err(if may_read(&ctx.actor, &cred) {
                DomainError::Forbidden.into()
            } else {
                DomainError::NotFound("credential".into()).into()
            });
        }
        self.delete_credential(&Self::entity_writer(ctx), id).await
    }
}

// ------------------------------------------------------------------------------------------- door

/// The caller, by API key: `Authorization: <key>`, `Authorization: Bearer <key>` or `X-Vault-Token`.
pub struct KeyCaller(pub Ctx);

impl FromRequestParts<AppState> for KeyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let ip = source_ip(parts);
        let key = crate::auth::token_from_headers(&parts.headers).or_else(|| {
            parts
                .headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.contains(' '))
        });
        let actor = s.vault.authenticate(key.as_deref(), ip).await.map_err(|e| match e {
            ServiceError::Domain(DomainError::Unauthenticated) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing, invalid, expired or revoked API key (send it in the Authorization header)",
            ),
            other => other.into(),
        })?;
        if actor.kind == ActorKind::App {
            return Err(ApiError::from(ServiceError::from(DomainError::Forbidden)));
        }
        Ok(KeyCaller(Ctx {
            actor,
            source: ip.to_string(),
            door: DOOR,
        }))
    }
}

/// A flat JSON object of string parameters.
pub(crate) fn parameters(v: &Value) -> Result<BTreeMap<String, SecretString>, ApiError> {
    let Value::Object(m) = v else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object of parameters, e.g. {\"login\": \"...\", \"password\": \"...\"}",
        ));
    };
    if m.len() > validate::MAX_PARAMS {
        return Err(ApiError::bad_request(format!(
            "at most {} parameters",
            validate::MAX_PARAMS
        )));
    }
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), SecretString::new(s.clone()))),
            _ => Err(ApiError::bad_request(format!(
                "the value of '{k}' must be a string"
            ))),
        })
        .collect()
}

pub(crate) fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not valid JSON: {}",
            crate::native::error::scrub(&e.to_string())
        ))
    })
}

fn owner_param(s: &str) -> Result<Owner, ApiError> {
    let (kind, name) = s
        .split_once(':')
        .ok_or_else(|| ApiError::bad_request("owner must be user:NAME or group:NAME"))?;
    let kind = OwnerKind::parse(kind)
        .ok_or_else(|| ApiError::bad_request("owner must be user:NAME or group:NAME"))?;
    Ok(Owner {
        kind,
        name: name.to_owned(),
    })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetQuery {
    /// `user:NAME` or `group:NAME` (default: all-users for a new entity, unchanged otherwise).
    pub owner: Option<String>,
}

async fn legacy_get(
    State(s): State<AppState>,
    KeyCaller(ctx): KeyCaller,
    ApiPath(entity): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(match s.vault.entity_get(&ctx, &entity).await? {
        Some(e) => Json(json!({"parameters": e.parameters})).into_response(),
        None => Json(Value::Null).into_response(),
    })
}

async fn legacy_set(
    State(s): State<AppState>,
    KeyCaller(ctx): KeyCaller,
    ApiPath(entity): ApiPath<String>,
    ApiQuery(q): ApiQuery<SetQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = parameters(&json_body(&body)?)?;
    let owner = q.owner.as_deref().map(owner_param).transpose()?;
    let c = s.vault.entity_set(&ctx, &entity, params, owner).await?;
    Ok(Json(json!({"success": true, "id": c.id, "version": c.version})).into_response())
}

/// The owner as the public form's `group`. A user owner is that user's personal group
/// (`personal: true`), so its kind survives a client that drops `type`; `friendlyName` is the name.
fn group_shape(o: &Owner) -> Value {
    json!({
        "name": o.name,
        "friendlyName": o.name,
        "personal": o.kind == OwnerKind::User,
        "type": o.kind.as_str(),
    })
}

/// What a saved `group` names: `None` when it names no one (absent, `null`, or without a name), else
/// the name and the kind it states, if any: `type` (`user` or `group`) or `personal: true` (a user's
/// personal group). `personal: false` states nothing (it is a client model's default), and any
/// other field a client adds (`id`, `friendlyName`, ...) is ignored.
fn group_named(g: Option<&Value>) -> Result<Option<(String, Option<OwnerKind>)>, ApiError> {
    let g = match g {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(g)) => g,
        Some(_) => return Err(ApiError::bad_request("group must be an object")),
    };
    let name = match g.get("name") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err(ApiError::bad_request("group.name must be a string")),
    };
    let by_type = match g.get("type") {
        None | Some(Value::Null) => None,
        Some(t) => Some(
            t.as_str()
                .and_then(OwnerKind::parse)
                .ok_or_else(|| ApiError::bad_request("group.type must be user or group"))?,
        ),
    };
    let personal = match g.get("personal") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(p)) => *p,
        Some(_) => {
            return Err(ApiError::bad_request(
                "group.personal must be true or false",
            ))
        }
    };
    let kind = match (by_type, personal) {
        (Some(OwnerKind::Group), true) => {
            return Err(ApiError::bad_request(
                "group.personal is true (a user's personal group) but group.type is group",
            ))
        }
        (Some(k), _) => Some(k),
        (None, true) => Some(OwnerKind::User),
        (None, false) => None,
    };
    Ok(Some((name, kind)))
}

/// The owner a public save asks for, against the entity's `current` owner (`None`: not set yet).
/// An owner equal to the current one, or a name without a stated kind that is the current owner's
/// name (a client that dropped `type`), is no change (`None`); a change of owner is explicit: a
/// different name (a group unless a kind is stated), or the same name with the other kind stated.
fn owner_change(
    asked: Option<(String, Option<OwnerKind>)>,
    current: Option<&Owner>,
) -> Option<Owner> {
    let (name, kind) = asked?;
    let unchanged = current.is_some_and(|c| c.name == name && kind.is_none_or(|k| k == c.kind));
    (!unchanged).then(|| Owner {
        kind: kind.unwrap_or(OwnerKind::Group),
        name,
    })
}

fn public_shape(e: &EntityCredential) -> Value {
    let open: Map<String, Value> = e
        .parameters
        .keys()
        .map(|k| (k.clone(), Value::String("***".into())))
        .collect();
    json!({
        "id": e.id,
        "parameters": e.parameters,
        "openParameters": open,
        "entityBindId": e.entity,
        "group": group_shape(&e.owner),
        "version": e.version,
    })
}

async fn public_get(
    State(s): State<AppState>,
    KeyCaller(ctx): KeyCaller,
    ApiPath(entity): ApiPath<String>,
) -> Result<Response, ApiError> {
    // Unlike the legacy form, nothing set is an HTTP error, and one the caller may not read is the
    // very same answer.
    match s.vault.entity_get(&ctx, &entity).await? {
        Some(e) => Ok(Json(public_shape(&e)).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("credentials are not set for {entity}"),
        )),
    }
}

async fn public_save(
    State(s): State<AppState>,
    KeyCaller(ctx): KeyCaller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = json_body(&body)?;
    let Value::Object(m) = &b else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    // What a GET answered may come back whole: `id`, `openParameters` and `version` are ignored.
    if let Some(k) = m.keys().find(|k| {
        !matches!(
            k.as_str(),
            "id" | "entityBindId" | "parameters" | "openParameters" | "group" | "version"
        )
    }) {
        return Err(ApiError::bad_request(format!("unknown field '{k}'")));
    }
    let entity = m
        .get("entityBindId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("entityBindId is required"))?;
    let params = parameters(m.get("parameters").unwrap_or(&Value::Null))?;
    let owner = match group_named(m.get("group"))? {
        None => None,
        asked => {
            // Compared with the stored owner whether or not the caller may read it: a caller who
            // may not write gets 403 either way (the write checks permission before the owner).
            let current = s.vault.entity_find(entity).await?.map(|c| {
                c.meta.owner.unwrap_or(Owner {
                    kind: OwnerKind::Group,
                    name: ALL_USERS.into(),
                })
            });
            owner_change(asked, current.as_ref())
        }
    };
    s.vault.entity_set(&ctx, entity, params, owner).await?;
    let saved = s
        .vault
        .entity_get(&ctx, entity)
        .await?
        .map(|e| public_shape(&e))
        .unwrap_or(Value::Null);
    Ok(Json(saved).into_response())
}

async fn public_delete(
    State(s): State<AppState>,
    KeyCaller(ctx): KeyCaller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    s.vault.entity_delete(&ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/credentials/for/{entity}",
            get(legacy_get).post(legacy_set),
        )
        .route("/api/public/v1/credentials/for/{entity}", get(public_get))
        .route("/api/public/v1/credentials", post(public_save))
        .route("/api/public/v1/credentials/{id}", delete(public_delete))
}
