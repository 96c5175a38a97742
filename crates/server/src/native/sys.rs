//! `/api/v1/sys/*` (health, init, unseal, seal, rotate) and `/api/v1/audit/*`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use credvault_core::model::AuditRecord;
use credvault_crypto::SecretString;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, ApiQuery, Caller, Items};
use crate::AppState;
use credvault_service::audit::Verification;
use credvault_service::barrier::SealStatus;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` (answered 503) while the store or the audit cannot write, the
    /// database cannot be reached, or free disk space is below the floor.
    pub status: &'static str,
    /// `null` when the store cannot tell (sealed while the database is unreachable).
    pub initialized: Option<bool>,
    pub sealed: bool,
    pub version: &'static str,
    pub storage: &'static str,
    pub store: credvault_service::health::StoreStatus,
    /// Free disk space and the floor below which writes are refused (SQLite; absent otherwise).
    /// Below the floor the status is `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<credvault_service::disk::DiskStatus>,
    /// The audit sinks; a required one failing makes the status `degraded`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audit_sinks: Vec<credvault_service::audit_sink::SinkStatus>,
}

/// Always answered, at once, even sealed or with the database down: 200 when `ok` (sealed or not:
/// see `sealed`), 503 when `degraded`, so a load balancer stops sending traffic to a server that
/// cannot write or reach its database.
#[utoipa::path(get, path = "/api/v1/sys/health", tag = "sys",
    responses((status = 200, body = Health), (status = 503, body = Health, description = "degraded")))]
pub async fn health(State(s): State<AppState>) -> (StatusCode, Json<Health>) {
    let h = s.vault.health().await;
    let status = if h.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: h.status,
            initialized: h.initialized,
            sealed: h.sealed,
            version: env!("CARGO_PKG_VERSION"),
            storage: h.storage,
            store: h.store,
            disk: h.disk,
            audit_sinks: h.audit_sinks,
        }),
    )
}

#[utoipa::path(get, path = "/api/v1/sys/seal-status", tag = "sys", responses((status = 200, body = SealStatus)))]
pub async fn seal_status(State(s): State<AppState>) -> Result<Json<SealStatus>, ApiError> {
    Ok(Json(s.vault.seal_status().await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// Number of unseal key shares (default 5).
    #[serde(default = "five")]
    pub shares: u8,
    /// Shares needed to unseal (default 3).
    #[serde(default = "three")]
    pub threshold: u8,
}
fn five() -> u8 {
    5
}
fn three() -> u8 {
    3
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InitResponse {
    /// Unseal key shares, hex. Shown only once: store them apart from each other.
    #[schema(value_type = Vec<String>)]
    pub keys: Vec<SecretString>,
    pub threshold: u8,
    /// The initial root token. Shown only once.
    #[schema(value_type = String)]
    pub root_token: SecretString,
}

#[utoipa::path(post, path = "/api/v1/sys/init", tag = "sys", request_body = InitRequest,
    responses((status = 200, body = InitResponse), (status = 400), (status = 409)))]
pub async fn init(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<InitRequest>,
) -> Result<Json<InitResponse>, ApiError> {
    let (shares, token) = s.vault.initialize(b.shares, b.threshold).await?;
    Ok(Json(InitResponse {
        keys: shares
            .iter()
            .map(|k| SecretString::from(k.as_str()))
            .collect(),
        threshold: b.threshold,
        root_token: token,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    /// One unseal key share (hex).
    #[schema(value_type = Option<String>)]
    pub key: Option<SecretString>,
    /// Forget the shares given so far.
    #[serde(default)]
    pub reset: bool,
}

#[utoipa::path(post, path = "/api/v1/sys/unseal", tag = "sys", request_body = UnsealRequest,
    responses((status = 200, body = SealStatus), (status = 400)))]
pub async fn unseal(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<UnsealRequest>,
) -> Result<Json<SealStatus>, ApiError> {
    if b.reset {
        s.vault.reset_unseal().await;
        return Ok(Json(s.vault.seal_status().await?));
    }
    let key = b.key.ok_or_else(|| {
        ApiError::bad_request("give `key` (one unseal key share) or `reset: true`")
    })?;
    Ok(Json(s.vault.submit_unseal_share(key.expose()).await?))
}

#[utoipa::path(post, path = "/api/v1/sys/seal", tag = "sys", responses((status = 200, body = SealStatus)))]
pub async fn seal(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<SealStatus>, ApiError> {
    s.vault.seal(&ctx).await?;
    Ok(Json(s.vault.seal_status().await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RotateResponse {
    /// The new active data key term.
    pub term: u32,
}

#[utoipa::path(post, path = "/api/v1/sys/rotate", tag = "sys", responses((status = 200, body = RotateResponse)))]
pub async fn rotate(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<RotateResponse>, ApiError> {
    Ok(Json(RotateResponse {
        term: s.vault.rotate(&ctx).await?,
    }))
}

#[utoipa::path(post, path = "/api/v1/sys/rewrap", tag = "sys", responses((status = 200, body = credvault_service::rotation::RewrapReport)))]
pub async fn rewrap(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<credvault_service::rotation::RewrapReport>, ApiError> {
    Ok(Json(s.vault.rewrap(&ctx).await?))
}

/// `GET /api/v1/sys/backup`: an encrypted, consistent snapshot of the whole vault, streamed while
/// the server keeps serving (format in `backup.rs`; `credvault operator backup FILE` saves it).
#[utoipa::path(get, path = "/api/v1/sys/backup", tag = "sys", responses((status = 200, content_type = "application/octet-stream", description = "the backup")))]
pub async fn backup(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<axum::response::Response, ApiError> {
    let (header, rx) = s.vault.backup(&ctx).await?;
    let first = futures_util::stream::once(async move {
        Ok::<_, std::io::Error>(axum::body::Bytes::from(header))
    });
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| {
            let chunk = item
                .map(axum::body::Bytes::from)
                .map_err(std::io::Error::other);
            (chunk, rx)
        })
    });
    use futures_util::StreamExt;
    let body = axum::body::Body::from_stream(first.chain(rest));
    Ok(axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
        .header(axum::http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// How many of the newest records (default 20).
    pub n: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit/tail", tag = "audit", params(TailQuery), responses((status = 200, body = Items<AuditRecord>)))]
pub async fn audit_tail(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiQuery(q): ApiQuery<TailQuery>,
) -> Result<Json<Items<AuditRecord>>, ApiError> {
    Ok(Json(Items::all(
        s.vault.audit_tail(&ctx, q.n.unwrap_or(20)).await?,
    )))
}

#[utoipa::path(post, path = "/api/v1/audit/verify", tag = "audit", responses((status = 200, body = Verification)))]
pub async fn audit_verify(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<Verification>, ApiError> {
    Ok(Json(s.vault.audit_verify(&ctx).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    /// Archive the records older than this (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub before: time::OffsetDateTime,
}

/// The records older than `before` as a signed archive file, to write and then commit with
/// `POST /api/v1/audit/archive/commit` (nothing is deleted yet). Admins only.
#[utoipa::path(post, path = "/api/v1/audit/archive", tag = "audit", request_body = ArchiveRequest,
    responses((status = 200, body = credvault_service::archive::ArchiveExport)))]
pub async fn audit_archive(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<ArchiveRequest>,
) -> Result<Json<credvault_service::archive::ArchiveExport>, ApiError> {
    Ok(Json(s.vault.audit_archive_export(&ctx, b.before).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveCommit {
    /// The archive's last record (`through_seq` of the export).
    pub through_seq: i64,
    /// Its hash (`last_hash` of the export).
    pub last_hash: String,
}

/// Delete the archived records (once the archive file is safely written) and start the chain's
/// checkpoint after them. Admins only.
#[utoipa::path(post, path = "/api/v1/audit/archive/commit", tag = "audit", request_body = ArchiveCommit,
    responses((status = 200, body = credvault_service::archive::ArchiveCommitted)))]
pub async fn audit_archive_commit(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<ArchiveCommit>,
) -> Result<Json<credvault_service::archive::ArchiveCommitted>, ApiError> {
    Ok(Json(
        s.vault
            .audit_archive_commit(&ctx, b.through_seq, &b.last_hash)
            .await?,
    ))
}

/// The largest archive file `verify-archive` reads.
pub const MAX_ARCHIVE_BYTES: usize = 1 << 30;

/// Verify an archive file (the request body, as written by `credvault audit archive`) against this
/// vault's audit key. Admins only; the caller is checked before the body is read.
#[utoipa::path(post, path = "/api/v1/audit/verify-archive", tag = "audit", request_body = String,
    responses((status = 200, body = Verification)))]
pub async fn audit_verify_archive(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    body: axum::body::Body,
) -> Result<Json<Verification>, ApiError> {
    s.vault.require_admin_caller(&ctx)?;
    let bytes = axum::body::to_bytes(body, MAX_ARCHIVE_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the archive is larger than 1 GiB or was cut off",
            )
        })?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(Json(s.vault.audit_verify_archive(&ctx, &text).await?))
}
