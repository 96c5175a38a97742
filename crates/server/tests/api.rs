#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Integration tests of the native API against a real in-process server over HTTP.

#[path = "api/audit_atomic.rs"]
mod audit_atomic;
#[path = "api/audit_retention.rs"]
mod audit_retention;
#[path = "api/audit_routes.rs"]
mod audit_routes;
#[path = "api/authz.rs"]
mod authz;
#[path = "api/ccp.rs"]
mod ccp;
mod common;
#[path = "api/entity.rs"]
mod entity;
#[path = "api/faults.rs"]
mod faults;
#[path = "api/fuzz.rs"]
mod fuzz;
#[path = "api/integrations.rs"]
mod integrations;
#[path = "api/pam.rs"]
mod pam;
#[path = "api/pwchange.rs"]
mod pwchange;
#[path = "api/vaultkv.rs"]
mod vaultkv;

use common::{code, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn init_unseal_seal_lifecycle() {
    let s = Server::fresh().await;
    let (st, h) = s.req(Method::GET, "/api/v1/sys/health", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["initialized"], false);
    assert_eq!(h["sealed"], true);
    assert_eq!(
        h["storage"],
        if s.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    let (st, e) = s
        .req(Method::GET, "/api/v1/credentials", Some("x"), None)
        .await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::SERVICE_UNAVAILABLE, "not_initialized")
    );

    let (st, init) = s
        .req(
            Method::POST,
            "/api/v1/sys/init",
            None,
            Some(json!({"shares": 5, "threshold": 3})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{init}");
    let keys: Vec<String> = init["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 5);
    let root = init["root_token"].as_str().unwrap().to_owned();
    assert!(root.starts_with("cvt_"));
    let (st, _) = s
        .req(Method::POST, "/api/v1/sys/init", None, Some(json!({})))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "second init refused");

    // Sealed: every API but health answers 503 with a clear message.
    let (st, e) = s.get("/api/v1/credentials", &root).await;
    assert_eq!((st, code(&e)), (StatusCode::SERVICE_UNAVAILABLE, "sealed"));
    assert!(e["error"]["message"].as_str().unwrap().contains("unseal"));

    let unseal = |k: Value| s.req(Method::POST, "/api/v1/sys/unseal", None, Some(k));
    // Malformed share.
    let (st, e) = unseal(json!({"key": "not-hex"})).await;
    assert_eq!((st, code(&e)), (StatusCode::BAD_REQUEST, "unseal_failed"));
    // Too few shares: still sealed, progress counts.
    let (_, p) = unseal(json!({"key": keys[0]})).await;
    assert_eq!(
        (p["sealed"].clone(), p["progress"].clone()),
        (json!(true), json!(1))
    );
    let (st, _) = unseal(json!({"key": keys[0]})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "same share twice refused");
    let (_, p) = unseal(json!({"key": keys[1]})).await;
    assert_eq!(p["progress"], 2);
    // A wrong third share (right shape, wrong value) fails and resets progress.
    let mut wrong = keys[2].clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
    let (st, e) = unseal(json!({"key": String::from_utf8(wrong).unwrap()})).await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::BAD_REQUEST, "unseal_failed"),
        "{e}"
    );
    let (_, p) = s
        .req(Method::GET, "/api/v1/sys/seal-status", None, None)
        .await;
    assert_eq!(
        (p["sealed"].clone(), p["progress"].clone()),
        (json!(true), json!(0))
    );
    // Any three right shares unseal.
    for k in [&keys[4], &keys[2], &keys[0]] {
        unseal(json!({"key": k})).await;
    }
    let (_, p) = s
        .req(Method::GET, "/api/v1/sys/seal-status", None, None)
        .await;
    assert_eq!(p["sealed"], false);
    let (st, _) = s.get("/api/v1/credentials", &root).await;
    assert_eq!(st, StatusCode::OK);

    // Seal again (root only) and the API closes.
    let (st, _) = s.post("/api/v1/sys/seal", &root, json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get("/api/v1/credentials", &root).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn credential_lifecycle_versions_and_rollback() {
    let s = Server::dev().await;
    let r = &s.root;
    let id = s
        .cred(
            r,
            json!({"name": "db-prod", "username": "app", "secret": "v1-secret", "identifier": "db-prod-1",
                   "tags": ["db"], "parameters": {"port": "5432"}, "properties": {"PolicyID": "UnixSSH"},
                   "device": {"hostname": "db1", "ip": "10.0.0.5", "connectivities": [{"protocol": "SSH", "port": 22}]},
                   "settings": {"rotation": {"days": 30}}}),
        )
        .await;
    let (st, c) = s.get(&format!("/api/v1/credentials/{id}"), r).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(c["version"], 1);
    assert_eq!(c["parameter_names"], json!(["port"]));
    assert_eq!(
        c["properties"]["PolicyID"], "UnixSSH",
        "non-secret properties are metadata"
    );
    assert!(
        c.get("secret").is_none(),
        "metadata reads never return secrets"
    );
    assert!(!c.to_string().contains("v1-secret") && !c.to_string().contains("5432"));

    let (st, sec) = s.get(&format!("/api/v1/credentials/{id}/secret"), r).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(sec["secret"], "v1-secret");
    assert_eq!(sec["parameters"]["port"], "5432");

    // Update only the secret; metadata stays.
    let (st, u) = s
        .patch(
            &format!("/api/v1/credentials/{id}"),
            r,
            json!({"secret": "v2-secret"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(
        (u["version"].clone(), u["username"].clone()),
        (json!(2), json!("app"))
    );
    // Compare-and-set against a stale version is a conflict.
    let (st, e) = s
        .patch(
            &format!("/api/v1/credentials/{id}"),
            r,
            json!({"expected_version": 1, "username": "x"}),
        )
        .await;
    assert_eq!((st, code(&e)), (StatusCode::CONFLICT, "version_conflict"));
    let (st, _) = s
        .patch(
            &format!("/api/v1/credentials/{id}"),
            r,
            json!({"expected_version": 2, "username": "app2", "folder": "f"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    let (_, h) = s
        .get(&format!("/api/v1/credentials/{id}/versions"), r)
        .await;
    let ops: Vec<&str> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["create", "update", "update"]);
    let (_, old) = s
        .get(&format!("/api/v1/credentials/{id}/secret?version=1"), r)
        .await;
    assert_eq!(old["secret"], "v1-secret");
    let (_, v1) = s
        .get(&format!("/api/v1/credentials/{id}/versions/1"), r)
        .await;
    assert_eq!(v1["username"], "app");

    let (st, rb) = s
        .post(
            &format!("/api/v1/credentials/{id}/rollback"),
            r,
            json!({"version": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (
            rb["version"].clone(),
            rb["username"].clone(),
            rb["folder"].clone()
        ),
        (json!(4), json!("app"), Value::Null)
    );
    let (_, now) = s.get(&format!("/api/v1/credentials/{id}/secret"), r).await;
    assert_eq!(
        (now["secret"].clone(), now["version"].clone()),
        (json!("v1-secret"), json!(4))
    );

    // Filters and pagination.
    for i in 0..5 {
        s.cred(r, json!({"name": format!("n{i}"), "username": "u", "folder": "pg", "tags": [if i % 2 == 0 {"even"} else {"odd"}]})).await;
    }
    let (_, l) = s.get("/api/v1/credentials?folder=pg&limit=2", r).await;
    assert_eq!(l["items"].as_array().unwrap().len(), 2);
    let next = l["next"].as_str().unwrap();
    let (_, l2) = s
        .get(
            &format!("/api/v1/credentials?folder=pg&limit=2&after={next}"),
            r,
        )
        .await;
    assert_eq!(l2["items"].as_array().unwrap().len(), 2);
    assert_ne!(l["items"][0]["id"], l2["items"][0]["id"]);
    let (_, t) = s.get("/api/v1/credentials?tag=even", r).await;
    assert_eq!(t["items"].as_array().unwrap().len(), 3);
    let (_, d) = s.get("/api/v1/credentials?hostname=db1", r).await;
    assert_eq!(d["items"][0]["id"], json!(id));

    // Identifier is unique.
    let (st, _) = s
        .post(
            "/api/v1/credentials",
            r,
            json!({"name": "dup", "identifier": "db-prod-1"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // Identifiers reserved for other doors cannot be planted through the native API, on create or
    // by renaming an existing credential.
    for planted in ["kv:secret/app", "entity:pkg.conn", "mirror:vault/db"] {
        let (st, e) = s
            .post(
                "/api/v1/credentials",
                r,
                json!({"name": "planted", "identifier": planted}),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{planted}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("reserved"));
        let (st, _) = s
            .patch(
                &format!("/api/v1/credentials/{id}"),
                r,
                json!({"identifier": planted}),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{planted}");
    }

    let (st, _) = s.delete(&format!("/api/v1/credentials/{id}"), r).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.get(&format!("/api/v1/credentials/{id}"), r).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn policy_denies_what_is_not_granted() {
    let s = Server::dev().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let mine = s
        .cred(&alice, json!({"name": "alice-own", "secret": "alice-pw"}))
        .await;

    // bob: not in list, and get, read and write are each denied.
    let (_, l) = s.get("/api/v1/credentials", &bob).await;
    assert!(l["items"].as_array().unwrap().is_empty());
    for (m, p, b) in [
        (Method::GET, format!("/api/v1/credentials/{mine}"), None),
        (
            Method::GET,
            format!("/api/v1/credentials/{mine}/secret"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/credentials/{mine}"),
            Some(json!({"secret": "pwned"})),
        ),
        (Method::DELETE, format!("/api/v1/credentials/{mine}"), None),
        (
            Method::GET,
            format!("/api/v1/credentials/{mine}/versions"),
            None,
        ),
    ] {
        let (st, e) = s.req(m.clone(), &p, Some(&bob), b).await;
        assert_eq!(
            (st, code(&e)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{m} {p}"
        );
    }
    // Non-admins cannot manage identities or safes.
    let (st, _) = s.post("/api/v1/users", &bob, json!({"name": "eve"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.post("/api/v1/safes", &bob, json!({"name": "bobs"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post("/api/v1/tokens", &bob, json!({"user": "alice"}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Safe membership: list only, then read, then write.
    s.post("/api/v1/safes", &s.root, json!({"name": "prod"}))
        .await;
    let in_safe = s
        .cred(
            &s.root,
            json!({"name": "prod-db", "safe": "prod", "secret": "prod-pw"}),
        )
        .await;
    let (st, _) = s
        .put(
            "/api/v1/safes/prod/members",
            &s.root,
            json!({"type": "user", "name": "bob", "permissions": ["list"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, l) = s.get("/api/v1/credentials", &bob).await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    let (st, _) = s.get(&format!("/api/v1/credentials/{in_safe}"), &bob).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .get(&format!("/api/v1/credentials/{in_safe}/secret"), &bob)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(
            "/api/v1/credentials",
            &bob,
            json!({"name": "x", "safe": "prod"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Grant read through a group.
    s.post("/api/v1/groups", &s.root, json!({"name": "ops"}))
        .await;
    s.put("/api/v1/groups/ops/members/bob", &s.root, json!({}))
        .await;
    s.put(
        "/api/v1/safes/prod/members",
        &s.root,
        json!({"type": "group", "name": "ops", "permissions": ["read"]}),
    )
    .await;
    let (st, sec) = s
        .get(&format!("/api/v1/credentials/{in_safe}/secret"), &bob)
        .await;
    assert_eq!(
        (st, sec["secret"].clone()),
        (StatusCode::OK, json!("prod-pw"))
    );
    let (st, _) = s
        .patch(
            &format!("/api/v1/credentials/{in_safe}"),
            &bob,
            json!({"secret": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Remove bob from the group: read is gone again.
    s.delete("/api/v1/groups/ops/members/bob", &s.root).await;
    let (st, _) = s
        .get(&format!("/api/v1/credentials/{in_safe}/secret"), &bob)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Group ownership gives members everything.
    s.put("/api/v1/groups/ops/members/alice", &s.root, json!({}))
        .await;
    let owned = s
        .cred(
            &alice,
            json!({"name": "team", "secret": "t", "owner": {"type": "group", "name": "ops"}}),
        )
        .await;
    s.put("/api/v1/groups/ops/members/bob", &s.root, json!({}))
        .await;
    let (st, _) = s
        .get(&format!("/api/v1/credentials/{owned}/secret"), &bob)
        .await;
    assert_eq!(st, StatusCode::OK);
    // Ownership cannot be given to a group one is not in.
    let (st, _) = s
        .post("/api/v1/groups", &s.root, json!({"name": "other"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, e) = s
        .post(
            "/api/v1/credentials",
            &bob,
            json!({"name": "z", "owner": {"type": "group", "name": "other"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");

    // Denied secret reads are audited too.
    let (_, tail) = s.get("/api/v1/audit/tail?n=100", &s.root).await;
    assert!(tail["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["actor"] == "bob"
            && r["outcome"] == "denied"
            && r["action"] == "credential.read_secret"));
}

#[tokio::test]
async fn tokens_revocation_and_login() {
    let s = Server::dev().await;
    let carol = s.user("carol").await;
    let (st, me) = s.get("/api/v1/auth/self", &carol).await;
    assert_eq!((st, me["name"].clone()), (StatusCode::OK, json!("carol")));
    let (_, t) = s
        .post(
            "/api/v1/tokens",
            &carol,
            json!({"description": "ci", "ttl_seconds": 3600}),
        )
        .await;
    let second = t["token"].as_str().unwrap().to_owned();
    let tid = t["id"].as_str().unwrap().to_owned();
    assert!(t["expires_at"].is_string());
    let (st, _) = s.get("/api/v1/auth/self", &second).await;
    assert_eq!(st, StatusCode::OK);
    // Token listings never contain the token or its hash.
    let (_, list) = s.get("/api/v1/tokens", &carol).await;
    assert!(!list.to_string().contains(&second[4..]));
    let (st, _) = s.delete(&format!("/api/v1/tokens/{tid}"), &carol).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = s.get("/api/v1/auth/self", &second).await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let (st, _) = s.get("/api/v1/auth/self", &carol).await;
    assert_eq!(st, StatusCode::OK, "other tokens still work");
    let (st, _) = s
        .post("/api/v1/tokens", &carol, json!({"ttl_seconds": 0}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Deleting a user revokes its tokens.
    s.delete("/api/v1/users/carol", &s.root).await;
    let (st, _) = s.get("/api/v1/auth/self", &carol).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Password login for human users.
    let (st, _) = s
        .post(
            "/api/v1/users",
            &s.root,
            json!({"name": "dave", "password": "short"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .post(
            "/api/v1/users",
            &s.root,
            json!({"name": "dave", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, tok) = s
        .req(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "dave", "password": "a long enough password"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .get("/api/v1/auth/self", tok["token"].as_str().unwrap())
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .req(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "dave", "password": "wrong password!!"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .post(
            "/api/v1/users",
            &s.root,
            json!({"name": "svc", "kind": "service", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "service users get no password");
}

#[tokio::test]
async fn failed_authentication_is_rate_limited_per_source() {
    let s = Server::dev_with(|c| c.auth_failures_per_minute = 3).await;
    for _ in 0..3 {
        let (st, _) = s.get("/api/v1/auth/self", "cvt_wrong").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // The failure that goes over the quota is itself answered 429 (issue 16.8).
    let (st, e) = s.get("/api/v1/auth/self", "cvt_wrong").await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    // Now blocked, even with the right token.
    let (st, e) = s.get("/api/v1/auth/self", &s.root).await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
}

#[tokio::test]
async fn tampering_with_ciphertext_and_audit_is_detected() {
    let s = Server::dev().await;
    let a = s
        .cred(&s.root, json!({"name": "a", "secret": "secret-a"}))
        .await;
    let b = s
        .cred(&s.root, json!({"name": "b", "secret": "secret-b"}))
        .await;
    let db = s.db().await;
    // Move b's ciphertext into a's row: the AAD binds it to b, so a fails to decrypt.
    sqlx::query("UPDATE credential_versions SET payload = (SELECT payload FROM credential_versions WHERE cred_id = $1) WHERE cred_id = $2")
        .bind(&b)
        .bind(&a)
        .execute(&db)
        .await
        .unwrap();
    let (st, e) = s
        .get(&format!("/api/v1/credentials/{a}/secret"), &s.root)
        .await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::INTERNAL_SERVER_ERROR, "integrity_error")
    );
    assert!(!e.to_string().contains("secret-b"));
    let (st, ok) = s
        .get(&format!("/api/v1/credentials/{b}/secret"), &s.root)
        .await;
    assert_eq!(
        (st, ok["secret"].clone()),
        (StatusCode::OK, json!("secret-b"))
    );

    let (_, v) = s.post("/api/v1/audit/verify", &s.root, json!({})).await;
    assert_eq!(v["ok"], true, "{v}");
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        .execute(&db)
        .await
        .unwrap();
    let (_, v) = s.post("/api/v1/audit/verify", &s.root, json!({})).await;
    assert_eq!(
        (v["ok"].clone(), v["first_bad_seq"].clone()),
        (json!(false), json!(2)),
        "{v}"
    );
}

/// Rotation under load: writers and readers run through a rotation; nothing fails, every stored
/// value (every version, integration secrets too) ends under the new key, and the old key is
/// deleted once nothing uses it and the grace is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_rewraps_everything_and_retires_the_old_key() {
    let s = std::sync::Arc::new(
        Server::dev_with(|c| {
            c.key_retire_grace = std::time::Duration::from_secs(1);
            c.request_timeout = std::time::Duration::from_secs(1);
        })
        .await,
    );
    let r = s.root.clone();
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            s.cred(
                &r,
                json!({"name": format!("c{i}"), "secret": format!("s{i}-v1")}),
            )
            .await,
        );
    }
    let ids = std::sync::Arc::new(ids);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let (s, ids, stop, r) = (s.clone(), ids.clone(), stop.clone(), r.clone());
            tokio::spawn(async move {
                let (mut n, mut ops) = (w, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let i = (n >> 33) as usize % ids.len();
                    let id = &ids[i];
                    if w % 2 == 0 {
                        let (st, v) = s
                            .patch(
                                &format!("/api/v1/credentials/{id}"),
                                &r,
                                json!({"secret": format!("s{i}-w{w}-{ops}")}),
                            )
                            .await;
                        assert_eq!(st, StatusCode::OK, "write during rotation: {v}");
                    } else {
                        let (st, v) = s.get(&format!("/api/v1/credentials/{id}/secret"), &r).await;
                        assert_eq!(st, StatusCode::OK, "read during rotation: {v}");
                        assert!(v["secret"].as_str().unwrap().starts_with(&format!("s{i}-")));
                    }
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (st, rot) = s.post("/api/v1/sys/rotate", &r, json!({})).await;
    assert_eq!((st, rot["term"].clone()), (StatusCode::OK, json!(2)));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ops = 0;
    for w in workers {
        ops += w.await.unwrap();
    }
    assert!(ops > 40, "the load ran ({ops} operations)");

    // The background job retires term 1 once the grace is over and nothing uses it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, st) = s.get("/api/v1/sys/seal-status", &r).await;
        if st["key_terms"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old key retired: {st}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let db = s.db().await;
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM credential_versions")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(payloads.len() > 40);
    assert!(payloads
        .iter()
        .all(|p| u32::from_be_bytes([p[1], p[2], p[3], p[4]]) == 2));
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM keyring WHERE purpose = 'data'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // Every version of every credential still decrypts, the first ones too.
    for id in ids.iter() {
        let (st, v) = s
            .get(&format!("/api/v1/credentials/{id}/secret?version=1"), &r)
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert!(v["secret"].as_str().unwrap().ends_with("-v1"));
    }
    // A foreground pass has nothing left to do; the audit records the rewrap.
    let (st, p) = s.post("/api/v1/sys/rewrap", &r, json!({})).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(
        (
            p["rewrapped"].clone(),
            p["key_terms"].clone(),
            p["term"].clone()
        ),
        (json!(0), json!(1), json!(2))
    );
    let (_, tail) = s.get("/api/v1/audit/tail?n=50", &r).await;
    assert!(tail["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "sys.rewrap"));
    let (_, v) = s.post("/api/v1/audit/verify", &r, json!({})).await;
    assert_eq!(v["ok"], true, "{v}");
    let (st, _) = s
        .post("/api/v1/sys/rewrap", &s.user("nobody").await, json!({}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn rotation_keeps_old_records_readable() {
    let s = Server::dev().await;
    let old = s
        .cred(&s.root, json!({"name": "old", "secret": "before-rotation"}))
        .await;
    let (st, r) = s.post("/api/v1/sys/rotate", &s.root, json!({})).await;
    assert_eq!((st, r["term"].clone()), (StatusCode::OK, json!(2)));
    let new = s
        .cred(&s.root, json!({"name": "new", "secret": "after-rotation"}))
        .await;
    let db = s.db().await;
    let term = |id: String| {
        let db = db.clone();
        async move {
            let p: Vec<u8> =
                sqlx::query_scalar("SELECT payload FROM credential_versions WHERE cred_id = $1")
                    .bind(id)
                    .fetch_one(&db)
                    .await
                    .unwrap();
            u32::from_be_bytes([p[1], p[2], p[3], p[4]])
        }
    };
    // The old value is rewrapped under the new term in the background (right away or soon).
    assert!([1, 2].contains(&term(old.clone()).await));
    assert_eq!(term(new.clone()).await, 2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while term(old.clone()).await != 2 {
        assert!(std::time::Instant::now() < deadline, "old value rewrapped");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, a) = s
        .get(&format!("/api/v1/credentials/{old}/secret"), &s.root)
        .await;
    let (_, b) = s
        .get(&format!("/api/v1/credentials/{new}/secret"), &s.root)
        .await;
    assert_eq!(
        (a["secret"].clone(), b["secret"].clone()),
        (json!("before-rotation"), json!("after-rotation"))
    );
    let (st, _) = s
        .post("/api/v1/sys/rotate", &s.user("nobody").await, json!({}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_never_500() {
    let s = Server::dev_with(|c| c.max_body_bytes = 64 * 1024).await;
    let r = &s.root;
    let raw = |body: &'static str, ctype: Option<&'static str>| {
        let mut b = s
            .http
            .post(s.url("/api/v1/credentials"))
            .header("X-Vault-Token", r)
            .body(body);
        if let Some(c) = ctype {
            b = b.header("content-type", c);
        }
        async move {
            let resp = b.send().await.unwrap();
            let st = resp.status();
            (st, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, e) = raw("{not json", Some("application/json")).await;
    assert_eq!((st, code(&e)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (st, e) = raw(r#"{"name": 5}"#, Some("application/json")).await;
    assert_eq!((st, code(&e)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (st, e) = raw(
        r#"{"name": "x", "colour": "red"}"#,
        Some("application/json"),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("colour"),
        "{e}"
    );
    let (st, e) = raw(r#"{"name": "x"}"#, None).await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    // A secret in the wrong place is not echoed back.
    let (st, e) = raw(
        r#"{"name": "x", "tags": "hunter2-leak"}"#,
        Some("application/json"),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(!e.to_string().contains("hunter2-leak"), "{e}");

    let big = json!({"name": "big", "secret": "x".repeat(100 * 1024)});
    let (st, e) = s.post("/api/v1/credentials", r, big).await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    for (body, field) in [
        (json!({"name": ""}), "name"),
        (
            json!({"name": "x", "parameters": {"bad key": "v"}}),
            "parameters",
        ),
        (json!({"name": "x", "settings": [1, 2]}), "settings"),
        (
            json!({"name": "x", "properties": {"bad name": "v"}}),
            "properties",
        ),
        (json!({"name": "x", "safe": "no such safe!"}), "safe"),
        (json!({"name": "x\u{0007}"}), "name"),
        (
            json!({"name": "x", "owner": {"type": "user", "name": "ghost"}}),
            "owner",
        ),
    ] {
        let (st, e) = s.post("/api/v1/credentials", r, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{e}"
        );
    }
    // A malformed id or version: 400 in the native format, in plain words (not the router's).
    let (st, e) = s.get("/api/v1/credentials/not-a-uuid", r).await;
    assert_eq!((st, code(&e)), (StatusCode::BAD_REQUEST, "invalid_request"));
    assert_eq!(e["error"]["message"], "the id in the path must be a UUID");
    let unknown = uuid::Uuid::now_v7();
    let (st, e) = s
        .get(&format!("/api/v1/credentials/{unknown}/versions/x"), r)
        .await;
    assert_eq!(
        (st, e["error"]["message"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("path parameter 2 must be a whole number")
        )
    );
    for p in [
        format!("/api/v1/credentials/{unknown}"),
        format!("/api/v1/credentials/{unknown}/secret"),
    ] {
        let (st, e) = s.get(&p, r).await;
        assert_eq!((st, code(&e)), (StatusCode::NOT_FOUND, "not_found"));
    }
    let (st, _) = s.get("/api/v1/credentials?limit=0", r).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.get("/api/v1/credentials?bogus=1", r).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, e) = s
        .req(Method::PUT, "/api/v1/credentials", Some(r), Some(json!({})))
        .await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let (st, e) = s.get("/api/v1/nope", r).await;
    assert_eq!((st, code(&e)), (StatusCode::NOT_FOUND, "not_found"));
    let (st, e) = s.req(Method::GET, "/api/v1/credentials", None, None).await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let (st, _) = s.delete("/api/v1/users/ghost", r).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .post("/api/v1/safes", r, json!({"name": "bad name"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .put(
            "/api/v1/safes/none/members",
            r,
            json!({"type": "user", "name": "x", "permissions": ["list"]}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.post("/api/v1/safes", r, json!({"name": "s1"})).await;
    let (st, _) = s
        .put(
            "/api/v1/safes/s1/members",
            r,
            json!({"type": "user", "name": "ghost", "permissions": ["list"]}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.user("u1").await;
    let (st, e) = s
        .put(
            "/api/v1/safes/s1/members",
            r,
            json!({"type": "user", "name": "u1", "permissions": ["fly"]}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
}

#[tokio::test]
async fn concurrent_writers_lose_no_update_and_create_no_duplicate() {
    let s = Server::dev().await;
    let id: uuid::Uuid = s
        .cred(&s.root, json!({"name": "hot"}))
        .await
        .parse()
        .unwrap();
    // Direct calls on the server's `Vault` run on the server's runtime (see `Server::on_server`).
    let vault = s.running.vault.clone();
    let ctx = credvault_server::Ctx {
        actor: credvault_core::policy::Actor::root(),
        source: "test".into(),
        door: "test",
    };
    let results = s
        .on_server(async move {
            let tasks: Vec<_> = (0..20)
                .map(|i| {
                    let vault = vault.clone();
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        vault
                            .update_credential(&ctx, id, None, "update", move |_, p| {
                                p.parameters.insert(format!("k{i}"), format!("v{i}").into());
                                Ok(())
                            })
                            .await
                            .map(|_| ())
                    })
                })
                .collect();
            futures::future::join_all(tasks).await
        })
        .await;
    for t in results {
        t.unwrap().unwrap();
    }
    let (_, c) = s.get(&format!("/api/v1/credentials/{id}"), &s.root).await;
    assert_eq!(c["version"], 21);
    assert_eq!(
        c["parameter_names"].as_array().unwrap().len(),
        20,
        "every concurrent update kept"
    );

    // Many concurrent creates of one identifier: exactly one wins.
    let reqs: Vec<_> = (0..10)
        .map(|_| {
            s.post(
                "/api/v1/credentials",
                &s.root,
                json!({"name": "same", "identifier": "only-one"}),
            )
        })
        .collect();
    let results = futures::future::join_all(reqs).await;
    let created = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::CREATED)
        .count();
    let conflicts = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 9));
    let (_, l) = s
        .get("/api/v1/credentials?identifier=only-one", &s.root)
        .await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn restart_with_key_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("unseal.key");
    let (storage, _) = common::test_storage(&data).await;
    let (root, id) = {
        let mut cfg = common::config(data.clone());
        cfg.storage = storage.clone();
        let running = credvault_server::start(cfg).await.unwrap();
        let http = common::http_client();
        let init: Value = http
            .post(format!("{}/api/v1/sys/init", running.url()))
            .json(&json!({"shares": 1, "threshold": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        std::fs::write(&key_file, init["keys"][0].as_str().unwrap()).unwrap();
        let root = init["root_token"].as_str().unwrap().to_owned();
        http.post(format!("{}/api/v1/sys/unseal", running.url()))
            .json(&json!({"key": init["keys"][0]}))
            .send()
            .await
            .unwrap();
        let c: Value = http
            .post(format!("{}/api/v1/credentials", running.url()))
            .header("X-Vault-Token", &root)
            .json(&json!({"name": "persist", "secret": "still-here"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        running.shutdown().await;
        (root, c["id"].as_str().unwrap().to_owned())
    };
    let mut cfg = common::config(data);
    cfg.storage = storage;
    cfg.unseal_key_file = Some(key_file);
    let running = credvault_server::start(cfg).await.unwrap();
    let v: Value = common::http_client()
        .get(format!("{}/api/v1/credentials/{id}/secret", running.url()))
        .header("Authorization", format!("Bearer {root}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["secret"], "still-here");
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let s = Server::dev().await;
    let id = s.cred(&s.root, json!({"name": "m", "secret": "x"})).await;
    s.get(&format!("/api/v1/credentials/{id}/secret"), &s.root)
        .await;
    let m = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("credvault_http_requests_total"), "{m}");
    assert!(m.contains("credvault_secret_reads_total"));
    let (st, doc) = s.req(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/credentials/{id}/secret"]["get"].is_object());
    assert!(doc["components"]["schemas"]["CreateCredential"].is_object());
    assert!(
        doc["paths"]["/iso/pam/credential"]["post"].is_object(),
        "the A2A door is described"
    );
    assert!(doc["paths"]["/iso/oauth2/token"]["post"].is_object());
}

use common::Capture;

#[tokio::test]
async fn no_secret_reaches_logs_audit_errors_or_metrics() {
    let cap = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(cap.clone())
        .with_ansi(false)
        .init();

    let s = Server::dev().await;
    let secrets = [
        "S3cr3t-Value-0001",
        "Param-Value-0002",
        "Rotated-Value-0003",
        "Login-Password-0004",
    ];
    let id = s.cred(&s.root, json!({"name": "leak-check", "secret": secrets[0], "parameters": {"api_key": secrets[1]}})).await;
    s.patch(
        &format!("/api/v1/credentials/{id}"),
        &s.root,
        json!({"secret": secrets[2]}),
    )
    .await;
    let (_, r) = s
        .get(&format!("/api/v1/credentials/{id}/secret"), &s.root)
        .await;
    assert_eq!(r["secret"], secrets[2]);
    s.get(
        &format!("/api/v1/credentials/{id}/secret?version=1"),
        &s.root,
    )
    .await;
    s.post(
        &format!("/api/v1/credentials/{id}/rollback"),
        &s.root,
        json!({"version": 1}),
    )
    .await;
    s.post(
        "/api/v1/users",
        &s.root,
        json!({"name": "logger", "password": secrets[3]}),
    )
    .await;
    let (_, t) = s
        .req(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "logger", "password": secrets[3]})),
        )
        .await;
    let login_token = t["token"].as_str().unwrap().to_owned();
    let (_, t) = s
        .post("/api/v1/tokens", &s.root, json!({"user": "logger"}))
        .await;
    let api_token = t["token"].as_str().unwrap().to_owned();
    // Failure paths: wrong types and a tampered row.
    s.post(
        "/api/v1/credentials",
        &s.root,
        json!({"name": "x", "tags": secrets[0]}),
    )
    .await;
    s.req(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "logger", "password": secrets[0]})),
    )
    .await;
    let db = s.db().await;
    sqlx::query("UPDATE credential_versions SET payload = $1 WHERE version = 2")
        .bind(vec![0u8])
        .execute(&db)
        .await
        .unwrap();
    s.get(
        &format!("/api/v1/credentials/{id}/secret?version=2"),
        &s.root,
    )
    .await;

    // The CCP door, including request and response logging at trace level (the seed's masking rule).
    s.post("/api/v1/safes", &s.root, json!({"name": "LeakSafe"}))
        .await;
    s.cred(&s.root, json!({"name": "ccp-leak", "username": "svc", "safe": "LeakSafe", "secret": "Ccp-Content-0005"})).await;
    s.post("/api/v1/apps", &s.root, json!({"app_id": "LeakApp", "sources": ["127.0.0.1"], "header_secret": "Header-Secret-0006"})).await;
    s.post(
        "/api/v1/apps/LeakApp/allow",
        &s.root,
        json!({"type": "safe", "name": "LeakSafe"}),
    )
    .await;
    let ccp = s
        .http
        .get(s.url("/AIMWebService/api/Accounts?AppID=LeakApp&Query=UserName%3Dsvc"))
        .header("X-CCP-App-Secret", "Header-Secret-0006")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(ccp["Content"], "Ccp-Content-0005");
    let (_, audit) = s.get("/api/v1/audit/tail?n=1000", &s.root).await;
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let unseal_key = std::fs::read_to_string(s.dir.path().join("data/dev-unseal.key")).unwrap();
    let logs = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace-level logs were captured"
    );
    assert!(
        logs.contains("/api/v1/credentials"),
        "request logging was on"
    );
    assert!(
        logs.contains("/AIMWebService/api/Accounts"),
        "the CCP request was logged too"
    );
    let needles: Vec<&str> = secrets
        .iter()
        .copied()
        .chain([
            s.root.as_str(),
            &login_token,
            &api_token,
            unseal_key.trim(),
            "Ccp-Content-0005",
            "Header-Secret-0006",
        ])
        .collect();
    for n in needles {
        assert!(!logs.contains(n), "a secret reached the logs");
        assert!(
            !audit.to_string().contains(n),
            "a secret reached the audit log"
        );
        assert!(!metrics.contains(n), "a secret reached the metrics");
    }
}

#[tokio::test]
async fn https_with_configured_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cp, kp) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cp, cert.cert.pem()).unwrap();
    std::fs::write(&kp, cert.signing_key.serialize_pem()).unwrap();
    let s = Server::dev_with(|c| {
        c.tls_cert = Some(cp.clone());
        c.tls_key = Some(kp.clone());
    })
    .await;
    assert!(s.running.https);
    let client = reqwest::Client::builder()
        .timeout(common::HTTP_TIMEOUT)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", s.running.addr)
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{}/api/v1/auth/self",
        s.running.addr.port()
    );
    let me: Value = client
        .get(&url)
        .bearer_auth(&s.root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "root");
    // Plain HTTP to the TLS port does not get an answer.
    let plain = reqwest::get(format!("http://{}/api/v1/sys/health", s.running.addr)).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // Only one of certificate and key: a clear start-up error.
    let dir2 = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir2.path().join("data"));
    cfg.tls_cert = Some(cp.clone());
    let err = credvault_server::start(cfg).await.err().expect("refused");
    assert!(err.to_string().contains("both"), "{err}");
}

#[tokio::test]
async fn audit_failure_fails_closed() {
    let s = Server::dev().await;
    let id = s
        .cred(
            &s.root,
            json!({"name": "guarded", "secret": "must-not-leak"}),
        )
        .await;
    // Inject a real storage fault: the audit table now rejects every insert.
    let db = s.db().await;
    if s.is_postgres() {
        sqlx::query("CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit disk full'; END $$ LANGUAGE plpgsql")
            .execute(&db)
            .await
            .unwrap();
        sqlx::query("CREATE TRIGGER no_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION no_audit()").execute(&db).await.unwrap();
    } else {
        sqlx::query("CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit disk full'); END")
            .execute(&db)
            .await
            .unwrap();
    }
    let (st, e) = s
        .get(&format!("/api/v1/credentials/{id}/secret"), &s.root)
        .await;
    assert_eq!(
        (st, code(&e)),
        (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
        "{e}"
    );
    assert!(!e.to_string().contains("must-not-leak"));
    // Once the audit log is writable again, reads work again.
    let drop = if s.is_postgres() {
        "DROP TRIGGER no_audit ON audit_log"
    } else {
        "DROP TRIGGER no_audit"
    };
    sqlx::query(drop).execute(&db).await.unwrap();
    let (st, r) = s
        .get(&format!("/api/v1/credentials/{id}/secret"), &s.root)
        .await;
    assert_eq!(
        (st, r["secret"].clone()),
        (StatusCode::OK, json!("must-not-leak"))
    );
    let (_, v) = s.post("/api/v1/audit/verify", &s.root, json!({})).await;
    assert_eq!(v["ok"], true, "the chain is still whole: {v}");
}

/// A second server on the first one's database (same SQLite file, or same PostgreSQL database),
/// unsealing itself with the first one's dev key.
async fn second_server(a: &Server) -> Server {
    let data = a.dir.path().join("data");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(data.clone());
    cfg.storage = if a.is_postgres() {
        credvault_server::Storage::Postgres {
            url: a.db_url.as_str().into(),
        }
    } else {
        credvault_server::Storage::Sqlite
    };
    cfg.unseal_key_file = Some(data.join("dev-unseal.key"));
    Server::start(cfg, dir, a.root.clone(), a.db_url.clone()).await
}

#[tokio::test]
async fn bulk_import_is_all_or_nothing_and_audited() {
    let s = Server::dev().await;
    let r = &s.root;
    s.post("/api/v1/safes", r, json!({"name": "Bulk"})).await;
    let items: Vec<Value> = (0..250)
        .map(|i| json!({"name": format!("c{i}"), "username": format!("user{i}"), "safe": "Bulk", "secret": format!("bulk-{i}")}))
        .collect();
    let (st, b) = s
        .post(
            "/api/v1/credentials/import",
            r,
            json!({"credentials": items}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let ids = b["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 250);
    let (_, sec) = s
        .get(
            &format!("/api/v1/credentials/{}/secret", ids[7].as_str().unwrap()),
            r,
        )
        .await;
    assert_eq!(sec["secret"], "bulk-7");

    // One bad item (the 3rd) refuses the whole batch, naming it; nothing is stored.
    let bad = json!({"credentials": [
        {"name": "ok-1", "safe": "Bulk"}, {"name": "ok-2", "safe": "Bulk"}, {"name": "", "safe": "Bulk"}]});
    let (st, e) = s.post("/api/v1/credentials/import", r, bad).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("credentials[2]"),
        "{e}"
    );
    // A duplicate identifier (a store constraint) also rolls everything back.
    let dup = json!({"credentials": [
        {"name": "d1", "identifier": "same-id"}, {"name": "d2", "identifier": "same-id"}]});
    let (st, _) = s.post("/api/v1/credentials/import", r, dup).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, l) = s.get("/api/v1/credentials?limit=1000", r).await;
    let names: Vec<&str> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(!names.contains(&"ok-1") && !names.contains(&"d1"));
    // Limits, and placement: a user without write on the safe imports nothing into it.
    let (st, _) = s
        .post("/api/v1/credentials/import", r, json!({"credentials": []}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"name": format!("m{i}")}))
        .collect();
    let (st, _) = s
        .post(
            "/api/v1/credentials/import",
            r,
            json!({"credentials": many}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let alice = s.user("alice").await;
    let (st, _) = s
        .post(
            "/api/v1/credentials/import",
            &alice,
            json!({"credentials": [{"name": "x", "safe": "Bulk"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // One audit record per imported credential; no secret in them.
    let (_, tail) = s.get("/api/v1/audit/tail?n=300", r).await;
    let creates = tail["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "credential.create")
        .count();
    assert_eq!(creates, 250);
    assert!(!tail.to_string().contains("bulk-7"));
    let (_, v) = s.post("/api/v1/audit/verify", r, json!({})).await;
    assert_eq!(v["ok"], true);
}

/// Issue 4: the application authorisation cache. A change on one server reaches the other's cache
/// through the change epoch; a change on the same server applies at once.
#[tokio::test]
async fn app_authorisation_cache_follows_changes_on_every_server() {
    let a = Server::dev().await;
    let b = second_server(&a).await;
    let r = &a.root;
    a.post("/api/v1/safes", r, json!({"name": "Pay"})).await;
    a.cred(
        r,
        json!({"name": "pay-db", "username": "pay", "safe": "Pay", "secret": "cached-pw"}),
    )
    .await;
    a.post(
        "/api/v1/apps",
        r,
        json!({"app_id": "Billing", "sources": ["127.0.0.0/8"]}),
    )
    .await;
    a.post(
        "/api/v1/apps/Billing/allow",
        r,
        json!({"type": "safe", "name": "Pay"}),
    )
    .await;
    let read = |s: &Server| {
        let url = s.url("/AIMWebService/api/Accounts?AppID=Billing&Object=pay-db");
        let http = s.http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    };
    // Within `deadline`, does `s` answer `want`? (The other server sees a change within one poll.)
    async fn eventually<F, Fut>(mut f: F, want: StatusCode) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = StatusCode>,
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if f().await == want {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }
    // Warm both caches.
    for _ in 0..3 {
        assert_eq!(read(&a).await, StatusCode::OK);
        assert_eq!(read(&b).await, StatusCode::OK);
    }
    // Denied on A: A refuses at once; B refuses once it has seen the epoch move.
    a.post(
        "/api/v1/apps/Billing/deny",
        r,
        json!({"type": "safe", "name": "Pay"}),
    )
    .await;
    assert_eq!(read(&a).await, StatusCode::NOT_FOUND);
    assert!(
        eventually(|| read(&b), StatusCode::NOT_FOUND).await,
        "B kept a stale grant"
    );
    // Allowed again on B: both serve again.
    b.post(
        "/api/v1/apps/Billing/allow",
        r,
        json!({"type": "safe", "name": "Pay"}),
    )
    .await;
    assert_eq!(read(&b).await, StatusCode::OK);
    assert!(eventually(|| read(&a), StatusCode::OK).await);
    // Deleted on B: unknown everywhere.
    b.delete("/api/v1/apps/Billing", r).await;
    assert_eq!(read(&b).await, StatusCode::FORBIDDEN);
    assert!(
        eventually(|| read(&a), StatusCode::FORBIDDEN).await,
        "A kept a deleted app"
    );
}

#[tokio::test]
async fn two_servers_on_one_database_behave_as_one_vault() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let a = Server::dev().await;
    let b = second_server(&a).await;
    let r = &a.root;

    // Written through A, read through B at once (no cache to go stale).
    let id = a.cred(r, json!({"name": "shared", "secret": "one"})).await;
    let (st, s1) = b.get(&format!("/api/v1/credentials/{id}/secret"), r).await;
    assert_eq!((st, s1["secret"].clone()), (StatusCode::OK, json!("one")));
    b.patch(
        &format!("/api/v1/credentials/{id}"),
        r,
        json!({"secret": "two"}),
    )
    .await;
    let (_, s2) = a.get(&format!("/api/v1/credentials/{id}/secret"), r).await;
    assert_eq!(s2["secret"], "two");
    // Tokens and users are shared too.
    let tok = a.user("shared-user").await;
    let (st, _) = b.get("/api/v1/auth/self", &tok).await;
    assert_eq!(st, StatusCode::OK);

    // Each server caches what it read (service/src/cache.rs); a change made through the other
    // server reaches those caches within the change feed's poll (200 ms): a changed secret and a
    // revoked token, both just read (and cached) by B.
    let secret = format!("/api/v1/credentials/{id}/secret");
    let (_, t) = a
        .post("/api/v1/tokens", r, json!({"user": "shared-user"}))
        .await;
    let (tok2, tid) = (t["token"].as_str().unwrap(), t["id"].as_str().unwrap());
    assert_eq!(b.get("/api/v1/auth/self", tok2).await.0, StatusCode::OK);
    assert_eq!(b.get(&secret, r).await.1["secret"], "two");
    a.patch(
        &format!("/api/v1/credentials/{id}"),
        r,
        json!({"secret": "three"}),
    )
    .await;
    a.delete(&format!("/api/v1/tokens/{tid}"), r).await;
    let since = std::time::Instant::now();
    loop {
        let fresh = b.get(&secret, r).await.1["secret"] == "three";
        let refused = b.get("/api/v1/auth/self", tok2).await.0 == StatusCode::UNAUTHORIZED;
        if fresh && refused {
            break;
        }
        assert!(
            since.elapsed() < std::time::Duration::from_secs(3),
            "B still serves what A changed 3 s ago (fresh value: {fresh}, token refused: {refused})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The seal is per server.
    b.post("/api/v1/sys/seal", r, json!({})).await;
    let (st, _) = b.get("/api/v1/auth/self", r).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let (st, _) = a.get("/api/v1/auth/self", r).await;
    assert_eq!(st, StatusCode::OK);
    let key = std::fs::read_to_string(a.dir.path().join("data/dev-unseal.key")).unwrap();
    let (_, p) = b
        .req(
            Method::POST,
            "/api/v1/sys/unseal",
            None,
            Some(json!({"key": key.trim()})),
        )
        .await;
    assert_eq!(p["sealed"], false);

    // A rotates; B reads A's new values and writes with the new term too, without a restart.
    let (_, rot) = a.post("/api/v1/sys/rotate", r, json!({})).await;
    assert_eq!(rot["term"], 2);
    let after = a
        .cred(r, json!({"name": "after", "secret": "new-term"}))
        .await;
    let (st, v) = b
        .get(&format!("/api/v1/credentials/{after}/secret"), r)
        .await;
    assert_eq!(
        (st, v["secret"].clone()),
        (StatusCode::OK, json!("new-term"))
    );
    let from_b = b.cred(r, json!({"name": "from-b", "secret": "b"})).await;
    let db = a.db().await;
    let p: Vec<u8> =
        sqlx::query_scalar("SELECT payload FROM credential_versions WHERE cred_id = $1")
            .bind(&from_b)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        u32::from_be_bytes([p[1], p[2], p[3], p[4]]),
        2,
        "B writes with A's new term"
    );

    // Concurrent updates of one credential through both servers: none lost.
    let hot: uuid::Uuid = a.cred(r, json!({"name": "hot"})).await.parse().unwrap();
    let ctx = credvault_server::Ctx {
        actor: credvault_core::policy::Actor::root(),
        source: "test".into(),
        door: "test",
    };
    // Each server's `Vault` is driven on that server's own runtime (see `Server::on_server`).
    let mut calls = Vec::new();
    for i in 0..30 {
        let s = if i % 2 == 0 { &a } else { &b };
        let vault = s.running.vault.clone();
        let ctx = ctx.clone();
        calls.push(s.on_server(async move {
            vault
                .update_credential(&ctx, hot, None, "update", move |_, p| {
                    p.parameters.insert(format!("k{i}"), format!("v{i}").into());
                    Ok(())
                })
                .await
                .map(|_| ())
        }));
    }
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    let (_, c) = b.get(&format!("/api/v1/credentials/{hot}"), r).await;
    assert_eq!(c["version"], 31);
    assert_eq!(c["parameter_names"].as_array().unwrap().len(), 30);

    // Concurrent creates of one identifier through both: exactly one.
    let reqs: Vec<_> = (0..10)
        .map(|i| {
            let s = if i % 2 == 0 { &a } else { &b };
            s.post(
                "/api/v1/credentials",
                r,
                json!({"name": "x", "identifier": "unique-across"}),
            )
        })
        .collect();
    let created = futures::future::join_all(reqs)
        .await
        .iter()
        .filter(|(st, _)| *st == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1);

    // Both servers appended to the audit log at once: still one valid chain.
    let (_, v) = b.post("/api/v1/audit/verify", r, json!({})).await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["records"].as_i64().unwrap() > 30, "{v}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL binaries: run by the PostgreSQL phase of scripts/test (--run-ignored all)"]
async fn postgres_outage_answers_503_then_recovers_without_losing_acknowledged_writes() {
    let cluster = common::PgCluster::start_new();
    let s = Server::dev_with(|c| {
        c.storage = credvault_server::Storage::Postgres {
            url: cluster.url().as_str().into(),
        }
    })
    .await;
    let root = s.root.clone();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, url, root, stop) = (
            s.http.clone(),
            s.url("/api/v1/credentials"),
            root.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), 0usize);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let secret = format!("w{w}-{i}");
                let resp = http
                    .post(&url)
                    .header("X-Vault-Token", &root)
                    .json(&json!({"name": secret, "secret": secret}))
                    .send()
                    .await
                    .unwrap();
                let st = resp.status();
                let body: Value = resp.json().await.unwrap();
                match st {
                    StatusCode::CREATED => {
                        acked.push((body["id"].as_str().unwrap().to_owned(), secret))
                    }
                    StatusCode::SERVICE_UNAVAILABLE => refused += 1,
                    other => panic!("unexpected {other}: {body}"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            (acked, refused)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cluster.crash();
    // Meanwhile: a clear 503, never a 500 or a panic.
    let (st, e) = s.get("/api/v1/credentials", &root).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unavailable"),
        "{e}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cluster.start();
    // It recovers by itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (st, _) = s.get("/api/v1/auth/self", &root).await;
        if st == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not recover: {st}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_acked = 0;
    let mut total_refused = 0;
    for w in writers {
        let (acked, refused) = w.await.unwrap();
        total_refused += refused;
        for (id, secret) in &acked {
            let (st, v) = s
                .get(&format!("/api/v1/credentials/{id}/secret"), &root)
                .await;
            assert_eq!(
                (st, v["secret"].as_str()),
                (StatusCode::OK, Some(secret.as_str())),
                "acknowledged write lost"
            );
        }
        total_acked += acked.len();
    }
    assert!(
        total_acked > 20,
        "load ran before and after the outage: {total_acked}"
    );
    assert!(total_refused > 0, "the outage was seen by the writers");
    let (_, v) = s.post("/api/v1/audit/verify", &root, json!({})).await;
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by the PostgreSQL phase of scripts/test (--run-ignored all)"]
async fn servers_starting_together_migrate_one_fresh_database_safely() {
    assert!(
        common::postgres_admin_url().is_some(),
        "set CREDVAULT_TEST_DATABASE_URL"
    );
    let dir = tempfile::tempdir().unwrap();
    let (storage, _) = common::test_storage(dir.path()).await;
    let start = |n: usize| {
        let mut cfg = common::config(dir.path().join(format!("s{n}")));
        cfg.storage = storage.clone();
        credvault_server::start(cfg)
    };
    let (a, b, c) = tokio::join!(start(1), start(2), start(3));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    // One initialisation through any of them is seen by all.
    let http = common::http_client();
    let init = http
        .post(format!("{}/api/v1/sys/init", b.url()))
        .json(&json!({"shares": 1, "threshold": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    for s in [&a, &c] {
        let h: Value = http
            .get(format!("{}/api/v1/sys/health", s.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (h["initialized"].clone(), h["sealed"].clone()),
            (json!(true), json!(true))
        );
    }
}

/// The suite-wide leak check (`common::Server`'s drop) is live: a stored secret that reaches the
/// logs fails the test.
#[tokio::test]
#[should_panic(expected = "secrets leaked")]
async fn the_leak_check_catches_a_stored_secret_in_the_logs() {
    let s = Server::dev().await;
    s.cred(
        &s.root,
        json!({"name": "canary", "secret": "canary-secret-0451"}),
    )
    .await;
    tracing::info!("a careless line: canary-secret-0451");
}

/// ... and one that comes back in an error body.
#[tokio::test]
#[should_panic(expected = "came back in an error body")]
async fn the_leak_check_catches_a_sent_secret_in_an_error_body() {
    let s = Server::dev().await;
    // Simulate the mistake by sending the secret where the server rightly echoes a name: as the
    // name of a safe that does not exist ("no safe '...'").
    s.req(
        Method::POST,
        "/api/v1/credentials",
        Some(&s.root),
        Some(json!({"name": "x", "secret": "echo-me-secret-77"})),
    )
    .await;
    let (st, _) = s
        .req(
            Method::POST,
            "/api/v1/credentials",
            Some(&s.root),
            Some(json!({"name": "y", "safe": "echo-me-secret-77"})),
        )
        .await;
    assert!(st.is_client_error(), "{st}");
}

/// Issue 16.4: the metrics' labels are bounded whatever a client sends: invented methods all count
/// as `OTHER`, unknown paths as `unmatched`.
#[tokio::test]
async fn metrics_labels_stay_bounded_whatever_clients_send() {
    let s = Server::dev().await;
    for i in 0..40 {
        let method = Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let resp = s
            .http
            .request(method, s.url(&format!("/nowhere/{i}")))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("INVENTED"),
        "a client-chosen method became a label"
    );
    assert!(
        !metrics.contains("/nowhere/"),
        "a client-chosen path became a label"
    );
    assert!(
        metrics.contains("method=\"OTHER\""),
        "invented methods count as OTHER"
    );
}

/// Issue 16.7: in production mode the data directory is 0700 and every database file 0600, the
/// write-ahead log and shared-memory files included.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let running = credvault_server::start(common::config(data.clone()))
        .await
        .unwrap();
    let (st, _) = {
        let r = common::http_client()
            .post(format!("{}/api/v1/sys/init", running.url()))
            .json(&json!({"shares": 1, "threshold": 1}))
            .send()
            .await
            .unwrap();
        (r.status(), ())
    };
    assert_eq!(st, StatusCode::OK, "init writes to the database");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data directory");
    let mut files = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("credvault.db")
        {
            files += 1;
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    assert!(files >= 2, "the database and its write-ahead log");
    running.shutdown().await;
}

/// Issue 16.10: a body over the limit is refused with 413, and a malformed path with 400, in each
/// door's own error format.
#[tokio::test]
async fn oversized_bodies_are_refused_in_each_doors_format() {
    let s = Server::dev_with(|c| c.max_body_bytes = 1024).await;
    let big = json!({"data": {"pw": "x".repeat(4096)}});
    let send = |path: &'static str, auth: &'static str| {
        let r = s.http.post(s.url(path)).json(&big);
        match auth {
            "vault" => r.header("X-Vault-Token", &s.root),
            _ => r.header("Authorization", &s.root),
        }
    };
    type Shaped = fn(&Value) -> bool;
    let cases: [(&str, &str, Shaped); 3] = [
        ("/v1/secret/data/big", "vault", |v| v["errors"].is_array()),
        ("/api/credentials/for/BigPkg", "key", |v| {
            v["error"]["code"] == "payload_too_large"
        }),
        ("/api/v1/credentials", "vault", |v| {
            v["error"]["code"].is_string()
        }),
    ];
    for (path, auth, shaped) in cases {
        let resp = send(path, auth).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let text = resp.text().await.unwrap();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
        assert!(shaped(&v), "{path}: {v}");
    }
    // A path that is not UTF-8 once decoded, in each door's format.
    let malformed: [(&str, Shaped); 4] = [
        ("/v1/secret/data/%FF%FE", |v| v["errors"].is_array()),
        ("/api/credentials/for/%FF", |v| {
            v["error"]["code"] == "invalid_request"
        }),
        ("/api/v1/credentials/%FF/secret", |v| {
            v["error"]["code"] == "invalid_request"
        }),
        ("/iso/pam/credential/%FF", |v| {
            v["exception"]["code"] == 1000
        }),
    ];
    for (path, shaped) in malformed {
        let resp = s
            .http
            .get(s.url(path))
            .header("X-Vault-Token", &s.root)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        let text = resp.text().await.unwrap();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
        assert!(shaped(&v), "{path}: {v}");
    }
}
