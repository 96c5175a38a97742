//! The Vault-KV-v2-compatible door (`/v1/...`), so existing Vault clients (hvac, the Vault CLI, the
//! automation platform's Vault integration) work against credvault. Vault's envelope and
//! `{"errors": [...]}` format; tokens are native tokens (`X-Vault-Token` or `Authorization: Bearer`).
//! Mapping onto the store: see `service.rs` beside this file and ARCHITECTURE.md.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use credvault_core::DomainError;
use credvault_crypto::SecretString;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::edge::{self, token_from_headers, Body, BodyRefusal, Refusal, Serves, Source};
use crate::AppState;
use credvault_service::error::ServiceError;
use credvault_service::kv::{KvRead, VersionOp, DOOR};
use credvault_service::Ctx;

/// An answer in Vault's error format.
pub struct KvError {
    status: StatusCode,
    errors: Vec<String>,
    data: Option<Value>,
}

impl From<BodyRefusal> for KvError {
    fn from(r: BodyRefusal) -> Self {
        KvError::new(r.status, r.message)
    }
}

impl KvError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![msg.into()],
            data: None,
        }
    }
    fn denied() -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission denied")
    }
    fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            errors: vec![],
            data: None,
        }
    }
    fn bad(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }
}

/// The path's parameters, or 400 in the door's own `{"errors": [...]}` when they are malformed
/// (not UTF-8 once percent-decoded), as Vault answers (issue 16.10).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(KvError))]
struct Path<T>(T);

impl From<PathRejection> for KvError {
    fn from(_: PathRejection) -> Self {
        Self::bad("invalid request path: it must be UTF-8 once percent-decoded")
    }
}

impl IntoResponse for KvError {
    fn into_response(self) -> Response {
        let mut body = json!({"errors": self.errors});
        if let Some(d) = self.data {
            body = envelope(d);
            body["errors"] = json!([]);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<ServiceError> for KvError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        match e {
            ServiceError::Domain(d) => match d {
                DomainError::Invalid { .. } => {
                    // The KV door's own messages (CAS) are the reason alone, as Vault words them.
                    let m = d.to_string();
                    let m = m.strip_prefix("invalid request: ").unwrap_or(&m).to_owned();
                    Self::bad(m)
                }
                DomainError::NotFound(_) => Self::not_found(),
                DomainError::Conflict(m) => Self::bad(m),
                DomainError::Forbidden | DomainError::Unauthenticated => Self::denied(),
            },
            ServiceError::VersionConflict { .. } => Self::bad(credvault_service::kv::CAS_MISMATCH),
            ServiceError::Sealed => Self::new(S::SERVICE_UNAVAILABLE, "Vault is sealed"),
            ServiceError::NotInitialized => {
                Self::new(S::SERVICE_UNAVAILABLE, "Vault is not initialized")
            }
            ServiceError::RateLimited => Self::new(S::TOO_MANY_REQUESTS, e.to_string()),
            ServiceError::Unseal(m) => Self::bad(m),
            ServiceError::AuditFailed => Self::new(S::SERVICE_UNAVAILABLE, e.to_string()),
            ServiceError::Integrity => Self::new(S::INTERNAL_SERVER_ERROR, e.to_string()),
            ServiceError::Integration(m) => Self::new(S::BAD_GATEWAY, m),
            ServiceError::InsufficientStorage => Self::new(S::INSUFFICIENT_STORAGE, e.to_string()),
            ServiceError::Store(inner) => {
                tracing::error!(error = %inner, "storage error");
                Self::new(S::SERVICE_UNAVAILABLE, "the storage backend is unavailable")
            }
        }
    }
}

type KvResult = Result<Response, KvError>;

/// Vault's response envelope around `data`.
fn envelope(data: Value) -> Value {
    json!({
        "request_id": uuid::Uuid::now_v7().to_string(),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
        "mount_type": "kv",
    })
}

fn ok(data: Value) -> KvResult {
    Ok((StatusCode::OK, Json(envelope(data))).into_response())
}

fn no_content() -> KvResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The caller: a native token in `X-Vault-Token` or `Authorization: Bearer`.
async fn caller(s: &AppState, headers: &HeaderMap, ip: IpAddr) -> Result<Ctx, KvError> {
    let token = token_from_headers(headers);
    edge::caller(s, token.as_deref(), ip, DOOR, Serves::Anyone)
        .await
        .map_err(|r| match r {
            Refusal::Service(e) => e.into(),
            Refusal::WrongKind(_) => {
                ServiceError::from(credvault_core::DomainError::Forbidden).into()
            }
        })
}

/// Go's `strconv.ParseBool`, which Vault uses for its flags: `1 t T TRUE true True` and
/// `0 f F FALSE false False`; anything else is no boolean.
pub(crate) fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean field of a JSON body, read as Vault reads one (a weakly typed decode of a body parsed
/// with numbers kept as text): a JSON boolean, a Go boolean as a string or a number (`"1"`, `0`,
/// `"True"`, ...), `""` and `null` are false. Anything else is a 400.
pub(crate) fn body_bool(field: &str, v: &Value) -> Result<bool, KvError> {
    let parsed = match v {
        Value::Null => Some(false),
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.is_empty() => Some(false),
        Value::String(s) => go_bool(s),
        Value::Number(n) => go_bool(&n.to_string()),
        Value::Array(_) | Value::Object(_) => {
            return Err(KvError::bad(format!(
                "error converting input for field \"{field}\": expected type 'bool'"
            )))
        }
    };
    parsed.ok_or_else(|| {
        KvError::bad(format!(
            "error converting input for field \"{field}\": cannot parse value as 'bool': strconv.ParseBool: invalid syntax"
        ))
    })
}

/// The first value of a query parameter (Vault reads the first of repeated ones).
fn first_param(raw: Option<&str>, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw?)
        .ok()?
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// `?list=` of a GET, as Vault reads it on every path: absent or empty is no listing, a Go boolean
/// says, anything else is `400 {"errors": []}` (before authentication, as Vault does).
fn list_flag(raw: Option<&str>) -> Result<bool, KvError> {
    match first_param(raw, "list") {
        None => Ok(false),
        Some(v) if v.is_empty() => Ok(false),
        Some(v) => go_bool(&v).ok_or(KvError {
            status: StatusCode::BAD_REQUEST,
            errors: vec![],
            data: None,
        }),
    }
}

/// Every GET under `/v1` with a `list` flag that is no Go boolean is refused, whatever the path.
async fn check_list_flag(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.method() == Method::GET {
        if let Err(e) = list_flag(req.uri().query()) {
            return e.into_response();
        }
    }
    next.run(req).await
}

fn query(raw: &Option<String>) -> Result<HashMap<String, String>, KvError> {
    match raw {
        None => Ok(HashMap::new()),
        Some(q) => serde_urlencoded::from_str(q)
            .map_err(|_| KvError::bad("the query string could not be parsed")),
    }
}

/// A JSON body: empty is `{}`; anything else must be a JSON object.
pub(crate) fn body_object(body: &Bytes) -> Result<Map<String, Value>, KvError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(KvError::bad(
            "failed to decode JSON input: expected an object",
        )),
        Err(e) => Err(KvError::bad(format!(
            "failed to decode JSON input: {}",
            crate::native::error::scrub(&e.to_string())
        ))),
    }
}

pub(crate) fn versions_field(b: &Map<String, Value>) -> Result<Vec<i64>, KvError> {
    match b.get("versions") {
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| KvError::bad("versions must be a list of version numbers"))
            })
            .collect(),
        _ => Err(KvError::bad("no versions provided")),
    }
}

pub(crate) fn string_data(v: Option<&Value>) -> Result<BTreeMap<String, SecretString>, KvError> {
    let Some(Value::Object(m)) = v else {
        return Err(KvError::bad("no data provided"));
    };
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => {
                credvault_core::validate::parameter_key(k)
                    .map_err(|e| KvError::bad(e.to_string()))?;
                Ok((k.clone(), SecretString::new(s.clone())))
            }
            _ => Err(KvError::bad(format!(
                "the value of '{k}' is not a string: credvault stores KV values as strings"
            ))),
        })
        .collect()
}

fn version_meta(r: &KvRead) -> Value {
    json!({
        "created_time": rfc3339(r.created_time),
        "custom_metadata": r.custom_metadata,
        "deletion_time": r.deletion_time.clone().unwrap_or_default(),
        "destroyed": r.destroyed,
        "version": r.version,
    })
}

// ------------------------------------------------------------------------------------------ routes

pub fn router() -> Router<AppState> {
    let v1 = Router::new()
        .route("/sys/health", get(health).head(health))
        .route("/sys/seal-status", get(seal_status))
        .route("/sys/mounts", get(mounts))
        .route("/sys/internal/ui/mounts/{*path}", get(ui_mount))
        .route("/auth/token/lookup-self", get(lookup_self))
        .route("/auth/approle/login", post(approle_login))
        .route("/{mount}/data/{*path}", any(data))
        .route("/{mount}/metadata", any(metadata_root))
        .route("/{mount}/metadata/", any(metadata_root))
        .route("/{mount}/metadata/{*path}", any(metadata))
        .route("/{mount}/delete/{*path}", post(delete_versions))
        .route("/{mount}/undelete/{*path}", post(undelete_versions))
        .route("/{mount}/destroy/{*path}", post(destroy_versions))
        .fallback(|| async { KvError::not_found() })
        .method_not_allowed_fallback(|| async {
            KvError::new(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
        })
        .layer(axum::middleware::from_fn(check_list_flag));
    Router::new().nest("/v1", v1)
}

async fn health(State(s): State<AppState>, RawQuery(q): RawQuery) -> KvResult {
    // A standby flag that is no Go boolean is refused, as Vault does (credvault has no standbys).
    if first_param(q.as_deref(), "standbyok")
        .is_some_and(|v| !v.is_empty() && go_bool(&v).is_none())
    {
        return Err(KvError {
            status: StatusCode::BAD_REQUEST,
            errors: vec![],
            data: None,
        });
    }
    let q = query(&q)?;
    // Answered at once, from memory, even with the database down (issue 16.9).
    let h = s.vault.health().await;
    let (initialized, sealed) = (h.initialized.unwrap_or(false), h.sealed);
    let code = |name: &str, default: u16| {
        q.get(name)
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(default)
    };
    let status = if !h.is_ok() {
        // Degraded (the store or the audit cannot write): Vault has no code of its own for it;
        // 503, its code for "cannot serve", whatever the query asks.
        503
    } else if !initialized {
        code("uninitcode", 501)
    } else if sealed {
        code("sealedcode", 503)
    } else {
        code("activecode", 200)
    };
    let body = json!({
        "initialized": initialized,
        "sealed": sealed,
        "standby": false,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": OffsetDateTime::now_utc().unix_timestamp(),
        "version": env!("CARGO_PKG_VERSION"),
        "cluster_name": "credvault",
        "cluster_id": "credvault",
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    Ok((status, Json(body)).into_response())
}

async fn seal_status(State(s): State<AppState>) -> KvResult {
    let st = s.vault.seal_status().await?;
    let body = json!({
        "type": "shamir",
        "initialized": st.initialized,
        "sealed": st.sealed,
        "t": st.threshold,
        "n": st.shares,
        "progress": st.progress,
        "nonce": "",
        "version": env!("CARGO_PKG_VERSION"),
        "migration": false,
        "recovery_seal": false,
        "storage_type": s.vault.backend(),
    });
    Ok((StatusCode::OK, Json(body)).into_response())
}

async fn mounts(State(s): State<AppState>, headers: HeaderMap, Source(ip): Source) -> KvResult {
    let ctx = caller(&s, &headers, ip).await?;
    let mut m = Map::new();
    for safe in s.vault.list_safes(&ctx).await? {
        m.insert(
            format!("{}/", safe.name),
            json!({
                "type": "kv",
                "description": safe.description.unwrap_or_default(),
                "accessor": format!("kv_{}", safe.name),
                "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false},
                "options": {"version": "2"},
                "local": false,
                "seal_wrap": false,
                "external_entropy_access": false,
            }),
        );
    }
    let mut body = envelope(Value::Object(m.clone()));
    if let Value::Object(top) = &mut body {
        for (k, v) in m {
            top.insert(k, v);
        }
    }
    Ok((StatusCode::OK, Json(body)).into_response())
}

async fn ui_mount(
    State(s): State<AppState>,
    headers: HeaderMap,
    Source(ip): Source,
    Path(path): Path<String>,
) -> KvResult {
    let ctx = caller(&s, &headers, ip).await?;
    let mount = path.split('/').next().unwrap_or_default().to_owned();
    if !s
        .vault
        .list_safes(&ctx)
        .await?
        .iter()
        .any(|x| x.name == mount)
    {
        return Err(KvError::denied());
    }
    ok(
        json!({"path": format!("{mount}/"), "type": "kv", "options": {"version": "2"}, "description": ""}),
    )
}

/// How long an AppRole login token lives.
const APPROLE_TTL_SECONDS: i64 = 3600;

/// AppRole login: `role_id` = the AppID, `secret_id` = the application's client secret
/// (`credvault app create NAME --client-secret`). The token acts as the application, limited to
/// the safes it was granted, on this door only.
async fn approle_login(
    State(s): State<AppState>,
    Source(ip): Source,
    Body(body, _): Body<KvError>,
) -> KvResult {
    if s.vault.is_sealed().await {
        return Err(ServiceError::Sealed.into());
    }
    let b = body_object(&body)?;
    let field = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (role_id, secret_id) = (field("role_id"), SecretString::new(field("secret_id")));
    if role_id.is_empty() {
        return Err(KvError::bad("missing role_id"));
    }
    if secret_id.is_empty() {
        return Err(KvError::bad("missing secret_id"));
    }
    let (info, token) = match s
        .vault
        .app_login(
            &role_id,
            secret_id.expose(),
            ip,
            DOOR,
            time::Duration::seconds(APPROLE_TTL_SECONDS),
        )
        .await
    {
        Ok(t) => t,
        Err(ServiceError::Domain(DomainError::Unauthenticated)) => {
            return Err(KvError::bad("invalid role or secret ID"))
        }
        Err(e) => return Err(e.into()),
    };
    let mut body = envelope(Value::Null);
    body["auth"] = json!({
        "client_token": token.expose(),
        "accessor": info.id.to_string(),
        "policies": ["default"],
        "token_policies": ["default"],
        "metadata": {"role_name": role_id},
        "lease_duration": APPROLE_TTL_SECONDS,
        "renewable": false,
        "entity_id": "",
        "token_type": "service",
        "orphan": true,
    });
    Ok((StatusCode::OK, Json(body)).into_response())
}

async fn lookup_self(
    State(s): State<AppState>,
    headers: HeaderMap,
    Source(ip): Source,
) -> KvResult {
    let ctx = caller(&s, &headers, ip).await?;
    let token = token_from_headers(&headers).unwrap_or_default();
    let info = s.vault.token_self(&token).await?;
    let ttl = info.expires_at.map_or(0, |e| {
        (e - OffsetDateTime::now_utc()).whole_seconds().max(0)
    });
    ok(json!({
        "accessor": info.id.to_string(),
        "creation_time": info.created_at.unix_timestamp(),
        "creation_ttl": ttl,
        "display_name": format!("token-{}", ctx.actor.name),
        "entity_id": "",
        "expire_time": info.expires_at.map(rfc3339),
        "explicit_max_ttl": 0,
        "id": "",
        "issue_time": rfc3339(info.created_at),
        "meta": {"user": info.user},
        "num_uses": 0,
        "orphan": true,
        "path": "auth/token/create",
        "policies": [if ctx.actor.is_admin() { "root" } else { "default" }],
        "renewable": false,
        "ttl": ttl,
        "type": "service",
    }))
}

async fn data(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Source(ip): Source,
    Path((mount, path)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    Body(body, _): Body<KvError>,
) -> KvResult {
    let listing = method == Method::GET && list_flag(q.as_deref())?;
    let q = query(&q)?;
    let ctx = caller(&s, &headers, ip).await?;
    if listing {
        // A data path lists nothing (Vault: 405 to an authenticated caller).
        return Err(KvError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported operation",
        ));
    }
    let v = &s.vault;
    match method {
        Method::GET => {
            let version = match q.get("version") {
                None => None,
                Some(x) => Some(
                    x.parse::<i64>()
                        .map_err(|_| KvError::bad("version must be a number"))?,
                ),
            };
            let r = v.kv_read(&ctx, &mount, &path, version).await?;
            let meta = version_meta(&r);
            match r.data {
                Some(d) => ok(json!({"data": d, "metadata": meta})),
                // Deleted or destroyed: 404, but the body still tells which and when.
                None => Err(KvError {
                    status: StatusCode::NOT_FOUND,
                    errors: vec![],
                    data: Some(json!({"data": null, "metadata": meta})),
                }),
            }
        }
        Method::POST | Method::PUT => {
            let b = body_object(&body)?;
            let data = string_data(b.get("data"))?;
            let cas = match b.get("options").and_then(|o| o.get("cas")) {
                None | Some(Value::Null) => None,
                Some(c) => Some(
                    c.as_i64()
                        .ok_or_else(|| KvError::bad("options.cas must be a number"))?,
                ),
            };
            let r = v.kv_write(&ctx, &mount, &path, data, cas).await?;
            ok(version_meta(&r))
        }
        Method::PATCH => {
            let b = body_object(&body)?;
            let Some(Value::Object(patch)) = b.get("data") else {
                return Err(KvError::bad("no data provided"));
            };
            let cas = b
                .get("options")
                .and_then(|o| o.get("cas"))
                .and_then(Value::as_i64);
            let (version, mut current) = v.kv_current_data(&ctx, &mount, &path).await?;
            for (k, val) in patch {
                match val {
                    Value::Null => {
                        current.remove(k);
                    }
                    Value::String(x) => {
                        credvault_core::validate::parameter_key(k)
                            .map_err(|e| KvError::bad(e.to_string()))?;
                        current.insert(k.clone(), SecretString::new(x.clone()));
                    }
                    _ => {
                        return Err(KvError::bad(format!(
                        "the value of '{k}' is not a string: credvault stores KV values as strings"
                    )))
                    }
                }
            }
            let r = v
                .kv_write(&ctx, &mount, &path, current, Some(cas.unwrap_or(version)))
                .await?;
            ok(version_meta(&r))
        }
        Method::DELETE => {
            v.kv_versions_op(&ctx, &mount, &path, VersionOp::Delete, None)
                .await?;
            no_content()
        }
        _ => Err(KvError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported operation",
        )),
    }
}

async fn list_answer(s: &AppState, ctx: &Ctx, mount: &str, folder: &str) -> KvResult {
    let keys = s.vault.kv_list(ctx, mount, folder).await?;
    ok(json!({"keys": keys}))
}

async fn metadata_root(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Source(ip): Source,
    Path(mount): Path<String>,
    RawQuery(q): RawQuery,
) -> KvResult {
    let listing = method.as_str() == "LIST" || (method == Method::GET && list_flag(q.as_deref())?);
    query(&q)?;
    let ctx = caller(&s, &headers, ip).await?;
    if !listing {
        return Err(KvError::not_found());
    }
    list_answer(&s, &ctx, &mount, "").await
}

#[allow(clippy::too_many_arguments)]
async fn metadata(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Source(ip): Source,
    Path((mount, path)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    Body(body, _): Body<KvError>,
) -> KvResult {
    let listing = method.as_str() == "LIST" || (method == Method::GET && list_flag(q.as_deref())?);
    query(&q)?;
    let ctx = caller(&s, &headers, ip).await?;
    let v = &s.vault;
    if listing {
        return list_answer(&s, &ctx, &mount, &path).await;
    }
    match method {
        Method::GET => {
            let m = v.kv_metadata(&ctx, &mount, &path).await?;
            let mut versions = Map::new();
            for i in &m.versions {
                versions.insert(
                    i.version.to_string(),
                    json!({
                        "created_time": rfc3339(i.created_at),
                        "deletion_time": m.meta.deleted.get(&i.version).cloned().unwrap_or_default(),
                        "destroyed": m.meta.destroyed.contains(&i.version),
                    }),
                );
            }
            ok(json!({
                "cas_required": m.meta.cas_required,
                "created_time": rfc3339(m.cred.created_at),
                "current_version": m.cred.version,
                "custom_metadata": m.meta.custom_metadata,
                "delete_version_after": "0s",
                "max_versions": m.meta.max_versions,
                "oldest_version": m.versions.first().map_or(0, |i| i.version),
                "updated_time": rfc3339(m.cred.updated_at),
                "versions": versions,
            }))
        }
        Method::POST | Method::PUT => {
            let b = body_object(&body)?;
            let max_versions =
                match b.get("max_versions") {
                    None | Some(Value::Null) => None,
                    Some(x) => Some(x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(
                        || KvError::bad("max_versions must be a non-negative number"),
                    )?),
                };
            // As Vault reads it: `null` is false, strings and numbers are Go booleans.
            let cas_required = b
                .get("cas_required")
                .map(|x| body_bool("cas_required", x))
                .transpose()?;
            let custom = match b.get("custom_metadata") {
                None | Some(Value::Null) => None,
                Some(Value::Object(m)) => Some(
                    m.iter()
                        .map(|(k, v)| {
                            v.as_str()
                                .map(|s| (k.clone(), s.to_owned()))
                                .ok_or_else(|| {
                                    KvError::bad("custom_metadata values must be strings")
                                })
                        })
                        .collect::<Result<BTreeMap<_, _>, _>>()?,
                ),
                Some(_) => return Err(KvError::bad("custom_metadata must be an object")),
            };
            v.kv_set_metadata(&ctx, &mount, &path, max_versions, cas_required, custom)
                .await?;
            no_content()
        }
        Method::DELETE => {
            v.kv_delete_all(&ctx, &mount, &path).await?;
            no_content()
        }
        _ => Err(KvError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported operation",
        )),
    }
}

async fn versions_call(
    s: AppState,
    headers: HeaderMap,
    ip: IpAddr,
    mount: String,
    path: String,
    body: Bytes,
    op: VersionOp,
) -> KvResult {
    let ctx = caller(&s, &headers, ip).await?;
    let b = body_object(&body)?;
    let versions = versions_field(&b)?;
    s.vault
        .kv_versions_op(&ctx, &mount, &path, op, Some(versions))
        .await?;
    no_content()
}

async fn delete_versions(
    State(s): State<AppState>,
    headers: HeaderMap,
    Source(ip): Source,
    Path((mount, path)): Path<(String, String)>,
    Body(body, _): Body<KvError>,
) -> KvResult {
    versions_call(s, headers, ip, mount, path, body, VersionOp::Delete).await
}

async fn undelete_versions(
    State(s): State<AppState>,
    headers: HeaderMap,
    Source(ip): Source,
    Path((mount, path)): Path<(String, String)>,
    Body(body, _): Body<KvError>,
) -> KvResult {
    versions_call(s, headers, ip, mount, path, body, VersionOp::Undelete).await
}

async fn destroy_versions(
    State(s): State<AppState>,
    headers: HeaderMap,
    Source(ip): Source,
    Path((mount, path)): Path<(String, String)>,
    Body(body, _): Body<KvError>,
) -> KvResult {
    versions_call(s, headers, ip, mount, path, body, VersionOp::Destroy).await
}
