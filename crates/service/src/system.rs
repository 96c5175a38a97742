//! The system: the seal as the doors see it (status, unsealing, the answer a door gives while
//! sealed), and the vault's own operations (initialise, seal, rotate, the audit log).

use std::sync::Arc;
use std::time::Duration;

use credvault_core::policy::Actor;
use credvault_crypto::SecretString;
use serde_json::json;

use crate::barrier::SealStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::{Ctx, Vault};

impl Vault {
    /// Start the background work of a serving vault: the application cache's poll of other servers'
    /// changes, the grace before retiring old data keys after a rotation, and the store's health
    /// probe (`health.rs`).
    pub fn start_background(&self, retire_grace: Duration) {
        self.set_retire_grace(retire_grace);
        crate::cache::start_polling(&self.store);
        self.start_probe();
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

// The vault's own operations: initialise, seal, rotate, the audit log.
impl Vault {
    /// Initialise and return the unseal shares plus a root token (which needs the vault unsealed,
    /// so the token is minted with the freshly split key before sealing again).
    pub async fn initialize(
        &self,
        shares: u8,
        threshold: u8,
    ) -> ServiceResult<(Vec<zeroize::Zeroizing<String>>, SecretString)> {
        let printed = self.barrier.initialize(shares, threshold).await?;
        let decoded: Vec<_> = printed
            .iter()
            .take(usize::from(threshold))
            .map(|s| credvault_crypto::shamir::decode_share(s))
            .collect::<Result<_, _>>()?;
        let root = credvault_crypto::shamir::combine(&decoded)?;
        self.barrier.unseal_with(&root).await?;
        let ctx = Ctx {
            actor: Actor::root(),
            source: "local".into(),
            door: "sys",
        };
        let (_, token) = self
            .issue_token(
                &ctx,
                "sys.init",
                "root",
                None,
                Some("initial root token".into()),
                |_| {
                    (
                        "vault".into(),
                        json!({"shares": shares, "threshold": threshold}),
                    )
                },
            )
            .await?;
        self.barrier.seal().await;
        Ok((printed, token))
    }

    pub async fn seal(&self, ctx: &Ctx) -> ServiceResult<()> {
        self.require_admin(ctx)?;
        self.audit(ctx, "sys.seal", "vault", "ok", json!({}))
            .await?;
        self.barrier.seal().await;
        Ok(())
    }

    /// Add a data key term; older values are rewrapped and the old keys retired in the background
    /// (`rotation.rs`).
    pub async fn rotate(self: &Arc<Self>, ctx: &Ctx) -> ServiceResult<u32> {
        self.require_admin(ctx)?;
        let term = self.barrier.next_data_term().await?;
        let audit = self
            .write_audit(ctx, "sys.rotate", "keyring", json!({"term": term}))
            .await?;
        self.barrier.rotate(term, &audit.append()).await?;
        self.spawn_rewrap(ctx.clone());
        Ok(term)
    }

    pub async fn audit_verify(&self, ctx: &Ctx) -> ServiceResult<crate::audit::Verification> {
        self.require_admin(ctx)?;
        crate::audit::verify(self.store.as_ref(), &self.barrier).await
    }

    pub async fn audit_tail(
        &self,
        ctx: &Ctx,
        n: i64,
    ) -> ServiceResult<Vec<credvault_core::model::AuditRecord>> {
        self.require_admin(ctx)?;
        Ok(self
            .store
            .audit_tail(n.clamp(1, 10_000))
            .await?
            .iter()
            .map(|r| r.to_record())
            .collect())
    }
}
