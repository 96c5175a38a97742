//! Repeated refusals from one source, summarised (issue 16.2): the refusals an outsider can send
//! without any credential (a CCP call that fails to parse or to authenticate, a wrong OAuth or
//! AppRole client secret, a wrong password at `auth/login`) leave one full record per period and
//! key, then only a count, written as one summary record when the period is over.
//!
//! Key: source address, door, action, outcome and reason (the dialect's error code, if any). The
//! first refusal of a key in a period is recorded as before; the others in that period are counted
//! (with a sample of the actors and targets they named) and, once the period is over, one record
//! with `detail.summary = true` and the count is appended: at the next refusal of that key, or by
//! the background flush (every few seconds), whichever comes first, and every tally at a graceful
//! shutdown ([`Vault::flush_all_refusals`]). Memory is bounded: at most [`MAX_KEYS`] keys are
//! tracked; a new key beyond that flushes every tally first.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};

use serde_json::json;
use time::OffsetDateTime;

use crate::audit::Event;
use crate::Vault;

/// The length of one period.
pub const PERIOD: time::Duration = time::Duration::seconds(60);
/// Keys tracked at most.
pub const MAX_KEYS: usize = 10_000;
/// Distinct actors and targets kept as a sample in a summary.
const SAMPLE: usize = 8;
/// How often the background flush looks for periods that are over.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: String,
    door: &'static str,
    action: &'static str,
    outcome: &'static str,
    reason: Option<String>,
}

#[derive(Debug)]
struct Tally {
    since: OffsetDateTime,
    last: OffsetDateTime,
    counted: u64,
    actors: Vec<String>,
    targets: Vec<String>,
}

/// The refusals counted in the current periods.
#[derive(Default)]
pub(crate) struct Refusals {
    tallies: Mutex<HashMap<Key, Tally>>,
}

fn key_of(e: &Event) -> Key {
    let reason = e
        .detail
        .get("error_code")
        .and_then(|c| c.as_str())
        .map(|c| c.chars().take(32).collect());
    Key {
        source: e.source.clone(),
        door: e.door,
        action: e.action,
        outcome: e.outcome,
        reason,
    }
}

fn sample(list: &mut Vec<String>, item: &str) {
    if list.len() < SAMPLE && !item.is_empty() && !list.iter().any(|x| x == item) {
        list.push(item.chars().take(128).collect());
    }
}

fn summary(key: Key, t: Tally) -> Option<Event> {
    (t.counted > 0).then(|| {
        let fmt = |d: OffsetDateTime| {
            d.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        Event {
            actor: t.actors.first().cloned().unwrap_or_default(),
            door: key.door,
            action: key.action,
            target: String::new(),
            source: key.source,
            outcome: key.outcome,
            detail: json!({
                "summary": true,
                "count": t.counted,
                "error_code": key.reason,
                "first": fmt(t.since),
                "last": fmt(t.last),
                "period_seconds": PERIOD.whole_seconds(),
                "actors": t.actors,
                "targets": t.targets,
            }),
        }
    })
}

impl Refusals {
    /// Note a refusal at `now`. Returns whether to record it in full, and the summaries to append
    /// first (of this key's period that is over, or of every key when the map is full).
    fn note(&self, e: &Event, now: OffsetDateTime) -> (bool, Vec<Event>) {
        let Ok(mut map) = self.tallies.lock() else {
            return (true, vec![]);
        };
        let key = key_of(e);
        let mut out = vec![];
        if let Some(t) = map.get_mut(&key) {
            if now < t.since + PERIOD {
                t.counted += 1;
                t.last = now;
                sample(&mut t.actors, &e.actor);
                sample(&mut t.targets, &e.target);
                return (false, out);
            }
            if let Some(t) = map.remove(&key) {
                out.extend(summary(key.clone(), t));
            }
        } else if map.len() >= MAX_KEYS {
            out.extend(map.drain().filter_map(|(k, t)| summary(k, t)));
        }
        map.insert(
            key,
            Tally {
                since: now,
                last: now,
                counted: 0,
                actors: vec![],
                targets: vec![],
            },
        );
        (true, out)
    }

    /// The summaries of every period, over or not (at shutdown).
    fn all(&self) -> Vec<Event> {
        let Ok(mut map) = self.tallies.lock() else {
            return vec![];
        };
        map.drain().filter_map(|(k, t)| summary(k, t)).collect()
    }

    /// The summaries of every period that is over at `now` (those periods end).
    fn expired(&self, now: OffsetDateTime) -> Vec<Event> {
        let Ok(mut map) = self.tallies.lock() else {
            return vec![];
        };
        let over: Vec<Key> = map
            .iter()
            .filter(|(_, t)| now >= t.since + PERIOD)
            .map(|(k, _)| k.clone())
            .collect();
        over.into_iter()
            .filter_map(|k| map.remove(&k).and_then(|t| summary(k, t)))
            .collect()
    }
}

impl Vault {
    /// Audit a refusal an outsider can repeat at will (best effort: the request is refused either
    /// way): recorded in full once per period and key, else counted into a summary.
    pub(crate) async fn audit_refusal(&self, e: Event) {
        let (record, summaries) = self.refusals.note(&e, self.clock.now());
        if !summaries.is_empty() {
            let _ = self.auditor.record_many(summaries).await;
        }
        if record {
            let _ = self.auditor.record(e).await;
        } else {
            metrics::counter!("credvault_audit_refusals_summarised_total").increment(1);
        }
    }

    /// Append the summaries of periods that are over.
    pub(crate) async fn flush_refusals(&self) {
        let summaries = self.refusals.expired(self.clock.now());
        if !summaries.is_empty() {
            let _ = self.auditor.record_many(summaries).await;
        }
    }
}

impl Vault {
    /// Append the summaries of every period, over or not: at shutdown, so no counted refusal is
    /// lost with the process.
    pub async fn flush_all_refusals(&self) {
        let summaries = self.refusals.all();
        if !summaries.is_empty() {
            let _ = self.auditor.record_many(summaries).await;
        }
    }
}

/// The background flush: summaries are written once their period is over even when no refusal
/// follows. Ends with the vault.
pub(crate) async fn flusher(vault: Weak<Vault>) {
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let Some(v) = vault.upgrade() else { return };
        v.flush_refusals().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(source: &str, actor: &str, code: &str) -> Event {
        Event {
            actor: actor.into(),
            door: "ccp",
            action: "ccp.get_password",
            target: String::new(),
            source: source.into(),
            outcome: "refused",
            detail: json!({"error_code": code}),
        }
    }

    #[test]
    fn one_record_per_period_and_key_then_a_summary_with_the_count() {
        let r = Refusals::default();
        let t0 = OffsetDateTime::now_utc();
        let a = refusal("10.0.0.1", "app:x", "APPAP008E");
        let (rec, sums) = r.note(&a, t0);
        assert!(rec && sums.is_empty());
        for i in 1..=9 {
            let (rec, sums) = r.note(
                &refusal("10.0.0.1", &format!("app:{i}"), "APPAP008E"),
                t0 + time::Duration::seconds(i),
            );
            assert!(!rec && sums.is_empty());
        }
        // Another source, or another reason, is its own key.
        assert!(r.note(&refusal("10.0.0.2", "app:x", "APPAP008E"), t0).0);
        assert!(r.note(&refusal("10.0.0.1", "app:x", "AIMWS030E"), t0).0);
        assert!(r.expired(t0 + time::Duration::seconds(30)).is_empty());
        // The period is over: the next refusal is recorded, after the summary of the 9 counted.
        let (rec, sums) = r.note(&a, t0 + PERIOD);
        assert!(rec);
        assert_eq!(sums.len(), 1);
        assert_eq!(sums[0].detail["count"], 9);
        assert_eq!(sums[0].detail["summary"], true);
        assert_eq!(sums[0].detail["actors"].as_array().map(Vec::len), Some(8));
        // The flush ends the other periods; those with nothing counted leave no summary.
        assert!(r
            .expired(t0 + PERIOD + time::Duration::seconds(1))
            .is_empty());
    }

    #[test]
    fn the_map_is_bounded() {
        let r = Refusals::default();
        let t0 = OffsetDateTime::now_utc();
        for i in 0..MAX_KEYS {
            let e = refusal(&format!("10.{}.{}.1", i / 256, i % 256), "a", "X");
            r.note(&e, t0);
            r.note(&e, t0);
        }
        let (rec, sums) = r.note(&refusal("192.0.2.1", "a", "X"), t0);
        assert!(rec);
        assert_eq!(sums.len(), MAX_KEYS, "every tally written out");
        assert_eq!(r.tallies.lock().map(|m| m.len()).unwrap_or(0), 1);
    }
}
