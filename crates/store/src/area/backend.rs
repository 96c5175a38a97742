use async_trait::async_trait;

use crate::health::StoreHealth;
use crate::Result;

/// What kind of store this is, and whether it can serve (see [`crate::health`]).
#[async_trait]
pub trait BackendStore: Send + Sync {
    /// Which backend this is, for health output (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// The store's health: its circuit breaker and the outcome of its writes. The service reports
    /// its audit appends here too.
    fn health(&self) -> &StoreHealth;

    /// A cheap write that proves the store can commit (SQLite: rewrite the header's
    /// `user_version` with its own value; PostgreSQL: commit a transaction that takes an id),
    /// bypassing the circuit, bounded in time. Its outcome is recorded in [`Self::health`]: a
    /// success closes the circuit. The service runs it in the background.
    async fn probe(&self) -> Result<()>;
}
