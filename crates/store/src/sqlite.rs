//! SQLite backend: WAL mode, `synchronous=FULL` (an acknowledged write survives `kill -9` and power
//! loss), one writer connection (SQLite has one writer anyway; a single pool connection turns
//! read-modify-write transactions into serialised ones) and a pool of read-only readers.

// The same SQL files are compiled as modules of both backends (`sql/mod.rs`).
#![allow(clippy::duplicate_mod)]

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::sql::db_err;
use crate::{Result, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    feed: crate::feed::ChangeFeed,
}

impl SqliteStore {
    /// Open (creating if needed) `dir/credvault.db` and apply migrations.
    pub async fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("data directory: {e}")))?;
        let path = dir.join("credvault.db");
        let base = SqliteConnectOptions::from_str("sqlite://")
            .map_err(db_err)?
            .filename(&path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(db_err)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(base.read_only(true))
            .await
            .map_err(db_err)?;
        Ok(Self {
            writer,
            reader,
            feed: Default::default(),
        })
    }
}

mod dialect {
    /// Take the write lock up front: a deferred transaction that reads then writes fails with
    /// "database is locked" when another process (another server on the same file) wrote in between.
    pub const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
    pub const NAME: &str = "sqlite";
    /// `tags` contains the bound value.
    pub const TAG_FILTER: (&str, &str) = (
        " AND EXISTS (SELECT 1 FROM json_each(meta, '$.tags') WHERE value = ",
        ")",
    );
    /// SQLite has a single writer; appends are already serialised.
    pub const AUDIT_LOCK: Option<&str> = None;
    /// A read transaction in WAL mode already sees one instant (from its first read).
    pub const SNAPSHOT: Option<&str> = None;
    /// `BEGIN IMMEDIATE` already serialises writers on the file.
    pub const DEVICE_USER_LOCK: Option<&str> = None;
}

// The SQL of every area, written once in `sql/` and compiled here for this backend (see
// `sql/mod.rs`): each file is a child module of this one, over `Db`, `Backend` and `dialect`.
type Db = sqlx::Sqlite;
type Backend = SqliteStore;

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
impl crate::BackendStore for SqliteStore {
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
