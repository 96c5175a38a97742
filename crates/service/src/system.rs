//! The seal as the doors see it: status, unsealing, and the answer a door gives while sealed.

use std::time::Duration;

use crate::barrier::SealStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::Vault;

impl Vault {
    /// Start the background work of a serving vault: the application cache's poll of other servers'
    /// changes, and the grace before retiring old data keys after a rotation.
    pub fn start_background(&self, retire_grace: Duration) {
        self.set_retire_grace(retire_grace);
        self.app_cache.start_polling(self.store.clone());
    }

    /// The storage backend's name, for status pages.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    pub async fn is_sealed(&self) -> bool {
        self.barrier.is_sealed().await
    }

    /// Whether the vault has been initialised (its seal configuration exists).
    pub async fn is_initialized(&self) -> ServiceResult<bool> {
        Ok(self.store.seal_config().await?.is_some())
    }

    /// `None` while unsealed; otherwise what to answer: not initialised, or sealed (also when the
    /// store cannot tell).
    pub async fn sealed_error(&self) -> Option<ServiceError> {
        if !self.barrier.is_sealed().await {
            return None;
        }
        Some(match self.store.seal_config().await {
            Ok(None) => ServiceError::NotInitialized,
            _ => ServiceError::Sealed,
        })
    }

    pub async fn seal_status(&self) -> ServiceResult<SealStatus> {
        self.barrier.status().await
    }

    /// Submit one unseal key share.
    pub async fn submit_unseal_share(&self, share: &str) -> ServiceResult<SealStatus> {
        self.barrier.submit_share(share).await
    }

    /// Forget the shares submitted so far.
    pub async fn reset_unseal(&self) {
        self.barrier.reset().await
    }
}
