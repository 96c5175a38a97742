//! The OpenAPI description of the native API, generated from the handler annotations.

use axum::Json;
use utoipa::OpenApi;

use crate::native;

#[derive(OpenApi)]
#[openapi(
    info(title = "credvault", description = "Native REST API of the credvault credential vault. Authenticate with `X-Vault-Token: <token>` or `Authorization: Bearer <token>`. Errors are `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        native::sys::health, native::sys::seal_status, native::sys::init, native::sys::unseal, native::sys::seal,
        native::sys::rotate, native::sys::rewrap, native::sys::backup, native::sys::audit_tail, native::sys::audit_verify,
        native::sys::audit_archive, native::sys::audit_archive_commit, native::sys::audit_verify_archive,
        native::identity::login, native::identity::whoami,
        native::credentials::create, native::credentials::import, native::credentials::list, native::credentials::get, native::credentials::update,
        native::credentials::remove, native::credentials::secret, native::credentials::versions,
        native::credentials::version, native::credentials::rollback,
        // --- automatic password change (issue 17) ---
        native::credentials::rotate, native::credentials::reconcile, native::credentials::rotation,
        native::identity::list_safes, native::identity::create_safe, native::identity::delete_safe,
        native::identity::safe_members, native::identity::set_safe_member, native::identity::remove_safe_member,
        native::identity::list_users, native::identity::create_user, native::identity::get_user, native::identity::delete_user,
        native::identity::list_groups, native::identity::create_group, native::identity::get_group, native::identity::delete_group,
        native::identity::add_group_member, native::identity::remove_group_member,
        native::identity::list_tokens, native::identity::create_token, native::identity::revoke_token,
        native::apps::list, native::apps::create, native::apps::get, native::apps::remove, native::apps::allow, native::apps::deny, native::apps::client_secret,
        // --- integrations (issue 7) ---
        native::integrations::list, native::integrations::create, native::integrations::get, native::integrations::remove,
        native::integrations::enable, native::integrations::disable, native::integrations::sync, native::integrations::test,
        native::integrations::fetch,
        crate::fetch::fetch,
        // --- PAM A2A door registries (issue 5) ---
        native::identity::list_domains, native::identity::create_domain, native::identity::delete_domain,
        // --- the PAM A2A door (its own envelope; also served under /api/pam and /api/oauth2) ---
        crate::pam::token, crate::pam::upsert, crate::pam::list, crate::pam::read, crate::pam::deactivate,
        crate::pam::activate, crate::pam::release,
    ),
    tags((name = "credentials"), (name = "safes"), (name = "identity"), (name = "auth"), (name = "sys"), (name = "audit"), (name = "apps"), (name = "integrations"), (name = "domains"), (name = "pam-a2a"))
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
