use async_trait::async_trait;

use crate::AuditAppend;

use crate::{IntegrationRecord, Result};

/// Integrations (issue 7): external vaults credvault pulls from.
#[async_trait]
pub trait IntegrationStore: Send + Sync {
    async fn create_integration(
        &self,
        rec: &IntegrationRecord,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    async fn get_integration(&self, name: &str) -> Result<Option<IntegrationRecord>>;
    async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>>;
    /// Replace settings, secrets, safe and enabled (not the status).
    async fn update_integration(
        &self,
        rec: &IntegrationRecord,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    async fn set_integration_status(&self, name: &str, status: &str) -> Result<()>;
    async fn delete_integration(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()>;
}
