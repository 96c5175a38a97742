//! The Vault-KV-v2 door (`/v1`) and the fetch-credentials endpoint (issue 7, part 1).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::Server;

/// A dev server with a safe `secret` (the default KV mount) and a user `outsider` who is not in it.
async fn kv_server() -> (Server, String) {
    let s = Server::dev().await;
    let (st, _) = s
        .post("/api/v1/safes", &s.root, json!({"name": "secret"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let outsider = s.user("outsider").await;
    (s, outsider)
}

async fn kv(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    kv_at(&s.http, &s.url(""), method, path, token, body).await
}

/// One request to a Vault-KV server at `base` (credvault's door or OpenBao), as Vault clients send it.
async fn kv_at(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut r = http.request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{base}/v1/{path}"),
    );
    if let Some(t) = token {
        r = r
            .header("X-Vault-Token", t)
            .header("X-Vault-Request", "true");
    }
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/json")
            .body(b.to_owned());
    }
    let resp = r.send().await.unwrap();
    let st = resp.status();
    let text = resp.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn kv_read_write_versions_and_vault_error_format() {
    let (s, outsider) = kv_server().await;
    let r = Some(s.root.as_str());

    let (st, w) = kv(
        &s,
        "POST",
        "secret/data/app/db",
        r,
        Some(r#"{"data": {"password": "kv-1"}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{w}");
    assert_eq!(w["data"]["version"], 1);
    assert_eq!(w["lease_id"], "");
    let (st, g) = kv(&s, "GET", "secret/data/app/db", r, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(g["data"]["data"], json!({"password": "kv-1"}));
    assert_eq!(g["data"]["metadata"]["destroyed"], false);
    assert!(g["data"]["metadata"]["created_time"]
        .as_str()
        .unwrap()
        .contains('T'));

    // The secret is a credential: visible in the native API, in the mount's safe and folder.
    let (_, l) = s.get("/api/v1/credentials?safe=secret", &s.root).await;
    assert_eq!(l["items"][0]["identifier"], "kv:secret/app/db");
    assert_eq!(l["items"][0]["folder"], "app");
    assert_eq!(l["items"][0]["name"], "db");

    // Bearer works like X-Vault-Token.
    let resp = s
        .http
        .get(s.url("/v1/secret/data/app/db"))
        .bearer_auth(&s.root)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // CAS: 0 on an existing secret and a stale version are refused with Vault's message.
    for cas in [0, 7] {
        let (st, e) = kv(
            &s,
            "PUT",
            "secret/data/app/db",
            r,
            Some(&format!(
                r#"{{"data": {{"p": "x"}}, "options": {{"cas": {cas}}}}}"#
            )),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(
            e["errors"][0],
            "check-and-set parameter did not match the current version"
        );
    }
    let (st, _) = kv(
        &s,
        "POST",
        "secret/data/app/db",
        r,
        Some(r#"{"data": {"password": "kv-2"}, "options": {"cas": 1}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // cas_required makes a write without cas fail.
    let (st, _) = kv(
        &s,
        "POST",
        "secret/metadata/app/db",
        r,
        Some(r#"{"cas_required": true, "custom_metadata": {"team": "pay"}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = kv(
        &s,
        "POST",
        "secret/data/app/db",
        r,
        Some(r#"{"data": {"password": "no-cas"}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        e["errors"][0],
        "check-and-set parameter required for this call"
    );

    // PATCH merges into the latest version.
    let (st, _) = kv(
        &s,
        "PATCH",
        "secret/data/app/db",
        r,
        Some(r#"{"data": {"port": "5432"}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, g) = kv(&s, "GET", "secret/data/app/db", r, None).await;
    assert_eq!(
        g["data"]["data"],
        json!({"password": "kv-2", "port": "5432"})
    );
    assert_eq!(g["data"]["metadata"]["version"], 3);
    assert_eq!(g["data"]["metadata"]["custom_metadata"]["team"], "pay");
    let (_, g1) = kv(&s, "GET", "secret/data/app/db?version=1", r, None).await;
    assert_eq!(g1["data"]["data"], json!({"password": "kv-1"}));

    // Soft delete: 404 whose body still says when; undelete brings it back.
    let (st, _) = kv(&s, "DELETE", "secret/data/app/db", r, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, d) = kv(&s, "GET", "secret/data/app/db", r, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(d["data"]["data"], Value::Null);
    assert!(!d["data"]["metadata"]["deletion_time"]
        .as_str()
        .unwrap()
        .is_empty());
    let (st, _) = kv(
        &s,
        "POST",
        "secret/undelete/app/db",
        r,
        Some(r#"{"versions": [3]}"#),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = kv(&s, "GET", "secret/data/app/db", r, None).await;
    assert_eq!(st, StatusCode::OK);

    // Destroy: the ciphertext is gone from the store; the latest destroyed version stays writable.
    let (st, _) = kv(
        &s,
        "POST",
        "secret/destroy/app/db",
        r,
        Some(r#"{"versions": [1, 3]}"#),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, d) = kv(&s, "GET", "secret/data/app/db?version=1", r, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(d["data"]["metadata"]["destroyed"], true);
    let db = s.db().await;
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM credential_versions WHERE version IN (1, 3) AND length(payload) = 0",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(n, 2);
    let (st, w) = kv(
        &s,
        "POST",
        "secret/data/app/db",
        r,
        Some(r#"{"data": {"password": "kv-4"}, "options": {"cas": 3}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{w}");
    let (_, m) = kv(&s, "GET", "secret/metadata/app/db", r, None).await;
    assert_eq!(m["data"]["current_version"], 4);
    assert_eq!(m["data"]["versions"]["1"]["destroyed"], true);
    assert_eq!(m["data"]["cas_required"], true);

    // LIST verb and ?list=true; folders end in '/'; nothing there is 404 {"errors": []}.
    kv(
        &s,
        "POST",
        "secret/data/top",
        r,
        Some(r#"{"data": {"k": "v"}}"#),
    )
    .await;
    let (st, l) = kv(&s, "LIST", "secret/metadata/", r, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(l["data"]["keys"], json!(["app/", "top"]));
    let (_, l) = kv(&s, "GET", "secret/metadata/app?list=true", r, None).await;
    assert_eq!(l["data"]["keys"], json!(["db"]));
    let (st, e) = kv(&s, "LIST", "secret/metadata/nothing", r, None).await;
    assert_eq!((st, e), (StatusCode::NOT_FOUND, json!({"errors": []})));

    // Delete all versions and metadata.
    let (st, _) = kv(&s, "DELETE", "secret/metadata/top", r, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = kv(&s, "GET", "secret/data/top", r, None).await;
    assert_eq!((st, e), (StatusCode::NOT_FOUND, json!({"errors": []})));

    // Permission: no token, a bad token, a user outside the mount, a mount that does not exist:
    // all the same 403, whether the secret exists or not.
    for (token, path) in [
        (None, "secret/data/app/db"),
        (Some("cvt_bogus"), "secret/data/app/db"),
        (Some(outsider.as_str()), "secret/data/app/db"),
        (Some(outsider.as_str()), "secret/data/nope"),
        (Some(outsider.as_str()), "other/data/app/db"),
    ] {
        let (st, e) = kv(&s, "GET", path, token, None).await;
        assert_eq!(
            (st, e),
            (
                StatusCode::FORBIDDEN,
                json!({"errors": ["permission denied"]})
            ),
            "{path}"
        );
    }
    let (st, _) = kv(
        &s,
        "POST",
        "secret/data/x",
        Some(&outsider),
        Some(r#"{"data": {"a": "b"}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Every read of a KV secret is audited through the door.
    let (_, tail) = s.get("/api/v1/audit/tail?n=200", &s.root).await;
    assert!(tail.to_string().contains("vaultkv"));
    assert!(!tail.to_string().contains("kv-2"));
}

#[tokio::test]
async fn kv_bad_input_gets_vault_errors_never_500() {
    let (s, _) = kv_server().await;
    let r = Some(s.root.as_str());
    for (method, path, body) in [
        ("POST", "secret/data/a", Some("{not json")),
        ("POST", "secret/data/a", Some("[1, 2]")),
        ("POST", "secret/data/a", Some(r#"{"data": {"n": 1}}"#)),
        ("POST", "secret/data/a", Some(r#"{"data": "x"}"#)),
        ("POST", "secret/data/a", Some(r#"{"nodata": {}}"#)),
        (
            "POST",
            "secret/data/a",
            Some(r#"{"data": {"a": "b"}, "options": {"cas": "one"}}"#),
        ),
        (
            "POST",
            "secret/data/a",
            Some(r#"{"data": {"bad key!": "b"}}"#),
        ),
        ("POST", "secret/data/a//b", Some(r#"{"data": {"a": "b"}}"#)),
        ("GET", "secret/data/a?version=abc", None),
        ("POST", "secret/delete/a", Some(r#"{"versions": "all"}"#)),
        ("POST", "secret/metadata/a", Some(r#"{"max_versions": -1}"#)),
    ] {
        let (st, e) = kv(&s, method, path, r, body).await;
        assert!(
            st == StatusCode::BAD_REQUEST || st == StatusCode::NOT_FOUND,
            "{method} {path} {body:?} -> {st} {e}"
        );
        assert!(e["errors"].is_array(), "{method} {path}: {e}");
    }
    let (st, e) = kv(&s, "POST", "secret/data/a", r, Some("{not json")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(e["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("failed to decode JSON input"));
    // A value that is not a string says why, without echoing it.
    let (_, e) = kv(
        &s,
        "POST",
        "secret/data/a",
        r,
        Some(r#"{"data": {"pin": 123456}}"#),
    )
    .await;
    assert!(e["errors"][0].as_str().unwrap().contains("not a string"));
    assert!(!e.to_string().contains("123456"));
    // Unknown paths under /v1 are Vault's 404.
    let (st, e) = kv(&s, "GET", "nowhere", r, None).await;
    assert_eq!((st, e), (StatusCode::NOT_FOUND, json!({"errors": []})));
}

#[tokio::test]
async fn kv_sys_endpoints() {
    let fresh = Server::fresh().await;
    let (st, h) = kv(&fresh, "GET", "sys/health", None, None).await;
    assert_eq!(st, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(h["initialized"], false);
    let (st, _) = kv(&fresh, "GET", "sys/health?uninitcode=200", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = kv(&fresh, "GET", "secret/data/x", Some("t"), None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{e}");

    let (s, outsider) = kv_server().await;
    let (st, h) = kv(&s, "GET", "sys/health", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (h["initialized"].clone(), h["sealed"].clone()),
        (json!(true), json!(false))
    );
    let (st, m) = kv(&s, "GET", "sys/mounts", Some(&s.root), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(m["data"]["secret/"]["options"]["version"], "2");
    assert_eq!(m["secret/"]["type"], "kv");
    // The outsider sees no mount it cannot use.
    let (_, m) = kv(&s, "GET", "sys/mounts", Some(&outsider), None).await;
    assert!(m["data"].as_object().unwrap().is_empty(), "{m}");
    let (st, l) = kv(&s, "GET", "auth/token/lookup-self", Some(&outsider), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(l["data"]["meta"]["user"], "outsider");
    assert_eq!(l["data"]["type"], "service");
    let (st, _) = kv(&s, "GET", "auth/token/lookup-self", Some("cvt_x"), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Sealed: 503 in Vault's format.
    s.post("/api/v1/sys/seal", &s.root, json!({})).await;
    let (st, e) = kv(&s, "GET", "secret/data/x", Some(&s.root), None).await;
    assert_eq!(
        (st, e),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"errors": ["Vault is sealed"]})
        )
    );
    let (st, _) = kv(&s, "GET", "sys/health", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn hvac_conformance() {
    let (s, outsider) = kv_server().await;
    let (role_id, secret_id) = approle_app(&s, "HvacApp", &["127.0.0.1"]).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/hvac_conformance.py"
    );
    let args = vec![
        script.to_owned(),
        s.url(""),
        s.root.clone(),
        outsider,
        role_id,
        secret_id,
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(args).output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    assert!(
        out.status.success(),
        "hvac conformance script failed (scripts/test installs hvac): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["authenticated"], true, "{r}");
    assert_eq!(r["sealed"], false);
    assert_eq!(r["write1_version"], 1);
    assert_eq!(
        r["read1"],
        json!({"username": "app", "password": "hv-pw-1"})
    );
    assert!(
        r["cas_stale"].as_str().unwrap().contains("check-and-set"),
        "{r}"
    );
    assert_eq!(r["write2_version"], 2);
    assert_eq!(
        r["after_patch"],
        json!({"username": "app", "password": "hv-pw-2", "port": "5432"})
    );
    assert_eq!(r["after_patch_version"], 3);
    assert_eq!(r["version1"]["password"], "hv-pw-1");
    assert_eq!(r["list_root"], json!(["app/", "top"]));
    assert_eq!(r["list_app"], json!(["db", "nested/"]));
    assert_eq!(r["metadata"]["current_version"], 3);
    assert_eq!(r["metadata"]["max_versions"], 5);
    assert_eq!(
        r["metadata"]["custom_metadata"],
        json!({"team": "payments"})
    );
    assert_eq!(r["metadata"]["versions"], json!(["1", "2", "3"]));
    assert_eq!(r["read_deleted"], "not found");
    assert_eq!(r["after_undelete"]["port"], "5432");
    assert_eq!(r["v1_destroyed"], true);
    assert_eq!(r["read_destroyed"], "not found");
    assert_eq!(r["read_removed"], "not found");
    assert_eq!(r["outsider"], "forbidden");
    assert_eq!(r["bad_token_authenticated"], false);
    assert_eq!(r["approle_token_type"], "service");
    assert_eq!(r["approle_read"]["port"], "5432");
    assert_eq!(r["approle_list"], json!(["db", "nested/"]));
    assert_eq!(r["approle_wrong"], "refused");
}

/// An application with a client secret, allowed to read the `secret` mount. Returns (role_id, secret_id).
async fn approle_app(s: &Server, app_id: &str, sources: &[&str]) -> (String, String) {
    let (st, a) = s
        .post(
            "/api/v1/apps",
            &s.root,
            json!({"app_id": app_id, "sources": sources, "client_secret": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!(a["client_secret"], true);
    let secret = a["client_secret_value"].as_str().unwrap().to_owned();
    let (st, _) = s
        .post(
            &format!("/api/v1/apps/{app_id}/allow"),
            &s.root,
            json!({"type": "safe", "name": "secret"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Shown once: never again.
    let (_, shown) = s.get(&format!("/api/v1/apps/{app_id}"), &s.root).await;
    assert!(!shown.to_string().contains(&secret));
    (app_id.to_owned(), secret)
}

async fn approle_login(s: &Server, role: &str, secret: &str) -> (StatusCode, Value) {
    let body = json!({"role_id": role, "secret_id": secret}).to_string();
    kv(s, "POST", "auth/approle/login", None, Some(&body)).await
}

#[tokio::test]
async fn approle_login_acts_as_the_application_within_its_grants() {
    let (s, _) = kv_server().await;
    let r = Some(s.root.as_str());
    kv(
        &s,
        "POST",
        "secret/data/db",
        r,
        Some(r#"{"data": {"pw": "approle-read"}}"#),
    )
    .await;
    s.post("/api/v1/safes", &s.root, json!({"name": "other"}))
        .await;
    kv(
        &s,
        "POST",
        "other/data/x",
        r,
        Some(r#"{"data": {"pw": "hidden"}}"#),
    )
    .await;
    let (role_id, secret_id) = approle_app(&s, "Billing", &["127.0.0.0/8"]).await;

    let (st, l) = approle_login(&s, &role_id, &secret_id).await;
    assert_eq!(st, StatusCode::OK, "{l}");
    assert_eq!(l["auth"]["lease_duration"], 3600);
    let token = l["auth"]["client_token"].as_str().unwrap().to_owned();
    let t = Some(token.as_str());

    // Reads what it was granted; nothing else; writes nothing.
    let (st, g) = kv(&s, "GET", "secret/data/db", t, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(g["data"]["data"]["pw"], "approle-read");
    let (st, _) = kv(&s, "GET", "other/data/x", t, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = kv(
        &s,
        "POST",
        "secret/data/db",
        t,
        Some(r#"{"data": {"pw": "overwritten"}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Not a key to the native API.
    let (st, _) = s.get("/api/v1/credentials", &token).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Wrong secret, unknown role, missing fields: Vault's 400.
    for (role, secret) in [
        (role_id.as_str(), "wrong"),
        ("Nobody", secret_id.as_str()),
        ("", secret_id.as_str()),
        (role_id.as_str(), ""),
    ] {
        let (st, e) = approle_login(&s, role, secret).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
        assert!(e["errors"].is_array());
    }
    // The source rule holds for logins too.
    let (far_role, far_secret) = approle_app(&s, "Remote", &["10.9.9.0/24"]).await;
    let (st, _) = approle_login(&s, &far_role, &far_secret).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Deleting the application ends its tokens.
    let (st, _) = s.delete("/api/v1/apps/Billing", &s.root).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = kv(&s, "GET", "secret/data/db", t, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Logins are audited; the secret is not.
    let (_, tail) = s.get("/api/v1/audit/tail?n=100", &s.root).await;
    assert!(tail.to_string().contains("app.login"));
    assert!(!tail.to_string().contains(&secret_id));
}

#[tokio::test]
async fn fetch_credentials_all_and_one() {
    let s = Server::dev().await;
    let r = s.root.clone();
    s.post("/api/v1/safes", &r, json!({"name": "ops"})).await;
    s.cred(
        &r,
        json!({"name": "db", "username": "dbuser", "secret": "f-db", "safe": "ops"}),
    )
    .await;
    s.cred(
        &r,
        json!({"name": "web", "username": "www", "secret": "f-web", "safe": "ops"}),
    )
    .await;
    s.cred(
        &r,
        json!({"name": "twice", "username": "a", "secret": "f-a", "safe": "ops"}),
    )
    .await;
    s.cred(
        &r,
        json!({"name": "twice", "username": "b", "secret": "f-b", "safe": "ops"}),
    )
    .await;
    let alice = s.user("alice").await;

    let (st, all) = s
        .get("/api/fetch-credentials?credential_names=db,web,missing", &r)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        all,
        json!([{"user": "dbuser", "password": "f-db", "name": "db"}, {"user": "www", "password": "f-web", "name": "web"}])
    );
    let (_, one) = s.get("/api/fetch-credentials?identifier=db", &r).await;
    assert_eq!(
        one,
        json!([{"user": "dbuser", "password": "f-db", "name": "db"}])
    );
    // Zero or one, never more, never an error.
    for q in ["identifier=twice", "identifier=missing", "identifier="] {
        let (st, v) = s.get(&format!("/api/fetch-credentials?{q}"), &r).await;
        assert_eq!((st, v), (StatusCode::OK, json!([])), "{q}");
    }
    // Someone who may not read gets nothing (and the refusal is audited).
    let (st, v) = s.get("/api/fetch-credentials?identifier=db", &alice).await;
    assert_eq!((st, v), (StatusCode::OK, json!([])));
    let (_, v) = s
        .get("/api/fetch-credentials?credential_names=db", &alice)
        .await;
    assert_eq!(v, json!([]));
    // Without a token: the native 401.
    let (st, _) = s
        .req(
            Method::GET,
            "/api/fetch-credentials?identifier=db",
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.get("/api/fetch-credentials?surprise=1", &r).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, tail) = s.get("/api/v1/audit/tail?n=100", &r).await;
    assert!(tail.to_string().contains("\"fetch\""));
}

#[tokio::test]
async fn credvault_and_kv_integrations_pull_from_another_credvault() {
    // The remote serves its KV door and fetch-credentials; the local server pulls from both.
    let (remote, _) = kv_server().await;
    let rt = remote.root.clone();
    kv(
        &remote,
        "POST",
        "secret/data/apps/db",
        Some(&rt),
        Some(r#"{"data": {"dbuser": "kv-remote-1"}}"#),
    )
    .await;
    kv(
        &remote,
        "POST",
        "secret/data/apps/pair",
        Some(&rt),
        Some(r#"{"data": {"u1": "p1", "u2": "p2"}}"#),
    )
    .await;
    remote
        .post("/api/v1/safes", &rt, json!({"name": "ops"}))
        .await;
    remote
        .cred(
            &rt,
            json!({"name": "api", "username": "svc", "secret": "cv-remote-1", "safe": "ops"}),
        )
        .await;

    let local = Server::dev().await;
    local
        .post("/api/v1/safes", &local.root, json!({"name": "mirrors"}))
        .await;
    let (st, i) = local
        .post(
            "/api/v1/integrations",
            &local.root,
            json!({"name": "rkv", "kind": "vault-kv", "url": remote.url(""), "safe": "mirrors",
                   "folder": "apps", "token": rt, "cache_expiry_seconds": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{i}");
    assert_eq!(i["status"]["fetched"], 3, "{i}");
    let (st, i) = local
        .post(
            "/api/v1/integrations",
            &local.root,
            json!({"name": "rcv", "kind": "credvault", "url": remote.url(""), "safe": "mirrors",
                   "credential_names": ["api"], "token": rt, "cache_expiry_seconds": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{i}");
    assert_eq!(i["status"]["fetched"], 1, "{i}");
    // Two key/value pairs under one name: fetching it as one is refused.
    let (st, _) = local
        .post(
            "/api/v1/integrations/rkv/fetch",
            &local.root,
            json!({"identifier": "pair"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    // The local fetch-credentials serves the mirrors too (every door sees them).
    let (_, v) = local
        .get(
            "/api/fetch-credentials?credential_names=db,api",
            &local.root,
        )
        .await;
    assert_eq!(
        v,
        json!([{"user": "dbuser", "password": "kv-remote-1", "name": "db"}, {"user": "svc", "password": "cv-remote-1", "name": "api"}])
    );
    // Cache off: a new value on the remote is what the next read returns.
    kv(
        &remote,
        "POST",
        "secret/data/apps/db",
        Some(&rt),
        Some(r#"{"data": {"dbuser": "kv-remote-2"}}"#),
    )
    .await;
    let (_, v) = local
        .get("/api/fetch-credentials?identifier=db", &local.root)
        .await;
    assert_eq!(v[0]["password"], "kv-remote-2");
}

/// One Vault-KV server under test: credvault's door or the reference OpenBao.
struct KvTarget<'a> {
    what: &'a str,
    base: String,
    token: String,
}

impl KvTarget<'_> {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: bool,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let token = token.then_some(self.token.as_str());
        kv_at(
            &crate::common::http_client(),
            &self.base,
            method,
            path,
            token,
            body,
        )
        .await
    }
}

/// Issue 19: Vault reads its flags as Go booleans (`1 t T TRUE true True`, `0 f F FALSE false
/// False`), in the query (`list`, `standbyok`) and in bodies (`cas_required`, where `""` and `null`
/// are false and numbers are read as their text). Every expectation below holds for OpenBao's
/// `bao server -dev` too (checked when `CREDVAULT_TEST_OPENBAO` is set, as `scripts/test` does).
async fn go_boolean_flags(t: &KvTarget<'_>) {
    let w = t.what;
    let (st, e) = t
        .call(
            "POST",
            "secret/data/dir/a",
            true,
            Some(r#"{"data": {"k": "v"}}"#),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{w}: {e}");
    let bare_400 = (StatusCode::BAD_REQUEST, json!({"errors": []}));

    for yes in ["1", "t", "T", "TRUE", "true", "True"] {
        let (st, l) = t
            .call(
                "GET",
                &format!("secret/metadata/dir?list={yes}"),
                true,
                None,
            )
            .await;
        assert_eq!(
            (st, l["data"]["keys"].clone()),
            (StatusCode::OK, json!(["a"])),
            "{w}: list={yes}: {l}"
        );
        let (st, l) = t
            .call("GET", &format!("secret/metadata?list={yes}"), true, None)
            .await;
        assert_eq!(
            (st, l["data"]["keys"].clone()),
            (StatusCode::OK, json!(["dir/"])),
            "{w}: root list={yes}: {l}"
        );
        // A data path lists nothing.
        let (st, e) = t
            .call("GET", &format!("secret/data/dir/a?list={yes}"), true, None)
            .await;
        assert_eq!(
            st,
            StatusCode::METHOD_NOT_ALLOWED,
            "{w}: data list={yes}: {e}"
        );
    }
    for no in ["0", "f", "F", "FALSE", "false", "False", ""] {
        // Not a listing: a read of the metadata (there is none at `dir`) or of the data.
        let (st, e) = t
            .call("GET", &format!("secret/metadata/dir?list={no}"), true, None)
            .await;
        assert_eq!(
            (st, e),
            (StatusCode::NOT_FOUND, json!({"errors": []})),
            "{w}: list={no}"
        );
        let (st, m) = t
            .call(
                "GET",
                &format!("secret/metadata/dir/a?list={no}"),
                true,
                None,
            )
            .await;
        assert_eq!(
            (st, m["data"]["current_version"].clone()),
            (StatusCode::OK, json!(1)),
            "{w}: list={no}: {m}"
        );
        let (st, d) = t
            .call("GET", &format!("secret/data/dir/a?list={no}"), true, None)
            .await;
        assert_eq!(
            (st, d["data"]["data"].clone()),
            (StatusCode::OK, json!({"k": "v"})),
            "{w}: data list={no}: {d}"
        );
    }
    for bad in ["yes", "2", "tRuE", "on", "%20true"] {
        for path in [
            "secret/metadata/dir",
            "secret/metadata",
            "secret/data/dir/a",
            "sys/health",
            "auth/token/lookup-self",
        ] {
            let (st, e) = t
                .call("GET", &format!("{path}?list={bad}"), true, None)
                .await;
            assert_eq!((st, e), bare_400, "{w}: {path}?list={bad}");
        }
        // Before authentication.
        let (st, e) = t
            .call(
                "GET",
                &format!("secret/metadata/dir?list={bad}"),
                false,
                None,
            )
            .await;
        assert_eq!((st, e), bare_400, "{w}: no token, list={bad}");
        let (st, e) = t
            .call("GET", &format!("sys/health?standbyok={bad}"), false, None)
            .await;
        assert_eq!((st, e), bare_400, "{w}: standbyok={bad}");
    }
    // The first of repeated flags counts; a LIST ignores the flag.
    let (st, l) = t
        .call("GET", "secret/metadata/dir?list=1&list=yes", true, None)
        .await;
    assert_eq!(
        (st, l["data"]["keys"].clone()),
        (StatusCode::OK, json!(["a"])),
        "{w}"
    );
    let (st, e) = t
        .call("GET", "secret/metadata/dir?list=yes&list=1", true, None)
        .await;
    assert_eq!((st, e), bare_400, "{w}");
    let (st, l) = t
        .call("LIST", "secret/metadata/dir?list=yes", true, None)
        .await;
    assert_eq!(
        (st, l["data"]["keys"].clone()),
        (StatusCode::OK, json!(["a"])),
        "{w}"
    );
    for ok in ["1", "TRUE", ""] {
        let (st, h) = t
            .call("GET", &format!("sys/health?standbyok={ok}"), false, None)
            .await;
        assert_eq!(
            (st, h["sealed"].clone()),
            (StatusCode::OK, json!(false)),
            "{w}"
        );
    }

    // cas_required in a metadata body.
    let cas_required = || async {
        let (st, m) = t.call("GET", "secret/metadata/dir/a", true, None).await;
        assert_eq!(st, StatusCode::OK, "{w}: {m}");
        m["data"]["cas_required"].clone()
    };
    let set = |v: &'static str| async move {
        t.call(
            "POST",
            "secret/metadata/dir/a",
            true,
            Some(&format!(r#"{{"cas_required": {v}}}"#)),
        )
        .await
    };
    for (v, want) in [
        ("true", true),
        ("1", true),
        (r#""1""#, true),
        (r#""t""#, true),
        (r#""T""#, true),
        (r#""TRUE""#, true),
        (r#""true""#, true),
        (r#""True""#, true),
        ("false", false),
        ("0", false),
        (r#""0""#, false),
        (r#""f""#, false),
        (r#""F""#, false),
        (r#""FALSE""#, false),
        (r#""false""#, false),
        (r#""False""#, false),
        (r#""""#, false),
        ("null", false),
    ] {
        let before = if want { "false" } else { "true" };
        assert_eq!(set(before).await.0, StatusCode::NO_CONTENT, "{w}");
        let (st, e) = set(v).await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{w}: cas_required {v}: {e}");
        assert_eq!(cas_required().await, json!(want), "{w}: cas_required {v}");
    }
    for bad in [
        r#""yes""#,
        r#""2""#,
        "2",
        "1.5",
        "0.0",
        r#""tRuE""#,
        "[]",
        "{}",
    ] {
        assert_eq!(set("true").await.0, StatusCode::NO_CONTENT, "{w}");
        let (st, e) = set(bad).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{w}: cas_required {bad}: {e}");
        assert!(
            e["errors"][0].as_str().unwrap().contains("cas_required"),
            "{w}: {e}"
        );
        assert_eq!(
            cas_required().await,
            json!(true),
            "{w}: unchanged after {bad}"
        );
    }
    assert_eq!(set("false").await.0, StatusCode::NO_CONTENT, "{w}");
}

#[tokio::test]
async fn kv_boolean_flags_are_go_booleans_as_in_openbao() {
    let (s, _) = kv_server().await;
    go_boolean_flags(&KvTarget {
        what: "credvault",
        base: s.url(""),
        token: s.root.clone(),
    })
    .await;
    let Some(bin) = crate::integrations::OpenBao::binary() else {
        eprintln!("CREDVAULT_TEST_OPENBAO not set: OpenBao side skipped (scripts/test sets it)");
        return;
    };
    let bao = crate::integrations::OpenBao::start(&bin).await;
    go_boolean_flags(&KvTarget {
        what: "openbao",
        base: bao.url.clone(),
        token: crate::integrations::OpenBao::ROOT.into(),
    })
    .await;
}
