//! `/api/v1/integrations`: external vaults credvault pulls credentials from (read-only mirrors).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use credvault_connectors::{Kind, Secrets, Settings};
use credvault_core::model::Credential;
use credvault_crypto::SecretString;
use serde::Deserialize;

use super::{ApiError, ApiJson, ApiPath, Caller, Items};
use crate::AppState;
use credvault_service::integrations::{IntegrationView, NewIntegration, TestReport};

/// A new integration: its settings, secrets, the safe its mirrors go into.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    pub name: String,
    /// `vault-kv`, `ccp` or `credvault`.
    #[schema(value_type = String)]
    pub kind: Kind,
    pub url: String,
    /// The safe the mirrored credentials are put in (read-only there).
    pub safe: String,
    #[serde(default)]
    pub credential_names: Vec<String>,
    /// Seconds a fetched credential is served before it is fetched again; 0 = no cache.
    #[serde(default)]
    pub cache_expiry_seconds: u64,
    /// Start enabled (default true): the first sync runs at once.
    #[serde(default = "yes")]
    pub enabled: bool,
    pub mount: Option<String>,
    pub folder: Option<String>,
    pub role_id: Option<String>,
    pub app_id: Option<String>,
    /// CCP `Safe` parameter (the remote's safe).
    pub remote_safe: Option<String>,
    pub ca_cert: Option<String>,
    pub timeout_seconds: Option<u64>,
    #[schema(value_type = Option<String>)]
    pub token: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    pub secret_id: Option<SecretString>,
    /// PEM client certificate followed by its private key (CCP over mTLS).
    #[schema(value_type = Option<String>)]
    pub client_identity: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    pub header_secret: Option<SecretString>,
}

fn yes() -> bool {
    true
}

/// Which credential to fetch on demand.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchOne {
    pub identifier: String,
}

#[utoipa::path(get, path = "/api/v1/integrations", tag = "integrations", responses((status = 200, body = Items<IntegrationView>)))]
pub async fn list(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<Items<IntegrationView>>, ApiError> {
    Ok(Json(Items::all(s.vault.list_integrations(&ctx).await?)))
}

#[utoipa::path(post, path = "/api/v1/integrations", tag = "integrations", request_body = CreateIntegration, responses((status = 201, body = IntegrationView)))]
pub async fn create(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<CreateIntegration>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewIntegration {
        name: b.name,
        settings: Settings {
            kind: b.kind,
            url: b.url,
            credential_names: b.credential_names,
            cache_expiry_seconds: b.cache_expiry_seconds,
            mount: b.mount,
            folder: b.folder,
            role_id: b.role_id,
            app_id: b.app_id,
            safe: b.remote_safe,
            ca_cert: b.ca_cert,
            timeout_seconds: b.timeout_seconds,
        },
        secrets: Secrets {
            token: b.token,
            secret_id: b.secret_id,
            client_identity: b.client_identity,
            header_secret: b.header_secret,
        },
        safe: b.safe,
        enabled: b.enabled,
    };
    Ok((
        StatusCode::CREATED,
        Json(s.vault.add_integration(&ctx, new).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/integrations/{name}", tag = "integrations", responses((status = 200, body = IntegrationView)))]
pub async fn get(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    Ok(Json(s.vault.get_integration(&ctx, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/integrations/{name}", tag = "integrations", responses((status = 204)))]
pub async fn remove(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vault.remove_integration(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/integrations/{name}/enable", tag = "integrations", responses((status = 200, body = IntegrationView)))]
pub async fn enable(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    Ok(Json(
        s.vault.set_integration_enabled(&ctx, &name, true).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/integrations/{name}/disable", tag = "integrations", responses((status = 200, body = IntegrationView)))]
pub async fn disable(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    Ok(Json(
        s.vault.set_integration_enabled(&ctx, &name, false).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/integrations/{name}/sync", tag = "integrations", responses((status = 200, body = IntegrationView), (status = 502)))]
pub async fn sync(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    Ok(Json(s.vault.sync_integration(&ctx, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/integrations/{name}/test", tag = "integrations", responses((status = 200, body = TestReport)))]
pub async fn test(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<TestReport>, ApiError> {
    Ok(Json(s.vault.test_integration(&ctx, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/integrations/{name}/fetch", tag = "integrations", request_body = FetchOne, responses((status = 200, body = Credential), (status = 409), (status = 502)))]
pub async fn fetch(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<FetchOne>,
) -> Result<Json<Credential>, ApiError> {
    Ok(Json(
        s.vault
            .fetch_integration_credential(&ctx, &name, &b.identifier)
            .await?,
    ))
}
