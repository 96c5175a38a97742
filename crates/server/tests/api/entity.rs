//! Entity credentials (issue 6): packages and connections, owners, API keys, service users.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::Server;

/// A user of `kind` and an API key for it.
async fn key_for(s: &Server, name: &str, kind: &str) -> String {
    let (st, u) = s
        .post(
            "/api/v1/users",
            &s.root,
            json!({"name": name, "kind": kind}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    let (st, t) = s
        .post(
            "/api/v1/tokens",
            &s.root,
            json!({"user": name, "description": "api key"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    t["token"].as_str().unwrap().to_owned()
}

/// A request with the API key as the bare `Authorization` header, as the seed's client sends it.
async fn call(
    s: &Server,
    method: Method,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut r = s
        .http
        .request(method, s.url(path))
        .header("Authorization", key);
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

async fn set(s: &Server, entity: &str, key: &str, body: &str) -> (StatusCode, Value) {
    call(
        s,
        Method::POST,
        &format!("/api/credentials/for/{entity}"),
        key,
        Some(body),
    )
    .await
}

async fn get(s: &Server, entity: &str, key: &str) -> (StatusCode, Value) {
    call(
        s,
        Method::GET,
        &format!("/api/credentials/for/{entity}"),
        key,
        None,
    )
    .await
}

#[tokio::test]
async fn package_credentials_default_to_all_users_and_only_the_writer_changes_them() {
    let s = Server::dev().await;
    let svc = key_for(&s, "nlp-deployer", "service").await;
    let bob = key_for(&s, "bob", "human").await;

    // Not set yet: null.
    assert_eq!(get(&s, "NLP", &svc).await, (StatusCode::OK, Value::Null));
    let (st, r) = set(
        &s,
        "NLP",
        &svc,
        r#"{"accessKeyId": "AKIA1", "secretAccessKey": "ent-secret-1"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (st, g) = get(&s, "NLP", &svc).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        g,
        json!({"parameters": {"accessKeyId": "AKIA1", "secretAccessKey": "ent-secret-1"}})
    );
    // Owned by all users: bob reads it too (Bearer works as well as the bare key).
    let resp = s
        .http
        .get(s.url("/api/credentials/for/NLP"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["parameters"]["secretAccessKey"], "ent-secret-1");

    // ...but all-users shares reading, never writing: bob can neither overwrite nor take it over.
    let (st, _) = set(&s, "NLP", &bob, r#"{"accessKeyId": "mine"}"#).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(
        &s,
        Method::POST,
        "/api/credentials/for/NLP?owner=user:bob",
        &bob,
        Some("{}"),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let id = r["id"].as_str().unwrap().to_owned();
    let (st, _) = s
        .patch(
            &format!("/api/v1/credentials/{id}"),
            &bob,
            json!({"owner": {"type": "user", "name": "bob"}}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The writer updates: a new version.
    let (st, r2) = set(
        &s,
        "NLP",
        &svc,
        r#"{"accessKeyId": "AKIA2", "secretAccessKey": "ent-secret-2"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r2["version"], 2);
    assert_eq!(
        get(&s, "NLP", &bob).await.1["parameters"]["accessKeyId"],
        "AKIA2"
    );

    // Package and package.connection are different entities.
    assert_eq!(get(&s, "NLP.Athena", &svc).await.1, Value::Null);
    set(
        &s,
        "NLP.Athena",
        &svc,
        r#"{"login": "athena", "password": "conn-pw"}"#,
    )
    .await;
    assert_eq!(
        get(&s, "NLP.Athena", &svc).await.1["parameters"]["login"],
        "athena"
    );
    assert_eq!(
        get(&s, "NLP", &svc).await.1["parameters"].get("login"),
        None
    );
    assert_eq!(get(&s, "Other", &svc).await.1, Value::Null);

    // A group named all-users cannot be made.
    let (st, _) = s
        .post("/api/v1/groups", &s.root, json!({"name": "all-users"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let (_, tail) = s.get("/api/v1/audit/tail?n=100", &s.root).await;
    let tail = tail.to_string();
    assert!(tail.contains("\"entity\""));
    assert!(!tail.contains("ent-secret"));
}

#[tokio::test]
async fn owner_group_membership_decides_who_reads() {
    let s = Server::dev().await;
    let alice = key_for(&s, "alice", "human").await;
    let carol = key_for(&s, "carol", "human").await;
    s.post("/api/v1/groups", &s.root, json!({"name": "team"}))
        .await;
    s.put("/api/v1/groups/team/members/alice", &s.root, json!({}))
        .await;

    // Only to itself or a group it is in.
    let (st, e) = call(
        &s,
        Method::POST,
        "/api/credentials/for/DB.Prod?owner=group:admins",
        &alice,
        Some(r#"{"p": "x"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (st, _) = call(
        &s,
        Method::POST,
        "/api/credentials/for/DB.Prod?owner=group:team",
        &alice,
        Some(r#"{"password": "team-only"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        get(&s, "DB.Prod", &alice).await.1["parameters"]["password"],
        "team-only"
    );
    // A non-member: the same answer as "not set".
    assert_eq!(
        get(&s, "DB.Prod", &carol).await,
        (StatusCode::OK, Value::Null)
    );
    let (st, _) = set(&s, "DB.Prod", &carol, r#"{"password": "carols"}"#).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Membership added: reads. Removed: null again.
    s.put("/api/v1/groups/team/members/carol", &s.root, json!({}))
        .await;
    assert_eq!(
        get(&s, "DB.Prod", &carol).await.1["parameters"]["password"],
        "team-only"
    );
    s.delete("/api/v1/groups/team/members/carol", &s.root).await;
    assert_eq!(get(&s, "DB.Prod", &carol).await.1, Value::Null);
    // The denied read is audited.
    let (_, tail) = s.get("/api/v1/audit/tail?n=50", &s.root).await;
    assert!(tail.to_string().contains("denied"));
}

#[tokio::test]
async fn service_user_keys_revoked_expired_and_bad_input() {
    let s = Server::dev().await;
    let svc = key_for(&s, "deployer", "service").await;
    let (_, tokens) = s.get("/api/v1/tokens", &s.root).await;
    let key_id = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["user"] == "deployer")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        set(&s, "Pkg", &svc, r#"{"k": "v"}"#).await.0,
        StatusCode::OK
    );

    for (body, needle) in [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (r#""text""#, "JSON object"),
        (r#"{"n": 5}"#, "must be a string"),
        (r#"{"": "v"}"#, "key"),
        (r#"{"bad key": "v"}"#, "key"),
        (&format!(r#"{{"{}": "v"}}"#, "k".repeat(300)), "key"),
    ] {
        let (st, e) = set(&s, "Pkg", &svc, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(needle),
            "{body}: {e}"
        );
    }
    let many: serde_json::Map<String, Value> =
        (0..200).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (st, _) = set(&s, "Pkg", &svc, &Value::Object(many).to_string()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    for entity in ["a.b.c", "bad%20name", ".x", "x."] {
        let (st, e) = get(&s, entity, &svc).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{entity}: {e}");
    }
    // A failed write leaves nothing half-written.
    assert_eq!(
        get(&s, "Pkg", &svc).await.1,
        json!({"parameters": {"k": "v"}})
    );

    // No key, a wrong key: 401. A revoked key: 401.
    let (st, _) = s
        .req(Method::GET, "/api/credentials/for/Pkg", None, None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&s, "Pkg", "cvt_wrong").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = s.delete(&format!("/api/v1/tokens/{key_id}"), &s.root).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(get(&s, "Pkg", &svc).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn public_rest_form_save_read_delete() {
    let s = Server::dev().await;
    let svc = key_for(&s, "deployer", "service").await;
    let carol = key_for(&s, "carol", "human").await;
    let (st, saved) = call(
        &s,
        Method::POST,
        "/api/public/v1/credentials",
        &svc,
        Some(r#"{"entityBindId": "Chem.Oracle", "parameters": {"login": "chem", "password": "pub-pw"}, "group": {"name": "deployer", "type": "user"}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{saved}");
    assert_eq!(saved["entityBindId"], "Chem.Oracle");
    assert_eq!(saved["parameters"]["password"], "pub-pw");
    assert_eq!(
        saved["openParameters"],
        json!({"login": "***", "password": "***"})
    );
    assert_eq!(
        saved["group"],
        json!({"name": "deployer", "friendlyName": "deployer", "personal": true, "type": "user"})
    );
    let (_, g) = call(
        &s,
        Method::GET,
        "/api/public/v1/credentials/for/Chem.Oracle",
        &svc,
        None,
    )
    .await;
    assert_eq!(g["id"], saved["id"]);
    // The legacy form reads the same data; someone else reads nothing.
    assert_eq!(
        get(&s, "Chem.Oracle", &svc).await.1["parameters"]["login"],
        "chem"
    );
    let (st, g) = call(
        &s,
        Method::GET,
        "/api/public/v1/credentials/for/Chem.Oracle",
        &carol,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{g}");
    let id = saved["id"].as_str().unwrap();
    let (st, _) = call(
        &s,
        Method::DELETE,
        &format!("/api/public/v1/credentials/{id}"),
        &carol,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    for bad in [
        r#"{"parameters": {"a": "b"}}"#,
        r#"{"entityBindId": "X", "parameters": {"a": 1}}"#,
        r#"{"entityBindId": "X", "parameters": {}, "surprise": true}"#,
    ] {
        let (st, _) = call(
            &s,
            Method::POST,
            "/api/public/v1/credentials",
            &svc,
            Some(bad),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (st, _) = call(
        &s,
        Method::DELETE,
        &format!("/api/public/v1/credentials/{id}"),
        &svc,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(get(&s, "Chem.Oracle", &svc).await.1, Value::Null);
    // Only entity credentials can be deleted through this door.
    let other = s
        .cred(&s.root, json!({"name": "plain", "secret": "x"}))
        .await;
    let (st, _) = call(
        &s,
        Method::DELETE,
        &format!("/api/public/v1/credentials/{other}"),
        &s.root,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// Issue 14: a connection `PKG.CONN` lives in its package's namespace. Under an existing package only
/// someone who may write the package makes one; one made before the package by someone who may not
/// write it reads as not set and the package's writers replace it.
#[tokio::test]
async fn connections_cannot_be_squatted_under_anothers_package() {
    let s = Server::dev().await;
    let svc = key_for(&s, "deployer", "service").await;
    let eve = key_for(&s, "eve", "human").await;
    let bob = key_for(&s, "bob", "human").await;

    assert_eq!(
        set(&s, "PKG", &svc, r#"{"region": "eu"}"#).await.0,
        StatusCode::OK
    );
    // Eve may read PKG (all-users) but not write it: no connection of hers under it.
    let (st, e) = set(&s, "PKG.CONN", &eve, r#"{"password": "eves"}"#).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(
        get(&s, "PKG.CONN", &bob).await,
        (StatusCode::OK, Value::Null)
    );
    let (st, e) = set(&s, "PKG.CONN", &svc, r#"{"password": "real"}"#).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    assert_eq!(
        get(&s, "PKG.CONN", &bob).await.1["parameters"]["password"],
        "real"
    );

    // Made before its package by someone else: once the package exists it no longer stands.
    assert_eq!(
        set(&s, "LATE.CONN", &eve, r#"{"password": "eves"}"#)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        set(&s, "LATE", &svc, r#"{"region": "us"}"#).await.0,
        StatusCode::OK
    );
    for reader in [&bob, &svc, &eve] {
        assert_eq!(
            get(&s, "LATE.CONN", reader).await,
            (StatusCode::OK, Value::Null)
        );
    }
    let (st, e) = set(&s, "LATE.CONN", &eve, r#"{"password": "eves-again"}"#).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    let (st, e) = set(&s, "LATE.CONN", &svc, r#"{"password": "real-late"}"#).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    assert_eq!(e["version"], 1, "a new credential, not eve's next version");
    assert_eq!(
        get(&s, "LATE.CONN", &bob).await.1["parameters"]["password"],
        "real-late"
    );
    let (st, _) = set(&s, "LATE.CONN", &eve, r#"{"password": "eves-again"}"#).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

async fn public_get(s: &Server, entity: &str, key: &str) -> (StatusCode, Value) {
    call(
        s,
        Method::GET,
        &format!("/api/public/v1/credentials/for/{entity}"),
        key,
        None,
    )
    .await
}

async fn public_save(s: &Server, key: &str, body: &str) -> (StatusCode, Value) {
    call(
        s,
        Method::POST,
        "/api/public/v1/credentials",
        key,
        Some(body),
    )
    .await
}

/// Issue 19, item 2: a client reads the public form, changes a parameter and posts the object back
/// with its own group model (no `type`; `id`, `friendlyName`, `personal: false` added). The owner
/// stays what it was; a change of owner is explicit.
#[tokio::test]
async fn public_form_owner_round_trips_whatever_fields_a_client_adds_or_drops() {
    let s = Server::dev().await;
    let alice = key_for(&s, "alice", "human").await;
    let bob = key_for(&s, "bob", "human").await;
    let (st, saved) = public_save(
        &s,
        &alice,
        r#"{"entityBindId": "Solo", "parameters": {"login": "alice", "password": "solo-1"}, "group": {"name": "alice", "type": "user"}}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{saved}");
    // A user owner is the user's personal group.
    let user_alice =
        json!({"name": "alice", "friendlyName": "alice", "personal": true, "type": "user"});
    assert_eq!(saved["group"], user_alice);
    let (st, read) = public_get(&s, "Solo", &alice).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(read["group"], user_alice);
    let id = read["id"].as_str().unwrap().to_owned();

    // The body of the issue: the client's group model dropped `type` and added its own fields.
    let posted_back = format!(
        r#"{{"id": "{id}", "entityBindId": "Solo", "parameters": {{"login": "alice", "password": "solo-2"}}, "openParameters": {{"login": "***", "password": "***"}}, "group": {{"id": null, "name": "alice", "friendlyName": "alice", "personal": false}}}}"#
    );
    let (st, r) = public_save(&s, &alice, &posted_back).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (_, read) = public_get(&s, "Solo", &alice).await;
    assert_eq!(read["parameters"]["password"], "solo-2");
    assert_eq!(read["group"], user_alice, "the owner did not change");
    assert_eq!(public_get(&s, "Solo", &bob).await.0, StatusCode::NOT_FOUND);

    // Even when a group of that name exists and alice is in it: no silent change of owner.
    s.post("/api/v1/groups", &s.root, json!({"name": "alice"}))
        .await;
    s.put("/api/v1/groups/alice/members/alice", &s.root, json!({}))
        .await;
    s.put("/api/v1/groups/alice/members/bob", &s.root, json!({}))
        .await;
    let (st, r) = public_save(&s, &alice, &posted_back.replace("solo-2", "solo-3")).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (_, read) = public_get(&s, "Solo", &alice).await;
    assert_eq!(
        (
            read["parameters"]["password"].clone(),
            read["group"].clone()
        ),
        (json!("solo-3"), user_alice.clone())
    );
    assert_eq!(public_get(&s, "Solo", &bob).await.0, StatusCode::NOT_FOUND);

    // Exactly what was read, posted back (with `version`), and groups with fields dropped.
    let mut same = read.clone();
    same["parameters"]["password"] = json!("solo-4");
    let (st, r) = public_save(&s, &alice, &same.to_string()).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    for group in [
        r#"{"name": "alice"}"#,
        r#"{"id": null, "name": "alice", "personal": true}"#,
        r#"{"id": null, "friendlyName": "Alice", "personal": false}"#,
        "{}",
        "null",
    ] {
        let body = format!(
            r#"{{"entityBindId": "Solo", "parameters": {{"password": "solo-5"}}, "group": {group}}}"#
        );
        let (st, r) = public_save(&s, &alice, &body).await;
        assert_eq!(st, StatusCode::OK, "{group}: {r}");
        assert_eq!(r["group"], user_alice, "{group}");
    }
    let (st, r) = public_save(
        &s,
        &alice,
        r#"{"entityBindId": "Solo", "parameters": {"password": "solo-5"}}"#,
    )
    .await;
    assert_eq!(
        (st, r["group"].clone()),
        (StatusCode::OK, user_alice.clone())
    );

    // A change of owner is explicit: the group alice by its kind, then back to the user.
    let group_alice =
        json!({"name": "alice", "friendlyName": "alice", "personal": false, "type": "group"});
    let (st, r) = public_save(
        &s,
        &alice,
        r#"{"entityBindId": "Solo", "parameters": {"password": "solo-6"}, "group": {"name": "alice", "type": "group"}}"#,
    )
    .await;
    assert_eq!(
        (st, r["group"].clone()),
        (StatusCode::OK, group_alice.clone()),
        "{r}"
    );
    assert_eq!(
        public_get(&s, "Solo", &bob).await.1["parameters"]["password"],
        "solo-6",
        "bob is in the group alice"
    );
    // ...which a client without `type` now posts back unchanged, too.
    let (st, r) = public_save(&s, &alice, &posted_back).await;
    assert_eq!(
        (st, r["group"].clone()),
        (StatusCode::OK, group_alice),
        "{r}"
    );
    let (st, r) = public_save(
        &s,
        &alice,
        r#"{"entityBindId": "Solo", "parameters": {"password": "solo-7"}, "group": {"id": null, "name": "alice", "personal": true}}"#,
    )
    .await;
    assert_eq!(
        (st, r["group"].clone()),
        (StatusCode::OK, user_alice.clone()),
        "{r}"
    );
    assert_eq!(public_get(&s, "Solo", &bob).await.0, StatusCode::NOT_FOUND);
    // Another name is another owner (a group, unless said otherwise).
    s.post("/api/v1/groups", &s.root, json!({"name": "team"}))
        .await;
    s.put("/api/v1/groups/team/members/alice", &s.root, json!({}))
        .await;
    let (st, r) = public_save(
        &s,
        &alice,
        r#"{"entityBindId": "Solo", "parameters": {"password": "solo-8"}, "group": {"id": null, "name": "team", "friendlyName": "team", "personal": false}}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["group"]["name"], "team");
    assert_eq!(r["group"]["type"], "group");
    // Contradictions are refused and change nothing.
    let (st, _) = public_save(
        &s,
        &alice,
        r#"{"entityBindId": "Solo", "parameters": {"password": "solo-9"}, "group": {"name": "team", "type": "group", "personal": true}}"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, read) = public_get(&s, "Solo", &alice).await;
    assert_eq!(read["parameters"]["password"], "solo-8");
}

/// Issue 19, item 3: on the public form, nothing set and nothing readable are the same 404 with an
/// error body; the legacy form keeps `null` for both.
#[tokio::test]
async fn public_form_answers_404_for_unset_and_unreadable_alike() {
    let s = Server::dev().await;
    let svc = key_for(&s, "deployer", "service").await;
    let eve = key_for(&s, "eve", "human").await;
    let bare = |resp: reqwest::Response| async move {
        let mut headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter(|(k, _)| *k != "date")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        (resp.status(), headers, resp.text().await.unwrap())
    };
    let read = |key: String| {
        let req = s
            .http
            .get(s.url("/api/public/v1/credentials/for/Hidden.Conn"))
            .header("Authorization", key);
        async move { bare(req.send().await.unwrap()).await }
    };

    let unset = read(eve.clone()).await;
    assert_eq!(unset.0, StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_str(&unset.2).unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert!(body["error"]["message"].is_string());
    assert_eq!(
        get(&s, "Hidden.Conn", &eve).await,
        (StatusCode::OK, Value::Null)
    );

    let (st, saved) = public_save(
        &s,
        &svc,
        r#"{"entityBindId": "Hidden.Conn", "parameters": {"password": "hidden-pw"}, "group": {"name": "deployer", "type": "user"}}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{saved}");
    assert_eq!(public_get(&s, "Hidden.Conn", &svc).await.0, StatusCode::OK);
    // Exists, not readable by eve: the very same answer as not set.
    assert_eq!(read(eve.clone()).await, unset);
    assert_eq!(
        get(&s, "Hidden.Conn", &eve).await,
        (StatusCode::OK, Value::Null)
    );
    // A connection that no longer stands in its package's namespace reads the same, too.
    set(&s, "Late.Conn", &eve, r#"{"password": "eves"}"#).await;
    set(&s, "Late", &svc, r#"{"region": "eu"}"#).await;
    let (st, e) = public_get(&s, "Late.Conn", &eve).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    assert_eq!(e["error"]["code"], "not_found");
}

/// Issue 19, item 4: a save by someone outside the owner group is 403 (not 400 "invalid owner":
/// permission is checked before the owner) and changes nothing.
#[tokio::test]
async fn a_save_by_a_non_member_of_the_owner_group_is_403_and_changes_nothing() {
    let s = Server::dev().await;
    let alice = key_for(&s, "alice", "human").await;
    let carol = key_for(&s, "carol", "human").await;
    s.post("/api/v1/groups", &s.root, json!({"name": "team"}))
        .await;
    s.put("/api/v1/groups/team/members/alice", &s.root, json!({}))
        .await;
    let (st, saved) = public_save(
        &s,
        &alice,
        r#"{"entityBindId": "Team.DB", "parameters": {"password": "team-pw"}, "group": {"name": "team", "type": "group"}}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{saved}");

    for body in [
        r#"{"entityBindId": "Team.DB", "parameters": {"password": "carols"}, "group": {"name": "team", "type": "group"}}"#,
        r#"{"entityBindId": "Team.DB", "parameters": {"password": "carols"}, "group": {"id": null, "name": "team", "personal": false}}"#,
        r#"{"entityBindId": "Team.DB", "parameters": {"password": "carols"}, "group": {"name": "admins", "type": "group"}}"#,
        r#"{"entityBindId": "Team.DB", "parameters": {"password": "carols"}, "group": {"name": "carol", "personal": true}}"#,
        r#"{"entityBindId": "Team.DB", "parameters": {"password": "carols"}}"#,
    ] {
        let (st, e) = public_save(&s, &carol, body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}: {e}");
    }
    for owner in ["group:team", "group:admins", "user:alice"] {
        let (st, e) = call(
            &s,
            Method::POST,
            &format!("/api/credentials/for/Team.DB?owner={owner}"),
            &carol,
            Some(r#"{"password": "carols"}"#),
        )
        .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{owner}: {e}");
    }
    let (st, read) = public_get(&s, "Team.DB", &alice).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(read["parameters"]["password"], "team-pw");
    assert_eq!(read["version"], 1);
    assert_eq!(read["group"]["name"], "team");

    // A package writer replacing a connection that no longer stands, with an owner it may not
    // give: 400, and the old one is still there (nothing deleted).
    let svc = key_for(&s, "deployer", "service").await;
    let (_, eves) = set(&s, "Pkg.Conn", &carol, r#"{"password": "carols"}"#).await;
    set(&s, "Pkg", &svc, r#"{"region": "eu"}"#).await;
    let (st, e) = public_save(
        &s,
        &svc,
        r#"{"entityBindId": "Pkg.Conn", "parameters": {"password": "real"}, "group": {"name": "team", "type": "group"}}"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let old = eves["id"].as_str().unwrap();
    let (st, _) = s.get(&format!("/api/v1/credentials/{old}"), &s.root).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "the standing-less connection was not deleted"
    );
}
