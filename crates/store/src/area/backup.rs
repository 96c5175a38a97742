use async_trait::async_trait;

use crate::migrate::{Cell, TableSpec};
use crate::{Result, SnapshotSink};

/// Whole-vault copy, table by table (see [`migrate`](crate::migrate)): backup, restore and
/// `operator migrate`.
#[async_trait]
pub trait BackupStore: Send + Sync {
    async fn count_rows(&self, table: &TableSpec) -> Result<i64>;
    async fn export_rows(
        &self,
        table: &TableSpec,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Vec<Cell>>>;
    /// Every row of every table (`migrate::TABLES` order) as of one instant, in one read
    /// transaction (PostgreSQL: repeatable read), handed to `sink` in batches with the table's
    /// index while the vault keeps serving. `sink` returning false stops the export.
    async fn export_snapshot(&self, sink: SnapshotSink<'_>) -> Result<()>;
    /// Insert rows as they are, in one transaction.
    async fn import_rows(&self, table: &TableSpec, rows: &[Vec<Cell>]) -> Result<()>;
}
