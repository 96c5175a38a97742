//! The time the core goes by, passed in: token expiry, version and audit times, custody, key
//! retirement. Production uses the system clock; tests move it forward (`advance`) to expire
//! tokens or age a rotation instead of editing rows.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use time::OffsetDateTime;

/// The system clock plus an offset that only tests change. Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + time::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Move this clock (and every clone) forward.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let c = Clock::system();
        let other = c.clone();
        let before = other.now();
        c.advance(std::time::Duration::from_secs(3600));
        let gap = other.now() - before;
        assert!(gap >= time::Duration::hours(1), "{gap}");
        assert!(
            gap < time::Duration::hours(1) + time::Duration::minutes(1),
            "{gap}"
        );
    }
}
