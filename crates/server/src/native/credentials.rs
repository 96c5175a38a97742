//! `/api/v1/credentials`: create, read, update, delete, list, versions, rollback, secret reads.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use credvault_core::model::{
    Credential, CredentialMeta, Device, Owner, OwnerKind, SecretPayload, VersionInfo,
};
use credvault_crypto::SecretString;
use credvault_store::CredentialFilter;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::{ApiError, ApiJson, ApiPath, ApiQuery, Caller, Items};
use crate::AppState;

/// Body of `POST /api/v1/credentials`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    pub identifier: Option<String>,
    pub name: String,
    #[serde(default)]
    pub username: String,
    #[schema(value_type = Option<String>)]
    pub secret: Option<SecretString>,
    pub additional_info: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub credential_type: Option<String>,
    pub domain: Option<String>,
    pub device: Option<Device>,
    pub safe: Option<String>,
    pub folder: Option<String>,
    pub owner: Option<Owner>,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub parameters: BTreeMap<String, SecretString>,
    /// Non-secret account properties (`PolicyID`, `Database`, `LogonDomain`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

/// Present and `null` clears, absent keeps.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `PUT`/`PATCH /api/v1/credentials/{id}`: fields present replace, `null` clears,
/// absent keep. `parameters` replaces the whole map; `expected_version` makes it a compare-and-set.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCredential {
    pub expected_version: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub identifier: Option<Option<String>>,
    pub name: Option<String>,
    pub username: Option<String>,
    #[schema(value_type = Option<String>)]
    pub secret: Option<SecretString>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub additional_info: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub credential_type: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub domain: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Device>)]
    pub device: Option<Option<Device>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub safe: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub folder: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Owner>)]
    pub owner: Option<Option<Owner>>,
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub parameters: Option<BTreeMap<String, SecretString>>,
    /// Replaces the whole property map.
    pub properties: Option<BTreeMap<String, String>>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

impl UpdateCredential {
    pub(crate) fn apply(&self, m: &mut CredentialMeta, p: &mut SecretPayload) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut m.identifier, &self.identifier);
        set(&mut m.name, &self.name);
        set(&mut m.username, &self.username);
        set(&mut m.additional_info, &self.additional_info);
        set(&mut m.tags, &self.tags);
        set(&mut m.credential_type, &self.credential_type);
        set(&mut m.domain, &self.domain);
        set(&mut m.device, &self.device);
        set(&mut m.safe, &self.safe);
        set(&mut m.folder, &self.folder);
        set(&mut m.owner, &self.owner);
        set(&mut m.settings, &self.settings);
        set(&mut m.properties, &self.properties);
        set(&mut p.secret, &self.secret);
        set(&mut p.parameters, &self.parameters);
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub safe: Option<String>,
    pub folder: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub identifier: Option<String>,
    pub hostname: Option<String>,
    pub ip: Option<String>,
    pub tag: Option<String>,
    /// `user:NAME` or `group:NAME`.
    pub owner: Option<String>,
    /// Cursor from the previous page's `next`.
    pub after: Option<Uuid>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SecretQuery {
    /// A past version; the current one when absent.
    pub version: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    pub version: i64,
}

/// A secret read's response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretResponse {
    pub id: Uuid,
    pub version: i64,
    #[schema(value_type = String)]
    pub secret: SecretString,
    #[schema(value_type = BTreeMap<String, String>)]
    pub parameters: BTreeMap<String, SecretString>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionResponse {
    #[serde(flatten)]
    pub info: VersionInfo,
    #[serde(flatten)]
    pub meta: CredentialMeta,
}

#[utoipa::path(post, path = "/api/v1/credentials", tag = "credentials", request_body = CreateCredential,
    responses((status = 201, body = Credential), (status = 400), (status = 403), (status = 409)))]
pub async fn create(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<CreateCredential>,
) -> Result<impl IntoResponse, ApiError> {
    let (meta, payload) = b.into_parts();
    let cred = s.vault.create_credential(&ctx, meta, payload).await?;
    Ok((StatusCode::CREATED, Json(cred)))
}

impl CreateCredential {
    pub(crate) fn into_parts(self) -> (CredentialMeta, SecretPayload) {
        let meta = CredentialMeta {
            identifier: self.identifier,
            name: self.name,
            username: self.username,
            additional_info: self.additional_info,
            tags: self.tags,
            credential_type: self.credential_type,
            domain: self.domain,
            device: self.device,
            safe: self.safe,
            folder: self.folder,
            owner: self.owner,
            parameter_names: vec![],
            properties: self.properties,
            settings: self.settings,
        };
        let payload = SecretPayload {
            secret: self.secret.unwrap_or_default(),
            parameters: self.parameters,
        };
        (meta, payload)
    }
}

/// Body of `POST /api/v1/credentials/import`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportCredentials {
    /// 1 to 1000 credentials, each as for `POST /api/v1/credentials`.
    pub credentials: Vec<CreateCredential>,
}

/// The ids of imported credentials, in the order given.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Imported {
    pub ids: Vec<Uuid>,
}

#[utoipa::path(post, path = "/api/v1/credentials/import", tag = "credentials", request_body = ImportCredentials,
    responses((status = 201, body = Imported), (status = 400), (status = 403), (status = 409)))]
pub async fn import(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiJson(b): ApiJson<ImportCredentials>,
) -> Result<impl IntoResponse, ApiError> {
    let items = b
        .credentials
        .into_iter()
        .map(CreateCredential::into_parts)
        .collect();
    let created = s.vault.import_credentials(&ctx, items).await?;
    Ok((
        StatusCode::CREATED,
        Json(Imported {
            ids: created.iter().map(|c| c.id).collect(),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/credentials", tag = "credentials", params(ListQuery),
    responses((status = 200, body = Items<Credential>)))]
pub async fn list(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Items<Credential>>, ApiError> {
    let owner = match q.owner.as_deref() {
        None => None,
        Some(o) => {
            let (k, n) = o
                .split_once(':')
                .ok_or_else(|| ApiError::bad_request("owner must be user:NAME or group:NAME"))?;
            let kind = OwnerKind::parse(k)
                .ok_or_else(|| ApiError::bad_request("owner must be user:NAME or group:NAME"))?;
            Some(Owner {
                kind,
                name: n.to_owned(),
            })
        }
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let filter = CredentialFilter {
        safe: q.safe,
        folder: q.folder,
        name: q.name,
        username: q.username,
        identifier: q.identifier,
        hostname: q.hostname,
        ip: q.ip,
        tag: q.tag,
        owner,
        after: q.after,
        limit,
        ..Default::default()
    };
    let items = s.vault.list_credentials(&ctx, filter).await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|c| c.id.to_string()))
        .flatten();
    Ok(Json(Items { items, next }))
}

#[utoipa::path(get, path = "/api/v1/credentials/{id}", tag = "credentials",
    responses((status = 200, body = Credential), (status = 403), (status = 404)))]
pub async fn get(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Credential>, ApiError> {
    Ok(Json(s.vault.get_credential(&ctx, id).await?))
}

#[utoipa::path(put, path = "/api/v1/credentials/{id}", tag = "credentials", request_body = UpdateCredential,
    responses((status = 200, body = Credential), (status = 400), (status = 403), (status = 404), (status = 409)))]
pub async fn update(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<UpdateCredential>,
) -> Result<Json<Credential>, ApiError> {
    let cred = s
        .vault
        .update_credential(&ctx, id, b.expected_version, "update", |m, p| {
            b.apply(m, p);
            Ok(())
        })
        .await?;
    Ok(Json(cred))
}

#[utoipa::path(delete, path = "/api/v1/credentials/{id}", tag = "credentials",
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn remove(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    s.vault.delete_credential(&ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/credentials/{id}/secret", tag = "credentials", params(SecretQuery),
    responses((status = 200, body = SecretResponse), (status = 403), (status = 404)))]
pub async fn secret(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<SecretQuery>,
) -> Result<Json<SecretResponse>, ApiError> {
    let r = s.vault.read_secret(&ctx, id, q.version).await?;
    Ok(Json(SecretResponse {
        id: r.id,
        version: r.version,
        secret: r.secret,
        parameters: r.parameters,
    }))
}

#[utoipa::path(get, path = "/api/v1/credentials/{id}/versions", tag = "credentials",
    responses((status = 200, body = Items<VersionInfo>)))]
pub async fn versions(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Items<VersionInfo>>, ApiError> {
    Ok(Json(Items::all(s.vault.versions(&ctx, id).await?)))
}

#[utoipa::path(get, path = "/api/v1/credentials/{id}/versions/{version}", tag = "credentials",
    responses((status = 200, body = VersionResponse)))]
pub async fn version(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath((id, v)): ApiPath<(Uuid, i64)>,
) -> Result<Json<VersionResponse>, ApiError> {
    let (info, meta) = s.vault.version_meta(&ctx, id, v).await?;
    Ok(Json(VersionResponse { info, meta }))
}

#[utoipa::path(post, path = "/api/v1/credentials/{id}/rollback", tag = "credentials", request_body = RollbackBody,
    responses((status = 200, body = Credential)))]
pub async fn rollback(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<RollbackBody>,
) -> Result<Json<Credential>, ApiError> {
    Ok(Json(s.vault.rollback(&ctx, id, b.version).await?))
}

/// `POST /api/v1/credentials/{id}/rotate`: change the password on the target now (issue 17). The
/// caller needs `write`; the answer comes when the run is over.
#[utoipa::path(post, path = "/api/v1/credentials/{id}/rotate", tag = "credentials",
    responses((status = 200, body = credvault_service::pwchange::RunReport, description = "outcome changed, settled, failed (the working value unchanged; error says why) or busy (another server is changing it)"),
              (status = 400, description = "no change plugin set"), (status = 403), (status = 404)))]
pub async fn rotate(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<credvault_service::pwchange::RunReport>, ApiError> {
    Ok(Json(s.vault.rotate_now(&ctx, id).await?))
}

/// `POST /api/v1/credentials/{id}/reconcile`: set a new password through the reconciliation
/// credential now (settings `status` and `reconciliation_credential`), as after an out-of-band
/// change on the target. The caller needs `write`.
#[utoipa::path(post, path = "/api/v1/credentials/{id}/reconcile", tag = "credentials",
    responses((status = 200, body = credvault_service::pwchange::RunReport, description = "outcome reconciled, or failed (error says why)"),
              (status = 400, description = "reconciliation is off"), (status = 403), (status = 404)))]
pub async fn reconcile(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<credvault_service::pwchange::RunReport>, ApiError> {
    Ok(Json(s.vault.reconcile_now(&ctx, id).await?))
}

/// `GET /api/v1/credentials/{id}/rotation`: the automatic change's settings, schedule, last result
/// and history (the versions its changes made).
#[utoipa::path(get, path = "/api/v1/credentials/{id}/rotation", tag = "credentials",
    responses((status = 200, body = credvault_service::pwchange::RotationStatus), (status = 404)))]
pub async fn rotation(
    State(s): State<AppState>,
    Caller(ctx): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<credvault_service::pwchange::RotationStatus>, ApiError> {
    Ok(Json(s.vault.rotation_status(&ctx, id).await?))
}
