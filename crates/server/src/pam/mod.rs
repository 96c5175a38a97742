//! The PAM Core A2A door (seed 003, `shared/contracts/pam-a2a.md`), under both `/iso/` and `/api/`:
//!
//! - `POST /iso/oauth2/token`: OAuth 2.0 client credentials (`client_id` = AppID, `client_secret` =
//!   the application's client secret; in the form body or HTTP Basic) → a bearer token for an hour;
//! - `POST /iso/pam/credential`: create or update (rules in `service.rs`), JSON or form body;
//! - `GET /iso/pam/credential` list, `GET /iso/pam/credential/{id|identifier|user@host}` read
//!   (audited, takes custody), `DELETE .../credential/{key}` deactivate, `PUT` activate,
//!   `DELETE .../credential/custody/{key}` release custody.
//!
//! Every answer is the bilingual envelope `{"code", "response": {status, message, error,
//! error_code, detail, mensagem, erro, cod_erro}, <payload>}`; errors add `"exception": {code,
//! message, detail}` with `message` = `"<code>: <text>"`. The error table is `credvault_core::pam`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use credvault_core::model::Credential;
use credvault_core::pam::{self, code, PamError};
use serde_json::{json, Map, Value};

use crate::edge::{self, source_ip, token_from_headers, Refusal, Serves, Source};
use crate::AppState;
use credvault_service::error::ServiceError;
use credvault_service::pam::{is_active, pam_settings, tag_of, Outcome, PamFail, DOOR};
use credvault_service::{Ctx, SecretRead};

/// How long an OAuth access token lives.
pub const TOKEN_TTL_SECONDS: i64 = 3600;

fn response_block(status: u16, message: &str, error: bool, error_code: u16, detail: &str) -> Value {
    json!({
        "status": status,
        "message": message,
        "error": error,
        "error_code": error_code,
        "detail": detail,
        "mensagem": message,
        "erro": error,
        "cod_erro": error_code,
    })
}

/// A success answer: HTTP `status`, `code` = status, the message in both languages, one payload.
fn reply(status: StatusCode, message: &str, key: &str, payload: Value) -> Response {
    let code = status.as_u16();
    let mut body = Map::new();
    body.insert("code".into(), json!(code));
    body.insert(
        "response".into(),
        response_block(code, message, false, 0, ""),
    );
    body.insert(key.into(), payload);
    (status, Json(Value::Object(body))).into_response()
}

fn status_of(e: &PamFail) -> StatusCode {
    match e {
        PamFail::Pam(p, _) => match p.code {
            code::UNAUTHENTICATED => StatusCode::UNAUTHORIZED,
            code::RATE_LIMITED => StatusCode::TOO_MANY_REQUESTS,
            code::BUSY | code::CONFLICT => StatusCode::CONFLICT,
            code::UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        },
        PamFail::Service(s) => match s {
            ServiceError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::Integrity => StatusCode::INTERNAL_SERVER_ERROR,
            ServiceError::Integration(_) => StatusCode::BAD_GATEWAY,
            ServiceError::VersionConflict { .. } => StatusCode::CONFLICT,
            ServiceError::Unseal(_) => StatusCode::BAD_REQUEST,
            ServiceError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        },
    }
}

/// An error answer, at an explicit HTTP status (404/405/413 for routing and size).
fn error_reply(status: StatusCode, err: &PamError, detail: Option<&str>) -> Response {
    let message = err.message();
    let s = status.as_u16();
    let body = json!({
        "code": s,
        "response": response_block(s, &message, true, err.code, detail.unwrap_or_default()),
        "exception": {"code": err.code, "message": message, "detail": detail},
    });
    (status, Json(body)).into_response()
}

/// The door's error: an A2A failure in the bilingual envelope.
#[derive(Debug)]
pub struct A2aError(PamFail);

impl<E: Into<PamFail>> From<E> for A2aError {
    fn from(e: E) -> Self {
        A2aError(e.into())
    }
}

impl IntoResponse for A2aError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        match self.0 {
            PamFail::Pam(p, detail) => error_reply(status, &p, detail.as_deref()),
            PamFail::Service(s) => {
                let (c, text) = match &s {
                    ServiceError::RateLimited => (code::RATE_LIMITED, s.to_string()),
                    ServiceError::Integrity => (code::UNAVAILABLE, s.to_string()),
                    ServiceError::Integration(m) => (code::UNAVAILABLE, m.clone()),
                    ServiceError::VersionConflict { .. } => (code::BUSY, s.to_string()),
                    ServiceError::Store(inner) => {
                        tracing::error!(error = %inner, "storage error");
                        (
                            code::UNAVAILABLE,
                            "The storage backend is unavailable".into(),
                        )
                    }
                    other => (code::UNAVAILABLE, other.to_string()),
                };
                error_reply(status, &PamError::new(c, text), None)
            }
        }
    }
}

type PamResponse = Result<Response, A2aError>;

// ------------------------------------------------------------------------------------ extractors

/// An authenticated A2A caller: `Authorization: Bearer <token from /iso/oauth2/token>`.
pub struct A2a(pub Ctx);

impl FromRequestParts<AppState> for A2a {
    type Rejection = A2aError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let token = token_from_headers(&parts.headers);
        // Which tokens may do what is the service's (`pam_app`): users' tokens get 1001 there.
        edge::caller(s, token.as_deref(), source_ip(parts), DOOR, Serves::Anyone)
            .await
            .map(A2a)
            .map_err(|r| match r {
                Refusal::Service(ServiceError::Domain(_)) | Refusal::WrongKind(_) => PamFail::Pam(
                    PamError::new(code::UNAUTHENTICATED, "Invalid or expired access token"),
                    Some(
                        "send Authorization: Bearer <access_token from POST /iso/oauth2/token>"
                            .into(),
                    ),
                )
                .into(),
                Refusal::Service(other) => PamFail::Service(other).into(),
            })
    }
}

/// The `{key}` path segment (id, identifier or user@host), refused in the envelope when it is not
/// valid percent-encoded UTF-8.
pub struct Key(String);

impl<S: Send + Sync> FromRequestParts<S> for Key {
    type Rejection = A2aError;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, s).await {
            Ok(Path(k)) if !k.is_empty() && k.len() <= 512 => Ok(Key(k)),
            _ => Err(
                PamError::invalid("credential", "must be an id, an identifier or user@host").into(),
            ),
        }
    }
}

/// Decode a body, JSON or form-encoded, whatever its label says (real clients mislabel form bodies
/// as JSON). Returns the object and whether it came as a form (string-typed values).
pub(crate) fn decode_body(body: Result<Bytes, BytesRejection>) -> Result<(Value, bool), BodyError> {
    let bytes = body.map_err(|rej| {
        let status = rej.status();
        let why = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the body is too large"
        } else {
            "the body could not be read"
        };
        BodyError(status, PamError::invalid("body", why))
    })?;
    let bad = |why: &str| BodyError(StatusCode::BAD_REQUEST, PamError::invalid("body", why));
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("is not UTF-8"))?;
    let t = text.trim_start();
    if t.is_empty() {
        return Err(bad("is empty: send the fields as JSON or form-encoded"));
    }
    if t.starts_with('{') || t.starts_with('[') {
        return match serde_json::from_str::<Value>(t) {
            Ok(v @ Value::Object(_)) => Ok((v, false)),
            Ok(_) => Err(bad("must be a JSON object")),
            Err(e) => Err(bad(&format!(
                "is not valid JSON ({})",
                crate::native::error::scrub(&e.to_string())
            ))),
        };
    }
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(t).map_err(|_| bad("is neither JSON nor form-encoded"))?;
    let v = pam::form_to_value(&pairs).map_err(|e| BodyError(StatusCode::BAD_REQUEST, e))?;
    Ok((v, true))
}

/// A body that could not be decoded: the status (400 or 413) and the error.
pub(crate) struct BodyError(StatusCode, PamError);

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        error_reply(self.0, &self.1, None)
    }
}

// ---------------------------------------------------------------------------------------- routes

fn credential_routes() -> Router<AppState> {
    Router::new()
        .route("/credential", post(upsert).get(list))
        .route("/credential/custody/{key}", delete(release))
        .route(
            "/credential/{key}",
            get(read).delete(deactivate).put(activate),
        )
        .fallback(|| async {
            error_reply(
                StatusCode::NOT_FOUND,
                &PamError::invalid("path", "no such A2A call"),
                None,
            )
        })
        .method_not_allowed_fallback(|| async {
            error_reply(
                StatusCode::METHOD_NOT_ALLOWED,
                &PamError::invalid("method", "this call does not take that method"),
                None,
            )
        })
}

pub fn router() -> Router<AppState> {
    Router::new()
        .nest("/iso/pam", credential_routes())
        .nest("/api/pam", credential_routes())
        .route("/iso/oauth2/token", post(token))
        .route("/api/oauth2/token", post(token))
}

// ------------------------------------------------------------------------------------- handlers

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// `client_id:client_secret` from `Authorization: Basic`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    // RFC 6749 2.3.1: both are form-urlencoded inside Basic.
    let dec = |x: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={x}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map(|(_, v)| v)
    };
    Some((dec(id)?, dec(secret)?))
}

/// `POST /iso/oauth2/token`: OAuth 2.0 client credentials.
#[utoipa::path(post, path = "/iso/oauth2/token", tag = "pam-a2a", request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "grant_type=client_credentials&client_id=<AppID>&client_secret=<secret> (or HTTP Basic)"), responses((status = 200, description = "{access_token, token_type: bearer, expires_in: 3600}"), (status = 401, description = "{error: invalid_client, error_description}")))]
pub async fn token(
    State(s): State<AppState>,
    Source(ip): Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let fields: Map<String, Value> =
        match decode_body(body) {
            Ok((Value::Object(m), _)) => m,
            _ if basic_credentials(&headers).is_some() => Map::new(),
            _ => return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "send grant_type=client_credentials with client_id and client_secret, form-encoded",
            ),
        };
    let field = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
    match field("grant_type").as_deref() {
        Some("client_credentials") => {}
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            )
        }
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            )
        }
    }
    let basic = basic_credentials(&headers);
    let (id, secret) = match (basic.clone(), field("client_id"), field("client_secret")) {
        (Some(b), _, _) => b,
        (None, Some(i), Some(sec)) => (i, sec),
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_id and client_secret are required (form body or HTTP Basic)",
            )
        }
    };
    if s.vault.is_sealed().await {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "credvault is sealed",
        );
    }
    let ttl = time::Duration::seconds(TOKEN_TTL_SECONDS);
    match s.vault.app_login(&id, &secret, ip, DOOR, ttl).await {
        Ok((_, token)) => {
            let mut r = (
                StatusCode::OK,
                Json(json!({
                    "access_token": token.expose(),
                    "token_type": "bearer",
                    "expires_in": TOKEN_TTL_SECONDS,
                })),
            )
                .into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            r.headers_mut()
                .insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
            r
        }
        Err(ServiceError::Domain(_)) => {
            let mut r = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed",
            );
            if basic.is_some() {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"credvault\""),
                );
            }
            r
        }
        Err(ServiceError::RateLimited) => oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "too many failed authentications from this address; try again later",
        ),
        Err(e) => {
            tracing::error!(error = %e, "oauth token");
            oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again later",
            )
        }
    }
}

/// `POST /iso/pam/credential`: create or update.
#[utoipa::path(post, path = "/iso/pam/credential", tag = "pam-a2a", request_body(content = Object, description = "seed 003 body, JSON or form-encoded; also under /api/pam"), responses((status = 201, description = "envelope + credential{id, tag}; message Credential successfully registered! / Credential updated successfully!"), (status = 400, description = "envelope + exception{code, message, detail}: 1000, 1003, 1004, 1005, 1006, 1009"), (status = 401, description = "1001")))]
pub async fn upsert(
    State(s): State<AppState>,
    A2a(ctx): A2a,
    body: Result<Bytes, BytesRejection>,
) -> PamResponse {
    let (v, form) = match decode_body(body) {
        Ok(x) => x,
        Err(e) => return Ok(e.into_response()),
    };
    let up = pam::parse_upsert(&v, form)?;
    let done = s.vault.pam_upsert(&ctx, up).await?;
    let message = match done.outcome {
        Outcome::Created => "Credential successfully registered!",
        Outcome::Updated => "Credential updated successfully!",
    };
    Ok(reply(
        StatusCode::CREATED,
        message,
        "credential",
        json!({"id": done.id.to_string(), "tag": done.tag}),
    ))
}

fn block(meta_settings: &Map<String, Value>, name: &str) -> Value {
    meta_settings
        .get(name)
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// The list view of a credential (no secret).
fn list_item(c: &Credential) -> Value {
    let d = c.meta.device.clone().unwrap_or_default();
    let s = pam_settings(&c.meta);
    let exec = block(&s, "execution_settings");
    json!({
        "id": c.id.to_string(),
        "identifier": c.meta.identifier,
        "tag": tag_of(&c.meta),
        "username": c.meta.username,
        "hostname": d.hostname,
        "management_ip": d.ip,
        "type": c.meta.credential_type,
        "domain": c.meta.domain,
        "device_model": d.model,
        "device_type": d.device_type,
        "device_vendor": d.vendor,
        "site": d.site,
        "automatic_change": exec.get("automatic_change").cloned().unwrap_or(Value::Bool(false)),
        "connectivity": d.connectivities.iter().map(|c| format!("{}:{}", c.protocol, c.port)).collect::<Vec<_>>().join(", "),
        "tags": c.meta.tags,
        "active": is_active(&c.meta),
    })
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    after: Option<uuid::Uuid>,
    limit: Option<i64>,
}

/// `GET /iso/pam/credential`: the credentials the application's grants cover.
#[utoipa::path(get, path = "/iso/pam/credential", tag = "pam-a2a", params(("after" = Option<String>, Query, description = "id cursor"), ("limit" = Option<i64>, Query, description = "at most 1000")), responses((status = 200, description = "envelope + credentials[]; message N credentials found")))]
pub async fn list(
    State(s): State<AppState>,
    A2a(ctx): A2a,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> PamResponse {
    let Query(q) =
        q.map_err(|_| PamError::invalid("query", "after must be an id, limit a number"))?;
    let list = s
        .vault
        .pam_list(&ctx, q.after, q.limit.unwrap_or(1000))
        .await?;
    let items: Vec<Value> = list.iter().map(list_item).collect();
    Ok(reply(
        StatusCode::OK,
        &format!("{} credentials found", items.len()),
        "credentials",
        Value::Array(items),
    ))
}

/// The read view: the list view's metadata plus the secrets and settings.
fn read_view(c: &Credential, secret: &SecretRead) -> Value {
    let d = c.meta.device.clone().unwrap_or_default();
    let s = pam_settings(&c.meta);
    let mut additional = block(&s, "additional_settings");
    if let (Some(k), Value::Object(m)) = (secret.parameters.get("secret_key"), &mut additional) {
        m.insert("secret_key".into(), Value::String(k.expose().to_owned()));
    }
    if let Some(Value::Array(fields)) = additional.get_mut("additional_authentication_fields") {
        for (i, f) in fields.iter_mut().enumerate() {
            let key = format!("{}{i}", credvault_service::pam::AUTH_FIELD_PREFIX);
            if let (Some(v), Value::Object(o)) = (secret.parameters.get(&key), f) {
                o.insert("value".into(), Value::String(v.expose().to_owned()));
            }
        }
    }
    json!({
        "id": c.id.to_string(),
        "identifier": c.meta.identifier,
        "tag": tag_of(&c.meta),
        "username": c.meta.username,
        "password": secret.secret.expose(),
        "content": secret.secret.expose(),
        "hostname": d.hostname,
        "ip": d.ip,
        "port": d.connectivities.first().map(|c| c.port),
        "domain": c.meta.domain,
        "additional": c.meta.additional_info,
        "parent_credential": s.get("parent_password").cloned().unwrap_or(Value::Null),
        "model": d.model,
        "expiration_time": null,
        "credential_type": c.meta.credential_type,
        "tags": c.meta.tags,
        "device": {
            "hostname": d.hostname,
            "ip": d.ip,
            "type": d.device_type,
            "vendor": d.vendor,
            "model": d.model,
            "site": d.site,
            "domain": d.domain,
            "tags": d.tags,
            "connectivities": d.connectivities,
        },
        "session_remote_config": s.get("session_remote_config").cloned().unwrap_or(Value::Null),
        "execution_settings": block(&s, "execution_settings"),
        "session_settings": block(&s, "session_settings"),
        "additional_settings": additional,
        "jit_settings": block(&s, "jit_settings"),
        "active": is_active(&c.meta),
        "version": secret.version,
    })
}

/// `GET /iso/pam/credential/{key}`: read with the secret; takes custody. Some clients repeat the
/// key as `?credential=`: the query is not read, the path wins.
#[utoipa::path(get, path = "/iso/pam/credential/{key}", tag = "pam-a2a", params(("key" = String, Path, description = "id, identifier or user@host")), responses((status = 200, description = "envelope + credential{id, identifier, tag, username, password, content, hostname, ip, port, domain, additional, parent_credential, model, expiration_time, settings blocks}; audited, takes custody"), (status = 400, description = "1007, 1008, 1009")))]
pub async fn read(State(s): State<AppState>, A2a(ctx): A2a, Key(key): Key) -> PamResponse {
    let (cred, secret) = s.vault.pam_read(&ctx, &key).await?;
    Ok(reply(
        StatusCode::OK,
        "Credential found",
        "credential",
        read_view(&cred, &secret),
    ))
}

/// `DELETE /iso/pam/credential/{key}`: deactivate (1017 when already inactive).
#[utoipa::path(delete, path = "/iso/pam/credential/{key}", tag = "pam-a2a", params(("key" = String, Path, description = "id, identifier or user@host")), responses((status = 200, description = "Credential successfully deactivated"), (status = 400, description = "1007, 1009, 1017")))]
pub async fn deactivate(State(s): State<AppState>, A2a(ctx): A2a, Key(key): Key) -> PamResponse {
    let c = s.vault.pam_set_active(&ctx, &key, false).await?;
    Ok(reply(
        StatusCode::OK,
        "Credential successfully deactivated",
        "credential",
        json!({"id": c.id.to_string(), "tag": tag_of(&c.meta)}),
    ))
}

/// `PUT /api/pam/credential/{key}`: activate.
#[utoipa::path(put, path = "/api/pam/credential/{key}", tag = "pam-a2a", params(("key" = String, Path, description = "id, identifier or user@host")), responses((status = 200, description = "Credential successfully activated")))]
pub async fn activate(State(s): State<AppState>, A2a(ctx): A2a, Key(key): Key) -> PamResponse {
    let c = s.vault.pam_set_active(&ctx, &key, true).await?;
    Ok(reply(
        StatusCode::OK,
        "Credential successfully activated",
        "credential",
        json!({"id": c.id.to_string(), "tag": tag_of(&c.meta)}),
    ))
}

/// `DELETE /iso/pam/credential/custody/{key}`: release the caller's custody (1018 otherwise).
#[utoipa::path(delete, path = "/iso/pam/credential/custody/{key}", tag = "pam-a2a", params(("key" = String, Path, description = "id, identifier or user@host")), responses((status = 200, description = "Credential custody N released"), (status = 400, description = "1018")))]
pub async fn release(State(s): State<AppState>, A2a(ctx): A2a, Key(key): Key) -> PamResponse {
    let c = s.vault.pam_release(&ctx, &key).await?;
    Ok(reply(
        StatusCode::OK,
        &format!("Credential custody {} released", c.id),
        "credential",
        json!({"id": c.id.to_string(), "tag": tag_of(&c.meta)}),
    ))
}
