//! Issue 14.5: a write and its audit record commit together or not at all, and removing the newest
//! audit records is detected. Runs on SQLite, and on PostgreSQL when `CREDVAULT_TEST_DATABASE_URL`
//! is set (each test gets a fresh database).

use std::sync::Arc;

use credvault_store::fault::FaultStore;
use credvault_store::{Store, StoreError};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, code, Server};

/// A dev server over the real test store wrapped in a `FaultStore`, spoken to over HTTP.
pub(crate) struct Faulty {
    pub(crate) running: credvault_server::Running,
    pub(crate) faults: Arc<FaultStore>,
    pub(crate) http: reqwest::Client,
    pub(crate) root: String,
    _dir: tempfile::TempDir,
}

impl Faulty {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = common::config(dir.path().join("data"));
        let (storage, _) = common::test_storage(&cfg.data_dir).await;
        cfg.dev = true;
        let store = storage.open(&cfg.data_dir).await.unwrap();
        let faults = FaultStore::new(store);
        let running = credvault_server::start_with_store(cfg, faults.clone() as Arc<dyn Store>)
            .await
            .unwrap();
        let root = running.dev_root_token.as_ref().unwrap().expose().to_owned();
        Self {
            running,
            faults,
            http: reqwest::Client::new(),
            root,
            _dir: dir,
        }
    }

    async fn req(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.running.url()))
            .header("X-Vault-Token", &self.root);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let st = resp.status();
        let text = resp.text().await.unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Everything a write could have changed: the credentials, the versions and secret of `id`, and
    /// the audit log.
    async fn state(&self, id: &str) -> Value {
        let (_, list) = self
            .req(Method::GET, "/api/v1/credentials?limit=1000", None)
            .await;
        let (_, versions) = self
            .req(
                Method::GET,
                &format!("/api/v1/credentials/{id}/versions"),
                None,
            )
            .await;
        let (_, audit) = self
            .req(Method::GET, "/api/v1/audit/tail?n=10000", None)
            .await;
        let names: Vec<Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!([c["id"], c["name"], c["version"]]))
            .collect();
        let records: Vec<Value> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] != "credential.read_secret")
            .cloned()
            .collect();
        json!({"credentials": names, "versions": versions["items"], "audit": records})
    }
}

#[tokio::test]
async fn a_write_whose_audit_fails_leaves_nothing_behind() {
    let s = Faulty::start().await;
    let (st, c) = s
        .req(
            Method::POST,
            "/api/v1/credentials",
            Some(json!({"name": "kept", "secret": "first-secret"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().unwrap().to_owned();
    let (st, _) = s
        .req(
            Method::PATCH,
            &format!("/api/v1/credentials/{id}"),
            Some(json!({"secret": "second-secret"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let before = s.state(&id).await;

    // The audit rows now fail where they are inserted: inside each write's own transaction.
    s.faults
        .fail_audit(StoreError::Unavailable("injected: audit disk full".into()));
    let attempts = [
        (
            Method::POST,
            "/api/v1/credentials".to_owned(),
            Some(json!({"name": "never", "secret": "never-secret"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/credentials/{id}"),
            Some(json!({"secret": "third-secret", "username": "changed"})),
        ),
        (
            Method::POST,
            format!("/api/v1/credentials/{id}/rollback"),
            Some(json!({"version": 1})),
        ),
        (
            Method::POST,
            "/api/v1/credentials/import".to_owned(),
            Some(json!({"credentials": [{"name": "bulk", "secret": "bulk-secret"}]})),
        ),
        (Method::DELETE, format!("/api/v1/credentials/{id}"), None),
    ];
    for (method, path, body) in attempts {
        let (st, e) = s.req(method.clone(), &path, body).await;
        assert_eq!(
            (st, code(&e)),
            (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
            "{method} {path}: {e}"
        );
    }
    // Retried while the audit still fails: still nothing, no duplicates.
    let (st, _) = s
        .req(
            Method::POST,
            "/api/v1/credentials",
            Some(json!({"name": "never", "secret": "never-secret"})),
        )
        .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);

    s.faults.clear();
    assert_eq!(
        s.state(&id).await,
        before,
        "no credential, version or audit record came from the refused writes"
    );
    let (_, sec) = s
        .req(
            Method::GET,
            &format!("/api/v1/credentials/{id}/secret"),
            None,
        )
        .await;
    assert_eq!(
        (sec["secret"].clone(), sec["version"].clone()),
        (json!("second-secret"), json!(2))
    );
    // With the audit log back, the same writes work and each leaves exactly its record.
    let (st, _) = s
        .req(
            Method::PATCH,
            &format!("/api/v1/credentials/{id}"),
            Some(json!({"secret": "third-secret"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, tail) = s.req(Method::GET, "/api/v1/audit/tail?n=1", None).await;
    assert_eq!(
        (
            tail["items"][0]["action"].clone(),
            tail["items"][0]["detail"]["version"].clone()
        ),
        (json!("credential.update"), json!(3))
    );
    let (_, v) = s.req(Method::POST, "/api/v1/audit/verify", None).await;
    assert_eq!(v["ok"], true, "{v}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn removing_the_newest_audit_records_is_detected() {
    let s = Server::dev().await;
    for i in 0..4 {
        s.cred(&s.root, json!({"name": format!("t{i}"), "secret": "x"}))
            .await;
    }
    let (_, v) = s.post("/api/v1/audit/verify", &s.root, json!({})).await;
    assert_eq!(v["ok"], true, "{v}");
    let total = v["records"].as_i64().unwrap();
    assert!(total >= 5, "{v}");

    // Delete the newest three records directly in the database.
    let db = s.db().await;
    sqlx::query("DELETE FROM audit_log WHERE seq > $1")
        .bind(total - 3)
        .execute(&db)
        .await
        .unwrap();
    let (st, v) = s.post("/api/v1/audit/verify", &s.root, json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (v["ok"].clone(), v["first_bad_seq"].clone()),
        (json!(false), json!(total - 2)),
        "{v}"
    );
    let want = format!(
        "the log ends at record {} but its checkpoint says {total}: records were removed",
        total - 3
    );
    assert_eq!(v["message"], want.as_str(), "{v}");

    // Writing on does not hide it: new records continue after the checkpoint, leaving a gap.
    s.cred(&s.root, json!({"name": "after", "secret": "x"}))
        .await;
    let (_, v) = s.post("/api/v1/audit/verify", &s.root, json!({})).await;
    assert_eq!(
        (v["ok"].clone(), v["first_bad_seq"].clone()),
        (json!(false), json!(total - 2)),
        "{v}"
    );

    // Moving the checkpoint back by hand does not verify without the audit key.
    let fresh = Server::dev().await;
    fresh
        .cred(&fresh.root, json!({"name": "a", "secret": "x"}))
        .await;
    let (_, v) = fresh
        .post("/api/v1/audit/verify", &fresh.root, json!({}))
        .await;
    let n = v["records"].as_i64().unwrap();
    let db = fresh.db().await;
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(n)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE audit_head SET seq = $1, hash = (SELECT hash FROM audit_log WHERE seq = $1)",
    )
    .bind(n - 1)
    .execute(&db)
    .await
    .unwrap();
    let (_, v) = fresh
        .post("/api/v1/audit/verify", &fresh.root, json!({}))
        .await;
    assert_eq!(
        (v["ok"].clone(), v["message"].clone()),
        (
            json!(false),
            json!("the audit checkpoint does not verify (tampered)")
        ),
        "{v}"
    );
    // And a tampered checkpoint refuses further audited writes (fail closed) instead of being
    // overwritten with a fresh, valid one.
    let (st, _) = fresh
        .post(
            "/api/v1/credentials",
            &fresh.root,
            json!({"name": "b", "secret": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
}
