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
