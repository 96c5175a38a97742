//! The authorisation matrix: every identity kind against every operation of every door, on a
//! credential the identity owns (O), one shared with it through a safe (S) and a foreign one (F).
//! The expected table is below; every cell is requested and checked. `Y` = allowed (2xx and, for
//! fetch-credentials, a non-empty list; for the A2A create-or-update, the target itself written),
//! `N` = refused, `-` = the identity cannot use that door.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::Server;

/// (door operation, targets) in table order.
const COLUMNS: &[(&str, &str)] = &[
    ("native.meta", "OSF"),
    ("native.history", "OSF"),
    ("native.secret", "OSF"),
    ("native.update", "OSF"),
    ("native.rollback", "OSF"),
    ("fetch", "OSF"),
    ("kv.read", "SF"),
    ("kv.metadata", "SF"),
    ("kv.write", "SF"),
    ("ccp", "OSF"),
    ("a2a.read", "OSF"),
    ("a2a.write", "OSF"),
    ("a2a.deactivate", "OSF"),
    ("entity.read", "OSF"),
    ("entity.write", "OSF"),
];

/// The expected table: one row per identity, cells in `COLUMNS` order (spaces ignored).
const EXPECTED: &str = "
identity        meta hist secret update rollb fetch kv.r kv.m kv.w ccp a2a.r a2a.w a2a.d ent.r ent.w
root            YYY  YYY  YYY    YYY    YYY   YYY   YY   YY   YY   --- NNN   NNN   NNN   YYY   YYY
owner           YNN  YNN  YNN    YNN    YNN   YNN   NN   NN   NN   --- NNN   NNN   NNN   YNN   YNN
group-member    NYN  NYN  NYN    NNN    NNN   NYN   YN   YN   NN   --- NNN   NNN   NNN   NYN   NYN
service-user    NYN  NYN  NYN    NYN    NYN   NYN   YN   YN   YN   --- NNN   NNN   NNN   NNN   NNN
ccp-app         ---  ---  ---    ---    ---   ---   --   --   --   NYN ---   ---   ---   ---   ---
a2a-client      NNN  NNN  NNN    NNN    NNN   NNN   YN   YN   YN   NYN NYN   NYN   NYN   NNN   NNN
approle         NNN  NNN  NNN    NNN    NNN   NNN   YN   YN   NN   NYN NYN   NNN   NNN   NNN   NNN
expired-user    NNN  NNN  NNN    NNN    NNN   NNN   NN   NN   NN   --- NNN   NNN   NNN   NNN   NNN
revoked-key     NNN  NNN  NNN    NNN    NNN   NNN   NN   NN   NN   --- NNN   NNN   NNN   NNN   NNN
expired-a2a     NNN  NNN  NNN    NNN    NNN   NNN   NN   NN   NN   --- NNN   NNN   NNN   NNN   NNN
expired-approle NNN  NNN  NNN    NNN    NNN   NNN   NN   NN   NN   --- NNN   NNN   NNN   NNN   NNN
deleted-app     ---  ---  ---    ---    ---   ---   --   --   --   NNN ---   ---   ---   ---   ---
";

struct Identity {
    name: &'static str,
    token: Option<String>,
    app_id: Option<&'static str>,
}

struct Target {
    id: String,
    entity: &'static str,
    name: &'static str,
    username: &'static str,
    hostname: &'static str,
    ip: &'static str,
    safe: Option<&'static str>,
}

async fn ok(s: &Server, method: Method, path: &str, body: Value) -> Value {
    let (st, v) = s.req(method, path, Some(&s.root), Some(body)).await;
    assert!(st.is_success(), "{path}: {st} {v}");
    v
}

async fn token_for(s: &Server, user: &str) -> (String, String) {
    let (st, t) = s
        .post("/api/v1/tokens", &s.root, json!({"user": user}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    (
        t["token"].as_str().unwrap().to_owned(),
        t["info"]["id"]
            .as_str()
            .or(t["id"].as_str())
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn app(s: &Server, app_id: &str, grant: &str, client_secret: bool) -> Option<String> {
    let a = ok(
        s,
        Method::POST,
        "/api/v1/apps",
        json!({"app_id": app_id, "sources": ["127.0.0.1"], "client_secret": client_secret}),
    )
    .await;
    ok(
        s,
        Method::POST,
        &format!("/api/v1/apps/{app_id}/allow"),
        json!({"type": grant, "name": "shared"}),
    )
    .await;
    a["client_secret_value"].as_str().map(str::to_owned)
}

/// Make one request; true when the operation was allowed.
async fn attempt(s: &Server, who: &Identity, op: &str, t: &Target) -> bool {
    let path: String;
    let (method, body, bearer): (Method, Option<Value>, bool) = match op {
        "native.meta" => {
            path = format!("/api/v1/credentials/{}", t.id);
            (Method::GET, None, false)
        }
        "native.secret" => {
            path = format!("/api/v1/credentials/{}/secret", t.id);
            (Method::GET, None, false)
        }
        "native.update" => {
            path = format!("/api/v1/credentials/{}", t.id);
            (
                Method::PATCH,
                Some(json!({"secret": format!("by-{}", who.name)})),
                false,
            )
        }
        "native.history" => {
            path = format!("/api/v1/credentials/{}/versions", t.id);
            (Method::GET, None, false)
        }
        "native.rollback" => {
            path = format!("/api/v1/credentials/{}/rollback", t.id);
            (Method::POST, Some(json!({"version": 1})), false)
        }
        "kv.metadata" => {
            path = format!("/v1/{}/metadata/x", t.safe.unwrap_or("none"));
            (Method::GET, None, false)
        }
        "a2a.deactivate" => {
            path = format!("/iso/pam/credential/{}", t.name);
            (Method::DELETE, None, true)
        }
        "fetch" => {
            path = format!("/api/fetch-credentials?identifier={}", t.name);
            (Method::GET, None, false)
        }
        "kv.read" => {
            path = format!("/v1/{}/data/x", t.safe.unwrap_or("none"));
            (Method::GET, None, false)
        }
        "kv.write" => {
            path = format!("/v1/{}/data/x", t.safe.unwrap_or("none"));
            (
                Method::POST,
                Some(json!({"data": {"pw": format!("by-{}", who.name)}})),
                false,
            )
        }
        "ccp" => {
            let safe = t.safe.map(|s| format!("&Safe={s}")).unwrap_or_default();
            path = format!(
                "/AIMWebService/api/Accounts?AppID={}&Object={}{safe}",
                who.app_id.unwrap_or("none"),
                t.name
            );
            (Method::GET, None, false)
        }
        "a2a.read" => {
            path = format!("/iso/pam/credential/{}", t.name);
            (Method::GET, None, true)
        }
        "entity.read" => {
            path = format!("/api/credentials/for/{}", t.entity);
            (Method::GET, None, true)
        }
        "entity.write" => {
            path = format!("/api/credentials/for/{}", t.entity);
            (
                Method::POST,
                Some(json!({"login": "l", "password": format!("by-{}", who.name)})),
                true,
            )
        }
        "a2a.write" => {
            path = "/iso/pam/credential".to_owned();
            let body = json!({"identifier": t.name, "username": t.username, "hostname": t.hostname, "ip": t.ip,
                              "content": format!("by-{}", who.name)});
            (Method::POST, Some(body), true)
        }
        _ => unreachable!(),
    };
    let mut r = s.http.request(method, s.url(&path));
    if let Some(tok) = &who.token {
        r = if bearer {
            r.bearer_auth(tok)
        } else {
            r.header("X-Vault-Token", tok)
        };
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(st.as_u16() < 500, "{} {op} {path}: {st} {v}", who.name);
    if op == "a2a.deactivate" && st.is_success() {
        // Undo it with the same identity, so the next cells see an active credential.
        let back = s
            .http
            .put(s.url(&format!("/api/pam/credential/{}", t.name)))
            .bearer_auth(who.token.as_deref().unwrap_or_default())
            .send()
            .await
            .unwrap();
        assert!(back.status().is_success(), "reactivate after {}", who.name);
    }
    if op == "a2a.write" && st.is_success() && v["credential"]["id"] != t.id.as_str() {
        // The target lies outside the application's safes, so it was no match: the application
        // made its own credential (issue 14). The target was not written; remove the new one so
        // the next cells see the same state.
        let id = v["credential"]["id"].as_str().unwrap_or_default();
        let (st, _) = s
            .delete(&format!("/api/v1/credentials/{id}"), &s.root)
            .await;
        assert!(st.is_success(), "remove what {} made", who.name);
        return false;
    }
    match op {
        "fetch" => st == StatusCode::OK && v.as_array().is_some_and(|a| !a.is_empty()),
        // An entity the caller may not read answers like "not set": null.
        "entity.read" => st == StatusCode::OK && !v.is_null(),
        _ => st.is_success(),
    }
}

#[tokio::test]
async fn every_identity_against_every_door_operation() {
    let s = Server::dev_with(|c| c.auth_failures_per_minute = 100_000).await;
    let post = |p: &'static str, b: Value| ok(&s, Method::POST, p, b);
    for u in [
        json!({"name": "alice"}),
        json!({"name": "bob"}),
        json!({"name": "carol"}),
        json!({"name": "svc", "kind": "service"}),
        json!({"name": "dave", "kind": "service"}),
    ] {
        post("/api/v1/users", u).await;
    }
    post("/api/v1/groups", json!({"name": "team"})).await;
    for u in ["bob", "carol"] {
        ok(
            &s,
            Method::PUT,
            &format!("/api/v1/groups/team/members/{u}"),
            json!({}),
        )
        .await;
    }
    for safe in ["shared", "foreign"] {
        post("/api/v1/safes", json!({"name": safe})).await;
    }
    ok(
        &s,
        Method::PUT,
        "/api/v1/safes/shared/members",
        json!({"type": "group", "name": "team", "permissions": ["list", "read"]}),
    )
    .await;
    for u in ["svc", "dave"] {
        ok(
            &s,
            Method::PUT,
            "/api/v1/safes/shared/members",
            json!({"type": "user", "name": u, "permissions": ["list", "read", "write"]}),
        )
        .await;
    }
    let (alice, _) = token_for(&s, "alice").await;
    let (bob, _) = token_for(&s, "bob").await;
    // carol's token expires in a minute: the clock moves past it below.
    let (st, t) = s
        .post(
            "/api/v1/tokens",
            &s.root,
            json!({"user": "carol", "ttl_seconds": 60}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let carol = t["token"].as_str().unwrap().to_owned();
    let (svc, _) = token_for(&s, "svc").await;
    let (dave, dave_id) = token_for(&s, "dave").await;

    // The three credentials, each with a device so the A2A door can address them.
    let mk = |name: &'static str,
              safe: Option<&'static str>,
              ip: &'static str,
              entity: &'static str| Target {
        id: String::new(),
        entity,
        name,
        username: "matrix-user",
        hostname: "matrix-host",
        ip,
        safe,
    };
    let mut targets = [
        mk("m-owned", None, "10.8.0.1", "EOWNED"),
        mk("m-shared", Some("shared"), "10.8.0.2", "ESHARED"),
        mk("m-foreign", Some("foreign"), "10.8.0.3", "EFOREIGN"),
    ];
    // Entities: owned by alice, by the group team, by another group.
    post("/api/v1/groups", json!({"name": "others"})).await;
    for (entity, owner, tok) in [
        ("EOWNED", "user:alice", &alice),
        ("ESHARED", "group:team", &s.root),
        ("EFOREIGN", "group:others", &s.root),
    ] {
        let (st, v) = s
            .post(
                &format!("/api/credentials/for/{entity}?owner={owner}"),
                tok,
                json!({"login": "l", "password": "p"}),
            )
            .await;
        assert!(st.is_success(), "{entity}: {st} {v}");
    }
    for t in targets.iter_mut() {
        let body = json!({"name": t.name, "identifier": t.name, "username": t.username, "secret": "initial", "safe": t.safe,
                          "device": {"hostname": t.hostname, "ip": t.ip}});
        let creator = if t.safe.is_none() { &alice } else { &s.root };
        t.id = s.cred(creator, body).await;
    }
    for safe in ["shared", "foreign"] {
        let (st, v) = s
            .post(
                &format!("/v1/{safe}/data/x"),
                &s.root,
                json!({"data": {"pw": "kv-initial"}}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }

    // Applications. The expiring ones log in first; then the clock moves past their tokens'
    // hour (and carol's minute), and the others log in.
    let exp_role_secret = app(&s, "ExpiringRole", "safe", true).await.unwrap();
    let (_, login) = s
        .req(
            Method::POST,
            "/v1/auth/approle/login",
            None,
            Some(json!({"role_id": "ExpiringRole", "secret_id": exp_role_secret})),
        )
        .await;
    let expiring_role = login["auth"]["client_token"].as_str().unwrap().to_owned();
    let exp_secret = app(&s, "ExpiringA2A", "safe-write", true).await.unwrap();
    let expiring = s.a2a_token("ExpiringA2A", &exp_secret).await;
    s.advance_clock(std::time::Duration::from_secs(3601));
    app(&s, "MatrixApp", "safe", false).await;
    let a2a_secret = app(&s, "MatrixA2A", "safe-write", true).await.unwrap();
    let a2a = s.a2a_token("MatrixA2A", &a2a_secret).await;
    let role_secret = app(&s, "MatrixRole", "safe", true).await.unwrap();
    let (_, login) = s
        .req(
            Method::POST,
            "/v1/auth/approle/login",
            None,
            Some(json!({"role_id": "MatrixRole", "secret_id": role_secret})),
        )
        .await;
    let approle = login["auth"]["client_token"].as_str().unwrap().to_owned();
    app(&s, "GoneApp", "safe", false).await;
    ok(&s, Method::DELETE, "/api/v1/apps/GoneApp", json!({})).await;
    let (st, _) = s
        .delete(&format!("/api/v1/tokens/{dave_id}"), &s.root)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "revoke dave's key");

    let identities = [
        Identity {
            name: "root",
            token: Some(s.root.clone()),
            app_id: None,
        },
        Identity {
            name: "owner",
            token: Some(alice),
            app_id: None,
        },
        Identity {
            name: "group-member",
            token: Some(bob),
            app_id: None,
        },
        Identity {
            name: "service-user",
            token: Some(svc),
            app_id: None,
        },
        Identity {
            name: "ccp-app",
            token: None,
            app_id: Some("MatrixApp"),
        },
        Identity {
            name: "a2a-client",
            token: Some(a2a),
            app_id: Some("MatrixA2A"),
        },
        Identity {
            name: "approle",
            token: Some(approle),
            app_id: Some("MatrixRole"),
        },
        Identity {
            name: "expired-user",
            token: Some(carol),
            app_id: None,
        },
        Identity {
            name: "revoked-key",
            token: Some(dave),
            app_id: None,
        },
        Identity {
            name: "expired-a2a",
            token: Some(expiring),
            app_id: None,
        },
        Identity {
            name: "expired-approle",
            token: Some(expiring_role),
            app_id: None,
        },
        Identity {
            name: "deleted-app",
            token: None,
            app_id: Some("GoneApp"),
        },
    ];
    let table: Vec<(&str, String)> = EXPECTED
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, cells) = l.split_once(' ').unwrap();
            (name, cells.chars().filter(|c| !c.is_whitespace()).collect())
        })
        .collect();
    assert_eq!(identities.len(), table.len());
    let mut mismatches = Vec::new();
    let mut cells = 0;
    for (who, (row_name, row)) in identities.iter().zip(&table) {
        assert_eq!(who.name, *row_name);
        let mut expected = row.chars();
        let mut actual_row = String::new();
        for (op, targets_of_op) in COLUMNS {
            for tc in targets_of_op.chars() {
                let want = expected
                    .next()
                    .unwrap_or_else(|| panic!("row {row_name} is short"));
                let t = &targets["OSF".find(tc).unwrap()];
                if want == '-' {
                    actual_row.push('-');
                    continue;
                }
                cells += 1;
                let got = if attempt(&s, who, op, t).await {
                    'Y'
                } else {
                    'N'
                };
                actual_row.push(got);
                if got != want {
                    mismatches.push(format!("{row_name} {op} {tc}: expected {want}, got {got}"));
                }
            }
            actual_row.push(' ');
        }
        assert!(expected.next().is_none(), "row {row_name} is long");
        eprintln!("{row_name:>14} {actual_row}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(cells >= 400, "{cells} cells checked");
}

// ------------------------------------------------------------------------------ namespaces
//
// Names that cannot be squatted (issue 14): a credential made by one caller never changes what
// another caller's fetch, create-or-update or entity read answers, unless its maker could already
// write where that caller reads (a shared safe, the same owner group).

async fn fetch(s: &Server, token: &str, query: &str) -> Vec<(String, String)> {
    let (st, v) = s
        .get(&format!("/api/fetch-credentials?{query}"), token)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["user"].as_str().unwrap().to_owned(),
                c["password"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_credential_shared_with_all_users_cannot_shadow_anothers_fetch() {
    let s = Server::dev().await;
    let alice = s.user("alice").await;
    let eve = s.user("eve").await;
    s.cred(
        &alice,
        json!({"name": "dbA", "username": "app", "secret": "alices-pw"}),
    )
    .await;
    assert_eq!(
        fetch(&s, &alice, "identifier=dbA").await,
        [("app".to_owned(), "alices-pw".to_owned())]
    );

    // Eve, with no grants, may not hand a credential to all-users outside the entity door...
    let (st, v) = s
        .post(
            "/api/v1/credentials",
            &eve,
            json!({"name": "dbA", "username": "app", "secret": "eves-pw",
                   "owner": {"type": "group", "name": "all-users"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let own = s
        .cred(
            &eve,
            json!({"name": "dbA", "username": "app", "secret": "eves-own"}),
        )
        .await;
    let (st, v) = s
        .patch(
            &format!("/api/v1/credentials/{own}"),
            &eve,
            json!({"owner": {"type": "group", "name": "all-users"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // ...and what the entity door shares with all-users (a credential named dbA too) does not take
    // part in anybody else's fetch.
    let (st, v) = s
        .post(
            "/api/credentials/for/dbA",
            &eve,
            json!({"login": "app", "password": "eves-pw"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        fetch(&s, &alice, "identifier=dbA").await,
        [("app".to_owned(), "alices-pw".to_owned())],
        "fetch one still answers alice's credential"
    );
    assert_eq!(
        fetch(&s, &alice, "credential_names=dbA").await,
        [("app".to_owned(), "alices-pw".to_owned())],
        "fetch all does not mix in eve's"
    );
    // Eve's own fetch still has hers (she made both).
    assert_eq!(fetch(&s, &eve, "credential_names=dbA").await.len(), 2);
    // Someone sharing a safe with alice could already write where she reads: that still counts.
    s.post("/api/v1/safes", &s.root, json!({"name": "team"}))
        .await;
    for u in ["alice", "eve"] {
        let (st, _) = s
            .put(
                "/api/v1/safes/team/members",
                &s.root,
                json!({"type": "user", "name": u, "permissions": ["list", "read", "write"]}),
            )
            .await;
        assert!(st.is_success());
    }
    s.cred(
        &eve,
        json!({"name": "dbA", "username": "app", "secret": "team-pw", "safe": "team"}),
    )
    .await;
    assert_eq!(fetch(&s, &alice, "credential_names=dbA").await.len(), 2);
}
