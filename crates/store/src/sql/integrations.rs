//! [`IntegrationStore`]: the external vaults credvault pulls from.

use async_trait::async_trait;

use super::common::{conflict_as, exec, integration_from, not_found_if_zero};
use super::Backend;
use crate::sql::db_err;
use crate::AuditAppend;
use crate::{format_time, IntegrationRecord, IntegrationStore, Result, StoreError};

const INTEGRATION_COLS: &str = "name, settings, secrets, safe, enabled, status, created_at";

#[async_trait]
impl IntegrationStore for Backend {
    async fn create_integration(
        &self,
        rec: &IntegrationRecord,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO integrations ({INTEGRATION_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&rec.name)
        .bind(&rec.settings)
        .bind(&rec.secrets)
        .bind(&rec.safe)
        .bind(rec.enabled)
        .bind(&rec.status)
        .bind(format_time(rec.created_at))
        .execute(&mut *tx)
        .await
        .map_err(conflict_as(StoreError::Conflict(format!(
            "integration '{}' already exists",
            rec.name
        ))))?;
        self.commit_audited(tx, audit).await
    }

    async fn get_integration(&self, name: &str) -> Result<Option<IntegrationRecord>> {
        sqlx::query(&format!(
            "SELECT {INTEGRATION_COLS} FROM integrations WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(integration_from)
        .transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {INTEGRATION_COLS} FROM integrations ORDER BY name"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(integration_from).collect()
    }

    async fn update_integration(
        &self,
        rec: &IntegrationRecord,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE integrations
             SET settings = $1, secrets = $2, safe = $3, enabled = $4
             WHERE name = $5",
        )
        .bind(&rec.settings)
        .bind(&rec.secrets)
        .bind(&rec.safe)
        .bind(rec.enabled)
        .bind(&rec.name)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        not_found_if_zero(n, "integration")?;
        self.commit_audited(tx, audit).await
    }

    async fn set_integration_status(&self, name: &str, status: &str) -> Result<()> {
        let n = exec(
            &self.writer,
            "UPDATE integrations SET status = $1 WHERE name = $2",
            &[status, name],
        )
        .await?;
        not_found_if_zero(n, "integration")
    }

    async fn delete_integration(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = exec(
            &mut *tx,
            "DELETE FROM integrations WHERE name = $1",
            &[name],
        )
        .await?;
        not_found_if_zero(n, "integration")?;
        self.commit_audited(tx, audit).await
    }
}
