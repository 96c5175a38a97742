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

#[tokio::test]
async fn every_state_change_and_secret_read_leaves_exactly_one_audit_record() {
    let s = Faulty::start().await;
    let mut p = Vec::new();
    use Method as M;

    // Identities and safes.
    s.walk(
        call(
            "safe create",
            M::POST,
            "/api/v1/safes",
            j(json!({"name": "walk"})),
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "user create",
            M::POST,
            "/api/v1/users",
            j(json!({"name": "walker", "password": "walker-password-1"})),
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "group create",
            M::POST,
            "/api/v1/groups",
            j(json!({"name": "walkers"})),
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "group member add",
            M::PUT,
            "/api/v1/groups/walkers/members/walker",
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "safe member set",
            M::PUT,
            "/api/v1/safes/walk/members",
            j(json!({"type": "user", "name": "walker", "permissions": ["list", "read", "write"]})),
        ),
        &[],
        &mut p,
    )
    .await;
    let t = s
        .walk(
            call(
                "token create",
                M::POST,
                "/api/v1/tokens",
                j(json!({"user": "walker"})),
            ),
            &[],
            &mut p,
        )
        .await;
    let token_id = t["id"].as_str().unwrap().to_owned();
    s.walk(
        call(
            "password login",
            M::POST,
            "/api/v1/auth/login",
            j(json!({"username": "walker", "password": "walker-password-1"})),
        )
        .by(Auth::None),
        &[],
        &mut p,
    )
    .await;

    // Credentials through the native door.
    let c = s
        .walk(
            call(
                "credential create",
                M::POST,
                "/api/v1/credentials",
                j(json!({"name": "w1", "identifier": "w1", "secret": "walk-secret-1", "safe": "walk"})),
            ),
            &[],
        &mut p,
        )
        .await;
    let id = c["id"].as_str().unwrap().to_owned();
    s.walk(
        call(
            "credential update",
            M::PATCH,
            format!("/api/v1/credentials/{id}"),
            j(json!({"secret": "walk-secret-2"})),
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "secret read",
            M::GET,
            format!("/api/v1/credentials/{id}/secret"),
            Body::Empty,
        ),
        &["walk-secret-2"],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "rollback",
            M::POST,
            format!("/api/v1/credentials/{id}/rollback"),
            j(json!({"version": 1})),
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "import",
            M::POST,
            "/api/v1/credentials/import",
            j(json!({"credentials": [{"name": "w-imported", "secret": "walk-imported"}]})),
        ),
        &[],
        &mut p,
    )
    .await;

    // Applications: CCP, A2A, AppRole.
    s.walk(
        call(
            "app create",
            M::POST,
            "/api/v1/apps",
            j(json!({"app_id": "WalkApp", "sources": ["127.0.0.1"], "client_secret": true})),
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "app allow",
            M::POST,
            "/api/v1/apps/WalkApp/allow",
            j(json!({"type": "safe-write", "name": "walk"})),
        ),
        &[],
        &mut p,
    )
    .await;
    let cs = s
        .walk(
            call(
                "app client secret",
                M::POST,
                "/api/v1/apps/WalkApp/client-secret",
                j(json!({})),
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
    s.walk(
        call(
            "ccp get password",
            M::GET,
            "/AIMWebService/api/Accounts?AppID=WalkApp&Safe=walk&Object=w1",
            Body::Empty,
        )
        .by(Auth::None),
        &["walk-secret-1"],
        &mut p,
    )
    .await;
    let tok = s
        .walk(
            call(
                "a2a oauth token",
                M::POST,
                "/iso/oauth2/token",
                Body::Form(vec![
                    ("grant_type", "client_credentials".into()),
                    ("client_id", "WalkApp".into()),
                    ("client_secret", secret.clone()),
                ]),
            )
            .by(Auth::None),
            &[],
            &mut p,
        )
        .await;
    let a2a = Auth::Bearer(tok["access_token"].as_str().unwrap().to_owned());
    let upsert = json!({"identifier": "a2a-walk", "username": "svc", "hostname": "walk-host",
                        "ip": "10.9.0.1", "content": "walk-a2a-1"});
    for label in ["a2a create", "a2a update"] {
        s.walk(
            call(label, M::POST, "/iso/pam/credential", j(upsert.clone())).by(a2a.clone()),
            &[],
            &mut p,
        )
        .await;
    }
    s.walk(
        call(
            "a2a read",
            M::GET,
            "/iso/pam/credential/a2a-walk",
            Body::Empty,
        )
        .by(a2a.clone()),
        &["walk-a2a-1"],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "a2a custody release",
            M::DELETE,
            "/iso/pam/credential/custody/a2a-walk",
            Body::Empty,
        )
        .by(a2a.clone()),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "a2a deactivate",
            M::DELETE,
            "/iso/pam/credential/a2a-walk",
            Body::Empty,
        )
        .by(a2a.clone()),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "a2a activate",
            M::PUT,
            "/iso/pam/credential/a2a-walk",
            Body::Empty,
        )
        .by(a2a.clone()),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "approle login",
            M::POST,
            "/v1/auth/approle/login",
            j(json!({"role_id": "WalkApp", "secret_id": secret})),
        )
        .by(Auth::None),
        &[],
        &mut p,
    )
    .await;

    // Domains.
    s.walk(
        call(
            "domain add",
            M::POST,
            "/api/v1/domains",
            j(json!({"name": "walk.example", "abbreviation": "WALK"})),
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "domain delete",
            M::DELETE,
            "/api/v1/domains/walk.example",
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;

    // The Vault KV door.
    s.walk(
        call(
            "kv write",
            M::POST,
            "/v1/walk/data/k",
            j(json!({"data": {"pw": "walk-kv-1"}})),
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call("kv read", M::GET, "/v1/walk/data/k", Body::Empty),
        &["walk-kv-1"],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "kv metadata",
            M::POST,
            "/v1/walk/metadata/k",
            j(json!({"max_versions": 5})),
        ),
        &[],
        &mut p,
    )
    .await;
    for (label, op) in [
        ("kv delete version", "delete"),
        ("kv undelete version", "undelete"),
        ("kv destroy version", "destroy"),
    ] {
        s.walk(
            call(
                label,
                M::POST,
                format!("/v1/walk/{op}/k"),
                j(json!({"versions": [1]})),
            ),
            &[],
            &mut p,
        )
        .await;
    }
    s.walk(
        call(
            "kv delete all",
            M::DELETE,
            "/v1/walk/metadata/k",
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;

    // Entity credentials.
    s.walk(
        call(
            "entity set",
            M::POST,
            "/api/credentials/for/WalkPkg",
            j(json!({"login": "l", "password": "walk-entity-1"})),
        )
        .by(Auth::Header("Authorization", s.root.clone())),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "entity get",
            M::GET,
            "/api/credentials/for/WalkPkg",
            Body::Empty,
        )
        .by(Auth::Header("Authorization", s.root.clone())),
        &["walk-entity-1"],
        &mut p,
    )
    .await;
    let e = s
        .walk(
            call(
                "entity public get",
                M::GET,
                "/api/public/v1/credentials/for/WalkPkg",
                Body::Empty,
            )
            .by(Auth::Header("Authorization", s.root.clone())),
            &["walk-entity-1"],
            &mut p,
        )
        .await;
    let entity_id = e["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id in {e}"))
        .to_owned();

    // fetch-credentials.
    s.walk(
        call(
            "fetch one",
            M::GET,
            "/api/fetch-credentials?identifier=w1",
            Body::Empty,
        ),
        &["walk-secret-1"],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "fetch all",
            M::GET,
            "/api/fetch-credentials?credential_names=w1",
            Body::Empty,
        ),
        &["walk-secret-1"],
        &mut p,
    )
    .await;

    // Integrations (disabled: nothing is fetched).
    s.walk(
        call(
            "integration create",
            M::POST,
            "/api/v1/integrations",
            j(json!({"name": "walk-int", "kind": "vault-kv", "url": "http://127.0.0.1:9", "safe": "walk",
                     "token": "walk-int-token", "credential_names": ["db"], "enabled": false})),
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "integration enable",
            M::POST,
            "/api/v1/integrations/walk-int/enable",
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "integration disable",
            M::POST,
            "/api/v1/integrations/walk-int/disable",
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "integration delete",
            M::DELETE,
            "/api/v1/integrations/walk-int",
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;

    // Backup (reads every secret: one record for the whole snapshot).
    s.walk(
        call("backup", M::GET, "/api/v1/sys/backup", Body::Empty),
        &[],
        &mut p,
    )
    .await;

    // Removals.
    s.walk(
        call(
            "entity public delete",
            M::DELETE,
            format!("/api/public/v1/credentials/{entity_id}"),
            Body::Empty,
        )
        .by(Auth::Header("Authorization", s.root.clone())),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "credential delete",
            M::DELETE,
            format!("/api/v1/credentials/{id}"),
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "app deny",
            M::POST,
            "/api/v1/apps/WalkApp/deny",
            j(json!({"type": "safe-write", "name": "walk"})),
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call("app delete", M::DELETE, "/api/v1/apps/WalkApp", Body::Empty),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "token revoke",
            M::DELETE,
            format!("/api/v1/tokens/{token_id}"),
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "safe member remove",
            M::DELETE,
            "/api/v1/safes/walk/members/user/walker",
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "group member remove",
            M::DELETE,
            "/api/v1/groups/walkers/members/walker",
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "group delete",
            M::DELETE,
            "/api/v1/groups/walkers",
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;
    s.walk(
        call(
            "user delete",
            M::DELETE,
            "/api/v1/users/walker",
            Body::Empty,
        ),
        &[],
        &mut p,
    )
    .await;
    // Last: a rotation starts a background rewrap that changes the versions' rows.
    s.walk(
        call("key rotate", M::POST, "/api/v1/sys/rotate", Body::Empty),
        &[],
        &mut p,
    )
    .await;
    assert!(p.is_empty(), "{} problems:\n{}", p.len(), p.join("\n"));
}
