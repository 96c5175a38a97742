//! The Central Credential Provider door: `GET /AIMWebService/api/Accounts` (seed 002,
//! `contracts/ccp.md`). Applications authenticate by AppID plus their rules; errors are
//! `{"ErrorCode", "ErrorMsg"}` with the contract's statuses.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use credvault_core::ccp::{self, CcpError};
use serde_json::json;

use crate::native::Source;
use crate::AppState;
use credvault_service::apps::GetPasswordError;
use credvault_service::error::ServiceError;

/// The optional shared header secret of an application.
pub const SECRET_HEADER: &str = "x-ccp-app-secret";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/AIMWebService/api/Accounts", get(get_password))
        .route("/AIMWebService/api/Accounts/", get(get_password))
        .route(
            "/AIMWebService/v1.1/aim.asmx",
            get(|| async { "credvault Central Credential Provider" }),
        )
}

fn error(status: StatusCode, code: &str, msg: &str) -> Response {
    (
        status,
        no_cache(),
        Json(json!({"ErrorCode": code, "ErrorMsg": msg})),
    )
        .into_response()
}

fn no_cache() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-cache"),
        (header::PRAGMA, "no-cache"),
    ]
}

fn ccp_error(e: &CcpError) -> Response {
    error(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        e.code,
        &e.message,
    )
}

/// Service failures in this dialect: credvault's own codes, never a password.
fn service_error(e: &ServiceError) -> Response {
    match e {
        ServiceError::Sealed | ServiceError::NotInitialized => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "CVSEALED01E",
            &e.to_string(),
        ),
        ServiceError::AuditFailed => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "CVAUDIT01E",
            "The audit log could not be written, so the password was not returned",
        ),
        ServiceError::Integrity => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "CVINTEG01E",
            &e.to_string(),
        ),
        ServiceError::Integration(m) => error(StatusCode::BAD_GATEWAY, "CVREMOTE01E", m),
        ServiceError::RateLimited => error(
            StatusCode::TOO_MANY_REQUESTS,
            "CVLIMIT01E",
            "Too many failed application authentications from this address; try again later",
        ),
        ServiceError::Domain(credvault_core::DomainError::Invalid { message, .. }) => error(
            StatusCode::BAD_REQUEST,
            "AIMWS030E",
            &format!("Invalid query format: {message}"),
        ),
        other => {
            tracing::error!(error = %other, "ccp door failure");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "CVSTORE01E",
                "The vault storage is unavailable; try again",
            )
        }
    }
}

/// The success body: one flat object of strings, `Content` among them.
#[derive(serde::Serialize)]
struct Found<'a> {
    #[serde(rename = "Content")]
    content: &'a credvault_crypto::SecretString,
    #[serde(flatten)]
    fields: &'a BTreeMap<String, String>,
}

async fn get_password(
    State(s): State<AppState>,
    Source(ip): Source,
    peer: Option<axum::Extension<crate::tls::PeerCert>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params: Vec<(String, String)> = match serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
    {
        Ok(p) => p,
        Err(_) => return ccp_error(&CcpError::invalid_characters("query string")),
    };
    let req = match ccp::parse(&params) {
        Ok(r) => r,
        Err(e) => {
            s.vault.audit_unparsed_ccp_call(&params, ip, e.code).await;
            return ccp_error(&e);
        }
    };
    let secret = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    let cert = peer.as_ref().and_then(|p| p.0 .0.as_ref());
    match s.vault.app_get_password(&req, ip, secret, cert).await {
        Ok(p) => {
            // Serialised straight from the zeroizing secret; no plain copy is kept.
            let body = Found {
                content: &p.content,
                fields: &p.fields,
            };
            (StatusCode::OK, no_cache(), Json(body)).into_response()
        }
        Err(GetPasswordError::Ccp(e)) => ccp_error(&e),
        Err(GetPasswordError::Service(e)) => service_error(&e),
    }
}
