//! Key rotation's second half: rewrapping and retiring. `operator rotate` adds a data key term (new
//! writes use it at once); then, in the background, every stored value under an older term is
//! decrypted and encrypted again under the newest one (credential versions by compare-and-swap, so
//! a concurrent write or destroy wins; integrations' sealed settings and the pending values of
//! password changes in flight likewise), and once none is
//! left the older data keys are deleted ("retired").
//!
//! Retiring waits `retire_grace` after the rotation: a writer that fetched the keys just before it
//! may still be about to store a value under the old term; every write re-checks the newest term
//! before encrypting and a request lasts at most the request timeout, so after that grace no new
//! old-term value can appear. The retirement itself re-counts old-term values in the same
//! transaction that deletes the keys, and deletes nothing if any is left.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use credvault_store::{IntegrationCiphertext, VersionCiphertext};
use serde_json::json;

use crate::error::{ServiceError, ServiceResult};
use crate::{Ctx, Vault};

/// What a rewrap pass did.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct RewrapReport {
    /// The data key term everything is now under.
    pub term: u32,
    /// Values encrypted again under `term` in this pass.
    pub rewrapped: u64,
    /// Older data key terms deleted in this pass.
    pub retired_terms: Vec<u32>,
    /// Data key terms still held (1 once rotation is complete).
    pub key_terms: usize,
}

const PAGE: i64 = 500;

impl Vault {
    pub fn set_retire_grace(&self, grace: Duration) {
        self.retire_grace_ms.store(
            grace.as_millis().try_into().unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn retire_grace(&self) -> Duration {
        Duration::from_millis(self.retire_grace_ms.load(Ordering::Relaxed))
    }

    /// Encrypt every value under an older term again under the newest one.
    async fn rewrap_values(&self) -> ServiceResult<(u32, u64)> {
        self.barrier.refresh().await?;
        let keys = self.barrier.keys().await?;
        let term = keys.keyring.active_term().ok_or(ServiceError::Integrity)?;
        let mut done = 0u64;
        let mut after = None;
        loop {
            let page = self.store.versions_not_of_term(term, after, PAGE).await?;
            for VersionCiphertext {
                id,
                version,
                payload: old,
            } in &page
            {
                let binding = format!("credvault:cred:{id}:v{version}");
                let plain = keys.keyring.decrypt(old, &binding).map_err(|e| {
                    tracing::error!(credential = %id, version, error = %e, "rewrap: value failed to decrypt");
                    ServiceError::Integrity
                })?;
                let new = keys.keyring.encrypt(plain.expose(), &binding)?;
                if self.store.rewrap_version(*id, *version, old, &new).await? {
                    done += 1;
                }
            }
            if page.len() < PAGE as usize {
                break;
            }
            after = page.last().map(|r| (r.id, r.version));
        }
        for IntegrationCiphertext { name, secrets: old } in
            self.store.integration_secrets_not_of_term(term).await?
        {
            let binding = crate::integrations::binding(&name);
            let plain = keys.keyring.decrypt(&old, &binding)?;
            let new = keys.keyring.encrypt(plain.expose(), &binding)?;
            if self.store.rewrap_integration(&name, &old, &new).await? {
                done += 1;
            }
        }
        // Passwords of changes in flight (`pwchange.rs`): the target may hold one already.
        for (id, change_id, old) in self.store.pending_not_of_term(term).await? {
            let binding = crate::pwchange::pending_binding(id, &change_id);
            let plain = keys.keyring.decrypt(&old, &binding)?;
            let new = keys.keyring.encrypt(plain.expose(), &binding)?;
            if self.store.rewrap_pending(id, &old, &new).await? {
                done += 1;
            }
        }
        metrics::counter!("credvault_rewrapped_values_total").increment(done);
        Ok((term, done))
    }

    /// One pass: rewrap, then retire the older keys if the rotation is older than the grace.
    pub(crate) async fn rewrap_pass(&self) -> ServiceResult<RewrapReport> {
        let (term, rewrapped) = self.rewrap_values().await?;
        let rotated = self.store.data_key_created(term).await?;
        let grace = time::Duration::try_from(self.retire_grace()).unwrap_or(time::Duration::MAX);
        let settled = rotated
            .and_then(|t| t.checked_add(grace))
            .is_some_and(|t| t <= self.clock.now());
        let retired_terms = if settled {
            self.store.retire_data_keys_below(term).await?
        } else {
            vec![]
        };
        if !retired_terms.is_empty() {
            self.barrier.refresh().await?;
        }
        let key_terms = self.barrier.keys().await?.keyring.len();
        Ok(RewrapReport {
            term,
            rewrapped,
            retired_terms,
            key_terms,
        })
    }

    /// `POST /api/v1/sys/rewrap` (`credvault operator rewrap`): one pass in the foreground.
    pub async fn rewrap(&self, ctx: &Ctx) -> ServiceResult<RewrapReport> {
        self.require_admin(ctx)?;
        let r = self.rewrap_pass().await?;
        self.audit(
            ctx,
            "sys.rewrap",
            "keyring",
            "ok",
            json!({"term": r.term, "rewrapped": r.rewrapped, "retired_terms": r.retired_terms}),
        )
        .await?;
        Ok(r)
    }

    /// After a rotation: rewrap now, again after the grace (stragglers), and retire the old keys.
    pub(crate) fn spawn_rewrap(self: &Arc<Self>, ctx: Ctx) {
        let vault = self.clone();
        tokio::spawn(async move {
            let mut total = 0;
            let mut last = Err(ServiceError::Integrity);
            for attempt in 0..10u32 {
                if attempt > 0 {
                    tokio::time::sleep(vault.retire_grace() + Duration::from_millis(100)).await;
                }
                last = vault.rewrap_pass().await;
                match &last {
                    Ok(r) => {
                        total += r.rewrapped;
                        if r.key_terms <= 1 {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "background rewrap pass failed; retrying"),
                }
            }
            let (outcome, detail) = match &last {
                Ok(r) => (
                    "ok",
                    json!({"term": r.term, "rewrapped": total, "key_terms": r.key_terms}),
                ),
                Err(e) => ("failed", json!({"error": e.to_string()})),
            };
            let _ = vault
                .audit(&ctx, "sys.rewrap", "keyring", outcome, detail)
                .await;
        });
    }
}
