use async_trait::async_trait;

use crate::feed::ChangeFeed;
use crate::health::StoreHealth;
use crate::Result;

/// What kind of store this is, whether it can serve (see [`crate::health`]), and the change feed of
/// the caches above it (see [`crate::feed`]).
#[async_trait]
pub trait BackendStore: Send + Sync {
    /// Which backend this is, for health output (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// The newest change counters this server knows of (its own writes publish theirs on commit).
    fn feed(&self) -> &ChangeFeed;
    /// Read `change_epochs` and publish it: how other servers' changes reach this server's caches.
    async fn poll_changes(&self) -> Result<()>;

    /// The store's health: its circuit breaker and the outcome of its writes. The service reports
    /// its audit appends here too.
    fn health(&self) -> &StoreHealth;

    /// A cheap write that proves the store can commit (SQLite: rewrite the header's
    /// `user_version` with its own value; PostgreSQL: commit a transaction that takes an id),
    /// bypassing the circuit, bounded in time. Its outcome is recorded in [`Self::health`]: a
    /// success closes the circuit. The service runs it in the background.
    async fn probe(&self) -> Result<()>;
}
