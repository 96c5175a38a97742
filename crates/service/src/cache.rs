//! The read caches of the hot paths (issues 4 and 15): what a read needs besides the secret's own
//! row, kept in memory so a read does not cross to the database for it every time.
//!
//! Every cache is an [`EpochCache`] over one [`Area`] of the store's change feed
//! (`credvault_store::feed`):
//! - **this server's writes** publish their area's counter on commit, before they are acknowledged;
//! - **other servers' writes** arrive through [`Vault::start_background`]'s poll every [`POLL`];
//! - **the feed failing**: entries are used only while the feed is live (a poll succeeded within
//!   two seconds); otherwise every call reads the store (correct, just slower);
//! - **racing fills**: a fill carries the counter taken *before* its store read and is served only
//!   while the counter has not moved, so a read that raced a change is never served.
//!
//! Each cache holds at most its `max` entries; a full cache drops an arbitrary eighth of them.
//!
//! [`Vault::start_background`]: crate::Vault::start_background

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use credvault_core::model::{Credential, TokenInfo, VersionInfo};
use credvault_core::policy::{Actor, Membership};
use credvault_store::feed::{Area, ChangeFeed};
use credvault_store::{
    AppGrant, AppRecord, CredentialFilter, CredentialWithPayload, LookupKey, Store,
};

use crate::error::ServiceResult;
use crate::Vault;
use uuid::Uuid;

/// How often other servers' changes are polled: the bound on how stale a cached value can be on
/// a server that did not make the change.
pub const POLL: Duration = Duration::from_millis(200);

/// An application and its grants, as the store had them.
#[derive(Debug, Clone)]
pub struct AppEntry {
    pub app: AppRecord,
    pub grants: Vec<AppGrant>,
}

/// The caches of one server, one per kind of value (see the module comment for their invalidation).
pub struct Caches {
    /// An application and its grants, by AppID (the CCP door, AppRole and OAuth tokens).
    pub apps: EpochCache<String, AppEntry>,
    /// A token (by its keyed hash) and the actor it stands for.
    pub tokens: EpochCache<String, (TokenInfo, Actor)>,
    /// A safe's members, by safe name.
    pub members: EpochCache<String, Vec<Membership>>,
    /// A credential and the sealed payload of its current version, by id.
    pub creds: EpochCache<Uuid, CredentialWithPayload>,
    /// A listing by name (fetch-credentials, name resolution), by its whole filter (visibility included).
    pub named: EpochCache<CredentialFilter, Vec<Credential>>,
    /// The safes a user (with its groups) may list, by user and groups.
    pub listable: EpochCache<(String, Vec<String>), Vec<String>>,
    /// A credential by identifier (entity credentials).
    pub by_identifier: EpochCache<String, Credential>,
    /// A user as an actor (its kind and groups), by name.
    pub users: EpochCache<String, Actor>,
    /// Whether a safe exists, by name.
    pub safes: EpochCache<String, bool>,
    /// A Vault-KV secret by its identifier: what a read of its latest version needs.
    pub kv: EpochCache<String, KvEntry>,
    /// An indexed lookup's answer (the CCP door's exact queries), by its key, value and scope.
    pub lookups: EpochCache<LookupQuery, Vec<CredentialWithPayload>>,
}

/// A Vault-KV secret as the store holds it: the credential, its KV state's text, its versions, and
/// the sealed payload of its current version.
#[derive(Debug, Clone)]
pub struct KvEntry {
    pub cred: Credential,
    pub raw_meta: Option<String>,
    pub versions: Vec<VersionInfo>,
    pub payload: Vec<u8>,
}

/// An indexed lookup: the column, the case-folded value, and the safes and credential ids searched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupQuery {
    pub key: LookupKey,
    pub value: String,
    pub safes: Vec<String>,
    pub ids: Vec<String>,
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            apps: EpochCache::new(Area::Apps, 10_000),
            tokens: EpochCache::new(Area::Identity, 100_000),
            members: EpochCache::new(Area::Identity, 10_000),
            creds: EpochCache::new(Area::Credentials, 20_000),
            lookups: EpochCache::new(Area::Credentials, 20_000),
            safes: EpochCache::new(Area::Identity, 10_000),
            by_identifier: EpochCache::new(Area::Credentials, 20_000),
            users: EpochCache::new(Area::Identity, 10_000),
            named: EpochCache::new(Area::Credentials, 10_000),
            listable: EpochCache::new(Area::Identity, 10_000),
            kv: EpochCache::new(Area::Credentials, 20_000),
        }
    }
}

/// What a fill needs: the area's counter (and the cache's own generation) before the store read.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: i64,
    generation: u64,
}

struct Entry<V> {
    epoch: i64,
    generation: u64,
    value: Arc<V>,
}

struct Inner<K, V> {
    generation: u64,
    map: HashMap<K, Entry<V>>,
}

/// Values of one area, valid while the area's change counter stays where it was when they were read.
pub struct EpochCache<K, V> {
    area: Area,
    max: usize,
    inner: RwLock<Inner<K, V>>,
}

impl<K: Eq + Hash + Clone, V> EpochCache<K, V> {
    pub fn new(area: Area, max: usize) -> Self {
        Self {
            area,
            max: max.max(8),
            inner: RwLock::new(Inner {
                generation: 0,
                map: HashMap::new(),
            }),
        }
    }

    /// A cached value, if the feed is live and the value is still current.
    pub fn get(&self, feed: &ChangeFeed, key: &K) -> Option<Arc<V>> {
        if !feed.live() {
            return None;
        }
        let epoch = feed.epoch(self.area);
        let inner = self.inner.read().ok()?;
        let e = inner.map.get(key)?;
        (e.epoch == epoch && e.generation == inner.generation).then(|| e.value.clone())
    }

    /// Take before reading the store; `None` when the feed is not live (do not cache then).
    pub fn ticket(&self, feed: &ChangeFeed) -> Option<Ticket> {
        if !feed.live() {
            return None;
        }
        let generation = self.inner.read().ok()?.generation;
        Some(Ticket {
            epoch: feed.epoch(self.area),
            generation,
        })
    }

    /// Remember what the store said, unless something changed since `ticket` was taken.
    pub fn fill(&self, feed: &ChangeFeed, ticket: Option<Ticket>, key: K, value: Arc<V>) {
        let Some(t) = ticket else { return };
        if feed.epoch(self.area) != t.epoch {
            return;
        }
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        if inner.generation != t.generation {
            return;
        }
        if inner.map.len() >= self.max {
            let mut n = 0usize;
            inner.map.retain(|_, _| {
                n += 1;
                !n.is_multiple_of(8)
            });
        }
        inner.map.insert(
            key,
            Entry {
                epoch: t.epoch,
                generation: t.generation,
                value,
            },
        );
    }

    /// Drop everything now (a change this server makes outside the store's feed).
    pub fn invalidate(&self) {
        if let Ok(mut inner) = self.inner.write() {
            inner.generation += 1;
            inner.map.clear();
        }
    }
}

impl Vault {
    /// A credential and its current sealed payload, through the credential cache.
    pub(crate) async fn current(&self, id: Uuid) -> ServiceResult<Option<CredentialWithPayload>> {
        let (feed, cache) = (self.store.feed(), &self.caches.creds);
        if let Some(c) = cache.get(feed, &id) {
            return Ok(Some((*c).clone()));
        }
        let ticket = cache.ticket(feed);
        let found = self.store.credential_with_payload(id).await?;
        if let Some(c) = &found {
            cache.fill(feed, ticket, id, Arc::new(c.clone()));
        }
        Ok(found)
    }

    /// A credential's metadata, through the same cache as [`Vault::current`] (no payload copied).
    pub(crate) async fn credential(&self, id: Uuid) -> ServiceResult<Option<Credential>> {
        let (feed, cache) = (self.store.feed(), &self.caches.creds);
        if let Some(c) = cache.get(feed, &id) {
            return Ok(Some(c.credential.clone()));
        }
        Ok(self.current(id).await?.map(|c| c.credential))
    }

    /// A listing of at most 100 credentials, through the listing cache.
    pub(crate) async fn list_named(
        &self,
        filter: CredentialFilter,
    ) -> ServiceResult<Arc<Vec<Credential>>> {
        let (feed, cache) = (self.store.feed(), &self.caches.named);
        if let Some(found) = cache.get(feed, &filter) {
            return Ok(found);
        }
        let ticket = cache.ticket(feed);
        let found = Arc::new(self.store.list_credentials(&filter).await?);
        cache.fill(feed, ticket, filter, found.clone());
        Ok(found)
    }

    /// The safes where a user (with these groups) holds `list`, through the cache.
    pub(crate) async fn listable_by(
        &self,
        user: &str,
        groups: &[String],
    ) -> ServiceResult<Arc<Vec<String>>> {
        let (feed, cache) = (self.store.feed(), &self.caches.listable);
        let key = (user.to_owned(), groups.to_vec());
        if let Some(safes) = cache.get(feed, &key) {
            return Ok(safes);
        }
        let ticket = cache.ticket(feed);
        let safes = Arc::new(
            self.store
                .safes_with(user, groups, credvault_core::model::Perms::LIST.0)
                .await?,
        );
        cache.fill(feed, ticket, key, safes.clone());
        Ok(safes)
    }

    /// A credential by identifier, through the cache (`None`: no such credential).
    pub(crate) async fn by_identifier(
        &self,
        identifier: &str,
    ) -> ServiceResult<Option<Credential>> {
        let (feed, cache) = (self.store.feed(), &self.caches.by_identifier);
        let key = identifier.to_owned();
        if let Some(c) = cache.get(feed, &key) {
            return Ok(Some((*c).clone()));
        }
        let ticket = cache.ticket(feed);
        let found = self.store.credential_by_identifier(identifier).await?;
        if let Some(c) = &found {
            cache.fill(feed, ticket, key, Arc::new(c.clone()));
        }
        Ok(found)
    }

    /// A stored user as the actor it acts as, through the cache (`None`: no such user).
    pub(crate) async fn user_actor(&self, name: &str) -> ServiceResult<Option<Actor>> {
        let (feed, cache) = (self.store.feed(), &self.caches.users);
        let key = name.to_owned();
        if let Some(a) = cache.get(feed, &key) {
            return Ok(Some((*a).clone()));
        }
        let ticket = cache.ticket(feed);
        let Some(user) = self.store.get_user(name).await? else {
            return Ok(None);
        };
        let actor = self.actor_of_user(user).await?;
        cache.fill(feed, ticket, key, Arc::new(actor.clone()));
        Ok(Some(actor))
    }

    /// Whether the safe exists, through the safe cache.
    pub(crate) async fn safe_exists(&self, name: &str) -> ServiceResult<bool> {
        let (feed, cache) = (self.store.feed(), &self.caches.safes);
        let key = name.to_owned();
        if let Some(known) = cache.get(feed, &key) {
            return Ok(*known);
        }
        let ticket = cache.ticket(feed);
        let exists = self.store.get_safe(name).await?.is_some();
        cache.fill(feed, ticket, key, Arc::new(exists));
        Ok(exists)
    }

    /// A KV secret by identifier, through the KV cache (`None`: no such secret).
    pub(crate) async fn kv_entry(&self, identifier: &str) -> ServiceResult<Option<Arc<KvEntry>>> {
        let (feed, cache) = (self.store.feed(), &self.caches.kv);
        let key = identifier.to_owned();
        if let Some(e) = cache.get(feed, &key) {
            return Ok(Some(e));
        }
        let ticket = cache.ticket(feed);
        let Some(cred) = self.store.credential_by_identifier(identifier).await? else {
            return Ok(None);
        };
        let raw_meta = self.store.kv_meta(cred.id).await?;
        let versions = self.store.list_versions(cred.id).await?;
        let Some(current) = self.store.get_version(cred.id, cred.version).await? else {
            return Ok(None);
        };
        let entry = Arc::new(KvEntry {
            cred,
            raw_meta,
            versions,
            payload: current.payload,
        });
        cache.fill(feed, ticket, key, entry.clone());
        Ok(Some(entry))
    }

    /// An indexed lookup (at most 1,000 rows), through the lookup cache.
    pub(crate) async fn lookup(
        &self,
        q: LookupQuery,
    ) -> ServiceResult<Arc<Vec<CredentialWithPayload>>> {
        let (feed, cache) = (self.store.feed(), &self.caches.lookups);
        if let Some(rows) = cache.get(feed, &q) {
            return Ok(rows);
        }
        let ticket = cache.ticket(feed);
        let rows = Arc::new(
            self.store
                .find_by_key(q.key, &q.value, &q.safes, &q.ids, 1000)
                .await?,
        );
        cache.fill(feed, ticket, q, rows.clone());
        Ok(rows)
    }
}

/// Poll the store's change counters until the store is dropped (the server stopped).
pub fn start_polling(store: &Arc<dyn Store>) {
    let weak: Weak<dyn Store> = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(store) = weak.upgrade() else { return };
            if let Err(e) = store.poll_changes().await {
                tracing::debug!(error = %e, "change feed poll failed; caches bypassed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(epoch: i64) -> ChangeFeed {
        let f = ChangeFeed::default();
        f.observe(&[(Area::Apps as i64, epoch), (Area::Identity as i64, 0)]);
        f
    }

    #[test]
    fn not_used_until_the_feed_is_live() {
        let c: EpochCache<&str, u32> = EpochCache::new(Area::Apps, 10);
        let f = ChangeFeed::default();
        let t = c.ticket(&f);
        assert!(t.is_none(), "no poll yet: nothing is cached");
        c.fill(&f, t, "A", Arc::new(1));
        assert!(c.get(&f, &"A").is_none());
        f.observe(&[(Area::Apps as i64, 1)]);
        let t = c.ticket(&f);
        c.fill(&f, t, "A", Arc::new(1));
        assert_eq!(c.get(&f, &"A").as_deref(), Some(&1));
    }

    #[test]
    fn a_moved_counter_or_an_invalidation_drops_values_and_racing_fills() {
        let c: EpochCache<&str, u32> = EpochCache::new(Area::Apps, 10);
        let f = live(1);
        let t = c.ticket(&f);
        c.invalidate(); // a change lands between the store read and the fill
        c.fill(&f, t, "A", Arc::new(0));
        assert!(c.get(&f, &"A").is_none());
        let t = c.ticket(&f);
        f.publish(&[(Area::Apps as i64, 2)]); // a write commits between the read and the fill
        c.fill(&f, t, "A", Arc::new(0));
        assert!(c.get(&f, &"A").is_none());
        let t = c.ticket(&f);
        c.fill(&f, t, "A", Arc::new(2));
        assert_eq!(c.get(&f, &"A").as_deref(), Some(&2));
        f.publish(&[(Area::Identity as i64, 9)]);
        assert!(c.get(&f, &"A").is_some(), "another area's change keeps it");
        f.publish(&[(Area::Apps as i64, 3)]);
        assert!(c.get(&f, &"A").is_none(), "its area changed");
    }

    #[test]
    fn a_full_cache_stays_within_its_bound() {
        let c: EpochCache<u32, u32> = EpochCache::new(Area::Apps, 64);
        let f = live(1);
        for i in 0..1000 {
            let t = c.ticket(&f);
            c.fill(&f, t, i, Arc::new(i));
        }
        assert!(c.inner.read().unwrap().map.len() <= 64);
        assert_eq!(c.get(&f, &999).as_deref(), Some(&999), "the newest is kept");
    }
}
