//! Disk space (issue 16.2): the store's size and the free space of its filesystem as metrics, and a
//! floor of free space below which writes are refused, so the audit of reads (which keeps working)
//! has room left before it, too, would fail.
//!
//! Watched only where the store is on a local disk (SQLite: the data directory). Every write
//! checks the free space first (one `statvfs`, in [`Vault::write_audit_many`], which every write
//! goes through): below the floor it is refused with [`ServiceError::InsufficientStorage`] (each
//! door's 507), before anything is written. Audit appends (secret reads, refusals) are not checked:
//! they are what the floor keeps room for. A background refresh keeps the gauges and the health
//! answer current without traffic.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;

use crate::error::{ServiceError, ServiceResult};
use crate::Vault;

/// How often the gauges and the health answer are refreshed without traffic.
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// The watched directory and its floor.
pub(crate) struct DiskWatch {
    dir: PathBuf,
    /// Files whose sizes make up the store (the database and its journal files).
    files: Vec<PathBuf>,
    floor: u64,
    free: AtomicU64,
    low: AtomicBool,
}

/// What health says about the disk.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DiskStatus {
    /// Free bytes (for unprivileged users) of the data directory's filesystem.
    pub free_bytes: u64,
    /// The floor (`min_free_disk_mb`): below it, writes are refused.
    pub floor_bytes: u64,
    /// Free space is below the floor.
    pub low: bool,
}

impl DiskWatch {
    /// Measure now: free bytes (None when the filesystem cannot be asked), and update the gauges.
    fn measure(&self) -> Option<u64> {
        let free = match rustix::fs::statvfs(&self.dir) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir.display(), "statvfs of the data directory");
                return None;
            }
        };
        let low = free < self.floor;
        self.free.store(free, Ordering::Relaxed);
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::error!(
                    free_bytes = free,
                    floor_bytes = self.floor,
                    "free disk space below the floor (min_free_disk_mb): refusing writes"
                );
            } else {
                tracing::info!(free_bytes = free, "free disk space above the floor again");
            }
        }
        metrics::gauge!("credvault_storage_free_bytes").set(free as f64);
        Some(free)
    }

    fn store_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    }

    fn refresh(&self) {
        self.measure();
        metrics::gauge!("credvault_storage_bytes").set(self.store_bytes() as f64);
        metrics::gauge!("credvault_storage_free_floor_bytes").set(self.floor as f64);
    }

    pub(crate) fn status(&self) -> DiskStatus {
        DiskStatus {
            free_bytes: self.free.load(Ordering::Relaxed),
            floor_bytes: self.floor,
            low: self.low.load(Ordering::Relaxed),
        }
    }
}

impl Vault {
    /// Watch the disk the store lives on: `dir` is the data directory, `files` the store's files in
    /// it, `floor_bytes` the free space below which writes are refused (0: never refused; the
    /// metrics are kept either way). The first call wins.
    pub fn watch_disk(self: &Arc<Self>, dir: PathBuf, files: Vec<PathBuf>, floor_bytes: u64) {
        let watch = DiskWatch {
            dir,
            files,
            floor: floor_bytes,
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
        };
        watch.refresh();
        if self.disk.set(watch).is_ok() {
            tokio::spawn(refresher(Arc::downgrade(self)));
        }
    }

    /// Refuse a write while free space is below the floor (measured now).
    pub(crate) fn check_disk(&self) -> ServiceResult<()> {
        match self.disk.get() {
            Some(d) if d.floor > 0 && d.measure().is_some_and(|free| free < d.floor) => {
                metrics::counter!("credvault_writes_refused_low_disk_total").increment(1);
                Err(ServiceError::InsufficientStorage)
            }
            _ => Ok(()),
        }
    }

    /// The disk as health reports it (`None` when not watched).
    pub(crate) fn disk_status(&self) -> Option<DiskStatus> {
        self.disk.get().map(DiskWatch::status)
    }
}

async fn refresher(vault: Weak<Vault>) {
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        let Some(v) = vault.upgrade() else { return };
        if let Some(d) = v.disk.get() {
            d.refresh();
        }
    }
}
