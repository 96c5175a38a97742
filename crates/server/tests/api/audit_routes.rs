//! Issue 14.5: every call that reads a secret or changes state, through every door, leaves exactly
//! one audit record, and when the audit cannot be written it leaves nothing at all (no row changed in
//! any table, no secret answered). One walk over every such route; each call is made twice: first
//! with the audit failing (`FaultStore::fail_audit`), then for real.

use std::time::Duration;

use credvault_store::migrate::{Cell, TABLES};
use credvault_store::StoreError;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::audit_atomic::Faulty;

/// How a call authenticates.
#[derive(Clone)]
enum Auth {
    Root,
    Bearer(String),
    Header(&'static str, String),
    None,
}

#[derive(Clone)]
enum Body {
    Json(Value),
    Form(Vec<(&'static str, String)>),
    Empty,
}

struct Call {
    label: &'static str,
    method: Method,
    path: String,
    body: Body,
    auth: Auth,
}

fn call(label: &'static str, method: Method, path: impl Into<String>, body: Body) -> Call {
    Call {
        label,
        method,
        path: path.into(),
        body,
        auth: Auth::Root,
    }
}

impl Call {
    fn by(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

impl Faulty {
    async fn send(&self, c: &Call) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(
                c.method.clone(),
                format!("{}{}", self.running.url(), c.path),
            )
            .timeout(Duration::from_secs(45));
        r = match &c.auth {
            Auth::Root => r.header("X-Vault-Token", &self.root),
            Auth::Bearer(t) => r.bearer_auth(t),
            Auth::Header(h, v) => r.header(*h, v),
            Auth::None => r,
        };
        r = match &c.body {
            Body::Json(v) => r.json(v),
            Body::Form(f) => r.form(f),
            Body::Empty => r,
        };
        let resp = r.send().await.unwrap();
        let st = resp.status();
        let text = resp.text().await.unwrap();
        (
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Every row of every table but the audit's own.
    async fn rows(&self) -> Vec<(&'static str, Vec<Vec<Cell>>)> {
        let mut out = vec![];
        for t in TABLES.iter().filter(|t| !t.name.starts_with("audit_")) {
            let rows = self
                .faults
                .inner()
                .export_rows(t, 0, 1_000_000)
                .await
                .unwrap();
            out.push((t.name, rows));
        }
        out
    }

    async fn audit_seq(&self) -> i64 {
        let tail = self.faults.inner().audit_tail(1).await.unwrap();
        tail.last().map_or(0, |r| r.seq)
    }

    /// The call with the audit failing: refused, nothing changed, no secret answered; then for
    /// real: allowed, exactly one audit record. Returns the real answer; what went wrong is
    /// collected in `problems` (so one run names every route that breaks the rule).
    async fn walk(&self, c: Call, secrets: &[&str], problems: &mut Vec<String>) -> Value {
        let before = self.rows().await;
        let seq = self.audit_seq().await;
        self.faults
            .fail_audit(StoreError::Unavailable("injected: audit disk full".into()));
        let (st, v) = self.send(&c).await;
        self.faults.clear();
        // fetch-credentials' fetch-one answers every failure with an empty list (the contract).
        let empty = v.as_array().is_some_and(|a| a.is_empty());
        if st.is_success() && !(c.path.starts_with("/api/fetch-credentials") && empty) {
            problems.push(format!("{}: answered {st} while the audit failed", c.label));
        }
        let text = v.to_string();
        if secrets.iter().any(|s| text.contains(s)) {
            problems.push(format!(
                "{}: a secret answered while the audit failed",
                c.label
            ));
        }
        let after = self.rows().await;
        for ((table, a), (_, b)) in before.iter().zip(&after) {
            if a != b {
                problems.push(format!(
                    "{}: table {table} changed although its audit record failed",
                    c.label
                ));
            }
        }
        if self.audit_seq().await != seq {
            problems.push(format!("{}: audit rows written while failing", c.label));
        }
        let seq = self.audit_seq().await;
        let (st, v) = self.send(&c).await;
        // A call that went through while its audit failed may now be refused (a duplicate); that
        // is recorded above already.
        assert!(st.is_success() || before != after, "{}: {st} {v}", c.label);
        let added = self.audit_seq().await - seq;
        if st.is_success() && added != 1 {
            problems.push(format!("{}: {added} audit records, not one", c.label));
        }
        v
    }
}

fn j(v: Value) -> Body {
    Body::Json(v)
}

/// A step with no body, as root.
fn get(label: &'static str, path: impl Into<String>) -> Call {
    call(label, Method::GET, path, Body::Empty)
}

fn delete(label: &'static str, path: impl Into<String>) -> Call {
    call(label, Method::DELETE, path, Body::Empty)
}

fn post(label: &'static str, path: impl Into<String>, body: Value) -> Call {
    call(label, Method::POST, path, j(body))
}

impl Faulty {
    /// Walk steps that answer nothing the walk needs later; `secret` must never come back while
    /// the audit fails.
    async fn walk_all(&self, steps: Vec<(Call, Option<&str>)>, p: &mut Vec<String>) {
        for (c, secret) in steps {
            self.walk(c, secret.as_slice(), p).await;
        }
    }
}

#[tokio::test]
async fn every_state_change_and_secret_read_leaves_exactly_one_audit_record() {
    let s = Faulty::start().await;
    let mut p = Vec::new();
    let key = || Auth::Header("Authorization", s.root.clone());

    // Identities and safes.
    s.walk_all(
        vec![
            (post("safe create", "/api/v1/safes", json!({"name": "walk"})), None),
            (
                post(
                    "user create",
                    "/api/v1/users",
                    json!({"name": "walker", "password": "walker-password-1"}),
                ),
                None,
            ),
            (post("group create", "/api/v1/groups", json!({"name": "walkers"})), None),
            (
                call(
                    "group member add",
                    Method::PUT,
                    "/api/v1/groups/walkers/members/walker",
                    Body::Empty,
                ),
                None,
            ),
            (
                call(
                    "safe member set",
                    Method::PUT,
                    "/api/v1/safes/walk/members",
                    j(json!({"type": "user", "name": "walker", "permissions": ["list", "read", "write"]})),
                ),
                None,
            ),
            (
                post(
                    "password login",
                    "/api/v1/auth/login",
                    json!({"username": "walker", "password": "walker-password-1"}),
                )
                .by(Auth::None),
                None,
            ),
        ],
        &mut p,
    )
    .await;
    let t = s
        .walk(
            post("token create", "/api/v1/tokens", json!({"user": "walker"})),
            &[],
            &mut p,
        )
        .await;
    let token_id = t["id"].as_str().unwrap().to_owned();

    // Credentials through the native door.
    let c = s
        .walk(
            post(
                "credential create",
                "/api/v1/credentials",
                json!({"name": "w1", "identifier": "w1", "secret": "walk-secret-1", "safe": "walk"}),
            ),
            &[],
            &mut p,
        )
        .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let cred = format!("/api/v1/credentials/{id}");
    s.walk_all(
        vec![
            (
                call(
                    "credential update",
                    Method::PATCH,
                    cred.clone(),
                    j(json!({"secret": "walk-secret-2"})),
                ),
                None,
            ),
            (
                get("secret read", format!("{cred}/secret")),
                Some("walk-secret-2"),
            ),
            (
                post(
                    "rollback",
                    format!("{cred}/rollback"),
                    json!({"version": 1}),
                ),
                None,
            ),
            (
                post(
                    "import",
                    "/api/v1/credentials/import",
                    json!({"credentials": [{"name": "w-imported", "secret": "walk-imported"}]}),
                ),
                None,
            ),
            // Applications.
            (
                post(
                    "app create",
                    "/api/v1/apps",
                    json!({"app_id": "WalkApp", "sources": ["127.0.0.1"], "client_secret": true}),
                ),
                None,
            ),
            (
                post(
                    "app allow",
                    "/api/v1/apps/WalkApp/allow",
                    json!({"type": "safe-write", "name": "walk"}),
                ),
                None,
            ),
        ],
        &mut p,
    )
    .await;
    let cs = s
        .walk(
            post(
                "app client secret",
                "/api/v1/apps/WalkApp/client-secret",
                json!({}),
            ),
            &[],
            &mut p,
        )
        .await;
    let secret = cs["client_secret_value"]
        .as_str()
        .or(cs["client_secret"].as_str())
        .unwrap_or_else(|| panic!("client secret in {cs}"))
        .to_owned();

    // CCP, A2A, AppRole.
    s.walk(
        get(
            "ccp get password",
            "/AIMWebService/api/Accounts?AppID=WalkApp&Safe=walk&Object=w1",
        )
        .by(Auth::None),
        &["walk-secret-1"],
        &mut p,
    )
    .await;
    let form = Body::Form(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", "WalkApp".into()),
        ("client_secret", secret.clone()),
    ]);
    let tok = s
        .walk(
            call("a2a oauth token", Method::POST, "/iso/oauth2/token", form).by(Auth::None),
            &[],
            &mut p,
        )
        .await;
    let a2a = Auth::Bearer(tok["access_token"].as_str().unwrap().to_owned());
    let upsert = json!({"identifier": "a2a-walk", "username": "svc", "hostname": "walk-host",
                        "ip": "10.9.0.1", "content": "walk-a2a-1"});
    let one = "/iso/pam/credential/a2a-walk";
    s.walk_all(
        vec![
            (post("a2a create", "/iso/pam/credential", upsert.clone()).by(a2a.clone()), None),
            (post("a2a update", "/iso/pam/credential", upsert).by(a2a.clone()), None),
            (get("a2a read", one).by(a2a.clone()), Some("walk-a2a-1")),
            (
                delete("a2a custody release", "/iso/pam/credential/custody/a2a-walk").by(a2a.clone()),
                None,
            ),
            (delete("a2a deactivate", one).by(a2a.clone()), None),
            (call("a2a activate", Method::PUT, one, Body::Empty).by(a2a.clone()), None),
            (
                post(
                    "approle login",
                    "/v1/auth/approle/login",
                    json!({"role_id": "WalkApp", "secret_id": secret}),
                )
                .by(Auth::None),
                None,
            ),
            // Domains.
            (
                post("domain add", "/api/v1/domains", json!({"name": "walk.example", "abbreviation": "WALK"})),
                None,
            ),
            (delete("domain delete", "/api/v1/domains/walk.example"), None),
            // The Vault KV door.
            (post("kv write", "/v1/walk/data/k", json!({"data": {"pw": "walk-kv-1"}})), None),
            (get("kv read", "/v1/walk/data/k"), Some("walk-kv-1")),
            (post("kv metadata", "/v1/walk/metadata/k", json!({"max_versions": 5})), None),
            (post("kv delete version", "/v1/walk/delete/k", json!({"versions": [1]})), None),
            (post("kv undelete version", "/v1/walk/undelete/k", json!({"versions": [1]})), None),
            (post("kv destroy version", "/v1/walk/destroy/k", json!({"versions": [1]})), None),
            (delete("kv delete all", "/v1/walk/metadata/k"), None),
            // Entity credentials.
            (
                post(
                    "entity set",
                    "/api/credentials/for/WalkPkg",
                    json!({"login": "l", "password": "walk-entity-1"}),
                )
                .by(key()),
                None,
            ),
            (get("entity get", "/api/credentials/for/WalkPkg").by(key()), Some("walk-entity-1")),
            // fetch-credentials.
            (get("fetch one", "/api/fetch-credentials?identifier=w1"), Some("walk-secret-1")),
            (get("fetch all", "/api/fetch-credentials?credential_names=w1"), Some("walk-secret-1")),
            // Integrations (disabled: nothing is fetched).
            (
                post(
                    "integration create",
                    "/api/v1/integrations",
                    json!({"name": "walk-int", "kind": "vault-kv", "url": "http://127.0.0.1:9", "safe": "walk",
                           "token": "walk-int-token", "credential_names": ["db"], "enabled": false}),
                ),
                None,
            ),
            (post("integration enable", "/api/v1/integrations/walk-int/enable", json!({})), None),
            (post("integration disable", "/api/v1/integrations/walk-int/disable", json!({})), None),
            (delete("integration delete", "/api/v1/integrations/walk-int"), None),
            // Backup (reads every secret: one record for the whole snapshot).
            (get("backup", "/api/v1/sys/backup"), None),
        ],
        &mut p,
    )
    .await;
    let e = s
        .walk(
            get(
                "entity public get",
                "/api/public/v1/credentials/for/WalkPkg",
            )
            .by(key()),
            &["walk-entity-1"],
            &mut p,
        )
        .await;
    let entity_id = e["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id in {e}"))
        .to_owned();

    // Removals.
    s.walk_all(
        vec![
            (
                delete(
                    "entity public delete",
                    format!("/api/public/v1/credentials/{entity_id}"),
                )
                .by(key()),
                None,
            ),
            (delete("credential delete", cred), None),
            (
                post(
                    "app deny",
                    "/api/v1/apps/WalkApp/deny",
                    json!({"type": "safe-write", "name": "walk"}),
                ),
                None,
            ),
            (delete("app delete", "/api/v1/apps/WalkApp"), None),
            (
                delete("token revoke", format!("/api/v1/tokens/{token_id}")),
                None,
            ),
            (
                delete(
                    "safe member remove",
                    "/api/v1/safes/walk/members/user/walker",
                ),
                None,
            ),
            (
                delete(
                    "group member remove",
                    "/api/v1/groups/walkers/members/walker",
                ),
                None,
            ),
            (delete("group delete", "/api/v1/groups/walkers"), None),
            (delete("user delete", "/api/v1/users/walker"), None),
            // Last: a rotation starts a background rewrap that changes the versions' rows.
            (post("key rotate", "/api/v1/sys/rotate", json!({})), None),
        ],
        &mut p,
    )
    .await;
    assert!(p.is_empty(), "{} problems:\n{}", p.len(), p.join("\n"));
}
