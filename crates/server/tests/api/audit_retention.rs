//! Issue 16.2: audit retention. Old records move into a signed archive and a keyed checkpoint, so
//! `audit verify` still proves the rest and the archive proves itself. Runs on SQLite, and on
//! PostgreSQL when `CREDVAULT_TEST_DATABASE_URL` is set.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{code, Server};

/// POST an archive file to `verify-archive`.
async fn verify_archive(s: &Server, text: &str) -> (StatusCode, Value) {
    let r = s
        .http
        .post(s.url("/api/v1/audit/verify-archive"))
        .header("X-Vault-Token", &s.root)
        .body(text.to_owned())
        .send()
        .await
        .expect("verify-archive");
    let st = r.status();
    (st, r.json().await.expect("json"))
}

/// The audit time of the newest record (RFC 3339).
async fn newest_time(s: &Server) -> (i64, String) {
    let (_, tail) = s.get("/api/v1/audit/tail?n=1", &s.root).await;
    let r = &tail["items"][0];
    (
        r["seq"].as_i64().expect("seq"),
        r["time"].as_str().expect("time").to_owned(),
    )
}

/// Export and commit an archive of the records before `before`; the file's text and the answer.
async fn archive(s: &Server, before: &str) -> (String, Value) {
    let (st, export) = s
        .post("/api/v1/audit/archive", &s.root, json!({"before": before}))
        .await;
    assert_eq!(st, StatusCode::OK, "{export}");
    let (st, done) = s
        .post(
            "/api/v1/audit/archive/commit",
            &s.root,
            json!({"through_seq": export["through_seq"], "last_hash": export["last_hash"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    (
        export["archive"].as_str().expect("archive").to_owned(),
        done,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_audit_records_move_into_a_signed_archive_and_both_still_verify() {
    let s = Server::dev().await;
    let root = s.root.clone();
    for i in 0..5 {
        let id = s
            .cred(
                &root,
                json!({"name": format!("a{i}"), "secret": format!("sa{i}")}),
            )
            .await;
        let (st, _) = s
            .get(&format!("/api/v1/credentials/{id}/secret"), &root)
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let kept = s.cred(&root, json!({"name": "kept", "secret": "sk"})).await;
    let (cut_seq, cut) = newest_time(&s).await;

    let (file, done) = archive(&s, &cut).await;
    let archived = i64::try_from(file.lines().count()).expect("lines") - 2;
    assert_eq!(archived, cut_seq - 1, "every record before the cut: {file}");
    assert_eq!(done["deleted"], cut_seq - 1);
    assert!(file
        .lines()
        .next()
        .is_some_and(|h| h.contains("credvault-audit-archive")));
    assert!(
        !file.contains("sa0") && !file.contains("sk"),
        "no secret in the archive"
    );
    // The log now starts at the cut, and still verifies; so does the archive.
    let (_, tail) = s.get("/api/v1/audit/tail?n=1000", &root).await;
    let items = tail["items"].as_array().expect("items");
    assert_eq!(items[0]["seq"], cut_seq, "{tail}");
    assert!(items.iter().any(|r| r["action"] == "audit.archive"));
    let (_, v) = s.post("/api/v1/audit/verify", &root, json!({})).await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("archived")),
        "{v}"
    );
    let (st, v) = verify_archive(&s, &file).await;
    assert_eq!((st, v["ok"].clone()), (StatusCode::OK, json!(true)), "{v}");
    assert_eq!(v["records"], archived);
    // Reads and writes go on after it.
    let (st, _) = s
        .get(&format!("/api/v1/credentials/{kept}/secret"), &root)
        .await;
    assert_eq!(st, StatusCode::OK);

    // An edited, a removed and a cut-off record are all caught, and the edited record is named.
    let edited = file.replacen("credential.create", "credential.crea7e", 1);
    let (_, v) = verify_archive(&s, &edited).await;
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["first_bad_seq"].as_i64().is_some(), "{v}");
    let lines: Vec<&str> = file.lines().collect();
    let removed = [&lines[..2], &lines[3..]].concat().join("\n");
    let (_, v) = verify_archive(&s, &removed).await;
    assert_eq!(v["ok"], false, "{v}");
    let cut_off = [&lines[..lines.len() - 2], &lines[lines.len() - 1..]]
        .concat()
        .join("\n");
    let (_, v) = verify_archive(&s, &cut_off).await;
    assert_eq!(v["ok"], false, "{v}");
    let no_end = lines[..lines.len() - 1].join("\n");
    let (_, v) = verify_archive(&s, &no_end).await;
    assert_eq!(v["ok"], false, "{v}");
    // Another vault's key does not verify it.
    let other = Server::dev().await;
    let (_, v) = verify_archive(&other, &file).await;
    assert_eq!(v["ok"], false, "{v}");
    // Only admins archive.
    let bob = s.user("bob").await;
    let (st, e) = s
        .post("/api/v1/audit/archive", &bob, json!({"before": cut}))
        .await;
    assert_eq!((st, code(&e)), (StatusCode::FORBIDDEN, "forbidden"));

    // A second archive continues where the first ended, and the chain still verifies.
    for i in 0..3 {
        s.cred(&root, json!({"name": format!("b{i}"), "secret": "x"}))
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.cred(&root, json!({"name": "kept2", "secret": "x"})).await;
    let (cut2_seq, cut2) = newest_time(&s).await;
    let (file2, _) = archive(&s, &cut2).await;
    let header: Value = serde_json::from_str(file2.lines().next().expect("header")).expect("json");
    assert_eq!(header["first_seq"], cut_seq);
    assert_eq!(header["last_seq"], cut2_seq - 1);
    let (_, v) = verify_archive(&s, &file2).await;
    assert_eq!(v["ok"], true, "{v}");
    let (_, v) = s.post("/api/v1/audit/verify", &root, json!({})).await;
    assert_eq!(v["ok"], true, "{v}");
    // Nothing left before the cut: nothing to archive.
    let (st, _) = s
        .post(
            "/api/v1/audit/archive",
            &root,
            json!({"before": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Records removed without an archive (the checkpoint deleted with them) are detected.
    let db = s.db().await;
    sqlx::query("DELETE FROM audit_base")
        .execute(&db)
        .await
        .expect("delete base");
    let (_, v) = s.post("/api/v1/audit/verify", &root, json!({})).await;
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("missing")),
        "{v}"
    );
}

// ------------------------------------------------------------------ audit sinks

use credvault_service::audit_sink::{SinkConfig, SinkTarget};
use std::time::{Duration, Instant};

/// Datagrams received by `recv` until one contains `want` (at most 10 s); all of them.
async fn datagrams_until<F, Fut>(recv: F, want: &str) -> Vec<String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<String>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), recv()).await {
            Ok(Ok(m)) => {
                let done = m.contains(want);
                got.push(m);
                if done {
                    return got;
                }
            }
            _ => continue,
        }
    }
    panic!("no datagram containing {want}: {got:#?}");
}

/// An RFC 5424 message of credvault's: `<PRI>1 TIME HOST credvault PID MSGID - JSON`.
fn rfc5424_json(m: &str) -> Value {
    assert!(m.starts_with('<'), "{m}");
    let (pri, rest) = m[1..].split_once('>').expect("PRI");
    let pri: u32 = pri.parse().expect("PRI number");
    assert_eq!(pri / 8, 10, "facility authpriv: {m}");
    let parts: Vec<&str> = rest.splitn(7, ' ').collect();
    assert_eq!(parts[0], "1", "version: {m}");
    assert_eq!(parts[3], "credvault", "app name: {m}");
    assert_eq!(parts[6].get(..2), Some("- "), "no structured data: {m}");
    let v: Value = serde_json::from_str(&parts[6][2..]).expect("json message");
    assert_eq!(
        parts[5],
        v["action"].as_str().expect("action"),
        "MSGID: {m}"
    );
    v
}

/// Issue 16.2: every audit record (reads, writes, refusals) reaches the configured sinks: a
/// JSON-lines file (0600), syslog over UDP and on a local socket, in RFC 5424, with its seq and
/// chain hash, in chain order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_reach_a_json_lines_file_and_syslog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("audit.jsonl");
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let udp_addr = udp.local_addr().expect("addr");
    let sock_path = dir.path().join("log.sock");
    let unix = tokio::net::UnixDatagram::bind(&sock_path).expect("unix");
    let targets = vec![
        SinkTarget::File(file.clone()),
        SinkTarget::SyslogUdp(udp_addr),
        SinkTarget::SyslogUnix(sock_path.clone()),
    ];
    let s = Server::dev_with(|c| {
        c.audit_sinks = targets
            .into_iter()
            .map(|target| SinkConfig {
                target,
                required: false,
            })
            .collect();
    })
    .await;
    let root = s.root.clone();
    let id = s
        .cred(&root, json!({"name": "db", "secret": "sink-secret"}))
        .await;
    let (st, _) = s
        .get(&format!("/api/v1/credentials/{id}/secret"), &root)
        .await;
    assert_eq!(st, StatusCode::OK);
    let r = s
        .http
        .get(s.url("/AIMWebService/api/Accounts?AppID=Nobody&Object=x"))
        .send()
        .await
        .expect("ccp");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The file: every record of the chain, in order, with its hash.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        if lines.iter().any(|l| l["door"] == "ccp") || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, tail) = s.get("/api/v1/audit/tail?n=1000", &root).await;
    let tail = tail["items"].as_array().expect("items").clone();
    for rec in &tail {
        if rec["action"] == "audit.tail" {
            continue;
        }
        let line = lines
            .iter()
            .find(|l| l["seq"] == rec["seq"])
            .unwrap_or_else(|| panic!("record {} not in the file: {lines:#?}", rec["seq"]));
        assert_eq!(line["action"], rec["action"]);
        assert_eq!(line["detail"], rec["detail"]);
        assert!(line["hash"].as_str().is_some_and(|h| h.len() == 64));
    }
    let seqs: Vec<i64> = lines
        .iter()
        .map(|l| l["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(lines
        .iter()
        .any(|l| l["action"] == "credential.read_secret" && l["target"] == json!(id)));
    let text = std::fs::read_to_string(&file).expect("file");
    assert!(!text.contains("sink-secret"), "no secret in a sink");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o600
    );

    // Syslog, both ways: RFC 5424, severity notice for the refusal, info for the read.
    let got = datagrams_until(
        || async {
            let mut b = vec![0u8; 65536];
            let n = udp.recv(&mut b).await?;
            Ok(String::from_utf8_lossy(&b[..n]).into_owned())
        },
        "\"door\":\"ccp\"",
    )
    .await;
    let read = got
        .iter()
        .map(|m| (m, rfc5424_json(m)))
        .find(|(_, v)| v["action"] == "credential.read_secret")
        .expect("the read over UDP");
    assert!(read.0.starts_with("<86>1 "), "{}", read.0);
    assert!(got.last().expect("ccp").starts_with("<85>1 "), "{got:#?}");
    let got = datagrams_until(
        || async {
            let mut b = vec![0u8; 65536];
            let n = unix.recv(&mut b).await?;
            Ok(String::from_utf8_lossy(&b[..n]).into_owned())
        },
        "\"door\":\"ccp\"",
    )
    .await;
    assert!(got
        .iter()
        .any(|m| rfc5424_json(m)["action"] == "credential.read_secret"));

    let (_, h) = s.get("/api/v1/sys/health", &root).await;
    let sinks = h["audit_sinks"].as_array().expect("sinks in health");
    assert_eq!(sinks.len(), 3, "{h}");
    assert!(sinks.iter().all(|x| x["ok"] == true), "{h}");
}

/// Issue 16.2: a required sink fails closed like the main log: while it cannot be written, a
/// secret read answers 503 `audit_unavailable` without the secret, writes are refused and health
/// is degraded; once it works again, what was appended meanwhile is delivered and reads go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_sink_that_fails_refuses_like_the_main_log_then_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock_path = dir.path().join("log.sock");
    let unix = tokio::net::UnixDatagram::bind(&sock_path).expect("unix");
    let path = sock_path.clone();
    let s = Server::dev_with(|c| {
        c.audit_sinks = vec![SinkConfig {
            target: SinkTarget::SyslogUnix(path),
            required: true,
        }]
    })
    .await;
    let root = s.root.clone();
    let id = s
        .cred(&root, json!({"name": "db", "secret": "guarded"}))
        .await;
    let (st, v) = s
        .get(&format!("/api/v1/credentials/{id}/secret"), &root)
        .await;
    assert_eq!(
        (st, v["secret"].as_str()),
        (StatusCode::OK, Some("guarded"))
    );

    // syslog goes away.
    drop(unix);
    std::fs::remove_file(&sock_path).expect("remove socket");
    let (st, v) = s
        .get(&format!("/api/v1/credentials/{id}/secret"), &root)
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
        "{v}"
    );
    assert!(!v.to_string().contains("guarded"));
    let (st, v) = s
        .post(
            "/api/v1/credentials",
            &root,
            json!({"name": "new", "secret": "x"}),
        )
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
        "{v}"
    );
    let (st, h) = s.get("/api/v1/sys/health", &root).await;
    assert_eq!(
        (st, h["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("degraded")),
        "{h}"
    );
    assert_eq!(h["audit_sinks"][0]["ok"], false, "{h}");

    // Back: the refused read's record (in the log) is delivered, and reads go on.
    let unix = tokio::net::UnixDatagram::bind(&sock_path).expect("unix again");
    let got = datagrams_until(
        || async {
            let mut b = vec![0u8; 65536];
            let n = unix.recv(&mut b).await?;
            Ok(String::from_utf8_lossy(&b[..n]).into_owned())
        },
        "credential.read_secret",
    )
    .await;
    assert!(got.iter().any(|m| rfc5424_json(m)["target"] == json!(id)));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, v) = s
            .get(&format!("/api/v1/credentials/{id}/secret"), &root)
            .await;
        if st == StatusCode::OK {
            assert_eq!(v["secret"], "guarded");
            break;
        }
        assert!(Instant::now() < deadline, "{st} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (st, _) = s
        .post(
            "/api/v1/credentials",
            &root,
            json!({"name": "new", "secret": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = s.get("/api/v1/sys/health", &root).await;
    assert_eq!(st, StatusCode::OK);
}
