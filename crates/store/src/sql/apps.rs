//! [`AppStore`]: applications, their grants, the application cache's change counter.

use async_trait::async_trait;

use super::common::{app_from, conflict_as, exec, not_found_if_zero, s};
use super::Backend;
use crate::sql::db_err;
use crate::AuditAppend;
use crate::{format_time, AppGrant, AppRecord, AppStore, Result, StoreError};

const APP_COLS: &str = "app_id, owner, description, rules, created_at";

#[async_trait]
impl AppStore for Backend {
    async fn create_app(&self, app: &AppRecord, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO apps ({APP_COLS})
             VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(&app.app_id)
        .bind(&app.owner)
        .bind(&app.description)
        .bind(&app.rules)
        .bind(format_time(app.created_at))
        .execute(&mut *tx)
        .await
        .map_err(conflict_as(StoreError::Conflict(format!(
            "application '{}' already exists",
            app.app_id
        ))))?;
        self.commit_audited(tx, audit).await
    }

    async fn get_app(&self, app_id: &str) -> Result<Option<AppRecord>> {
        sqlx::query(&format!("SELECT {APP_COLS} FROM apps WHERE app_id = $1"))
            .bind(app_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(app_from)
            .transpose()
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>> {
        let rows = sqlx::query(&format!("SELECT {APP_COLS} FROM apps ORDER BY app_id"))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(app_from).collect()
    }

    async fn delete_app(&self, app_id: &str, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = exec(&mut *tx, "DELETE FROM apps WHERE app_id = $1", &[app_id]).await?;
        not_found_if_zero(n, "application")?;
        self.commit_audited(tx, audit).await
    }

    async fn set_app_rules(
        &self,
        app_id: &str,
        rules: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = exec(
            &mut *tx,
            "UPDATE apps SET rules = $1 WHERE app_id = $2",
            &[rules, app_id],
        )
        .await?;
        not_found_if_zero(n, "application")?;
        self.commit_audited(tx, audit).await
    }

    async fn grant_app(
        &self,
        app_id: &str,
        kinds: &[&str],
        target: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for kind in kinds {
            sqlx::query(
                "INSERT INTO app_grants (app_id, kind, target)
                 VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(app_id)
            .bind(kind)
            .bind(target)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as(StoreError::NotFound("application".into())))?;
        }
        self.commit_audited(tx, audit).await
    }

    async fn revoke_app(
        &self,
        app_id: &str,
        kind: &str,
        target: &str,
        and_if_present: &[&str],
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let delete = "DELETE FROM app_grants WHERE app_id = $1 AND kind = $2 AND target = $3";
        let n = exec(&mut *tx, delete, &[app_id, kind, target]).await?;
        not_found_if_zero(n, "grant")?;
        for other in and_if_present {
            exec(&mut *tx, delete, &[app_id, other, target]).await?;
        }
        self.commit_audited(tx, audit).await
    }

    async fn app_grants(&self, app_id: &str) -> Result<Vec<AppGrant>> {
        let rows = sqlx::query(
            "SELECT kind, target
             FROM app_grants
             WHERE app_id = $1
             ORDER BY kind, target",
        )
        .bind(app_id)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(AppGrant {
                    kind: s(r, "kind")?,
                    target: s(r, "target")?,
                })
            })
            .collect()
    }
}
