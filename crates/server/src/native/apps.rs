//! `/api/v1/apps`: applications that read credentials by AppID (the CCP door).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use credvault_core::app::{CertRule, Grant};
use credvault_crypto::SecretString;
use serde::Deserialize;

use super::{ApiError, ApiJson, ApiPath, Caller, Items};
use crate::AppState;
use credvault_service::apps::{AppView, NewApp};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    pub app_id: String,
    pub description: Option<String>,
    /// Allowed source addresses (IPs or CIDRs).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Allowed client certificates (issuer plus subject and/or serial).
    #[serde(default)]
    pub certificates: Vec<CertRule>,
    /// A shared secret the application sends in `X-CCP-App-Secret` (at least 16 characters).
    #[schema(value_type = Option<String>)]
    pub header_secret: Option<SecretString>,
    /// Generate a client secret for logins as the application (Vault AppRole: role_id = AppID,
    /// secret_id = this secret). It is in this response only.
    #[serde(default)]
    pub client_secret: bool,
}

/// A created application, with its client secret when one was asked for (shown this once).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedApp {
    #[serde(flatten)]
    pub app: AppView,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub client_secret_value: Option<SecretString>,
}

#[utoipa::path(get, path = "/api/v1/apps", tag = "apps", responses((status = 200, body = Items<AppView>)))]
pub async fn list(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<Items<AppView>>, ApiError> {
    Ok(Json(Items::all(s.vault.list_apps(&ctx).await?)))
}

#[utoipa::path(post, path = "/api/v1/apps", tag = "apps", request_body = CreateApp, responses((status = 201, body = CreatedApp)))]
pub async fn create(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<CreateApp>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewApp {
        app_id: b.app_id,
        description: b.description,
        sources: b.sources,
        certificates: b.certificates,
        header_secret: b.header_secret,
        client_secret: b.client_secret,
    };
    let (app, client_secret_value) = s.vault.create_app(&ctx, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApp {
            app,
            client_secret_value,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/apps/{app_id}", tag = "apps", responses((status = 200, body = AppView)))]
pub async fn get(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AppView>, ApiError> {
    Ok(Json(s.vault.get_app(&ctx, &id).await?))
}

/// A new client secret for the application (OAuth client credentials, Vault AppRole `secret_id`);
/// the previous one stops working. Shown in this response only.
#[utoipa::path(post, path = "/api/v1/apps/{app_id}/client-secret", tag = "apps", responses((status = 200, body = CreatedApp)))]
pub async fn client_secret(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CreatedApp>, ApiError> {
    let (app, secret) = s.vault.new_app_client_secret(&ctx, &id).await?;
    Ok(Json(CreatedApp {
        app,
        client_secret_value: Some(secret),
    }))
}

#[utoipa::path(delete, path = "/api/v1/apps/{app_id}", tag = "apps", responses((status = 204)))]
pub async fn remove(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vault.delete_app(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/apps/{app_id}/allow", tag = "apps", request_body = Grant, responses((status = 200, body = AppView)))]
pub async fn allow(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(g): ApiJson<Grant>,
) -> Result<Json<AppView>, ApiError> {
    Ok(Json(s.vault.set_app_grant(&ctx, &id, &g, true).await?))
}

#[utoipa::path(post, path = "/api/v1/apps/{app_id}/deny", tag = "apps", request_body = Grant, responses((status = 200, body = AppView)))]
pub async fn deny(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(g): ApiJson<Grant>,
) -> Result<Json<AppView>, ApiError> {
    Ok(Json(s.vault.set_app_grant(&ctx, &id, &g, false).await?))
}
