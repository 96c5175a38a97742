//! [`KeyringStore`]: the seal configuration, the wrapped keys, rewrap and retirement after a key
//! rotation.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::common::{bytes, conflict_as, i, s, uuid};
use super::{dialect, Backend};
use crate::sql::{corrupt, db_err};
use crate::AuditAppend;
use crate::{
    format_time, parse_time, IntegrationCiphertext, KeyringStore, Result, SealConfig, StoreError,
    VersionCiphertext, WrappedKey,
};

/// A key term as stored (an integer column).
fn term_of(t: i64) -> Result<u32> {
    u32::try_from(t).map_err(|_| corrupt("key term"))
}

#[async_trait]
impl KeyringStore for Backend {
    async fn seal_config(&self) -> Result<Option<SealConfig>> {
        let row = sqlx::query("SELECT shares, threshold FROM seal_config WHERE id = 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok(SealConfig {
                shares: u8::try_from(i(&r, "shares")?).map_err(|_| corrupt("shares"))?,
                threshold: u8::try_from(i(&r, "threshold")?).map_err(|_| corrupt("threshold"))?,
            })
        })
        .transpose()
    }

    async fn initialize(&self, cfg: &SealConfig, keys: &[WrappedKey]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let now = format_time(OffsetDateTime::now_utc());
        sqlx::query(
            "INSERT INTO seal_config (id, shares, threshold, created_at)
             VALUES (1, $1, $2, $3)",
        )
        .bind(i64::from(cfg.shares))
        .bind(i64::from(cfg.threshold))
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as(StoreError::Conflict(
            "the vault is already initialised".into(),
        )))?;
        for k in keys {
            sqlx::query(
                "INSERT INTO keyring (purpose, term, wrapped, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&k.purpose)
            .bind(i64::from(k.term))
            .bind(&k.wrapped)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn keys(&self) -> Result<Vec<WrappedKey>> {
        let rows = sqlx::query(
            "SELECT purpose, term, wrapped
             FROM keyring
             ORDER BY purpose, term",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(WrappedKey {
                    purpose: s(r, "purpose")?,
                    term: term_of(i(r, "term")?)?,
                    wrapped: bytes(r, "wrapped")?,
                })
            })
            .collect()
    }

    async fn add_key(&self, key: &WrappedKey, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO keyring (purpose, term, wrapped, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.purpose)
        .bind(i64::from(key.term))
        .bind(&key.wrapped)
        .bind(format_time(OffsetDateTime::now_utc()))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.commit_audited(tx, audit).await
    }

    async fn newest_data_term(&self) -> Result<u32> {
        let t: Option<i64> =
            sqlx::query_scalar("SELECT MAX(term) FROM keyring WHERE purpose = 'data'")
                .fetch_one(&self.reader)
                .await
                .map_err(db_err)?;
        term_of(t.unwrap_or(0))
    }

    async fn data_key_created(&self, term: u32) -> Result<Option<OffsetDateTime>> {
        let t: Option<String> = sqlx::query_scalar(
            "SELECT created_at
             FROM keyring
             WHERE purpose = 'data' AND term = $1",
        )
        .bind(i64::from(term))
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        t.map(|t| parse_time(&t)).transpose()
    }

    async fn versions_not_of_term(
        &self,
        term: u32,
        after: Option<(Uuid, i64)>,
        limit: i64,
    ) -> Result<Vec<VersionCiphertext>> {
        // The term is bytes 2..=5 of a value (after the format byte), big-endian.
        let (a_id, a_v) = after.map_or((String::new(), 0), |(i, v)| (i.to_string(), v));
        let rows = sqlx::query(
            "SELECT cred_id, version, payload
             FROM credential_versions
             WHERE length(payload) > 0
               AND substr(payload, 2, 4) <> $1
               AND (cred_id > $2 OR (cred_id = $2 AND version > $3))
             ORDER BY cred_id, version
             LIMIT $4",
        )
        .bind(term.to_be_bytes().to_vec())
        .bind(a_id)
        .bind(a_v)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(VersionCiphertext {
                    id: uuid(r, "cred_id")?,
                    version: i(r, "version")?,
                    payload: bytes(r, "payload")?,
                })
            })
            .collect()
    }

    async fn rewrap_version(&self, id: Uuid, version: i64, old: &[u8], new: &[u8]) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE credential_versions
             SET payload = $1
             WHERE cred_id = $2 AND version = $3 AND payload = $4",
        )
        .bind(new.to_vec())
        .bind(id.to_string())
        .bind(version)
        .bind(old.to_vec())
        .execute(&self.writer)
        .await
        .map_err(db_err)?
        .rows_affected();
        // A cached copy of the old ciphertext must not outlive its key (retired after the rewrap).
        self.feed
            .publish(&super::common::read_epochs(&self.writer).await?);
        Ok(n == 1)
    }

    async fn integration_secrets_not_of_term(
        &self,
        term: u32,
    ) -> Result<Vec<IntegrationCiphertext>> {
        let rows = sqlx::query(
            "SELECT name, secrets
             FROM integrations
             WHERE length(secrets) > 0
               AND substr(secrets, 2, 4) <> $1
             ORDER BY name",
        )
        .bind(term.to_be_bytes().to_vec())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(IntegrationCiphertext {
                    name: s(r, "name")?,
                    secrets: bytes(r, "secrets")?,
                })
            })
            .collect()
    }

    async fn rewrap_integration(&self, name: &str, old: &[u8], new: &[u8]) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE integrations
             SET secrets = $1
             WHERE name = $2 AND secrets = $3",
        )
        .bind(new.to_vec())
        .bind(name)
        .bind(old.to_vec())
        .execute(&self.writer)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn retire_data_keys_below(&self, term: u32) -> Result<Vec<u32>> {
        let mut tx = self.begin_write().await?;
        if let Some(lock) = dialect::AUDIT_LOCK {
            // Serialise with other servers' retirements (and audit appends: harmless).
            sqlx::query(lock).execute(&mut *tx).await.map_err(db_err)?;
        }
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*)
                     FROM credential_versions
                     WHERE length(payload) > 0 AND substr(payload, 2, 4) <> $1)
                  + (SELECT COUNT(*)
                     FROM integrations
                     WHERE length(secrets) > 0 AND substr(secrets, 2, 4) <> $1)
                  + (SELECT COUNT(*)
                     FROM password_changes
                     WHERE length(pending) > 0 AND substr(pending, 2, 4) <> $1)",
        )
        .bind(term.to_be_bytes().to_vec())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if left > 0 {
            return Ok(vec![]);
        }
        let terms: Vec<i64> = sqlx::query_scalar(
            "SELECT term
             FROM keyring
             WHERE purpose = 'data' AND term < $1
             ORDER BY term",
        )
        .bind(i64::from(term))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("DELETE FROM keyring WHERE purpose = 'data' AND term < $1")
            .bind(i64::from(term))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        terms.into_iter().map(term_of).collect()
    }
}
