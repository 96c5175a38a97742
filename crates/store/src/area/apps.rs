use async_trait::async_trait;

use crate::{AppGrant, AppRecord, Result};

/// Applications (AppID callers), their grants, and the change counter of the application cache.
#[async_trait]
pub trait AppStore: Send + Sync {
    async fn create_app(&self, app: &AppRecord) -> Result<()>;
    async fn get_app(&self, app_id: &str) -> Result<Option<AppRecord>>;
    async fn list_apps(&self) -> Result<Vec<AppRecord>>;
    async fn delete_app(&self, app_id: &str) -> Result<()>;
    async fn set_app_rules(&self, app_id: &str, rules: &str) -> Result<()>;
    /// Grant (`allow`) or revoke an application's access to a safe or a credential.
    async fn grant_app(&self, app_id: &str, kind: &str, target: &str) -> Result<()>;
    async fn revoke_app(&self, app_id: &str, kind: &str, target: &str) -> Result<()>;
    /// Every grant, ordered by kind and target.
    async fn app_grants(&self, app_id: &str) -> Result<Vec<AppGrant>>;

    // --- caches (issue 4)
    /// A counter bumped by triggers whenever an application's rules or grants change (any server).
    async fn change_epoch(&self) -> Result<i64>;
}
