use async_trait::async_trait;

use crate::AuditAppend;

use crate::{AppGrant, AppRecord, Result};

/// Applications (AppID callers), their grants, and the change counter of the application cache.
#[async_trait]
pub trait AppStore: Send + Sync {
    async fn create_app(&self, app: &AppRecord, audit: &AuditAppend<'_>) -> Result<()>;
    async fn get_app(&self, app_id: &str) -> Result<Option<AppRecord>>;
    async fn list_apps(&self) -> Result<Vec<AppRecord>>;
    async fn delete_app(&self, app_id: &str, audit: &AuditAppend<'_>) -> Result<()>;
    async fn set_app_rules(&self, app_id: &str, rules: &str, audit: &AuditAppend<'_>)
        -> Result<()>;
    /// Grant (`allow`) or revoke an application's access to a safe or a credential.
    /// Grant each of `kinds` on `target` (already granted ones stay).
    async fn grant_app(
        &self,
        app_id: &str,
        kinds: &[&str],
        target: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    /// Take away `kind` on `target` (not found when not granted) and any of `and_if_present`.
    async fn revoke_app(
        &self,
        app_id: &str,
        kind: &str,
        target: &str,
        and_if_present: &[&str],
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    /// Every grant, ordered by kind and target.
    async fn app_grants(&self, app_id: &str) -> Result<Vec<AppGrant>>;
}
