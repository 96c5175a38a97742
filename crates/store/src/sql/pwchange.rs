//! [`PasswordChangeStore`]: the automatic password change's state (issue 17).

use async_trait::async_trait;
use credvault_core::model::Credential;
use time::OffsetDateTime;
use uuid::Uuid;

use super::common::{i, os, uuid, DbRow};
use super::credentials::update_in;
use super::Backend;
use crate::sql::db_err;
use crate::{
    format_time, parse_time, AuditAppend, NewVersion, PasswordChangeRow, PasswordChangeStore,
    Result, StoreError,
};

const COLS: &str = "cred_id, change_id, pending, started_at, lease_owner, lease_until, lease_seq,
    failures, next_run_at, last_attempt_at, last_success_at, last_result, last_error";

fn ot(r: &DbRow, col: &str) -> Result<Option<OffsetDateTime>> {
    os(r, col)?.as_deref().map(parse_time).transpose()
}

fn row_from(r: &DbRow) -> Result<PasswordChangeRow> {
    use sqlx::Row;
    Ok(PasswordChangeRow {
        cred_id: uuid(r, "cred_id")?,
        change_id: os(r, "change_id")?,
        pending: r.try_get("pending").map_err(db_err)?,
        started_at: ot(r, "started_at")?,
        lease_owner: os(r, "lease_owner")?,
        lease_until: ot(r, "lease_until")?,
        lease_seq: i(r, "lease_seq")?,
        failures: i(r, "failures")?,
        next_run_at: ot(r, "next_run_at")?,
        last_attempt_at: ot(r, "last_attempt_at")?,
        last_success_at: ot(r, "last_success_at")?,
        last_result: os(r, "last_result")?,
        last_error: os(r, "last_error")?,
    })
}

fn lost_lease() -> StoreError {
    StoreError::Conflict("another server took over this password change".into())
}

/// Write `row` inside `tx` if its lease is still at `row.lease_seq` (the seq itself is kept).
async fn save_in(tx: &mut super::common::Conn, row: &PasswordChangeRow) -> Result<()> {
    let n = sqlx::query(
        "UPDATE password_changes
         SET change_id = $1, pending = $2, started_at = $3, lease_owner = $4, lease_until = $5,
             failures = $6, next_run_at = $7, last_attempt_at = $8, last_success_at = $9,
             last_result = $10, last_error = $11
         WHERE cred_id = $12 AND lease_seq = $13",
    )
    .bind(&row.change_id)
    .bind(&row.pending)
    .bind(row.started_at.map(format_time))
    .bind(&row.lease_owner)
    .bind(row.lease_until.map(format_time))
    .bind(row.failures)
    .bind(row.next_run_at.map(format_time))
    .bind(row.last_attempt_at.map(format_time))
    .bind(row.last_success_at.map(format_time))
    .bind(&row.last_result)
    .bind(&row.last_error)
    .bind(row.cred_id.to_string())
    .bind(row.lease_seq)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    if n == 0 {
        return Err(lost_lease());
    }
    Ok(())
}

#[async_trait]
impl PasswordChangeStore for Backend {
    async fn password_change(&self, cred_id: Uuid) -> Result<Option<PasswordChangeRow>> {
        sqlx::query(&format!(
            "SELECT {COLS} FROM password_changes WHERE cred_id = $1"
        ))
        .bind(cred_id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(row_from)
        .transpose()
    }

    async fn password_changes_due(
        &self,
        now: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<PasswordChangeRow>> {
        // Times are RFC 3339 text of varying precision: compared here, not in SQL.
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM password_changes
             WHERE change_id IS NOT NULL OR next_run_at IS NOT NULL
             ORDER BY cred_id"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let mut due = Vec::new();
        for r in &rows {
            let row = row_from(r)?;
            if row.change_id.is_some() || row.next_run_at.is_some_and(|t| t <= now) {
                due.push(row);
            }
            if due.len() as i64 >= limit {
                break;
            }
        }
        Ok(due)
    }

    async fn take_change_lease(
        &self,
        cred_id: Uuid,
        owner: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Option<PasswordChangeRow>> {
        let id = cred_id.to_string();
        let mut tx = self.begin_write().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT lease_seq FROM password_changes WHERE cred_id = $1")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        if exists.is_none() {
            sqlx::query(
                "INSERT INTO password_changes (cred_id, lease_seq, failures) VALUES ($1, 0, 0)
                 ON CONFLICT (cred_id) DO NOTHING",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(|e| match db_err(e) {
                // The credential is gone.
                StoreError::Conflict(_) => StoreError::NotFound("credential".into()),
                other => other,
            })?;
        }
        let Some(r) = sqlx::query(&format!(
            "SELECT {COLS} FROM password_changes WHERE cred_id = $1"
        ))
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        else {
            return Err(StoreError::NotFound("credential".into()));
        };
        let mut row = row_from(&r)?;
        let held_by_other = row.lease_owner.as_deref().is_some_and(|o| o != owner)
            && row.lease_until.is_some_and(|t| t > now);
        if held_by_other {
            return Ok(None);
        }
        let n = sqlx::query(
            "UPDATE password_changes SET lease_owner = $1, lease_until = $2, lease_seq = lease_seq + 1
             WHERE cred_id = $3 AND lease_seq = $4",
        )
        .bind(owner)
        .bind(format_time(until))
        .bind(&id)
        .bind(row.lease_seq)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        self.commit_audited(tx, &AuditAppend::none()).await?;
        row.lease_owner = Some(owner.to_owned());
        row.lease_until = Some(until);
        row.lease_seq += 1;
        Ok(Some(row))
    }

    async fn save_password_change(
        &self,
        row: &PasswordChangeRow,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        save_in(&mut tx, row).await?;
        self.commit_audited(tx, audit).await
    }

    async fn pending_not_of_term(&self, term: u32) -> Result<Vec<(Uuid, String, Vec<u8>)>> {
        let rows = sqlx::query(
            "SELECT cred_id, change_id, pending
             FROM password_changes
             WHERE length(pending) > 0 AND substr(pending, 2, 4) <> $1 AND change_id IS NOT NULL
             ORDER BY cred_id",
        )
        .bind(term.to_be_bytes().to_vec())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                use sqlx::Row;
                Ok((
                    uuid(r, "cred_id")?,
                    os(r, "change_id")?.unwrap_or_default(),
                    r.try_get("pending").map_err(db_err)?,
                ))
            })
            .collect()
    }

    async fn rewrap_pending(&self, cred_id: Uuid, old: &[u8], new: &[u8]) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE password_changes SET pending = $1 WHERE cred_id = $2 AND pending = $3",
        )
        .bind(new)
        .bind(cred_id.to_string())
        .bind(old)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        self.commit_audited(tx, &AuditAppend::none()).await?;
        Ok(n > 0)
    }

    async fn finish_password_change(
        &self,
        row: &PasswordChangeRow,
        cred: Option<(&Credential, i64, &NewVersion)>,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        // The lease first: a server that lost it changes nothing.
        save_in(&mut tx, row).await?;
        if let Some((c, expected, v)) = cred {
            update_in(&mut tx, c, expected, v).await?;
        }
        self.commit_audited(tx, audit).await
    }
}
