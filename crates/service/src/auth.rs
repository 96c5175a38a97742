//! Authentication shared by the doors: bearer tokens to [`Actor`]s, and the per-source limit on
//! failed attempts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use credvault_core::model::{TokenInfo, UserKind};
use credvault_core::policy::{Actor, ActorKind};
use credvault_core::DomainError;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{ServiceError, ServiceResult};
use crate::Vault;

/// Not revoked and not expired at `now`.
fn usable(info: &TokenInfo, now: time::OffsetDateTime) -> bool {
    !info.revoked && info.expires_at.is_none_or(|e| e > now)
}

/// Limits failed authentications per source address. Once a source exceeds the quota it is blocked
/// for `block` even for correct credentials, so guessing cannot go on at full speed.
///
/// Each failure is counted and checked in one atomic step ([`FailureLimiter::refuse`], governor's
/// compare-and-swap on the source's state): the failure that goes over the quota is itself answered
/// 429, so however many attempts run at once, at most the quota of them is answered as a plain
/// failure (issue 16.8). [`FailureLimiter::check`] refuses early once a source is blocked.
pub struct FailureLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    block: Duration,
}

impl FailureLimiter {
    /// `per_minute` failures allowed per source (burst of the same size).
    pub fn new(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(n).allow_burst(n)),
            blocked: Mutex::new(HashMap::new()),
            block: Duration::from_secs(60) / per_minute.max(1) * 5,
        }
    }

    /// Refuse at once (429) while the source is blocked.
    pub fn check(&self, ip: IpAddr) -> ServiceResult<()> {
        let mut b = self.blocked.lock().map_err(|_| ServiceError::RateLimited)?;
        match b.get(&ip) {
            Some(until) if *until > Instant::now() => Err(ServiceError::RateLimited),
            Some(_) => {
                b.remove(&ip);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Count one failed authentication from `ip`. True when it is within the quota (answer the
    /// failure as usual); false when it went over (answer 429, and the source is now blocked).
    pub fn failed(&self, ip: IpAddr) -> bool {
        metrics::counter!("credvault_auth_failures_total").increment(1);
        if self.limiter.check_key(&ip).is_ok() {
            return true;
        }
        if let Ok(mut b) = self.blocked.lock() {
            b.insert(ip, Instant::now() + self.block);
            if b.len() > 10_000 {
                let now = Instant::now();
                b.retain(|_, until| *until > now);
            }
        }
        self.limiter.retain_recent();
        false
    }

    /// Count one failed authentication from `ip` and say how to answer it: `err` within the quota,
    /// [`ServiceError::RateLimited`] once over it.
    pub fn refuse<E: From<ServiceError>>(&self, ip: IpAddr, err: E) -> E {
        if self.failed(ip) {
            err
        } else {
            ServiceError::RateLimited.into()
        }
    }
}

impl Vault {
    /// Resolve a bearer token to the actor it stands for. Failures count against the source.
    /// A valid token and its actor come from the token cache (`cache.rs`) when it has them; expiry
    /// is checked against the clock on every call.
    pub async fn authenticate(&self, token: Option<&str>, source: IpAddr) -> ServiceResult<Actor> {
        self.limiter.check(source)?;
        let token = match token {
            Some(t) if !t.is_empty() => t,
            _ => return Err(DomainError::Unauthenticated.into()),
        };
        let keys = self.barrier.keys().await?;
        let hash = keys.tokens.token_hash(token);
        let now = self.clock.now();
        let (feed, cache) = (self.store.feed(), &self.caches.tokens);
        let entry = match cache.get(feed, &hash) {
            Some(e) => Some(e),
            None => {
                let ticket = cache.ticket(feed);
                let found = self.resolve_token(&hash).await?.map(Arc::new);
                if let Some(e) = found.as_ref().filter(|e| usable(&e.0, now)) {
                    cache.fill(feed, ticket, hash, e.clone());
                }
                found
            }
        };
        let actor = match entry.as_deref() {
            Some((info, actor)) if usable(info, now) => match info.user.strip_prefix("app:") {
                // An application's login token (Vault AppRole): valid while the application exists.
                Some(app_id) if self.app_entry(app_id).await?.is_none() => None,
                _ => Some(actor.clone()),
            },
            _ => None,
        };
        actor.ok_or_else(|| {
            self.limiter
                .refuse(source, DomainError::Unauthenticated.into())
        })
    }

    /// A token's record and the actor it stands for, from the store (`None`: no such token, or
    /// its user is gone).
    async fn resolve_token(&self, hash: &str) -> ServiceResult<Option<(TokenInfo, Actor)>> {
        let Some(info) = self.store.token_by_hash(hash).await? else {
            return Ok(None);
        };
        if info.user == "root" {
            return Ok(Some((info, Actor::root())));
        }
        if info.user.starts_with("app:") {
            let actor = Actor {
                name: info.user.clone(),
                kind: ActorKind::App,
                groups: vec![],
            };
            return Ok(Some((info, actor)));
        }
        let Some(user) = self.store.get_user(&info.user).await? else {
            return Ok(None);
        };
        Ok(Some((info, self.actor_of_user(user).await?)))
    }

    /// The actor a stored user acts as: its kind (admin, human, service) and its groups, with the
    /// built-in `all-users` group every user belongs to.
    pub(crate) async fn actor_of_user(
        &self,
        user: credvault_core::model::User,
    ) -> ServiceResult<Actor> {
        let kind = match (user.admin, user.kind) {
            (true, _) => ActorKind::Admin,
            (false, UserKind::Human) => ActorKind::User,
            (false, UserKind::Service) => ActorKind::Service,
        };
        let mut groups = self.store.groups_of(&user.name).await?;
        groups.push(credvault_core::policy::ALL_USERS.to_owned());
        Ok(Actor {
            name: user.name,
            kind,
            groups,
        })
    }

    /// The stored record of a token the caller already authenticated with (Vault's lookup-self).
    pub async fn token_self(&self, token: &str) -> ServiceResult<credvault_core::model::TokenInfo> {
        let keys = self.barrier.keys().await?;
        self.store
            .token_by_hash(&keys.tokens.token_hash(token))
            .await?
            .ok_or_else(|| DomainError::Unauthenticated.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_quota_and_only_that_source() {
        let l = FailureLimiter::new(3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
            assert!(l.failed(a));
        }
        assert!(l.check(a).is_ok());
        assert!(
            !l.failed(a),
            "the fourth failure exceeds the quota and is itself refused"
        );
        assert!(matches!(l.check(a), Err(ServiceError::RateLimited)));
        assert!(l.check(b).is_ok());
    }
}
