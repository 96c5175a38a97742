//! The native REST API under `/api/v1`: the design centre every other door maps onto.

pub mod apps;
pub mod credentials;
pub mod error;
pub mod identity;
pub mod integrations;
pub mod sys;

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{delete, get, post, put};
use axum::Router;
pub use error::ApiError;
use serde::Serialize;

pub use crate::edge::Source;
use crate::edge::{self, source_ip, token_from_headers, Refusal, Serves};
use crate::AppState;
use credvault_service::Ctx;

pub const DOOR: &str = "native";

/// JSON body with errors in the native format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A list response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
    /// Cursor for the next page (`after=`), when there may be more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> Items<T> {
    pub fn all(items: Vec<T>) -> Self {
        Self { items, next: None }
    }
}

/// The authenticated caller of a native API request.
pub struct Caller(pub Ctx);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = token_from_headers(&parts.headers);
        edge::caller(
            state,
            token.as_deref(),
            source_ip(parts),
            DOOR,
            Serves::People,
        )
        .await
        .map(Caller)
        .map_err(|r| match r {
            Refusal::Service(e) => e.into(),
            Refusal::WrongKind(_) => ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "an application's login token works only on the door it logged in through",
            ),
        })
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sys/health", get(sys::health))
        .route("/sys/seal-status", get(sys::seal_status))
        .route("/sys/init", post(sys::init))
        .route("/sys/unseal", post(sys::unseal))
        .route("/sys/seal", post(sys::seal))
        .route("/sys/rotate", post(sys::rotate))
        .route("/sys/rewrap", post(sys::rewrap))
        .route("/sys/backup", get(sys::backup))
        .route("/audit/tail", get(sys::audit_tail))
        .route("/audit/verify", post(sys::audit_verify))
        .route("/audit/archive", post(sys::audit_archive))
        .route("/audit/archive/commit", post(sys::audit_archive_commit))
        .route(
            "/audit/verify-archive",
            post(sys::audit_verify_archive).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/auth/login", post(identity::login))
        .route("/auth/self", get(identity::whoami))
        .route(
            "/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route(
            "/credentials/{id}",
            get(credentials::get)
                .put(credentials::update)
                .patch(credentials::update)
                .delete(credentials::remove),
        )
        .route("/credentials/import", post(credentials::import))
        .route("/credentials/{id}/secret", get(credentials::secret))
        .route("/credentials/{id}/versions", get(credentials::versions))
        .route(
            "/credentials/{id}/versions/{version}",
            get(credentials::version),
        )
        .route("/credentials/{id}/rollback", post(credentials::rollback))
        .route("/credentials/{id}/rotate", post(credentials::rotate))
        .route("/credentials/{id}/reconcile", post(credentials::reconcile))
        .route("/credentials/{id}/rotation", get(credentials::rotation))
        .route(
            "/safes",
            get(identity::list_safes).post(identity::create_safe),
        )
        .route("/safes/{name}", delete(identity::delete_safe))
        .route(
            "/safes/{name}/members",
            get(identity::safe_members).put(identity::set_safe_member),
        )
        .route(
            "/safes/{name}/members/{kind}/{member}",
            delete(identity::remove_safe_member),
        )
        .route(
            "/users",
            get(identity::list_users).post(identity::create_user),
        )
        .route(
            "/users/{name}",
            get(identity::get_user).delete(identity::delete_user),
        )
        .route(
            "/groups",
            get(identity::list_groups).post(identity::create_group),
        )
        .route(
            "/groups/{name}",
            get(identity::get_group).delete(identity::delete_group),
        )
        .route(
            "/groups/{name}/members/{user}",
            put(identity::add_group_member).delete(identity::remove_group_member),
        )
        .route(
            "/tokens",
            get(identity::list_tokens).post(identity::create_token),
        )
        .route("/tokens/{id}", delete(identity::revoke_token))
        .route("/apps", get(apps::list).post(apps::create))
        .route("/apps/{app_id}", get(apps::get).delete(apps::remove))
        .route("/apps/{app_id}/allow", post(apps::allow))
        .route("/apps/{app_id}/deny", post(apps::deny))
        .route("/apps/{app_id}/client-secret", post(apps::client_secret))
        // --- integrations (issue 7) ---
        .route(
            "/integrations",
            get(integrations::list).post(integrations::create),
        )
        .route(
            "/integrations/{name}",
            get(integrations::get).delete(integrations::remove),
        )
        .route("/integrations/{name}/enable", post(integrations::enable))
        .route("/integrations/{name}/disable", post(integrations::disable))
        .route("/integrations/{name}/sync", post(integrations::sync))
        .route("/integrations/{name}/test", post(integrations::test))
        .route("/integrations/{name}/fetch", post(integrations::fetch))
        // --- PAM A2A door registries (issue 5) ---
        .route(
            "/domains",
            get(identity::list_domains).post(identity::create_domain),
        )
        .route("/domains/{name}", delete(identity::delete_domain))
        .route("/openapi.json", get(crate::openapi::serve))
}
