use async_trait::async_trait;

use crate::feed::ChangeFeed;
use crate::Result;

/// What kind of store this is, and the change feed of the caches above it.
#[async_trait]
pub trait BackendStore: Send + Sync {
    /// Which backend this is, for health output (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// The newest change counters this server knows of (its own writes publish theirs on commit).
    fn feed(&self) -> &ChangeFeed;
    /// Read `change_epochs` and publish it: how other servers' changes reach this server's caches.
    async fn poll_changes(&self) -> Result<()>;
}
