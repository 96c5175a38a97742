//! The seal. While sealed the server holds no key material; unsealing combines Shamir shares into
//! the root key, which unwraps the keyring (data keys) and the token and audit HMAC keys. The root
//! key stays in memory (zeroized on seal) only to wrap new data keys on rotation, as OpenBao's
//! keyring does.

use std::sync::Arc;

use credvault_core::DomainError;
use credvault_crypto::token::Hasher;
use credvault_crypto::{shamir, DataKey, Keyring, RootKey};
use credvault_store::{AuditAppend, SealConfig, Store, WrappedKey};
use tokio::sync::{Mutex, RwLock};
use zeroize::Zeroizing;

use crate::error::{ServiceError, ServiceResult};

pub const PURPOSE_DATA: &str = "data";
pub const PURPOSE_TOKEN: &str = "token";
pub const PURPOSE_AUDIT: &str = "audit";

fn binding(purpose: &str, term: u32) -> String {
    format!("credvault:keyring:{purpose}:{term}")
}

/// Key material available while unsealed.
pub struct Keys {
    root: RootKey,
    pub keyring: Keyring,
    pub tokens: Hasher,
    pub audit: Hasher,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

/// Unseal progress, as `seal-status` reports it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    pub threshold: u8,
    pub shares: u8,
    pub progress: u8,
    pub key_terms: usize,
}

pub struct Barrier {
    store: Arc<dyn Store>,
    keys: RwLock<Option<Arc<Keys>>>,
    pending: Mutex<Vec<Zeroizing<Vec<u8>>>>,
}

impl Barrier {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            keys: RwLock::new(None),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// The unsealed keys, or `Sealed`.
    pub async fn keys(&self) -> ServiceResult<Arc<Keys>> {
        self.keys.read().await.clone().ok_or(ServiceError::Sealed)
    }

    pub async fn is_sealed(&self) -> bool {
        self.keys.read().await.is_none()
    }

    pub async fn status(&self) -> ServiceResult<SealStatus> {
        let cfg = self.store.seal_config().await?;
        let keys = self.keys.read().await.clone();
        Ok(SealStatus {
            initialized: cfg.is_some(),
            sealed: keys.is_none(),
            threshold: cfg.as_ref().map_or(0, |c| c.threshold),
            shares: cfg.as_ref().map_or(0, |c| c.shares),
            progress: u8::try_from(self.pending.lock().await.len()).unwrap_or(u8::MAX),
            key_terms: keys.map_or(0, |k| k.keyring.len()),
        })
    }

    /// Create the root key, the first data key and the HMAC keys; return the unseal shares.
    /// The vault stays sealed afterwards.
    pub async fn initialize(
        &self,
        shares: u8,
        threshold: u8,
    ) -> ServiceResult<Vec<Zeroizing<String>>> {
        if self.store.seal_config().await?.is_some() {
            return Err(credvault_core::DomainError::Conflict(
                "the vault is already initialised".into(),
            )
            .into());
        }
        let root = RootKey::generate();
        let printed = shamir::split(&root, shares, threshold)?;
        let mut wrapped = Vec::new();
        for purpose in [PURPOSE_DATA, PURPOSE_TOKEN, PURPOSE_AUDIT] {
            let term = if purpose == PURPOSE_DATA { 1 } else { 0 };
            let w = root.wrap(&DataKey::generate(), &binding(purpose, term))?;
            wrapped.push(WrappedKey {
                purpose: purpose.to_owned(),
                term,
                wrapped: w,
            });
        }
        self.store
            .initialize(&SealConfig { shares, threshold }, &wrapped)
            .await?;
        Ok(printed)
    }

    /// Add one share. Returns the status after it; unseals when the threshold is reached.
    pub async fn submit_share(&self, share: &str) -> ServiceResult<SealStatus> {
        let cfg = self
            .store
            .seal_config()
            .await?
            .ok_or(ServiceError::NotInitialized)?;
        if !self.is_sealed().await {
            return self.status().await;
        }
        let decoded = shamir::decode_share(share)?;
        let ready = {
            let mut pending = self.pending.lock().await;
            if pending.iter().any(|p| p[0] == decoded[0]) {
                return Err(ServiceError::Unseal(
                    "this unseal key was already given".into(),
                ));
            }
            pending.push(decoded);
            if pending.len() >= usize::from(cfg.threshold) {
                Some(std::mem::take(&mut *pending))
            } else {
                None
            }
        };
        if let Some(shares) = ready {
            let root = shamir::combine(&shares)?;
            self.unseal_with(&root).await?;
        }
        self.status().await
    }

    /// Forget the shares given so far.
    pub async fn reset(&self) {
        self.pending.lock().await.clear();
    }

    /// Unseal directly with a root key (key file, dev mode).
    pub async fn unseal_with(&self, root: &RootKey) -> ServiceResult<()> {
        let keys = self.load_keys(root).await.map_err(|e| match e {
            ServiceError::Integrity => ServiceError::Unseal(
                "unseal failed: the keys given do not reconstruct the root key".into(),
            ),
            other => other,
        })?;
        *self.keys.write().await = Some(Arc::new(keys));
        metrics::gauge!("credvault_sealed").set(0.0);
        Ok(())
    }

    async fn load_keys(&self, root: &RootKey) -> ServiceResult<Keys> {
        let mut keyring = Keyring::new();
        let mut tokens = None;
        let mut audit = None;
        for k in self.store.keys().await? {
            let key = root.unwrap_key(&k.wrapped, &binding(&k.purpose, k.term))?;
            match k.purpose.as_str() {
                PURPOSE_DATA => keyring.insert(k.term, key),
                PURPOSE_TOKEN => tokens = Some(Hasher::new(key)),
                PURPOSE_AUDIT => audit = Some(Hasher::new(key)),
                _ => {}
            }
        }
        match (tokens, audit, keyring.is_empty()) {
            (Some(tokens), Some(audit), false) => Ok(Keys {
                root: root.clone(),
                keyring,
                tokens,
                audit,
            }),
            _ => Err(ServiceError::Integrity),
        }
    }

    pub async fn seal(&self) {
        *self.keys.write().await = None;
        self.pending.lock().await.clear();
        metrics::gauge!("credvault_sealed").set(1.0);
    }

    /// The term the next rotation makes.
    pub async fn next_data_term(&self) -> ServiceResult<u32> {
        Ok(self.keys().await?.keyring.active_term().unwrap_or(0) + 1)
    }

    /// Add the data key term `next` ([`Self::next_data_term`]) with the call's audit record; new
    /// writes use it, old values stay readable.
    pub async fn rotate(&self, next: u32, audit: &AuditAppend<'_>) -> ServiceResult<u32> {
        let keys = self.keys().await?;
        if next != keys.keyring.active_term().unwrap_or(0) + 1 {
            return Err(
                DomainError::Conflict("another rotation came first; try again".into()).into(),
            );
        }
        let dk = DataKey::generate();
        let w = keys.root.wrap(&dk, &binding(PURPOSE_DATA, next))?;
        self.store
            .add_key(
                &WrappedKey {
                    purpose: PURPOSE_DATA.into(),
                    term: next,
                    wrapped: w,
                },
                audit,
            )
            .await?;
        self.refresh().await?;
        Ok(next)
    }

    /// Wrap a key under the root key (a backup's key), bound to `binding`.
    pub async fn wrap_key(&self, key: &DataKey, binding: &str) -> ServiceResult<Vec<u8>> {
        Ok(self.keys().await?.root.wrap(key, binding)?)
    }

    /// Re-read the keyring from the store (another server may have rotated).
    pub async fn refresh(&self) -> ServiceResult<()> {
        let keys = self.keys().await?;
        let fresh = self.load_keys(&keys.root).await?;
        *self.keys.write().await = Some(Arc::new(fresh));
        Ok(())
    }
}
