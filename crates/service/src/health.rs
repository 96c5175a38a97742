//! Whether this server can serve (issue 16.1, 16.9): the store's circuit and write outcomes
//! (`credvault_store::health`), the audit writer's appends reported into them, and a background
//! probe, so health is true even when no traffic comes: while the store or the audit cannot write,
//! or the database cannot be reached, the server is `degraded` and its health answer says so at
//! once (doors answer it 503, so load balancers stop sending traffic).

use std::sync::Arc;
use std::time::Duration;

use credvault_store::{Store, StoreError};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::Vault;

/// How often the background probe writes while healthy, and while degraded (to notice recovery).
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
pub const PROBE_EVERY_DEGRADED: Duration = Duration::from_millis(500);

/// How long health waits for the store to say whether the vault is initialised (sealed only).
const HEALTH_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// The audit writer's hook: every group-commit append reports its outcome.
pub(crate) fn audit_appended(store: &dyn Store, error: Option<&StoreError>) {
    match error {
        None => store.health().write_ok(),
        Some(e) => store.health().write_failed("audit append", &e.to_string()),
    }
}

/// The health of a server, as every door reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` while the store or the audit cannot write, the database cannot be
    /// reached, free disk space is below the floor, or a required audit sink fails.
    pub status: &'static str,
    /// `null` when the store cannot tell (sealed and the database unreachable).
    pub initialized: Option<bool>,
    pub sealed: bool,
    /// The storage backend (`sqlite`, `postgres`).
    pub storage: &'static str,
    pub store: StoreStatus,
    /// The data directory's free space and the floor below which writes are refused (SQLite;
    /// absent for PostgreSQL). Below the floor the status is `degraded`.
    pub disk: Option<crate::disk::DiskStatus>,
    /// The audit sinks (`audit_sink.rs`); a required one failing makes the status `degraded`.
    pub audit_sinks: Vec<crate::audit_sink::SinkStatus>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoreStatus {
    /// The database answers.
    pub reachable: bool,
    /// Writes (the probe's, the audit's) succeed.
    pub writable: bool,
    /// Why not, when not.
    pub reason: Option<&'static str>,
    /// Since when (RFC 3339).
    pub since: Option<String>,
    /// When a write last succeeded (RFC 3339).
    pub last_write_ok: Option<String>,
}

impl Health {
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

impl Vault {
    /// This server's health, answered at once: from memory (the seal, the store's health) and,
    /// only while sealed, one bounded read of whether the vault is initialised.
    pub async fn health(&self) -> Health {
        let sealed = self.barrier.is_sealed().await;
        let initialized = if sealed {
            match tokio::time::timeout(HEALTH_READ_TIMEOUT, self.store.seal_config()).await {
                Ok(Ok(cfg)) => Some(cfg.is_some()),
                _ => None,
            }
        } else {
            Some(true)
        };
        let r = self.store.health().report();
        let time = |t: Option<time::OffsetDateTime>| t.and_then(|t| t.format(&Rfc3339).ok());
        let disk = self.disk_status();
        let disk_low = disk.as_ref().is_some_and(|d| d.low);
        Health {
            status: if r.ok() && !disk_low && !self.sinks.required_failing() {
                "ok"
            } else {
                "degraded"
            },
            initialized,
            sealed,
            storage: self.store.backend(),
            store: StoreStatus {
                reachable: r.reachable,
                writable: r.writable,
                reason: r.reason,
                since: time(r.since),
                last_write_ok: time(r.last_write_ok),
            },
            disk,
            audit_sinks: self.sinks.status(),
        }
    }

    /// Probe the store in the background: every [`PROBE_EVERY`], every [`PROBE_EVERY_DEGRADED`]
    /// while degraded. Ends when the vault's store is dropped.
    pub(crate) fn start_probe(&self) {
        let store = Arc::downgrade(&self.store);
        tokio::spawn(async move {
            loop {
                let Some(store) = store.upgrade() else {
                    return;
                };
                let _ = store.probe().await;
                let ok = store.health().report().ok();
                drop(store);
                tokio::time::sleep(if ok {
                    PROBE_EVERY
                } else {
                    PROBE_EVERY_DEGRADED
                })
                .await;
            }
        });
    }
}
