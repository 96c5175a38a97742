//! PostgreSQL backend: the multi-node store. Several stateless credvault servers share one database.
//!
//! * Migrations run at start under sqlx's advisory lock, so servers starting together are safe.
//! * Writes use READ COMMITTED; credential updates are optimistic (`WHERE version = $n`), and the
//!   unique `identifier` constraint prevents duplicates, exactly as on SQLite.
//! * Audit appends take a transaction-scoped advisory lock so concurrent servers extend one chain.

// The same SQL files are compiled as modules of both backends (`sql/mod.rs`).
#![allow(clippy::duplicate_mod)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::health::{probe_outcome, StoreHealth, PROBE_TIMEOUT};
use crate::pool::Pool;
use crate::sql::db_err;
use crate::{Result, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    feed: crate::feed::ChangeFeed,
    writer: Pool<sqlx::Postgres>,
    reader: Pool<sqlx::Postgres>,
    health: Arc<StoreHealth>,
    /// The probe's own connection (made on first use, dropped after a failure): a probe neither
    /// waits behind a busy pool nor for the pool's timeout while the database is down.
    probe: tokio::sync::Mutex<Option<PgConnection>>,
    options: PgConnectOptions,
}

impl PgStore {
    /// Connect to `url` (`postgres://user:pass@host:port/db`) and apply migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url).map_err(|_| {
            StoreError::Unavailable("the database URL is not a valid postgres:// URL".into())
        })?;
        let health = Arc::new(StoreHealth::new());
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .after_release({
                let health = health.clone();
                move |conn: &mut PgConnection, _| {
                    // A connection handed back inside a transaction (a commit that failed and a
                    // rollback that could not run) is closed, not reused (issue 16.1).
                    let stuck = conn.is_in_transaction();
                    if stuck {
                        health.write_failed(
                            "write transaction",
                            "its connection was left inside a transaction; reopening it",
                        );
                    }
                    Box::pin(async move { Ok(!stuck) })
                }
            })
            .connect_with(opts.clone())
            .await
            .map_err(db_err)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration: {e}")))?;
        let pool = Pool::new(pool, health.clone());
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
            feed: Default::default(),
            health,
            probe: tokio::sync::Mutex::new(None),
            options: opts,
        })
    }

    /// See [`crate::BackendStore::probe`]: on its own connection, commit a transaction that takes
    /// a transaction id (a real commit record).
    pub(crate) async fn probe_write(&self) -> Result<()> {
        let mut slot = self.probe.lock().await;
        let work = async {
            if slot.is_none() {
                *slot = Some(self.options.connect().await?);
            }
            let Some(conn) = slot.as_mut() else {
                return Err(sqlx::Error::PoolClosed);
            };
            let mut tx = conn.begin().await?;
            sqlx::query("SELECT txid_current()")
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        };
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, work).await.ok();
        if !matches!(outcome, Some(Ok(()))) {
            *slot = None;
        }
        probe_outcome(&self.health, outcome, true)
    }
}

mod dialect {
    /// Plain READ COMMITTED; row locks and the optimistic version check do the rest.
    pub const BEGIN_WRITE: &str = "BEGIN";
    pub const NAME: &str = "postgres";
    /// Bytewise range on the identifier (a KV folder's descendants) whatever the database's
    /// collation, served by the `(safe, identifier COLLATE "C")` index of migration 0014.
    pub const IDENTIFIER_RANGE: (&str, &str) = (
        " AND identifier COLLATE \"C\" >= ",
        " AND identifier COLLATE \"C\" < ",
    );
    /// `tags` contains the bound value.
    pub const TAG_FILTER: (&str, &str) = (" AND jsonb_exists(meta::jsonb -> 'tags', ", ")");
    /// One audit chain across servers: appends are serialised by this transaction-scoped lock.
    pub const AUDIT_LOCK: Option<&str> = Some("SELECT pg_advisory_xact_lock(7263001)");
    /// A backup sees one instant of every table.
    pub const SNAPSHOT: Option<&str> =
        Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    /// Serialises "insert unless a credential exists on this device for this user" across servers.
    pub const DEVICE_USER_LOCK: Option<&str> =
        Some("SELECT pg_advisory_xact_lock(7263002, hashtext($1))");
}

// The SQL of every area, written once in `sql/` and compiled here for this backend (see
// `sql/mod.rs`): each file is a child module of this one, over `Db`, `Backend` and `dialect`.
type Db = sqlx::Postgres;
type Backend = PgStore;

#[path = "sql/common.rs"]
mod common;

#[path = "sql/apps.rs"]
mod apps;
#[path = "sql/audit.rs"]
mod audit;
#[path = "sql/backup.rs"]
mod backup;
#[path = "sql/credentials.rs"]
mod credentials;
#[path = "sql/identity.rs"]
mod identity;
#[path = "sql/integrations.rs"]
mod integrations;
#[path = "sql/keyring.rs"]
mod keyring;
#[path = "sql/pam.rs"]
mod pam;
#[path = "sql/pwchange.rs"]
mod pwchange;
