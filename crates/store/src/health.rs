//! What a store knows about its own ability to serve (issue 16): whether the database can be
//! reached (a circuit breaker) and whether writes succeed.
//!
//! * **The circuit.** A connection failure (the pool timed out, the connection was refused or
//!   reset, PostgreSQL shutting down) *opens* it: every later call fails at once with
//!   [`StoreError::Unavailable`](crate::StoreError) instead of waiting for the pool's timeout,
//!   until a probe ([`BackendStore::probe`](crate::BackendStore::probe), run in the background by
//!   the service) reaches the database again and closes it.
//! * **Writes.** The last write outcome reported by the backend (its probe, a write transaction
//!   that could not finish) and by the service (every audit append): a failure marks the store
//!   not writable until a write succeeds again.
//!
//! The reason given out ([`HealthReport::reason`]) is a fixed phrase: the error itself is logged,
//! not answered, because health is answered to anyone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use time::OffsetDateTime;

/// A store's health, shared by its pools and the service. See the module documentation.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// The circuit is open: the database could not be reached (checked on every call, so atomic).
    open: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Since when the database has been unreachable.
    unreachable_since: Option<OffsetDateTime>,
    /// Since when writes have been failing (no write succeeded after the first failure).
    writes_failing_since: Option<OffsetDateTime>,
    last_write_ok: Option<OffsetDateTime>,
}

/// A snapshot of [`StoreHealth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The database answers (the circuit is closed).
    pub reachable: bool,
    /// The last write succeeded (or none failed yet).
    pub writable: bool,
    /// Why not, as a fixed phrase (no error text: health is public).
    pub reason: Option<&'static str>,
    /// Since when it has been so.
    pub since: Option<OffsetDateTime>,
    /// When a write last succeeded.
    pub last_write_ok: Option<OffsetDateTime>,
}

impl HealthReport {
    pub fn ok(&self) -> bool {
        self.reachable && self.writable
    }
}

impl StoreHealth {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the circuit is open (calls fail at once).
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// The database could not be reached: open the circuit.
    pub fn unreachable(&self, error: &str) {
        if !self.open.swap(true, Ordering::AcqRel) {
            tracing::error!(%error, "the database cannot be reached: failing calls at once until a probe reaches it");
            if let Ok(mut s) = self.state.lock() {
                s.unreachable_since = Some(OffsetDateTime::now_utc());
            }
        }
    }

    /// The database answered a probe: close the circuit.
    pub fn reachable(&self) {
        if self.open.swap(false, Ordering::AcqRel) {
            tracing::info!("the database is reachable again");
        }
        if let Ok(mut s) = self.state.lock() {
            s.unreachable_since = None;
        }
    }

    /// A write (a probe, an audit append, a write transaction) committed.
    pub fn write_ok(&self) {
        if let Ok(mut s) = self.state.lock() {
            if s.writes_failing_since.take().is_some() {
                tracing::info!("writes succeed again");
            }
            s.last_write_ok = Some(OffsetDateTime::now_utc());
        }
    }

    /// A write failed for a reason of the store's (not a conflict or a bad value).
    pub fn write_failed(&self, what: &str, error: &str) {
        if let Ok(mut s) = self.state.lock() {
            if s.writes_failing_since.is_none() {
                tracing::error!(%what, %error, "a write failed: health is degraded until a write succeeds");
                s.writes_failing_since = Some(OffsetDateTime::now_utc());
            }
        }
    }

    pub fn report(&self) -> HealthReport {
        let open = self.is_open();
        let Ok(s) = self.state.lock() else {
            return HealthReport {
                reachable: !open,
                writable: false,
                reason: Some("health state unavailable"),
                since: None,
                last_write_ok: None,
            };
        };
        let (reason, since) = if open {
            (Some("the database cannot be reached"), s.unreachable_since)
        } else if s.writes_failing_since.is_some() {
            (
                Some("writes are failing (disk full, or the database refuses them)"),
                s.writes_failing_since,
            )
        } else {
            (None, None)
        };
        HealthReport {
            reachable: !open,
            writable: s.writes_failing_since.is_none() && !open,
            reason,
            since,
            last_write_ok: s.last_write_ok,
        }
    }
}

/// Whether `e` means the database could not be reached (as opposed to a refused statement).
pub(crate) fn is_connection_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL: class 08 (connection exception) and 57P01-03 (shutting down, cannot
        // connect now). SQLite's codes are plain numbers and never match.
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// How long a probe may take. A PostgreSQL probe that cannot connect within it finds the database
/// unreachable; a SQLite probe that waits longer (a long write holds the lock) proves nothing.
pub(crate) const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Record a probe's outcome (`None`: it timed out) in `health`, as the store's answer.
pub(crate) fn probe_outcome(
    health: &StoreHealth,
    outcome: Option<Result<(), sqlx::Error>>,
    timeout_means_unreachable: bool,
) -> crate::Result<()> {
    match outcome {
        Some(Ok(())) => {
            health.reachable();
            health.write_ok();
            Ok(())
        }
        Some(Err(e)) => {
            if is_connection_failure(&e) {
                health.unreachable(&e.to_string());
            } else {
                health.reachable();
            }
            health.write_failed("probe", &e.to_string());
            Err(crate::sql::db_err(e))
        }
        None => {
            if timeout_means_unreachable {
                health.unreachable("the probe timed out");
                health.write_failed("probe", "timed out");
            }
            Err(crate::StoreError::Unavailable("the probe timed out".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_circuit_and_the_writes_are_reported_until_they_recover() {
        let h = StoreHealth::new();
        assert!(h.report().ok());
        h.write_failed("audit append", "disk full");
        let r = h.report();
        assert!(r.reachable && !r.writable && r.since.is_some(), "{r:?}");
        h.write_ok();
        assert!(h.report().ok());
        h.unreachable("refused");
        assert!(h.is_open());
        let r = h.report();
        assert!(!r.reachable && !r.writable, "{r:?}");
        assert_eq!(r.reason, Some("the database cannot be reached"));
        h.reachable();
        assert!(!h.is_open() && h.report().ok());
    }

    #[test]
    fn only_connection_failures_open_the_circuit() {
        assert!(is_connection_failure(&sqlx::Error::PoolTimedOut));
        assert!(is_connection_failure(&sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
        )));
        assert!(!is_connection_failure(&sqlx::Error::RowNotFound));
        assert!(!is_connection_failure(&sqlx::Error::PoolClosed));
    }
}
