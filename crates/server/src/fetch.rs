//! The fetch-credentials door (seeds 000/001) over `credvault_service::fetch` (see there).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use credvault_service::fetch::{FetchedCredential, DOOR};

use crate::native::{ApiError, ApiQuery, Caller};
use crate::AppState;

const MAX_NAMES: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchQuery {
    /// Comma-separated names (fetch all).
    pub credential_names: Option<String>,
    /// One name (fetch one).
    pub identifier: Option<String>,
}

#[utoipa::path(get, path = "/api/fetch-credentials", tag = "credentials",
    params(("credential_names" = Option<String>, Query, description = "comma-separated names: fetch all"),
           ("identifier" = Option<String>, Query, description = "one name: a list of zero or one")),
    responses((status = 200, body = Vec<FetchedCredential>)))]
pub async fn fetch(
    State(s): State<AppState>,
    Caller(mut ctx): Caller,
    ApiQuery(q): ApiQuery<FetchQuery>,
) -> Result<Json<Vec<FetchedCredential>>, ApiError> {
    ctx.door = DOOR;
    if let Some(id) = q.identifier {
        return Ok(Json(s.vault.fetch_credential(&ctx, id.trim()).await));
    }
    let names: Vec<String> = q
        .credential_names
        .unwrap_or_default()
        .split(',')
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if names.len() > MAX_NAMES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_NAMES} credential_names"
        )));
    }
    Ok(Json(s.vault.fetch_credentials(&ctx, &names).await?))
}
