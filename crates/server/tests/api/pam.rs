//! The PAM Core A2A door (seed 003, shared/contracts/pam-a2a.md): OAuth client credentials, the
//! create-or-update rules with every one of the seed's example requests and expected bodies, devices
//! and domains, read / list / custody / deactivate, both encodings and prefixes, bad input,
//! concurrency.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::Server;

const APP: &str = "Provisioner";

/// A safe `pam`, an application allowed to write it with a client secret; returns its secret.
async fn a2a_app(s: &Server, app_id: &str, safe: &str) -> String {
    let (st, _) = s
        .post("/api/v1/safes", &s.root, json!({"name": safe}))
        .await;
    assert!(st == StatusCode::CREATED || st == StatusCode::CONFLICT);
    let (st, a) = s
        .post(
            "/api/v1/apps",
            &s.root,
            json!({"app_id": app_id, "sources": ["127.0.0.0/8"], "client_secret": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, v) = s
        .post(
            &format!("/api/v1/apps/{app_id}/allow"),
            &s.root,
            json!({"type": "safe-write", "name": safe}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["grants"], json!([{"type": "safe-write", "name": safe}]));
    a["client_secret_value"].as_str().unwrap().to_owned()
}

async fn oauth(
    s: &Server,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut r = s.http.post(s.url("/iso/oauth2/token")).form(form);
    if let Some((u, p)) = basic {
        r = r.basic_auth(u, Some(p));
    }
    let resp = r.send().await.unwrap();
    let (st, h) = (resp.status(), resp.headers().clone());
    (st, resp.json().await.unwrap_or(Value::Null), h)
}

/// A bearer token for the application.
async fn login(s: &Server, app_id: &str, secret: &str) -> String {
    s.a2a_token(app_id, secret).await
}

/// A dev server with the A2A application logged in.
async fn setup() -> (Server, String) {
    let s = Server::dev().await;
    let secret = a2a_app(&s, APP, "pam").await;
    let tok = login(&s, APP, &secret).await;
    (s, tok)
}

async fn call(
    s: &Server,
    method: Method,
    path: &str,
    tok: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = s.http.request(method, s.url(path));
    if let Some(t) = tok {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status();
    let text = resp.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn upsert(s: &Server, tok: &str, body: Value) -> (StatusCode, Value) {
    call(
        s,
        Method::POST,
        "/iso/pam/credential",
        Some(tok),
        Some(body),
    )
    .await
}

/// The credential's id from an answer (checked to be a non-empty string), and the answer with the
/// id blanked so it compares with the seed's body ("ids aside").
fn ids_aside(mut v: Value) -> (String, Value) {
    let id = v["credential"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!id.is_empty(), "an id string: {v}");
    v["credential"]["id"] = json!("<id>");
    (id, v)
}

fn seed_created() -> Value {
    json!({
        "code": 201,
        "response": {"status": 201, "message": "Credential successfully registered!", "error": false, "error_code": 0,
                     "detail": "", "mensagem": "Credential successfully registered!", "erro": false, "cod_erro": 0},
        "credential": {"id": "<id>", "tag": null}
    })
}

fn seed_updated(tag: Value) -> Value {
    json!({
        "code": 201,
        "response": {"status": 201, "message": "Credential updated successfully!", "error": false, "error_code": 0,
                     "detail": "", "mensagem": "Credential updated successfully!", "erro": false, "cod_erro": 0},
        "credential": {"id": "<id>", "tag": tag}
    })
}

async fn read(s: &Server, tok: &str, key: &str) -> (StatusCode, Value) {
    call(
        s,
        Method::GET,
        &format!("/iso/pam/credential/{key}"),
        Some(tok),
        None,
    )
    .await
}

// ------------------------------------------------------------------------------ authentication

#[tokio::test]
async fn oauth_client_credentials_and_bearer_tokens() {
    let s = Server::dev().await;
    let secret = a2a_app(&s, APP, "pam").await;

    // Form body and HTTP Basic both work.
    let (st, t, h) = oauth(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(
        (t["token_type"].clone(), t["expires_in"].clone()),
        (json!("bearer"), json!(3600))
    );
    assert_eq!(h["cache-control"], "no-store");
    let (st, t2, _) = oauth(
        &s,
        &[("grant_type", "client_credentials")],
        Some((APP, &secret)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t2}");
    let tok = t["access_token"].as_str().unwrap();
    let (st, _) = upsert(
        &s,
        tok,
        json!({"username": "u", "hostname": "h", "ip": "10.0.0.1"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);

    // Bad client: 401 invalid_client (Basic gets a challenge); malformed requests 400.
    let (st, e, _) = oauth(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", "wrong"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (st, e["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_client"))
    );
    assert_eq!(e["error_description"], "Client authentication failed");
    let (st, _, h) = oauth(
        &s,
        &[("grant_type", "client_credentials")],
        Some((APP, "wrong")),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(h.contains_key("www-authenticate"));
    let (st, e, _) = oauth(
        &s,
        &[
            ("grant_type", "password"),
            ("client_id", APP),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    assert_eq!(
        (st, e["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("unsupported_grant_type"))
    );
    let (st, e, _) = oauth(&s, &[("client_id", APP), ("client_secret", &secret)], None).await;
    assert_eq!(
        (st, e["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
    let (st, e, _) = oauth(
        &s,
        &[("grant_type", "client_credentials"), ("client_id", APP)],
        None,
    )
    .await;
    assert_eq!(
        (st, e["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );

    // Every call without a valid application token gets the envelope with 401 and code 1001.
    let body = json!({"username": "u", "hostname": "h", "ip": "10.0.0.1"});
    for tok in [None, Some("cvt_bogus"), Some(s.root.as_str())] {
        let (st, e) = call(
            &s,
            Method::POST,
            "/iso/pam/credential",
            tok,
            Some(body.clone()),
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
        assert_eq!(e["exception"]["code"], 1001);
        assert_eq!(e["response"]["erro"], true);
        assert_eq!(e["response"]["cod_erro"], 1001);
    }

    // A new client secret replaces the old one at once (client id = AppID throughout).
    let (st, v) = s
        .post(
            &format!("/api/v1/apps/{APP}/client-secret"),
            &s.root,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let fresh = v["client_secret_value"].as_str().unwrap().to_owned();
    assert_ne!(fresh, secret);
    let (st, _, _) = oauth(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the old secret is dead");
    let (st, _, _) = oauth(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", &fresh),
        ],
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .post(
            &format!("/api/v1/apps/{APP}/client-secret"),
            &s.user("nobody").await,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let secret = fresh;

    // Expired tokens and tokens of a deleted application are refused.
    // Application tokens live an hour.
    s.advance_clock(std::time::Duration::from_secs(3601));
    let (st, _) = upsert(&s, tok, body.clone()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "expired");
    let tok = login(&s, APP, &secret).await;
    let (st, _) = s.delete(&format!("/api/v1/apps/{APP}"), &s.root).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = upsert(&s, &tok, body).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "application deleted");

    // The secret is stored only as a hash; logins are audited.
    let db = s.db().await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT rules FROM apps")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(rows.iter().all(|(r,)| !r.contains(&secret)));
    let (_, tail) = s.get("/api/v1/audit/tail?n=100", &s.root).await;
    let logins = tail["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "app.login" && r["door"] == "pam")
        .count();
    assert!(logins >= 4, "{tail}");
}

// ------------------------------------------------------------------- seed 003, example by example

#[tokio::test]
async fn seed_create_with_an_invalid_identifier() {
    let (s, tok) = setup().await;
    let (st, v) = upsert(
        &s,
        &tok,
        json!({"username" : "jhoncredential", "hostname": "Linkedin", "ip": "linkedin.com",
               "content": "vfdvds##@", "tags": "social", "identifier": "identifierjhon"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (id, body) = ids_aside(v);
    assert_eq!(body, seed_created());
    let (st, r) = read(&s, &tok, "identifierjhon").await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let c = &r["credential"];
    assert_eq!(c["id"], id.as_str());
    assert_eq!(
        (c["username"].clone(), c["password"].clone()),
        (json!("jhoncredential"), json!("vfdvds##@"))
    );
    assert_eq!(
        (c["hostname"].clone(), c["ip"].clone()),
        (json!("Linkedin"), json!("linkedin.com"))
    );
    assert_eq!(c["tags"], json!(["social"]));
    assert_eq!(c["credential_type"], "Local User", "the default type");
    assert_eq!(
        c["additional_settings"]["criticality"], "Medium",
        "the default criticality"
    );
}

#[tokio::test]
async fn seed_update_with_a_valid_identifier_changes_even_the_username() {
    let (s, tok) = setup().await;
    // Registered as identifierjhon; its identifier later became identifiertesting (a fallback
    // update, as in the next example): it keeps the tag it was registered with.
    let (_, v) = upsert(&s, &tok, json!({"username": "jhon", "hostname": "Linkedin", "ip": "linkedin.com", "identifier": "identifierjhon"})).await;
    let (id, _) = ids_aside(v);
    let (_, v) = upsert(&s, &tok, json!({"username": "jhon", "hostname": "Linkedin", "ip": "linkedin.com", "identifier": "identifiertesting"})).await;
    assert_eq!(ids_aside(v).1, seed_updated(json!("identifierjhon")));

    let (st, v) = upsert(
        &s,
        &tok,
        json!({"username" : "cred6updatetest", "hostname": "Linkedin", "ip": "linkedin.com" ,
               "identifier": "identifiertesting", "content": "bfgbdfbdsd#@"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (got, body) = ids_aside(v);
    assert_eq!(body, seed_updated(json!("identifierjhon")));
    assert_eq!(got, id, "the same credential");
    let (_, r) = read(&s, &tok, "identifiertesting").await;
    assert_eq!(
        r["credential"]["username"], "cred6updatetest",
        "the identifier wins over the username"
    );
    assert_eq!(r["credential"]["password"], "bfgbdfbdsd#@");
    let (_, l) = call(&s, Method::GET, "/iso/pam/credential", Some(&tok), None).await;
    assert_eq!(
        l["credentials"].as_array().unwrap().len(),
        1,
        "no second credential: {l}"
    );
}

#[tokio::test]
async fn seed_update_with_an_invalid_identifier_falls_back_to_host_ip_and_username() {
    let (s, tok) = setup().await;
    // Registered as identifiertesting, then renamed, so identifiertesting is now unknown (invalid).
    let user = "[email protected]";
    let (_, v) = upsert(&s, &tok, json!({"username": user, "hostname": "Outlook", "ip": "login.live.com", "identifier": "identifiertesting", "content": "old"})).await;
    let (id, _) = ids_aside(v);
    let (_, v) = upsert(&s, &tok, json!({"username": user, "hostname": "Outlook", "ip": "login.live.com", "identifier": "outlook-renamed"})).await;
    assert_eq!(ids_aside(v).0, id);

    let (st, v) = upsert(
        &s,
        &tok,
        json!({"username" : user, "hostname": "Outlook", "ip": "login.live.com" , "identifier": "identifiertesting"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (got, body) = ids_aside(v);
    assert_eq!(body, seed_updated(json!("identifiertesting")));
    assert_eq!(got, id);
    let (_, r) = read(&s, &tok, "identifiertesting").await;
    assert_eq!(
        r["credential"]["identifier"], "identifiertesting",
        "the new identifier is stored"
    );
    assert_eq!(
        r["credential"]["password"], "old",
        "no content: the password stays"
    );
    let (st, _) = read(&s, &tok, "outlook-renamed").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "the old identifier is gone");
}

#[tokio::test]
async fn seed_create_with_an_invalid_username() {
    let (s, tok) = setup().await;
    // Another user on the same device does not match.
    let (_, v) = upsert(
        &s,
        &tok,
        json!({"username": "cred8", "hostname": "gmail", "ip": "https://www.gmail.com"}),
    )
    .await;
    let (other, _) = ids_aside(v);
    let (st, v) = upsert(
        &s,
        &tok,
        json!({"hostname": "gmail", "username": "cred9", "ip": "https://www.gmail.com",
               "identifier": "identifier2", "additional": "my credential"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (id, body) = ids_aside(v);
    assert_eq!(body, seed_created());
    assert_ne!(id, other);
    let (_, r) = read(&s, &tok, "cred9@gmail").await;
    assert_eq!(r["credential"]["additional"], "my credential");
    assert_eq!(r["credential"]["identifier"], "identifier2");
}

#[tokio::test]
async fn seed_update_with_a_valid_username() {
    let (s, tok) = setup().await;
    let (_, v) = upsert(&s, &tok, json!({"username": "cred9", "hostname": "Facebook", "ip": "facebook.com", "content": "first", "tags": "face"})).await;
    let (id, _) = ids_aside(v);
    let (st, v) = upsert(
        &s,
        &tok,
        json!({"username" : "cred9", "hostname": "Facebook", "ip": "facebook.com",
               "content": "updating-my-password", "tags": "face, social, updated"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (got, body) = ids_aside(v);
    assert_eq!(body, seed_updated(Value::Null));
    assert_eq!(got, id);
    let (_, r) = read(&s, &tok, &id).await;
    assert_eq!(r["credential"]["password"], "updating-my-password");
    assert_eq!(
        r["credential"]["tags"],
        json!(["face", "social", "updated"])
    );
    // User names and host names match without regard to case, as the vendor's do.
    let (_, v) = upsert(
        &s,
        &tok,
        json!({"username": "CRED9", "hostname": "facebook", "ip": "facebook.com"}),
    )
    .await;
    assert_eq!(ids_aside(v).0, id);
}

#[tokio::test]
async fn seed_missing_hostname_and_ip() {
    let (s, tok) = setup().await;
    let (st, e) = upsert(
        &s,
        &tok,
        json!({"username": "u", "ip": "10.0.0.1", "content": "x"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // The seed's body, plus the envelope fields every answer carries (code, error_code/cod_erro, detail).
    let msg = "1004: The device's hostname was not informed";
    assert_eq!(
        e,
        json!({
            "code": 400,
            "response": {"status": 400, "mensagem": msg, "erro": true, "message": msg, "error": true,
                         "error_code": 1004, "cod_erro": 1004, "detail": ""},
            "exception": {"code": 1004, "message": msg, "detail": null}
        })
    );
    let (st, e) = upsert(&s, &tok, json!({"username": "u", "hostname": "h"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        e["response"]["message"],
        "1005: The device's IP address was not informed"
    );
    assert_eq!(e["response"]["mensagem"], e["response"]["message"]);
    assert_eq!(e["exception"]["code"], 1005);
    let (_, l) = call(&s, Method::GET, "/iso/pam/credential", Some(&tok), None).await;
    assert_eq!(l["credentials"], json!([]), "nothing half-written");
}

#[tokio::test]
async fn seed_settings_blocks_are_checked_stored_read_and_versioned() {
    let (s, tok) = setup().await;
    let base = || json!({"username": "exemplo caderno 3.32", "hostname": "API-Testing", "ip": "128.0.0.1"});
    // Seed 003's examples, but for the plugin names: the seed names its vendor's plugins (`SSH` /
    // `3COM`, `Windows RM`), which credvault does not have, and unknown plugins are refused when
    // written (issue 17; `pwchange.rs`): here the one credvault has.
    let blocks = [
        (
            "execution_settings",
            json!({
            "parent_credential": "cred2", "parent_hostname": "gmail", "parent_ip": "https://www.gmail.com",
            "automatic_change": true, "agent_based_password_change": true, "change_plugin": "postgresql",
            "change_template": "alter-role", "use_own_credential_to_connect": false, "authentication_credential": "cred2",
            "authentication_hostname": "gmail", "authentication_ip": "https://www.gmail.com", "status": true,
            "reconciliation_credential": "cred2", "reconciliation_hostname": "gmail",
            "reconciliation_ip": "https://www.gmail.com", "reconciliation_plugin": "postgresql", "reconciliation_template": "alter-role"}),
        ),
        (
            "session_settings",
            json!({
            "SSH": true, "Telnet": true, "MySQL": true, "SQL Server": true, "HTTP": true, "HTTPS": true, "RDP": true,
            "X11 Forward": true, "VNC": true, "restrict_access_to_remote_application": true,
            "macros": [{"remote_app": "MySQL", "connectivity": "SSH"}, {"remote_app": "Kaspersky", "connectivity": "RDP"}],
            "use_own_credential_to_connect": false, "authentication_credential": "cred2",
            "authentication_hostname": "gmail", "authentication_ip": "https://www.gmail.com"}),
        ),
        (
            "additional_settings",
            json!({
            "identifier": "identifer", "user_credential_owner": "admin", "server_path": "/etc/host",
            "secret_key": "295B3LA1M6LRAHI2S7G1A36LMK6I4IWW", "criticality": "High",
            "additional_authentication_fields": [{"name": "name", "short_name": "short_name1", "value": "Enable"},
                                                 {"name": "name2", "short_name": "short_name2", "value": "value"}],
            "notes": "Credential to be used only in network A"}),
        ),
        (
            "jit_settings",
            json!({
            "jit": false, "credential_creation_and_deletion": true, "enable_disable_credential": false,
            "use_own_credential_to_connect": false, "authentication_credential": "cred2",
            "authentication_hostname": "gmail", "authentication_ip": "https://www.gmail.com",
            "credential_creation_plugin": "postgresql", "credential_creation_template": "alter-role",
            "credential_deletion_plugin": "postgresql", "credential_deletion_template": "alter-role",
            "credential_enable_plugin": "postgresql", "credential_enable_template": "alter-role",
            "credential_disable_plugin": "postgresql", "credential_disable_template": "alter-role"}),
        ),
    ];
    let mut id = String::new();
    for (i, (name, block)) in blocks.iter().enumerate() {
        let mut b = base();
        b[*name] = block.clone();
        let (st, v) = upsert(&s, &tok, b).await;
        assert_eq!(st, StatusCode::CREATED, "{name}: {v}");
        let (got, body) = ids_aside(v);
        // The seed's example request: the first creates, the same user on the same device updates.
        assert_eq!(
            body,
            if i == 0 {
                seed_created()
            } else {
                seed_updated(Value::Null)
            },
            "{name}"
        );
        id = got;
    }
    let (_, r) = read(&s, &tok, &id).await;
    let c = &r["credential"];
    for (name, block) in &blocks {
        for (k, v) in block.as_object().unwrap() {
            assert_eq!(&c[*name][k], v, "{name}.{k} read back");
        }
    }
    assert_eq!(
        c["additional_settings"]["secret_key"],
        "295B3LA1M6LRAHI2S7G1A36LMK6I4IWW"
    );
    // The additional authentication values are secrets too: read back, but not in the metadata.
    assert_eq!(
        c["additional_settings"]["additional_authentication_fields"][0]["value"],
        "Enable"
    );

    // The TOTP seed is a secret: not in the metadata, not in the database in clear.
    let (_, meta) = s.get(&format!("/api/v1/credentials/{id}"), &s.root).await;
    assert!(
        !meta
            .to_string()
            .contains("295B3LA1M6LRAHI2S7G1A36LMK6I4IWW"),
        "{meta}"
    );
    assert_eq!(
        meta["parameter_names"],
        json!(["auth_field_0", "auth_field_1", "secret_key"])
    );
    let fields = &meta["settings"]["additional_settings"]["additional_authentication_fields"];
    assert_eq!(fields[0]["short_name"], "short_name1");
    assert!(fields[0].get("value").is_none(), "{fields}");
    let db = s.db().await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT meta FROM credential_versions")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(rows
        .iter()
        .all(|(m,)| !m.contains("295B3LA1M6LRAHI2S7G1A36LMK6I4IWW")));

    // Version history keeps each state: version 2 had the session block but no JIT block yet.
    let (_, vs) = s
        .get(&format!("/api/v1/credentials/{id}/versions"), &s.root)
        .await;
    assert_eq!(vs["items"].as_array().unwrap().len(), 4);
    let (_, v2) = s
        .get(&format!("/api/v1/credentials/{id}/versions/2"), &s.root)
        .await;
    assert_eq!(v2["settings"]["session_settings"]["VNC"], true, "{v2}");
    assert_eq!(
        v2["settings"]["jit_settings"]["credential_creation_and_deletion"],
        Value::Null
    );
}

// ------------------------------------------------------------------------- devices and domains

#[tokio::test]
async fn devices_are_made_on_the_fly_and_domains_must_be_registered() {
    let (s, tok) = setup().await;
    let body = json!({"username": "svc", "hostname": "db01", "ip": "10.1.1.1", "domain": "corp.example",
                      "type": "Server", "vendor": "Debian", "model": "10.0 Buster", "site": "Default",
                      "device_tags": "api, app", "connectivities": "SSH:22, HTTPS:443",
                      "credential_type": "Domain User", "session_remote_config": "SSH:EXPECT:FILL"});
    let (st, e) = upsert(&s, &tok, body.clone()).await;
    assert_eq!(
        (st, e["exception"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(1006)),
        "{e}"
    );
    assert!(e["exception"]["message"]
        .as_str()
        .unwrap()
        .contains("'domain'"));
    let (st, d) = s
        .post(
            "/api/v1/domains",
            &s.root,
            json!({"name": "corp.example", "abbreviation": "CORP"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    let (st, _) = s
        .post("/api/v1/domains", &s.root, json!({"name": "corp"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "a name taken as an abbreviation");
    let user = s.user("plain").await;
    let (st, _) = s
        .post("/api/v1/domains", &user, json!({"name": "other.example"}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "admins register domains");

    let mut b = body.clone();
    b["device_domain"] = json!("nope.example");
    let (st, e) = upsert(&s, &tok, b).await;
    assert_eq!(
        (st, e["exception"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(1006))
    );
    let mut b = body.clone();
    b["device_domain"] = json!("corp");
    let (st, v) = upsert(&s, &tok, b).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (id, _) = ids_aside(v);
    let (_, r) = read(&s, &tok, &id).await;
    let c = &r["credential"];
    assert_eq!(c["domain"], "corp.example");
    assert_eq!(c["credential_type"], "Domain User");
    assert_eq!(c["session_remote_config"], "SSH:EXPECT:FILL");
    assert_eq!(c["port"], 22);
    assert_eq!(
        c["device"],
        json!({"hostname": "db01", "ip": "10.1.1.1", "type": "Server", "vendor": "Debian", "model": "10.0 Buster",
               "site": "Default", "domain": "corp.example", "tags": ["api", "app"],
               "connectivities": [{"protocol": "SSH", "port": 22}, {"protocol": "HTTPS", "port": 443}]})
    );

    // A second credential on the same device (host name in another case) reuses and updates it.
    let (st, v) = upsert(
        &s,
        &tok,
        json!({"username": "other", "hostname": "DB01", "ip": "10.1.1.1", "vendor": "Ubuntu"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (id2, _) = ids_aside(v);
    let (_, r) = read(&s, &tok, &id2).await;
    assert_eq!(r["credential"]["device"]["vendor"], "Ubuntu");
    assert_eq!(
        r["credential"]["device"]["model"], "10.0 Buster",
        "the device's other attributes stay"
    );
    let db = s.db().await;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM devices")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 1);

    let (_, l) = s.get("/api/v1/domains", &s.root).await;
    assert_eq!(l["items"][0]["abbreviation"], "CORP");
    let (st, _) = s.delete("/api/v1/domains/corp.example", &s.root).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = upsert(&s, &tok, body).await;
    assert_eq!(
        (st, e["exception"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(1006))
    );
}

// ------------------------------------------------------------ read, list, custody, (de)activate

#[tokio::test]
async fn read_list_custody_deactivate_and_access() {
    let (s, tok) = setup().await;
    let (_, v) = upsert(&s, &tok, json!({"username": "root", "hostname": "web01", "ip": "10.2.0.1", "identifier": "web01-root", "content": "s3cr3t-web"})).await;
    let (id, _) = ids_aside(v);

    // Read by id, identifier and user@host (a redundant ?credential= is accepted).
    for key in [id.as_str(), "web01-root", "root@web01"] {
        let (st, r) = call(
            &s,
            Method::GET,
            &format!("/iso/pam/credential/{key}?credential={key}"),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{key}: {r}");
        assert_eq!(r["credential"]["password"], "s3cr3t-web");
        assert_eq!(r["credential"]["content"], "s3cr3t-web");
        assert_eq!(r["code"], 200);
        assert_eq!(r["response"]["cod_erro"], 0);
    }
    let (st, e) = read(&s, &tok, "no-such-identifier").await;
    assert_eq!(
        (st, e["exception"]["message"].clone()),
        (StatusCode::BAD_REQUEST, json!("1007: Credential not found"))
    );

    // A key that is not valid UTF-8 is refused in the envelope, not by the router.
    let (st, e) = read(&s, &tok, "%ff%fe").await;
    assert_eq!(
        (st, e["exception"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(1000)),
        "{e}"
    );

    // Custody: the read took it; releasing twice answers 1018 the second time.
    let (st, r) = call(
        &s,
        Method::DELETE,
        &format!("/iso/pam/credential/custody/{id}"),
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        r["response"]["message"],
        format!("Credential custody {id} released")
    );
    let (st, e) = call(
        &s,
        Method::DELETE,
        &format!("/iso/pam/credential/custody/{id}"),
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(
        (st, e["exception"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(1018))
    );

    // Deactivate, again (1017), read refused (1008), activate through /api/pam with PUT.
    let (st, r) = call(
        &s,
        Method::DELETE,
        "/iso/pam/credential/web01-root",
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(
        (st, r["response"]["message"].clone()),
        (StatusCode::OK, json!("Credential successfully deactivated"))
    );
    let (st, e) = call(
        &s,
        Method::DELETE,
        "/iso/pam/credential/web01-root",
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(
        (st, e["exception"]["message"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("1017: Credential already inactive")
        )
    );
    let (st, e) = read(&s, &tok, "web01-root").await;
    assert_eq!(
        (st, e["exception"]["message"].clone()),
        (StatusCode::BAD_REQUEST, json!("1008: Credential inactive"))
    );
    // No other door hands it out either: native 409, CCP as if absent.
    let ccp = |s: &Server| {
        let url = s.url(&format!(
            "/AIMWebService/api/Accounts?AppID={APP}&Safe=pam&Object=root@web01"
        ));
        let http = s.http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    };
    let (st, _) = s
        .get(&format!("/api/v1/credentials/{id}/secret"), &s.root)
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(ccp(&s).await, StatusCode::NOT_FOUND);
    let (st, r) = call(
        &s,
        Method::PUT,
        &format!("/api/pam/credential/{id}"),
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(
        (st, r["response"]["message"].clone()),
        (StatusCode::OK, json!("Credential successfully activated"))
    );
    let (st, _) = read(&s, &tok, "web01-root").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        ccp(&s).await,
        StatusCode::OK,
        "the CCP door serves it again"
    );

    // List.
    upsert(&s, &tok, json!({"username": "admin", "hostname": "web02", "ip": "10.2.0.2", "type": "Server", "vendor": "Debian",
                            "connectivities": "SSH:22", "execution_settings": {"automatic_change": true}})).await;
    let (st, l) = call(&s, Method::GET, "/iso/pam/credential", Some(&tok), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(l["response"]["message"], "2 credentials found");
    assert_eq!(l["response"]["mensagem"], "2 credentials found");
    let items = l["credentials"].as_array().unwrap();
    let web02 = items.iter().find(|c| c["hostname"] == "web02").unwrap();
    assert_eq!(web02["management_ip"], "10.2.0.2");
    assert_eq!(web02["device_type"], "Server");
    assert_eq!(web02["device_vendor"], "Debian");
    assert_eq!(web02["automatic_change"], true);
    assert_eq!(web02["connectivity"], "SSH:22");
    assert!(!l.to_string().contains("s3cr3t-web"), "no secrets in lists");

    // Another application without the safe: what lies outside its safes answers 1007 like what
    // does not exist (issue 14: no hint of what exists where it cannot look); an application with
    // read only may read but not write.
    let other_secret = a2a_app(&s, "Other", "other-safe").await;
    let other = login(&s, "Other", &other_secret).await;
    let (st, e) = read(&s, &other, "web01-root").await;
    assert_eq!(
        (st, e["exception"]["message"].clone()),
        (StatusCode::BAD_REQUEST, json!("1007: Credential not found"))
    );
    // By user@host it searches only what it can see: no hint that the credential exists.
    let (st, e) = read(&s, &other, "root@web01").await;
    assert_eq!(
        (st, e["exception"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(1007))
    );
    // The same host + IP + user name outside its safes is no match (issue 14): the other
    // application gets its own credential, and the first one's is untouched.
    let (st, r) = upsert(
        &s,
        &other,
        json!({"username": "root", "hostname": "web01", "ip": "10.2.0.1", "vendor": "Evil"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let others = r["credential"]["id"].as_str().unwrap().to_owned();
    assert_ne!(others, id);
    let (_, r) = read(&s, &tok, "web01-root").await;
    assert!(r["credential"]["device"]["vendor"].is_null(), "{r}");
    let (st, e) = upsert(
        &s,
        &other,
        json!({"username": "root", "hostname": "web01", "ip": "10.2.0.1", "content": "stolen"}),
    )
    .await;
    assert_eq!(
        (st, e["credential"]["id"].clone()),
        (StatusCode::CREATED, json!(others)),
        "no takeover through the fallback: it updates its own"
    );
    let (st, _) = call(
        &s,
        Method::DELETE,
        "/iso/pam/credential/web01-root",
        Some(&other),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, l) = call(&s, Method::GET, "/iso/pam/credential", Some(&other), None).await;
    assert_eq!(
        l["response"]["message"], "1 credentials found",
        "its own only"
    );
    let (st, _) = s
        .post(
            "/api/v1/apps/Other/allow",
            &s.root,
            json!({"type": "safe", "name": "pam"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = read(&s, &other, "web01-root").await;
    assert_eq!(st, StatusCode::OK, "read grant");
    let (st, e) = upsert(
        &s,
        &other,
        json!({"username": "root", "hostname": "web01", "ip": "10.2.0.1", "content": "stolen"}),
    )
    .await;
    assert_eq!(
        (st, e["exception"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(1009))
    );
    let (_, r) = read(&s, &tok, "web01-root").await;
    assert_eq!(r["credential"]["password"], "s3cr3t-web");

    // Every read is audited with the door, the application and the source.
    let (_, tail) = s.get("/api/v1/audit/tail?n=300", &s.root).await;
    let items = tail["items"].as_array().unwrap();
    assert!(items.iter().any(|r| r["door"] == "pam"
        && r["action"] == "credential.read_secret"
        && r["actor"] == format!("app:{APP}")
        && r["target"] == id.as_str()
        && r["source"] == "127.0.0.1"));
    assert!(items
        .iter()
        .any(|r| r["door"] == "pam" && r["actor"] == "app:Other" && r["outcome"] == "denied"));
}

// -------------------------------------------------------------------- encodings, prefixes, input

#[tokio::test]
async fn form_bodies_json_bodies_and_both_prefixes() {
    let (s, tok) = setup().await;
    let form = "username=formuser&hostname=srv-form&ip=10.3.0.1&content=p%40ss%3Dword&tags=a%2C+b\
                &execution_settings%5Bautomatic_change%5D=true\
                &session_settings%5Bmacros%5D%5B0%5D%5Bremote_app%5D=MySQL\
                &session_settings%5Bmacros%5D%5B0%5D%5Bconnectivity%5D=SSH";
    // Form-encoded, labelled as such, on /iso.
    let resp = s
        .http
        .post(s.url("/iso/pam/credential"))
        .bearer_auth(&tok)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (id, body) = ids_aside(resp.json().await.unwrap());
    assert_eq!(body, seed_created());
    // The same form body labelled as JSON (a real client does that), on /api: an update.
    let resp = s
        .http
        .post(s.url("/api/pam/credential"))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body(form.replace("p%40ss%3Dword", "second"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (id2, body) = ids_aside(resp.json().await.unwrap());
    assert_eq!((id2, body), (id.clone(), seed_updated(Value::Null)));
    let (_, r) = call(
        &s,
        Method::GET,
        &format!("/api/pam/credential/{id}"),
        Some(&tok),
        None,
    )
    .await;
    let c = &r["credential"];
    assert_eq!(c["password"], "second");
    assert_eq!(c["tags"], json!(["a", "b"]));
    assert_eq!(c["execution_settings"]["automatic_change"], true);
    assert_eq!(
        c["session_settings"]["macros"],
        json!([{"remote_app": "MySQL", "connectivity": "SSH"}])
    );
    // A form body whose boolean is not one.
    let resp = s
        .http
        .post(s.url("/iso/pam/credential"))
        .bearer_auth(&tok)
        .form(&[
            ("username", "u"),
            ("hostname", "h"),
            ("ip", "i"),
            ("jit_settings[jit]", "maybe"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["exception"]["code"], 1000);
    assert!(e["exception"]["message"]
        .as_str()
        .unwrap()
        .contains("jit_settings.jit"));
}

#[tokio::test]
async fn bad_input_gets_the_envelope_and_writes_nothing() {
    let s = Server::dev_with(|c| c.max_body_bytes = 64 * 1024).await;
    let secret = a2a_app(&s, APP, "pam").await;
    let tok = login(&s, APP, &secret).await;
    let raw = |body: String, ct: &'static str| {
        let (http, url, tok) = (s.http.clone(), s.url("/iso/pam/credential"), tok.clone());
        async move {
            let resp = http
                .post(url)
                .bearer_auth(tok)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let st = resp.status();
            (st, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let ok = json!({"username": "u", "hostname": "h", "ip": "10.0.0.9"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b.to_string()
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "malformed JSON",
            r#"{"username": "u", "hostname": "#.to_owned(),
        ),
        ("a JSON array", "[1, 2]".to_owned()),
        ("an empty body", String::new()),
        ("a wrong type", with("hostname", json!(42))),
        (
            "a wrong type in a block",
            with("execution_settings", json!({"automatic_change": "true"})),
        ),
        (
            "a block that is not an object",
            with("jit_settings", json!([1])),
        ),
        ("an unknown field", with("password", json!("x"))),
        (
            "an unknown field in a block",
            with("session_settings", json!({"Gopher": true})),
        ),
        (
            "a value not allowed",
            with("additional_settings", json!({"criticality": "Severe"})),
        ),
        (
            "an oversized value",
            with("hostname", json!("h".repeat(300))),
        ),
        (
            "an oversized identifier",
            with("identifier", json!("i".repeat(200))),
        ),
        ("a bad identifier", with("identifier", json!("a/b"))),
        (
            "bad connectivities",
            with("connectivities", json!("SSH:99999")),
        ),
        (
            "a bad parent_password",
            with("parent_password", json!("abc")),
        ),
        ("control characters", with("username", json!("a\u{0007}b"))),
        (
            "a duplicated form field",
            "username=a&username=b&hostname=h&ip=i".to_owned(),
        ),
    ];
    for (what, body) in cases {
        let (st, e) = raw(body, "application/json").await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{what}: {e}");
        assert_eq!(e["exception"]["code"], 1000, "{what}: {e}");
        assert_eq!(e["response"]["erro"], true, "{what}");
        assert_eq!(
            e["response"]["mensagem"], e["exception"]["message"],
            "{what}"
        );
        assert!(
            !e.to_string().contains("hhhhhhhhhh"),
            "values are not echoed: {what}"
        );
    }
    let (st, e) = raw(
        with("content", json!("x".repeat(70 * 1024))),
        "application/json",
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(e["exception"]["code"], 1000);
    let (_, l) = call(&s, Method::GET, "/iso/pam/credential", Some(&tok), None).await;
    assert_eq!(l["credentials"], json!([]), "nothing was written");
    let (st, e) = call(&s, Method::PATCH, "/iso/pam/credential", Some(&tok), None).await;
    assert_eq!(
        (st, e["exception"]["code"].clone()),
        (StatusCode::METHOD_NOT_ALLOWED, json!(1000))
    );

    // Sealed: the envelope with 503, on both prefixes.
    let (st, _) = s.post("/api/v1/sys/seal", &s.root, json!({})).await;
    assert_eq!(st, StatusCode::OK);
    for p in ["/iso/pam/credential", "/api/pam/credential"] {
        let (st, e) = call(&s, Method::GET, p, Some(&tok), None).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{p}: {e}");
        assert_eq!(e["exception"]["code"], 1021);
    }
}

#[tokio::test]
async fn concurrent_creates_make_exactly_one_credential() {
    let (s, tok) = setup().await;
    for body in [
        json!({"username": "race", "hostname": "race-host", "ip": "10.9.0.1", "content": "x"}),
        json!({"username": "race2", "hostname": "race-host", "ip": "10.9.0.1", "identifier": "race-id", "content": "y"}),
    ] {
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (http, url, tok, body) = (
                    s.http.clone(),
                    s.url("/iso/pam/credential"),
                    tok.clone(),
                    body.clone(),
                );
                tokio::spawn(async move {
                    let r = http
                        .post(url)
                        .bearer_auth(tok)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    (r.status(), r.json::<Value>().await.unwrap())
                })
            })
            .collect();
        let mut ids = std::collections::BTreeSet::new();
        let mut created = 0;
        for t in tasks {
            let (st, v) = t.await.unwrap();
            assert_eq!(st, StatusCode::CREATED, "{v}");
            if v["response"]["message"] == "Credential successfully registered!" {
                created += 1;
            }
            ids.insert(v["credential"]["id"].as_str().unwrap().to_owned());
        }
        assert_eq!((created, ids.len()), (1, 1), "{body}");
    }
    let (_, l) = call(&s, Method::GET, "/iso/pam/credential", Some(&tok), None).await;
    assert_eq!(l["response"]["message"], "2 credentials found");
}

// ------------------------------------------------------------------------------ namespaces

/// Issue 14: a credential outside the application's safes, whoever made it, neither blocks its
/// create-or-update (identifier or host + IP + user name) nor answers its reads differently from
/// one that does not exist.
#[tokio::test]
async fn names_outside_the_applications_safes_neither_block_it_nor_answer() {
    let (s, tok) = setup().await;
    let eve = s.user("eve").await;
    // Eve, with no grants at all, registers the identifier the provisioner will use, and another
    // credential on the device + user name it will use.
    let by_ident = s
        .cred(
            &eve,
            json!({"name": "squat-1", "identifier": "prov-db-01", "username": "dbadmin", "secret": "eves-1",
                   "device": {"hostname": "db01", "ip": "10.9.0.1"}}),
        )
        .await;
    let on_device = s
        .cred(
            &eve,
            json!({"name": "squat-2", "identifier": "squatted-ident", "username": "root", "secret": "eves-2",
                   "device": {"hostname": "db02", "ip": "10.9.0.2"}}),
        )
        .await;

    // The provisioner's create-or-update creates its own credential in its safe, both ways.
    let (st, r) = upsert(
        &s,
        &tok,
        json!({"identifier": "prov-db-01", "username": "dbadmin", "hostname": "db01", "ip": "10.9.0.1",
               "content": "app-pw-1"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let (mine, body) = ids_aside(r);
    assert_eq!(body, seed_created());
    assert_ne!(mine, by_ident);
    let (st, r) = upsert(
        &s,
        &tok,
        json!({"identifier": "prov-db-01", "username": "dbadmin", "hostname": "db01", "ip": "10.9.0.1",
               "content": "app-pw-2"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["credential"]["id"], mine.as_str(), "then updates it");
    let (st, r) = read(&s, &tok, "prov-db-01").await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["credential"]["password"], "app-pw-2");
    let (st, r) = upsert(
        &s,
        &tok,
        json!({"username": "ROOT", "hostname": "DB02", "ip": "10.9.0.2", "content": "app-root"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let (dev_mine, body) = ids_aside(r);
    assert_eq!(body, seed_created());
    assert_ne!(dev_mine, on_device);
    let (st, r) = upsert(
        &s,
        &tok,
        json!({"username": "root", "hostname": "db02", "ip": "10.9.0.2", "content": "app-root-2"}),
    )
    .await;
    assert_eq!(
        (st, r["credential"]["id"].clone()),
        (StatusCode::CREATED, json!(dev_mine))
    );

    // Eve's credentials are untouched.
    for (id, pw) in [(&by_ident, "eves-1"), (&on_device, "eves-2")] {
        let (st, v) = s
            .get(&format!("/api/v1/credentials/{id}/secret"), &eve)
            .await;
        assert_eq!((st, v["secret"].as_str()), (StatusCode::OK, Some(pw)));
    }

    // What lies outside its safes answers exactly like what does not exist: 1007.
    let missing = "00000000-0000-7000-8000-000000000000".to_owned();
    for key in [
        &on_device,
        &"squatted-ident".to_owned(),
        &missing,
        &"nobody".to_owned(),
    ] {
        for method in [Method::GET, Method::DELETE] {
            let (st, e) = call(
                &s,
                method.clone(),
                &format!("/iso/pam/credential/{key}"),
                Some(&tok),
                None,
            )
            .await;
            assert_eq!(
                (st, e["exception"]["message"].clone()),
                (StatusCode::BAD_REQUEST, json!("1007: Credential not found")),
                "{method} {key}"
            );
        }
    }
}
