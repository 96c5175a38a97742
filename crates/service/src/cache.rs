//! The application authorisation cache of the CCP hot path (issue 4): an application's record (its
//! rules) and its grants, by AppID, so a Get Password does not read them from the store every time.
//!
//! Invalidation:
//! - **this server**: every change made here (`create_app`, `delete_app`, `set_app_grant`) clears the
//!   cache synchronously, before the change is acknowledged;
//! - **other servers**: triggers bump `change_epochs` inside the transaction of any change to `apps` or
//!   `app_grants` (migration 0009); a task polls the epoch every [`POLL`] and clears the cache when it
//!   moved. A change on another server is therefore seen within one poll interval.
//! - **the feed failing**: entries are used only while the last successful poll is younger than
//!   [`STALE_AFTER`]; otherwise every call reads the store (correct, just slower).
//! - **racing fills**: a fill takes the generation before reading the store and is dropped if the
//!   cache was cleared meanwhile, so a read that raced an invalidation never lands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use credvault_store::{AppGrant, AppRecord, Store};

pub const POLL: Duration = Duration::from_millis(200);
pub const STALE_AFTER: Duration = Duration::from_secs(2);
const MAX_ENTRIES: usize = 10_000;

/// An application and its grants, as the store had them.
#[derive(Debug, Clone)]
pub struct AppEntry {
    pub app: AppRecord,
    pub grants: Vec<AppGrant>,
}

struct Inner {
    generation: u64,
    epoch: Option<i64>,
    confirmed: Option<Instant>,
    apps: HashMap<String, Arc<AppEntry>>,
}

pub struct AppCache {
    inner: Mutex<Inner>,
}

impl Default for AppCache {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                generation: 0,
                epoch: None,
                confirmed: None,
                apps: HashMap::new(),
            }),
        }
    }
}

impl AppCache {
    /// A cached entry, if the cache is live and has one.
    pub fn get(&self, app_id: &str) -> Option<Arc<AppEntry>> {
        let inner = self.inner.lock().ok()?;
        let live = inner.confirmed.is_some_and(|t| t.elapsed() < STALE_AFTER);
        if !live {
            return None;
        }
        inner.apps.get(app_id).cloned()
    }

    /// The generation to pass to [`AppCache::fill`]: take it before reading the store.
    pub fn generation(&self) -> u64 {
        self.inner.lock().map_or(0, |i| i.generation)
    }

    /// Remember what the store said, unless the cache was cleared since `generation` was taken.
    pub fn fill(&self, generation: u64, app_id: &str, entry: AppEntry) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.generation == generation && inner.confirmed.is_some() {
                if inner.apps.len() >= MAX_ENTRIES {
                    inner.apps.clear();
                }
                inner.apps.insert(app_id.to_owned(), Arc::new(entry));
            }
        }
    }

    /// Drop everything (a local change, or another server's change seen through the epoch).
    pub fn invalidate(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.generation += 1;
            inner.apps.clear();
        }
    }

    /// One poll of the epoch: clear when it moved, and mark the cache live.
    fn observe(&self, epoch: i64) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.epoch != Some(epoch) {
                inner.generation += 1;
                inner.apps.clear();
                inner.epoch = Some(epoch);
            }
            inner.confirmed = Some(Instant::now());
        }
    }

    /// Poll the store's change epoch until the cache is dropped (the server stopped).
    pub fn start_polling(self: &Arc<Self>, store: Arc<dyn Store>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(cache) = weak.upgrade() else { return };
                match store.change_epoch().await {
                    Ok(e) => cache.observe(e),
                    Err(e) => {
                        tracing::debug!(error = %e, "change epoch poll failed; cache bypassed")
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn entry(owner: &str) -> AppEntry {
        AppEntry {
            app: AppRecord {
                app_id: "A".into(),
                owner: owner.into(),
                description: None,
                rules: "{}".into(),
                created_at: OffsetDateTime::UNIX_EPOCH,
            },
            grants: vec![],
        }
    }

    #[test]
    fn not_used_until_the_feed_is_live() {
        let c = AppCache::default();
        let g = c.generation();
        c.fill(g, "A", entry("x"));
        assert!(c.get("A").is_none(), "no poll yet: bypassed");
        c.observe(1);
        let g = c.generation();
        c.fill(g, "A", entry("x"));
        assert!(c.get("A").is_some());
    }

    #[test]
    fn invalidation_and_epoch_moves_clear_and_racing_fills_are_dropped() {
        let c = AppCache::default();
        c.observe(1);
        let g = c.generation();
        c.invalidate(); // a change lands between the store read and the fill
        c.fill(g, "A", entry("stale"));
        assert!(c.get("A").is_none());
        let g = c.generation();
        c.fill(g, "A", entry("fresh"));
        assert!(c.get("A").is_some());
        c.observe(1);
        assert!(c.get("A").is_some(), "same epoch keeps entries");
        c.observe(2);
        assert!(c.get("A").is_none(), "another server changed something");
    }
}
