//! Users, groups, safes and their members, tokens and login.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use credvault_core::model::{Group, OwnerKind, Safe, SafeMember, TokenInfo, User, UserKind};
use credvault_crypto::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiError, ApiJson, ApiPath, Caller, Items, Source, DOOR};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    /// `human` (default) or `service`.
    #[serde(default = "human")]
    pub kind: UserKind,
    #[serde(default)]
    pub admin: bool,
    /// For human users: a password of at least 12 characters enables `auth/login`.
    #[schema(value_type = Option<String>)]
    pub password: Option<SecretString>,
}

fn human() -> UserKind {
    UserKind::Human
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// The user the token acts as (admins only; default: yourself).
    pub user: Option<String>,
    /// Lifetime in seconds; no expiry when absent.
    pub ttl_seconds: Option<i64>,
    pub description: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NewToken {
    /// The token. Shown only in this response; credvault keeps only a keyed hash.
    #[schema(value_type = String)]
    pub token: SecretString,
    #[serde(flatten)]
    pub info: TokenInfo,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    #[schema(value_type = String)]
    pub password: SecretString,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub admin: bool,
    pub groups: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/auth/self", tag = "auth", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(Caller(ctx): Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        admin: ctx.actor.is_admin(),
        name: ctx.actor.name,
        groups: ctx.actor.groups,
    })
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = NewToken), (status = 401), (status = 429)))]
pub async fn login(
    State(s): State<AppState>,
    Source(ip): Source,
    ApiJson(b): ApiJson<Login>,
) -> Result<Json<NewToken>, ApiError> {
    let (info, token) = s.vault.login(ip, DOOR, &b.username, &b.password).await?;
    Ok(Json(NewToken { token, info }))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "identity", responses((status = 200, body = Items<User>)))]
pub async fn list_users(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<Items<User>>, ApiError> {
    Ok(Json(Items::all(s.vault.list_users(&ctx).await?)))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "identity", request_body = CreateUser, responses((status = 201, body = User)))]
pub async fn create_user(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<CreateUser>,
) -> Result<impl IntoResponse, ApiError> {
    let u = s
        .vault
        .create_user(&ctx, &b.name, b.kind, b.admin, b.password.as_ref())
        .await?;
    Ok((StatusCode::CREATED, Json(u)))
}

#[utoipa::path(get, path = "/api/v1/users/{name}", tag = "identity", responses((status = 200, body = User)))]
pub async fn get_user(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(s.vault.get_user(&ctx, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "identity", responses((status = 204)))]
pub async fn delete_user(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vault.delete_user(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "identity", responses((status = 200, body = Items<Group>)))]
pub async fn list_groups(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<Items<Group>>, ApiError> {
    Ok(Json(Items::all(s.vault.list_groups(&ctx).await?)))
}

#[utoipa::path(post, path = "/api/v1/groups", tag = "identity", request_body = CreateGroup, responses((status = 201, body = Group)))]
pub async fn create_group(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<CreateGroup>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.vault.create_group(&ctx, &b.name).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/groups/{name}", tag = "identity", responses((status = 200, body = Group)))]
pub async fn get_group(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(s.vault.get_group(&ctx, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/groups/{name}", tag = "identity", responses((status = 204)))]
pub async fn delete_group(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vault.delete_group(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/groups/{name}/members/{user}", tag = "identity", responses((status = 200, body = Group)))]
pub async fn add_group_member(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath((g, u)): ApiPath<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(s.vault.add_group_member(&ctx, &g, &u).await?))
}

#[utoipa::path(delete, path = "/api/v1/groups/{name}/members/{user}", tag = "identity", responses((status = 204)))]
pub async fn remove_group_member(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath((g, u)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.vault.remove_group_member(&ctx, &g, &u).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/safes", tag = "safes", responses((status = 200, body = Items<Safe>)))]
pub async fn list_safes(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<Items<Safe>>, ApiError> {
    Ok(Json(Items::all(s.vault.list_safes(&ctx).await?)))
}

#[utoipa::path(post, path = "/api/v1/safes", tag = "safes", request_body = Safe, responses((status = 201, body = Safe)))]
pub async fn create_safe(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<Safe>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.vault.create_safe(&ctx, b).await?),
    ))
}

#[utoipa::path(delete, path = "/api/v1/safes/{name}", tag = "safes", responses((status = 204), (status = 409)))]
pub async fn delete_safe(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vault.delete_safe(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/safes/{name}/members", tag = "safes", responses((status = 200, body = Items<SafeMember>)))]
pub async fn safe_members(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Items<SafeMember>>, ApiError> {
    Ok(Json(Items::all(s.vault.safe_members(&ctx, &name).await?)))
}

#[utoipa::path(put, path = "/api/v1/safes/{name}/members", tag = "safes", request_body = SafeMember, responses((status = 200, body = SafeMember)))]
pub async fn set_safe_member(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<SafeMember>,
) -> Result<Json<SafeMember>, ApiError> {
    Ok(Json(s.vault.set_safe_member(&ctx, &name, b).await?))
}

#[utoipa::path(delete, path = "/api/v1/safes/{name}/members/{kind}/{member}", tag = "safes", responses((status = 204)))]
pub async fn remove_safe_member(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath((name, kind, member)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = OwnerKind::parse(&kind)
        .ok_or_else(|| ApiError::bad_request("member type must be 'user' or 'group'"))?;
    s.vault
        .remove_safe_member(&ctx, &name, kind, &member)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth", responses((status = 200, body = Items<TokenInfo>)))]
pub async fn list_tokens(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<Items<TokenInfo>>, ApiError> {
    Ok(Json(Items::all(s.vault.list_tokens(&ctx).await?)))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", request_body = CreateToken, responses((status = 201, body = NewToken)))]
pub async fn create_token(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    let (info, token) = s
        .vault
        .create_token(&ctx, b.user.as_deref(), b.ttl_seconds, b.description)
        .await?;
    Ok((StatusCode::CREATED, Json(NewToken { token, info })))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "auth", responses((status = 204), (status = 404)))]
pub async fn revoke_token(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    s.vault.revoke_token(&ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A domain to register (credentials and devices of the A2A door may name it then).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    pub name: String,
    pub abbreviation: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/domains", tag = "domains", responses((status = 200, body = Items<credvault_core::model::Domain>)))]
pub async fn list_domains(
    State(s): State<AppState>,
    Caller(ctx): Caller,
) -> Result<Json<Items<credvault_core::model::Domain>>, ApiError> {
    Ok(Json(Items::all(s.vault.list_domains(&ctx).await?)))
}

#[utoipa::path(post, path = "/api/v1/domains", tag = "domains", request_body = NewDomain, responses((status = 201, body = credvault_core::model::Domain), (status = 409)))]
pub async fn create_domain(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<NewDomain>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.vault.create_domain(&ctx, &b.name, b.abbreviation).await?),
    ))
}

#[utoipa::path(delete, path = "/api/v1/domains/{name}", tag = "domains", responses((status = 204), (status = 404)))]
pub async fn delete_domain(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vault.delete_domain(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
