//! The entity-credentials door (seed 004) over `credvault_service::entity` (rules and operations).
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
//! API keys are tokens (`credvault apikey ...`): `Authorization: <key>` or `Bearer <key>`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use credvault_core::model::{Owner, OwnerKind};
use credvault_core::{validate, DomainError};
use credvault_crypto::SecretString;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use credvault_service::entity::{EntityCredential, DOOR};
use credvault_service::error::ServiceError;
use credvault_service::Ctx;

use crate::edge::{self, source_ip, token_from_headers, Body, Refusal, Serves};
use crate::native::{ApiError, ApiPath, ApiQuery};
use crate::AppState;

/// The caller, by API key: `Authorization: <key>`, `Authorization: Bearer <key>` or `X-Vault-Token`.
pub struct KeyCaller(pub Ctx);

impl FromRequestParts<AppState> for KeyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let key = token_from_headers(&parts.headers).or_else(|| {
            parts
                .headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.contains(' '))
        });
        edge::caller(s, key.as_deref(), source_ip(parts), DOOR, Serves::People)
            .await
            .map(KeyCaller)
            .map_err(|r| match r {
                Refusal::Service(ServiceError::Domain(DomainError::Unauthenticated)) => {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        "missing, invalid, expired or revoked API key (send it in the Authorization header)",
                    )
                }
                Refusal::Service(e) => e.into(),
                Refusal::WrongKind(_) => ServiceError::from(DomainError::Forbidden).into(),
            })
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
    Body(body, _): Body<ApiError>,
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
    Body(body, _): Body<ApiError>,
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
            let current = s.vault.entity_current_owner(entity).await?;
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
