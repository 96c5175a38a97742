//! Audit sinks (issue 16.2): the audit trail copied, record by record, to where security teams
//! read it: a JSON-lines file, and syslog (RFC 5424) on the local socket (`/dev/log`) or a UDP
//! address. A sink can be `required`: then it fails closed like the main log.
//!
//! A sink follows the chain in the store (`audit_rows` after the last seq it delivered), so it
//! gets every record, the reads' (group-committed by the audit writer) and the writes' (appended
//! inside their own transactions) alike, in chain order, with its seq and hash. It is woken by
//! every audit group commit and polls every [`POLL`] for the records of writes. The file sink
//! resumes after the last record in its file; others start at the chain's head when the server
//! starts.
//!
//! **Required** sinks: the audit writer answers a batch of reads only once every required sink has
//! delivered it (within [`DELIVERY_TIMEOUT`]), else the reads are refused like an audit failure
//! (503 `audit_unavailable`, no secret); while a required sink is failing, writes are refused the
//! same way before they start, and health is `degraded`. What was appended meanwhile is delivered
//! once the sink works again. An optional sink that fails is logged and retried, nothing more.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use std::time::Duration;

use credvault_store::{AuditRow, Store};
use serde::Serialize;

use crate::Vault;

/// How often sinks look for records appended by writes (which the audit writer does not see).
pub const POLL: Duration = Duration::from_millis(200);
/// How long a read waits for the required sinks to deliver its record.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Records read from the store per round.
const PAGE: i64 = 500;

/// Where a sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// JSON lines appended to a file (created 0600).
    File(PathBuf),
    /// RFC 5424 datagrams to a local syslog socket (`/dev/log`).
    SyslogUnix(PathBuf),
    /// RFC 5424 datagrams over UDP.
    SyslogUdp(SocketAddr),
}

/// One configured sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    pub target: SinkTarget,
    /// Fail closed when it cannot be written.
    pub required: bool,
}

impl SinkTarget {
    /// A syslog address as configured: `local` (`/dev/log`), `unix:PATH`, `udp://HOST:PORT`.
    pub fn syslog(addr: &str) -> Result<Self, String> {
        if addr == "local" {
            return Ok(Self::SyslogUnix(PathBuf::from("/dev/log")));
        }
        if let Some(p) = addr.strip_prefix("unix:") {
            return Ok(Self::SyslogUnix(PathBuf::from(p)));
        }
        if let Some(a) = addr.strip_prefix("udp://") {
            use std::net::ToSocketAddrs;
            return a
                .to_socket_addrs()
                .ok()
                .and_then(|mut i| i.next())
                .map(Self::SyslogUdp)
                .ok_or_else(|| format!("audit_syslog: cannot resolve {a}"));
        }
        Err("audit_syslog must be `local`, `unix:PATH` or `udp://HOST:PORT`".into())
    }

    fn name(&self) -> String {
        match self {
            Self::File(p) => format!("file:{}", p.display()),
            Self::SyslogUnix(p) => format!("syslog:unix:{}", p.display()),
            Self::SyslogUdp(a) => format!("syslog:udp://{a}"),
        }
    }
}

/// A sink as health reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SinkStatus {
    pub name: String,
    pub required: bool,
    /// Its last delivery succeeded.
    pub ok: bool,
    /// The newest record it delivered.
    pub delivered_seq: i64,
}

/// One record as the sinks write it: the stored fields, the detail as JSON, the chain hash.
#[derive(Serialize)]
struct Out<'a> {
    seq: i64,
    time: &'a str,
    actor: &'a str,
    door: &'a str,
    action: &'a str,
    target: &'a str,
    source: &'a str,
    outcome: &'a str,
    detail: serde_json::Value,
    hash: String,
}

fn json_line(r: &AuditRow) -> String {
    serde_json::to_string(&Out {
        seq: r.seq,
        time: &r.time,
        actor: &r.actor,
        door: &r.door,
        action: &r.action,
        target: &r.target,
        source: &r.source,
        outcome: &r.outcome,
        detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
        hash: hex::encode(&r.hash),
    })
    .unwrap_or_default()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
        .unwrap_or_else(|| "-".to_owned())
}

/// RFC 5424: facility authpriv (10); severity info for `ok`, notice for refusals, warning else.
/// MSGID is the action; the message is the record's JSON line.
fn syslog_message(r: &AuditRow, host: &str) -> String {
    let severity = match r.outcome.as_str() {
        "ok" => 6,
        "denied" | "refused" => 5,
        _ => 4,
    };
    let msgid: String = r
        .action
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    format!(
        "<{}>1 {} {} credvault {} {} - {}",
        10 * 8 + severity,
        r.time,
        host,
        std::process::id(),
        if msgid.is_empty() { "-".into() } else { msgid },
        json_line(r)
    )
}

enum Conn {
    File(Arc<Mutex<std::fs::File>>),
    Unix(tokio::net::UnixDatagram, PathBuf),
    Udp(tokio::net::UdpSocket, SocketAddr),
}

struct Sink {
    cfg: SinkConfig,
    conn: tokio::sync::Mutex<Option<Conn>>,
    delivered: AtomicI64,
    ok: AtomicBool,
}

/// The last seq in a JSON-lines sink file (0: empty or missing).
fn last_seq_in(path: &Path) -> i64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["seq"].as_i64())
        .unwrap_or(0)
}

impl Sink {
    async fn connect(&self) -> std::io::Result<Conn> {
        Ok(match &self.cfg.target {
            SinkTarget::File(p) => {
                let mut o = std::fs::OpenOptions::new();
                o.append(true).create(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    o.mode(0o600);
                }
                Conn::File(Arc::new(Mutex::new(o.open(p)?)))
            }
            SinkTarget::SyslogUnix(p) => {
                Conn::Unix(tokio::net::UnixDatagram::unbound()?, p.clone())
            }
            SinkTarget::SyslogUdp(a) => {
                let local: SocketAddr = if a.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                Conn::Udp(tokio::net::UdpSocket::bind(local).await?, *a)
            }
        })
    }

    async fn deliver(&self, rows: &[AuditRow], host: &str) -> std::io::Result<()> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        let result = match guard.as_ref() {
            Some(Conn::File(f)) => {
                let mut text = String::new();
                for r in rows {
                    text.push_str(&json_line(r));
                    text.push('\n');
                }
                let f = f.clone();
                tokio::task::spawn_blocking(move || {
                    let mut f = f.lock().map_err(|_| std::io::Error::other("sink lock"))?;
                    f.write_all(text.as_bytes())?;
                    f.sync_data()
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
            Some(Conn::Unix(s, p)) => {
                let mut r = Ok(());
                for row in rows {
                    if let Err(e) = s.send_to(syslog_message(row, host).as_bytes(), p).await {
                        r = Err(e);
                        break;
                    }
                }
                r
            }
            Some(Conn::Udp(s, a)) => {
                let mut r = Ok(());
                for row in rows {
                    if let Err(e) = s.send_to(syslog_message(row, host).as_bytes(), a).await {
                        r = Err(e);
                        break;
                    }
                }
                r
            }
            None => Ok(()),
        };
        if result.is_err() {
            // Open it again next time (a rotated file, a restarted syslog daemon).
            *guard = None;
        }
        result
    }
}

/// The configured sinks of a vault (set once at start).
#[derive(Default)]
pub(crate) struct Sinks {
    sinks: OnceLock<Vec<Sink>>,
    wake: Arc<tokio::sync::Notify>,
    progress: tokio::sync::Notify,
}

impl Sinks {
    fn list(&self) -> &[Sink] {
        self.sinks.get().map_or(&[], Vec::as_slice)
    }

    /// A required sink is failing: audited work must be refused.
    pub(crate) fn required_failing(&self) -> bool {
        self.list()
            .iter()
            .any(|s| s.cfg.required && !s.ok.load(Ordering::Relaxed))
    }

    /// The audit writer's hook after a group commit: wake the sinks and, when some are required,
    /// wait until they delivered up to `seq` (within [`DELIVERY_TIMEOUT`]). `Err` refuses the batch.
    pub(crate) async fn committed(&self, seq: i64) -> Result<(), ()> {
        self.wake.notify_one();
        let required: Vec<&Sink> = self.list().iter().filter(|s| s.cfg.required).collect();
        if required.is_empty() {
            return Ok(());
        }
        let done = || {
            required
                .iter()
                .all(|s| s.delivered.load(Ordering::Acquire) >= seq)
        };
        let wait = async {
            loop {
                let progressed = self.progress.notified();
                if done() {
                    return Ok(());
                }
                if self.required_failing() {
                    return Err(());
                }
                progressed.await;
            }
        };
        tokio::time::timeout(DELIVERY_TIMEOUT, wait)
            .await
            .unwrap_or(Err(()))
    }

    pub(crate) fn status(&self) -> Vec<SinkStatus> {
        self.list()
            .iter()
            .map(|s| SinkStatus {
                name: s.cfg.target.name(),
                required: s.cfg.required,
                ok: s.ok.load(Ordering::Relaxed),
                delivered_seq: s.delivered.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Vault {
    /// Start copying the audit trail to `sinks` (once; later calls do nothing).
    pub async fn start_audit_sinks(self: &Arc<Self>, sinks: Vec<SinkConfig>) {
        if sinks.is_empty() {
            return;
        }
        let head = match self.store.audit_head().await {
            Ok(Some(h)) => h.seq,
            _ => 0,
        };
        let list = sinks
            .into_iter()
            .map(|cfg| {
                let start = match &cfg.target {
                    SinkTarget::File(p) if last_seq_in(p) > 0 => last_seq_in(p),
                    _ => head,
                };
                Sink {
                    cfg,
                    conn: tokio::sync::Mutex::new(None),
                    delivered: AtomicI64::new(start),
                    ok: AtomicBool::new(true),
                }
            })
            .collect();
        if self.sinks.sinks.set(list).is_ok() {
            let wake = self.sinks.wake.clone();
            tokio::spawn(follow(Arc::downgrade(self), wake));
        }
    }

    /// Refuse audited work while a required sink is failing (the writes' check; the reads wait
    /// for delivery in the audit writer).
    pub(crate) fn check_sinks(&self) -> crate::error::ServiceResult<()> {
        if self.sinks.required_failing() {
            Err(crate::error::ServiceError::AuditFailed)
        } else {
            Ok(())
        }
    }
}

/// The sinks' task: deliver what is new to each sink, then wait for a commit or the poll.
async fn follow(vault: Weak<Vault>, wake: Arc<tokio::sync::Notify>) {
    let host = hostname();
    loop {
        let Some(v) = vault.upgrade() else {
            return;
        };
        let store: Arc<dyn Store> = v.store.clone();
        let mut failing = false;
        for sink in v.sinks.list() {
            loop {
                let after = sink.delivered.load(Ordering::Acquire);
                let rows = match store.audit_rows(after, PAGE).await {
                    Ok(r) => r,
                    Err(_) => break,
                };
                let Some(last) = rows.last().map(|r| r.seq) else {
                    sink.ok.store(true, Ordering::Relaxed);
                    break;
                };
                match sink.deliver(&rows, &host).await {
                    Ok(()) => {
                        sink.delivered.store(last, Ordering::Release);
                        if !sink.ok.swap(true, Ordering::Relaxed) {
                            tracing::info!(sink = %sink.cfg.target.name(), "audit sink delivering again");
                        }
                        metrics::counter!("credvault_audit_sink_records_total")
                            .increment(rows.len() as u64);
                    }
                    Err(e) => {
                        if sink.ok.swap(false, Ordering::Relaxed) {
                            tracing::error!(sink = %sink.cfg.target.name(), required = sink.cfg.required, error = %e, "audit sink failed");
                        }
                        metrics::counter!("credvault_audit_sink_failures_total").increment(1);
                        failing = true;
                        break;
                    }
                }
                if rows.len() < PAGE as usize {
                    break;
                }
            }
        }
        v.sinks.progress.notify_waiters();
        drop((store, v));
        let pause = if failing { POLL * 2 } else { POLL };
        let _ = tokio::time::timeout(pause, wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_messages_are_rfc5424() {
        let r = AuditRow {
            seq: 7,
            time: "2026-12-02T16:00:00.123456Z".into(),
            actor: "root".into(),
            door: "native".into(),
            action: "credential.read_secret".into(),
            target: "x".into(),
            source: "127.0.0.1".into(),
            outcome: "denied".into(),
            detail: "{}".into(),
            hash: vec![1, 2],
        };
        let m = syslog_message(&r, "vault1");
        assert!(
            m.starts_with(&format!(
                "<85>1 2026-12-02T16:00:00.123456Z vault1 credvault {} credential.read_secret - {{\"seq\":7,",
                std::process::id()
            )),
            "{m}"
        );
        assert!(m.ends_with("\"hash\":\"0102\"}"), "{m}");
        assert_eq!(
            SinkTarget::syslog("local"),
            Ok(SinkTarget::SyslogUnix("/dev/log".into()))
        );
        assert!(SinkTarget::syslog("tcp://x:1").is_err());
    }
}
