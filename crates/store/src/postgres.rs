//! PostgreSQL backend: the multi-node store. Several stateless credvault servers share one database.
//!
//! * Migrations run at start under sqlx's advisory lock, so servers starting together are safe.
//! * Writes use READ COMMITTED; credential updates are optimistic (`WHERE version = $n`), and the
//!   unique `identifier` constraint prevents duplicates, exactly as on SQLite.
//! * Audit appends take a transaction-scoped advisory lock so concurrent servers extend one chain.

// The same SQL files are compiled as modules of both backends (`sql/mod.rs`).
#![allow(clippy::duplicate_mod)]

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::sql::db_err;
use crate::{Result, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    writer: PgPool,
    reader: PgPool,
    feed: crate::feed::ChangeFeed,
}

impl PgStore {
    /// Connect to `url` (`postgres://user:pass@host:port/db`) and apply migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url).map_err(|_| {
            StoreError::Unavailable("the database URL is not a valid postgres:// URL".into())
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(db_err)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration: {e}")))?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
            feed: Default::default(),
        })
    }
}

mod dialect {
    /// Plain READ COMMITTED; row locks and the optimistic version check do the rest.
    pub const BEGIN_WRITE: &str = "BEGIN";
    pub const NAME: &str = "postgres";
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

#[async_trait::async_trait]
impl crate::BackendStore for PgStore {
    fn backend(&self) -> &'static str {
        dialect::NAME
    }

    fn feed(&self) -> &crate::feed::ChangeFeed {
        &self.feed
    }

    async fn poll_changes(&self) -> Result<()> {
        let rows = common::read_epochs(&self.reader).await?;
        self.feed.observe(&rows);
        Ok(())
    }
}
