//! SQLite backend: WAL mode, `synchronous=FULL` (an acknowledged write survives `kill -9` and power
//! loss), one writer connection (SQLite has one writer anyway; a single pool connection turns
//! read-modify-write transactions into serialised ones) and a pool of read-only readers.

// The same SQL files are compiled as modules of both backends (`sql/mod.rs`).
#![allow(clippy::duplicate_mod)]

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use crate::health::{probe_outcome, StoreHealth, PROBE_TIMEOUT};
use crate::pool::Pool;
use crate::sql::db_err;
use crate::{Result, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    feed: crate::feed::ChangeFeed,
    writer: Pool<sqlx::Sqlite>,
    reader: Pool<sqlx::Sqlite>,
    health: Arc<StoreHealth>,
    /// The probe's own connection (opened on first use, dropped after a failure), so a probe
    /// never waits for the writer pool's one connection.
    probe: tokio::sync::Mutex<Option<SqliteConnection>>,
    options: SqliteConnectOptions,
    /// The background checkpointer (see [`spawn_checkpointer`]), stopped with the store.
    checkpointer: tokio::task::AbortHandle,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// How often the background checkpointer copies committed WAL pages into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

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
            .busy_timeout(Duration::from_secs(10))
            // No connection checkpoints when it commits: a read's audit commit would otherwise
            // wait, every thousand pages, for the checkpoint's page copies and database fsync (the
            // long tail of issue 15). The checkpointer below does it on its own connection.
            .pragma("wal_autocheckpoint", "0")
            // After a checkpoint lets the log restart, its file is cut back to this size.
            .pragma("journal_size_limit", "67108864");
        let health = Arc::new(StoreHealth::new());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(reset_if_in_transaction(health.clone()))
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(db_err)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(base.clone().read_only(true))
            .await
            .map_err(db_err)?;
        let checkpointer = spawn_checkpointer(base.clone()).abort_handle();
        Ok(Self {
            checkpointer,
            feed: Default::default(),
            writer: Pool::new(writer, health.clone()),
            reader: Pool::new(reader, health.clone()),
            health,
            probe: tokio::sync::Mutex::new(None),
            options: base,
        })
    }

    /// See [`crate::BackendStore::probe`]: `BEGIN IMMEDIATE`, rewrite `user_version` (a real page
    /// write, so a full disk fails it), commit.
    pub(crate) async fn probe_write(&self) -> Result<()> {
        let mut slot = self.probe.lock().await;
        let work = async {
            if slot.is_none() {
                *slot = Some(self.options.connect().await?);
            }
            let Some(conn) = slot.as_mut() else {
                return Err(sqlx::Error::PoolClosed);
            };
            let mut tx = conn.begin_with(dialect::BEGIN_WRITE).await?;
            let v: i64 = sqlx::query_scalar("PRAGMA user_version")
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(&format!("PRAGMA user_version = {v}"))
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        };
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, work).await.ok();
        if !matches!(outcome, Some(Ok(()))) {
            // A connection left mid-transaction by a failed commit is not reused.
            *slot = None;
        }
        probe_outcome(&self.health, outcome, false)
    }
}

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] on a connection of its own (`PASSIVE`: it never
/// waits for, nor blocks, the writer or the readers), so commits only append to the log. Durability
/// is unchanged: a commit is durable once its WAL frames are synced (`synchronous=FULL`); the
/// checkpoint only moves them into the database file, and after a crash SQLite replays the log.
fn spawn_checkpointer(options: SqliteConnectOptions) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conn: Option<SqliteConnection> = None;
        let mut failing = false;
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if conn.is_none() {
                conn = options.connect().await.ok();
            }
            let Some(c) = conn.as_mut() else { continue };
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut *c)
                .await
            {
                Ok(_) => failing = false,
                Err(e) => {
                    // A full disk or a vanished file: try again on a fresh connection next time,
                    // logged once per failing spell, not four times a second.
                    if !failing {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                    }
                    failing = true;
                    conn = None;
                }
            }
        }
    })
}

/// The writer pool's `after_release`: a connection handed back still inside a transaction (its
/// commit failed, e.g. `SQLITE_FULL`, and the rollback could not run because SQLite had already
/// rolled back) is closed instead of reused, and the pool opens a fresh one. Without this every
/// later write fails with "attempted to call begin_with at non-zero transaction depth" until a
/// restart (issue 16.1).
#[allow(clippy::type_complexity)]
fn reset_if_in_transaction(
    health: Arc<StoreHealth>,
) -> impl for<'c> Fn(
    &'c mut SqliteConnection,
    sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'c, std::result::Result<bool, sqlx::Error>>
       + Send
       + Sync
       + 'static {
    move |conn, _| {
        let health = health.clone();
        Box::pin(async move {
            // A committed connection is handed back at depth 0: nothing to check (no round trip
            // on the hot path). Otherwise the rollback queued when the transaction was dropped
            // runs before this ping, and only a connection still inside a transaction after it
            // is reopened.
            if !conn.is_in_transaction() {
                return Ok(true);
            }
            conn.ping().await?;
            if conn.is_in_transaction() {
                health.write_failed(
                    "write transaction",
                    "its connection was left inside a transaction; reopening it",
                );
                return Ok(false);
            }
            Ok(true)
        })
    }
}

mod dialect {
    /// Take the write lock up front: a deferred transaction that reads then writes fails with
    /// "database is locked" when another process (another server on the same file) wrote in between.
    pub const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
    pub const NAME: &str = "sqlite";
    /// Bytewise range on the identifier (a KV folder's descendants), served with the safe by the
    /// `(safe, identifier)` index of migration 0014.
    pub const IDENTIFIER_RANGE: (&str, &str) = (" AND identifier >= ", " AND identifier < ");
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
#[path = "sql/pwchange.rs"]
mod pwchange;
