//! Authentication shared by the doors: bearer tokens to [`Actor`]s, and the per-source limit on
//! failed attempts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use credvault_core::model::UserKind;
use credvault_core::policy::{Actor, ActorKind};
use credvault_core::DomainError;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{ServiceError, ServiceResult};
use crate::Vault;

/// Limits failed authentications per source address. Once a source exceeds the quota it is blocked
/// for `block` even for correct credentials, so guessing cannot go on at full speed.
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

    pub fn failed(&self, ip: IpAddr) {
        if self.limiter.check_key(&ip).is_err() {
            if let Ok(mut b) = self.blocked.lock() {
                b.insert(ip, Instant::now() + self.block);
                if b.len() > 10_000 {
                    let now = Instant::now();
                    b.retain(|_, until| *until > now);
                }
            }
            self.limiter.retain_recent();
        }
    }
}

impl Vault {
    /// Resolve a bearer token to the actor it stands for. Failures count against the source.
    pub async fn authenticate(&self, token: Option<&str>, source: IpAddr) -> ServiceResult<Actor> {
        self.limiter.check(source)?;
        let token = match token {
            Some(t) if !t.is_empty() => t,
            _ => return Err(DomainError::Unauthenticated.into()),
        };
        let keys = self.barrier.keys().await?;
        let hash = keys.tokens.token_hash(token);
        let info = self.store.token_by_hash(&hash).await?;
        let now = self.clock.now();
        let info = match info {
            Some(i) if !i.revoked && i.expires_at.is_none_or(|e| e > now) => i,
            _ => {
                self.limiter.failed(source);
                metrics::counter!("credvault_auth_failures_total").increment(1);
                return Err(DomainError::Unauthenticated.into());
            }
        };
        if info.user == "root" {
            return Ok(Actor::root());
        }
        // An application's login token (Vault AppRole): valid while the application exists.
        if let Some(app_id) = info.user.strip_prefix("app:") {
            if self.store.get_app(app_id).await?.is_none() {
                self.limiter.failed(source);
                return Err(DomainError::Unauthenticated.into());
            }
            return Ok(Actor {
                name: info.user,
                kind: ActorKind::App,
                groups: vec![],
            });
        }
        let Some(user) = self.store.get_user(&info.user).await? else {
            self.limiter.failed(source);
            return Err(DomainError::Unauthenticated.into());
        };
        self.actor_of_user(user).await
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
            l.failed(a);
        }
        assert!(l.check(a).is_ok());
        l.failed(a); // fourth failure exceeds the quota
        assert!(matches!(l.check(a), Err(ServiceError::RateLimited)));
        assert!(l.check(b).is_ok());
    }
}
