//! The change feed: how a server's caches learn that what they hold changed (issue 15).
//!
//! Triggers bump one counter per [`Area`] in `change_epochs` inside the transaction of every change
//! to that area's tables (migrations 0009 and 0013), on every server. Each backend keeps the newest
//! counters it has seen in a [`ChangeFeed`]:
//! - **its own writes**: a write transaction reads the counters just before its commit and
//!   publishes them once committed, before the write is acknowledged, so a read on this server after
//!   an acknowledged write never sees an older cached value;
//! - **other servers' writes**: a poll ([`ChangeFeed::observe`], driven by the service every
//!   200 ms) publishes what the table says.
//!
//! A cache stamps each entry with its area's epoch taken *before* reading the store and serves it
//! only while the epoch has not moved; a fill that raced a change is therefore never served. When
//! polls fail, the feed is not live and caches are bypassed (correct, slower).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a cached value depends on. The number is the row id in `change_epochs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    /// Applications and their grants (`apps`, `app_grants`).
    Apps = 1,
    /// Who is who and may do what: `users`, `groups`, `group_members`, changed or removed `tokens`,
    /// `safes`, `safe_members`.
    Identity = 2,
    /// Credentials and their versions (`credentials`, `credential_versions`).
    Credentials = 3,
}

impl Area {
    pub const ALL: [Area; 3] = [Area::Apps, Area::Identity, Area::Credentials];

    fn index(self) -> usize {
        self as usize - 1
    }

    /// The area of a `change_epochs` row id.
    pub fn of_id(id: i64) -> Option<Area> {
        Self::ALL.into_iter().find(|a| *a as i64 == id)
    }
}

/// How long the feed stays live after its last successful poll.
pub const STALE_AFTER: Duration = Duration::from_secs(2);

/// The newest change counters this server knows of.
pub struct ChangeFeed {
    epochs: [AtomicI64; 3],
    /// Milliseconds since `start` of the last successful poll, plus one (0: never).
    confirmed: AtomicU64,
    start: Instant,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self {
            epochs: [AtomicI64::new(-1), AtomicI64::new(-1), AtomicI64::new(-1)],
            confirmed: AtomicU64::new(0),
            start: Instant::now(),
        }
    }
}

impl ChangeFeed {
    /// The area's newest known counter.
    pub fn epoch(&self, area: Area) -> i64 {
        self.epochs[area.index()].load(Ordering::Acquire)
    }

    /// Publish counters read from `change_epochs` (`(id, epoch)` rows). Counters only move forward.
    pub fn publish(&self, rows: &[(i64, i64)]) {
        for (id, epoch) in rows {
            if let Some(a) = Area::of_id(*id) {
                self.epochs[a.index()].fetch_max(*epoch, Ordering::AcqRel);
            }
        }
    }

    /// Publish a successful poll's counters and mark the feed live.
    pub fn observe(&self, rows: &[(i64, i64)]) {
        self.publish(rows);
        let ms = self.start.elapsed().as_millis() as u64 + 1;
        self.confirmed.fetch_max(ms, Ordering::AcqRel);
    }

    /// Whether caches may be used: a poll succeeded within [`STALE_AFTER`].
    pub fn live(&self) -> bool {
        let c = self.confirmed.load(Ordering::Acquire);
        c != 0 && self.start.elapsed().as_millis() as u64 + 1 - c < STALE_AFTER.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_live_until_observed_and_counters_only_move_forward() {
        let f = ChangeFeed::default();
        assert!(!f.live());
        f.observe(&[(1, 5), (2, 7), (3, 9), (99, 1)]);
        assert!(f.live());
        assert_eq!(f.epoch(Area::Apps), 5);
        assert_eq!(f.epoch(Area::Identity), 7);
        assert_eq!(f.epoch(Area::Credentials), 9);
        f.publish(&[(3, 4)]);
        assert_eq!(
            f.epoch(Area::Credentials),
            9,
            "an older reading never moves it back"
        );
        f.publish(&[(3, 10)]);
        assert_eq!(f.epoch(Area::Credentials), 10);
    }
}
