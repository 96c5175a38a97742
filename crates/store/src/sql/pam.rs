//! [`PamStore`]: the PAM A2A door's domains, device registry, credentials by device and custody.

use async_trait::async_trait;
use credvault_core::model::{Credential, Domain};
use time::OffsetDateTime;
use uuid::Uuid;

use super::common::{
    conflict_as, cred_from, device_from, domain_from, exec, insert_one, lookup, not_found_if_zero,
    os, s, CRED_COLS,
};
use super::{dialect, Backend};
use crate::sql::{corrupt, db_err};
use crate::{format_time, AuditAppend, DeviceRecord, NewVersion, PamStore, Result, StoreError};

const DOMAIN_COLS: &str = "name, abbreviation, created_at";
const DEVICE_COLS: &str = "id, meta, version, created_at, updated_at";

fn device_json(d: &DeviceRecord) -> Result<String> {
    serde_json::to_string(&d.device).map_err(|_| corrupt("device"))
}

#[async_trait]
impl PamStore for Backend {
    // --- domains

    async fn create_domain(&self, d: &Domain, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO domains (name, name_key, abbreviation, abbreviation_key, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&d.name)
        .bind(d.name.to_lowercase())
        .bind(&d.abbreviation)
        .bind(d.abbreviation.as_ref().map(|a| a.to_lowercase()))
        .bind(format_time(d.created_at))
        .execute(&mut *tx)
        .await
        .map_err(conflict_as(StoreError::Conflict(format!(
            "domain '{}' (or its abbreviation) already exists",
            d.name
        ))))?;
        self.commit_audited(tx, audit).await
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        let rows = sqlx::query(&format!(
            "SELECT {DOMAIN_COLS} FROM domains ORDER BY name_key"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(domain_from).collect()
    }

    async fn find_domain(&self, name: &str) -> Result<Option<Domain>> {
        sqlx::query(&format!(
            "SELECT {DOMAIN_COLS}
             FROM domains
             WHERE name_key = $1 OR abbreviation_key = $1
             ORDER BY name_key
             LIMIT 1"
        ))
        .bind(name.to_lowercase())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(domain_from)
        .transpose()
    }

    async fn delete_domain(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = exec(
            &mut *tx,
            "DELETE FROM domains WHERE name_key = $1",
            &[&name.to_lowercase()],
        )
        .await?;
        not_found_if_zero(n, "domain")?;
        self.commit_audited(tx, audit).await
    }

    // --- devices

    async fn get_device(&self, hostname_key: &str, ip: &str) -> Result<Option<DeviceRecord>> {
        sqlx::query(&format!(
            "SELECT {DEVICE_COLS}
             FROM devices
             WHERE hostname_key = $1 AND ip = $2"
        ))
        .bind(hostname_key)
        .bind(ip)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(device_from)
        .transpose()
    }

    async fn insert_device(&self, d: &DeviceRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO devices (id, hostname_key, ip, meta, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(d.id.to_string())
        .bind(credvault_core::ccp::fold(&d.device.hostname))
        .bind(&d.device.ip)
        .bind(device_json(d)?)
        .bind(d.version)
        .bind(format_time(d.created_at))
        .bind(format_time(d.updated_at))
        .execute(&self.writer)
        .await
        .map_err(conflict_as(StoreError::Conflict(
            "a device with this host name and IP already exists".into(),
        )))?;
        Ok(())
    }

    async fn update_device(&self, d: &DeviceRecord, expected_version: i64) -> Result<()> {
        let n = sqlx::query(
            "UPDATE devices
             SET meta = $1, version = $2, updated_at = $3
             WHERE id = $4 AND version = $5",
        )
        .bind(device_json(d)?)
        .bind(d.version)
        .bind(format_time(d.updated_at))
        .bind(d.id.to_string())
        .bind(expected_version)
        .execute(&self.writer)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n == 0 {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT version FROM devices WHERE id = $1")
                    .bind(d.id.to_string())
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(db_err)?;
            return Err(match current {
                Some(current) => StoreError::VersionMismatch { current },
                None => StoreError::NotFound("device".into()),
            });
        }
        Ok(())
    }

    // --- credentials by device

    async fn credentials_on_device(
        &self,
        hostname_key: &str,
        ip: &str,
        username_key: &str,
    ) -> Result<Vec<Credential>> {
        let rows = sqlx::query(&format!(
            "SELECT {CRED_COLS}
             FROM credentials
             WHERE hostname_key = $1 AND ip = $2 AND username_key = $3
             ORDER BY id
             LIMIT 100"
        ))
        .bind(hostname_key)
        .bind(ip)
        .bind(username_key)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(cred_from).collect()
    }

    async fn insert_credential_unless_on_device_audited(
        &self,
        cred: &Credential,
        v: &NewVersion,
        within: &[String],
        audit: &AuditAppend<'_>,
    ) -> Result<Option<Uuid>> {
        let l = lookup(&cred.meta);
        let (Some(hostname_key), Some(ip)) = (l.hostname_key.clone(), l.ip) else {
            return Err(StoreError::Conflict("a credential without a device".into()));
        };
        let mut tx = self.begin_write().await?;
        if let Some(lock) = dialect::DEVICE_USER_LOCK {
            sqlx::query(lock)
                .bind(format!("{hostname_key}\u{1f}{ip}\u{1f}{}", l.username_key))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let on_device = sqlx::query(
            "SELECT id, safe
             FROM credentials
             WHERE hostname_key = $1 AND ip = $2 AND username_key = $3
             ORDER BY id",
        )
        .bind(&hostname_key)
        .bind(ip)
        .bind(&l.username_key)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        for row in &on_device {
            let safe: Option<String> = os(row, "safe")?;
            if safe.is_some_and(|s| within.contains(&s)) {
                let id: String = s(row, "id")?;
                return Ok(Some(Uuid::parse_str(&id).map_err(|_| corrupt("bad id"))?));
            }
        }
        insert_one(&mut tx, cred, v).await?;
        self.commit_audited(tx, audit).await?;
        Ok(None)
    }

    // --- custody

    async fn take_custody(&self, id: Uuid, holder: &str, since: OffsetDateTime) -> Result<()> {
        exec(
            &self.writer,
            "INSERT INTO custody (cred_id, holder, since)
             VALUES ($1, $2, $3)
             ON CONFLICT (cred_id) DO UPDATE
               SET holder = excluded.holder, since = excluded.since
               WHERE custody.holder <> excluded.holder",
            &[&id.to_string(), holder, &format_time(since)],
        )
        .await?;
        Ok(())
    }

    async fn release_custody(
        &self,
        id: Uuid,
        holder: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = exec(
            &mut *tx,
            "DELETE FROM custody WHERE cred_id = $1 AND holder = $2",
            &[&id.to_string(), holder],
        )
        .await?;
        if n == 0 {
            return Ok(false);
        }
        self.commit_audited(tx, audit).await?;
        Ok(n > 0)
    }
}
