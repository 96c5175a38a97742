//! Issue 17: automatic password change against a real PostgreSQL target (a throwaway cluster of
//! the test's own, password logins over TCP), on both storage backends. Each test starts its own
//! target, so it runs in the SQLite and the PostgreSQL phase alike; without PostgreSQL's binaries
//! it prints why and skips.

use std::time::Duration;

use credvault_service::pwchange::StopAfter;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{PgCluster, Server};

const SUPERUSER_PW: &str = "pg-super-Secret-7";
const INITIAL_PW: &str = "app-initial-Secret-1";
const ROLE: &str = "app_user";

/// A PostgreSQL target with a role `app_user` / [`INITIAL_PW`], or `None` (printed) without the
/// binaries.
fn target() -> Option<PgCluster> {
    if PgCluster::binaries().is_none() {
        eprintln!("SKIPPED: PostgreSQL binaries not found under /usr/lib/postgresql (scripts/pg.sh installs them)");
        return None;
    }
    Some(PgCluster::start_new_with_password(SUPERUSER_PW))
}

/// Whether `user`/`password` logs in to the target over TCP: `Some(false)` when refused, `None`
/// when the target cannot be reached.
async fn logs_in(t: &PgCluster, user: &str, password: &str) -> Option<bool> {
    use sqlx::{ConnectOptions, Connection};
    let opts = sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(t.port)
        .username(user)
        .password(password)
        .database("postgres")
        .disable_statement_logging();
    match tokio::time::timeout(Duration::from_secs(10), opts.connect()).await {
        Ok(Ok(c)) => {
            let _ = c.close().await;
            Some(true)
        }
        Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("28P01") => Some(false),
        _ => None,
    }
}

async fn create_role(t: &PgCluster) {
    as_superuser(
        t,
        &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{INITIAL_PW}'"),
    )
    .await;
}

/// Somebody changes the role's password on the target, behind the vault's back.
async fn change_out_of_band(t: &PgCluster, password: &str) {
    as_superuser(t, &format!("ALTER ROLE {ROLE} PASSWORD '{password}'")).await;
}

async fn as_superuser(t: &PgCluster, sql: &str) {
    use sqlx::{ConnectOptions, Connection, Executor};
    let mut c = sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(t.port)
        .username("postgres")
        .password(SUPERUSER_PW)
        .database("postgres")
        .disable_statement_logging()
        .connect()
        .await
        .expect("superuser login");
    c.execute(sql).await.expect("statement as superuser");
    let _ = c.close().await;
}

/// A vault with safe `db`, the target's superuser as credential `pg-admin`, and `app` (the role)
/// set to change through `postgresql` with `pg-admin`. `extra` is merged into its
/// `execution_settings`. Returns the id of `app`.
async fn setup(s: &Server, t: &PgCluster, admin_pw: &str, extra: Value) -> String {
    let r = &s.root;
    s.post("/api/v1/safes", r, json!({"name": "db"})).await;
    let device = json!({"hostname": "pg1", "ip": "127.0.0.1"});
    let port = t.port.to_string();
    s.cred(
        r,
        json!({"name": "pg-admin", "identifier": "pg-admin", "username": "postgres", "secret": admin_pw,
               "safe": "db", "device": device, "properties": {"Port": port}}),
    )
    .await;
    let mut exec = json!({"automatic_change": true, "change_plugin": "postgresql",
                          "change_template": "alter-role", "authentication_credential": "pg-admin"});
    for (k, v) in extra.as_object().unwrap() {
        exec[k] = v.clone();
    }
    s.cred(
        r,
        json!({"name": "app", "username": ROLE, "secret": INITIAL_PW, "safe": "db", "device": device,
               "properties": {"Port": port, "Database": "postgres"},
               "settings": {"execution_settings": exec}}),
    )
    .await
}

async fn secret(s: &Server, id: &str) -> (i64, String) {
    let (st, v) = s
        .get(&format!("/api/v1/credentials/{id}/secret"), &s.root)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    (
        v["version"].as_i64().unwrap(),
        v["secret"].as_str().unwrap().to_owned(),
    )
}

async fn rotate(s: &Server, id: &str) -> (StatusCode, Value) {
    s.post(
        &format!("/api/v1/credentials/{id}/rotate"),
        &s.root,
        json!({}),
    )
    .await
}

async fn status(s: &Server, id: &str) -> Value {
    let (st, v) = s
        .get(&format!("/api/v1/credentials/{id}/rotation"), &s.root)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// The `credential.rotate` audit records of `id`, oldest first: (outcome, detail).
async fn rotate_audit(s: &Server, id: &str) -> Vec<(String, Value)> {
    let (_, tail) = s.get("/api/v1/audit/tail?n=1000", &s.root).await;
    tail["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "credential.rotate" && r["target"] == id)
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["detail"].clone(),
            )
        })
        .collect()
}

/// A CCP application allowed to read safe `db` from loopback.
async fn ccp_app(s: &Server) {
    let r = &s.root;
    let (st, a) = s
        .post(
            "/api/v1/apps",
            r,
            json!({"app_id": "Billing", "sources": ["127.0.0.0/8"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, _) = s
        .post(
            "/api/v1/apps/Billing/allow",
            r,
            json!({"type": "safe", "name": "db"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

async fn ccp(s: &Server, extra: &str) -> (StatusCode, Value) {
    let resp = s
        .http
        .get(s.url(&format!(
            "/AIMWebService/api/Accounts?AppID=Billing&Safe=db&Object=app{extra}"
        )))
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_password_change_sets_a_new_password_that_logs_in_and_the_old_one_no_longer_does() {
    let Some(t) = target() else { return };
    create_role(&t).await;
    let s = Server::dev().await;
    let id = setup(&s, &t, SUPERUSER_PW, json!({})).await;
    assert_eq!(logs_in(&t, ROLE, INITIAL_PW).await, Some(true));

    let (st, run) = rotate(&s, &id).await;
    assert_eq!(st, StatusCode::OK, "{run}");
    assert_eq!(run["outcome"], "changed", "{run}");
    let (version, new) = secret(&s, &id).await;
    assert_eq!((version, run["version"].as_i64()), (2, Some(2)));
    assert_ne!(new, INITIAL_PW);
    assert!(new.len() >= 32, "a generated password");
    assert_eq!(
        logs_in(&t, ROLE, &new).await,
        Some(true),
        "the new one logs in"
    );
    assert_eq!(
        logs_in(&t, ROLE, INITIAL_PW).await,
        Some(false),
        "the old one no longer does"
    );

    // The status and the history: each change is a new version.
    let st1 = status(&s, &id).await;
    assert_eq!(st1["last_result"], "ok", "{st1}");
    assert_eq!(st1["in_flight"], false);
    assert_eq!(st1["plugin"], "postgresql");
    assert_eq!(st1["history"].as_array().unwrap().len(), 1);
    assert_eq!(st1["history"][0]["version"], 2);
    assert_eq!(st1["history"][0]["operation"], "rotate");

    // The role's own credential works too (use_own_credential_to_connect), and the CCP door answers
    // the newest value with PasswordChangeInProcess False.
    let (st, _) = s
        .patch(
            &format!("/api/v1/credentials/{id}"),
            &s.root,
            json!({"settings": {"execution_settings": {"automatic_change": true, "change_plugin": "postgresql",
                                                       "use_own_credential_to_connect": true,
                                                       "password_length": 48, "password_avoid": "aeiouAEIOU0@"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, run) = rotate(&s, &id).await;
    assert_eq!(run["outcome"], "changed", "{run}");
    let (version, newer) = secret(&s, &id).await;
    assert_eq!(version, 4, "settings update (3), change (4)");
    // The password rules: its length, and none of the characters to avoid.
    assert_eq!(newer.len(), 48);
    assert!(
        !newer.chars().any(|c| "aeiouAEIOU0@".contains(c)),
        "{newer:?}"
    );
    assert_eq!(logs_in(&t, ROLE, &newer).await, Some(true));
    assert_eq!(logs_in(&t, ROLE, &new).await, Some(false));
    ccp_app(&s).await;
    let (st, v) = ccp(&s, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["Content"], newer.as_str());
    assert_eq!(v["PasswordChangeInProcess"], "False");

    // Every attempt audited: started and ok, twice, with no secret (the leak check at the end
    // searches the audit for every value stored).
    let outcomes: Vec<String> = rotate_audit(&s, &id)
        .await
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert_eq!(outcomes, ["started", "ok", "started", "ok"]);

    // Someone without write may not change it.
    let tok = s.user("reader").await;
    let (st, _) = s
        .put(
            "/api/v1/safes/db/members",
            &s.root,
            json!({"type": "user", "name": "reader", "permissions": ["list", "read"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .req(
            Method::POST,
            &format!("/api/v1/credentials/{id}/rotate"),
            Some(&tok),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_target_that_is_down_keeps_the_working_password_and_is_retried_with_backoff() {
    let Some(t) = target() else { return };
    create_role(&t).await;
    let s = Server::dev().await;
    let id = setup(&s, &t, SUPERUSER_PW, json!({"change_every_days": 30})).await;
    let st0 = status(&s, &id).await;
    assert_eq!(st0["every_hours"], 720, "{st0}");
    assert!(st0["next_run_at"].is_string(), "scheduled: {st0}");

    t.crash();
    let (st, run) = rotate(&s, &id).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(run["outcome"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("unreachable"),
        "{run}"
    );
    assert_eq!(secret(&s, &id).await, (1, INITIAL_PW.to_owned()));
    let st1 = status(&s, &id).await;
    assert_eq!(
        (&st1["last_result"], &st1["failures"], &st1["in_flight"]),
        (&json!("failed"), &json!(1), &json!(false)),
        "{st1}"
    );
    let audit = rotate_audit(&s, &id).await;
    let (outcome, detail) = audit.last().unwrap();
    assert_eq!(outcome, "failed");
    assert!(
        detail["reason"].as_str().unwrap().contains("unreachable"),
        "{detail}"
    );

    // The target is back; the retry is due after the backoff (a minute), not before.
    t.start();
    let vault = s.running.vault.clone();
    let v = vault.clone();
    assert_eq!(
        s.on_server(async move { v.run_due_changes().await })
            .await
            .unwrap(),
        0,
        "not due yet"
    );
    s.advance_clock(Duration::from_secs(61));
    let v = vault.clone();
    assert_eq!(
        s.on_server(async move { v.run_due_changes().await })
            .await
            .unwrap(),
        1
    );
    let (version, new) = secret(&s, &id).await;
    assert_eq!(version, 2);
    assert_eq!(logs_in(&t, ROLE, &new).await, Some(true));
    assert_eq!(logs_in(&t, ROLE, INITIAL_PW).await, Some(false));
    let st2 = status(&s, &id).await;
    assert_eq!(
        (&st2["last_result"], &st2["failures"]),
        (&json!("ok"), &json!(0))
    );
    assert!(st2["next_run_at"].is_string(), "next in 30 days: {st2}");

    // 30 days later the schedule changes it again by itself.
    s.advance_clock(Duration::from_secs(30 * 24 * 3600 + 60));
    let v = vault.clone();
    assert_eq!(
        s.on_server(async move { v.run_due_changes().await })
            .await
            .unwrap(),
        1
    );
    let (version, newer) = secret(&s, &id).await;
    assert_eq!(version, 3);
    assert_eq!(logs_in(&t, ROLE, &newer).await, Some(true));
}

#[tokio::test]
async fn a_wrong_authentication_credential_changes_nothing_and_says_why() {
    let Some(t) = target() else { return };
    create_role(&t).await;
    let s = Server::dev().await;
    let id = setup(&s, &t, "not-the-superuser-pw", json!({})).await;
    let (_, run) = rotate(&s, &id).await;
    assert_eq!(run["outcome"], "failed", "{run}");
    let err = run["error"].as_str().unwrap();
    assert!(err.contains("login refused"), "{err}");
    assert!(err.contains("postgres"), "names the user: {err}");
    assert_eq!(secret(&s, &id).await, (1, INITIAL_PW.to_owned()));
    assert_eq!(logs_in(&t, ROLE, INITIAL_PW).await, Some(true));
    let st = status(&s, &id).await;
    assert_eq!(
        (&st["last_result"], &st["in_flight"]),
        (&json!("failed"), &json!(false))
    );
    assert!(st["last_error"].as_str().unwrap().contains("login refused"));

    // An authentication credential for another device is refused: its password would go elsewhere.
    let (st, _) = s
        .patch(
            &format!("/api/v1/credentials/{id}"),
            &s.root,
            json!({"device": {"hostname": "elsewhere", "ip": "127.0.0.1"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, run) = rotate(&s, &id).await;
    assert!(
        run["error"].as_str().unwrap().contains("another device"),
        "{run}"
    );
}

#[tokio::test]
async fn unknown_plugins_and_templates_are_refused_when_written() {
    let s = Server::dev().await;
    let r = &s.root;
    s.post("/api/v1/safes", r, json!({"name": "db"})).await;
    for (settings, field) in [
        (
            json!({"execution_settings": {"change_plugin": "SSH", "change_template": "3COM"}}),
            "change_plugin",
        ),
        (
            json!({"execution_settings": {"change_plugin": "postgresql", "change_template": "3COM"}}),
            "change_plugin",
        ),
        (
            json!({"jit_settings": {"credential_creation_plugin": "Windows RM"}}),
            "credential_creation_plugin",
        ),
        (
            json!({"execution_settings": {"password_length": 8}}),
            "password_length",
        ),
        (
            json!({"execution_settings": {"password_avoid": "0123456789"}}),
            "password_avoid",
        ),
    ] {
        let (st, e) = s
            .post(
                "/api/v1/credentials",
                r,
                json!({"name": "x", "safe": "db", "secret": "s3cret-value", "settings": settings}),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{e}"
        );
    }
    let (_, l) = s.get("/api/v1/credentials", r).await;
    assert_eq!(l["items"], json!([]), "nothing written");

    // The A2A door: a 1000-series code, nothing written.
    let (st, a) = s
        .post(
            "/api/v1/apps",
            r,
            json!({"app_id": "Pam1", "sources": ["127.0.0.0/8"], "client_secret": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, _) = s
        .post(
            "/api/v1/apps/Pam1/allow",
            r,
            json!({"type": "safe-write", "name": "db"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let tok = s
        .a2a_token("Pam1", a["client_secret_value"].as_str().unwrap())
        .await;
    let (st, e) = s
        .req(
            Method::POST,
            "/iso/pam/credential",
            Some(&tok),
            Some(json!({"username": "u", "hostname": "h", "ip": "10.0.0.1",
                        "execution_settings": {"automatic_change": true, "change_plugin": "SSH", "change_template": "3COM"}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["exception"]["code"], 1000, "{e}");
    let (st, ok) = s
        .req(
            Method::POST,
            "/iso/pam/credential",
            Some(&tok),
            Some(json!({"username": "u", "hostname": "h", "ip": "10.0.0.1",
                        "execution_settings": {"automatic_change": true, "change_plugin": "postgresql",
                                               "change_template": "alter-role", "change_every_hours": 12}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ok}");
    let id = ok["credential"]["id"].as_str().unwrap();
    assert_eq!(status(&s, id).await["every_hours"], 12);
}

/// A crash between the phases (the run stops after the pending value is stored, or after the
/// target took it; meanwhile a second server on the same store may not touch it), then the engine
/// runs again on the other server: the pending value is settled
/// and the vault's current value logs in, even after a key rotation retired the key it was sealed
/// under. Meanwhile every door answers the old value, the CCP door
/// says the change is in process and `FailRequestOnPasswordChange=true` gets APPAP282E.
#[tokio::test]
async fn a_crash_between_phases_leaves_a_current_value_that_logs_in() {
    let Some(t) = target() else { return };
    create_role(&t).await;
    let mut a = Server::dev().await;
    let id = setup(&a, &t, SUPERUSER_PW, json!({})).await;
    ccp_app(&a).await;

    // 1. Stopped after phase 1: nothing changed on the target.
    a.running.vault.pwchange_stop_after(StopAfter::Pending);
    let (st, _) = rotate(&a, &id).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    assert_eq!(status(&a, &id).await["in_flight"], true);
    let (st, v) = ccp(&a, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["Content"].as_str(), v["PasswordChangeInProcess"].as_str()),
        (Some(INITIAL_PW), Some("True"))
    );
    let (st, v) = ccp(&a, "&FailRequestOnPasswordChange=true").await;
    assert_eq!(
        (st, v["ErrorCode"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("APPAP282E"))
    );
    assert_eq!(secret(&a, &id).await, (1, INITIAL_PW.to_owned()));

    // Another server on the same store meanwhile: the change is A's (its lease), so B changes
    // nothing, on demand or in its background runs.
    let b = crate::second_server(&a).await;
    let (st, run) = rotate(&b, &id).await;
    assert_eq!(
        (st, &run["outcome"]),
        (StatusCode::OK, &json!("busy")),
        "{run}"
    );
    let vb = b.running.vault.clone();
    assert_eq!(
        b.on_server(async move { vb.run_due_changes().await })
            .await
            .unwrap(),
        0
    );
    assert_eq!(logs_in(&t, ROLE, INITIAL_PW).await, Some(true));

    // 2. Stopped after phase 2: the target has the pending value, the vault still the old one.
    a.running
        .vault
        .pwchange_stop_after(StopAfter::TargetChanged);
    a.advance_clock(Duration::from_secs(301)); // the first run's lease expires
    let (st, _) = rotate(&a, &id).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    assert_eq!(
        logs_in(&t, ROLE, INITIAL_PW).await,
        Some(false),
        "the target changed"
    );
    assert_eq!(
        secret(&a, &id).await,
        (1, INITIAL_PW.to_owned()),
        "the old value until settled"
    );
    let (_, v) = ccp(&a, "").await;
    assert_eq!(v["PasswordChangeInProcess"], "True");

    // A key rotation meanwhile: the pending value is sealed again under the new key, so the old
    // key retires without taking the only copy of the password the target now has.
    let (st, rot) = a.post("/api/v1/sys/rotate", &a.root, json!({})).await;
    assert_eq!((st, &rot["term"]), (StatusCode::OK, &json!(2)), "{rot}");
    a.advance_clock(Duration::from_secs(3600));
    // (The rotation's own background pass may retire the key first; a pass's `key_terms` can then
    // lag its refresh for a moment: ask again.)
    let (mut st, mut rw) = (StatusCode::OK, Value::Null);
    for _ in 0..20 {
        (st, rw) = a.post("/api/v1/sys/rewrap", &a.root, json!({})).await;
        if st != StatusCode::OK || rw["key_terms"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((st, &rw["key_terms"]), (StatusCode::OK, &json!(1)), "{rw}");

    a.running.vault.pwchange_stop_after(StopAfter::Never);
    a.stop().await;

    // A is gone; once its lease expired, B's engine settles the pending value: it logs in, so it
    // becomes current. (The leak check needs a live server; B's covers the logs and audit of both.)
    a.root.clear();
    b.advance_clock(Duration::from_secs(700)); // past the lease A took (its clock + 301 s + 300 s)
    let v = b.running.vault.clone();
    let ran = b
        .on_server(async move { v.run_due_changes().await })
        .await
        .unwrap();
    assert_eq!(ran, 1);
    let (version, current) = secret(&b, &id).await;
    assert_eq!(version, 2);
    assert_eq!(
        logs_in(&t, ROLE, &current).await,
        Some(true),
        "the current value logs in"
    );
    let st = status(&b, &id).await;
    assert_eq!(
        (&st["in_flight"], &st["last_result"]),
        (&json!(false), &json!("settled")),
        "{st}"
    );
    let (_, v) = ccp(&b, "").await;
    assert_eq!(
        (v["Content"].as_str(), v["PasswordChangeInProcess"].as_str()),
        (Some(current.as_str()), Some("False"))
    );
    let outcomes: Vec<String> = rotate_audit(&b, &id)
        .await
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert_eq!(outcomes, ["started", "abandoned", "started", "settled"]);
}

#[tokio::test]
async fn reconciliation_after_an_out_of_band_change_sets_a_password_that_logs_in() {
    let Some(t) = target() else { return };
    create_role(&t).await;
    let s = Server::dev().await;
    // Changed with the role's own password; reconciled through the superuser.
    let id = setup(
        &s,
        &t,
        SUPERUSER_PW,
        json!({"use_own_credential_to_connect": true, "status": false,
               "reconciliation_credential": "pg-admin", "reconciliation_plugin": "postgresql"}),
    )
    .await;
    change_out_of_band(&t, "changed-behind-the-vault-1").await;

    // Reconciliation off (`status` false): the role's own login is refused, nothing changes.
    let (_, run) = rotate(&s, &id).await;
    assert_eq!(run["outcome"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("login refused"),
        "{run}"
    );
    let (st, e) = s
        .post(
            &format!("/api/v1/credentials/{id}/reconcile"),
            &s.root,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(secret(&s, &id).await, (1, INITIAL_PW.to_owned()));

    // On: the change falls back to the reconciliation credential and sets a password that works.
    let (st, _) = s
        .patch(
            &format!("/api/v1/credentials/{id}"),
            &s.root,
            json!({"settings": {"execution_settings": {
                "automatic_change": true, "change_plugin": "postgresql", "use_own_credential_to_connect": true,
                "status": true, "reconciliation_credential": "pg-admin", "reconciliation_plugin": "postgresql"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, run) = rotate(&s, &id).await;
    assert_eq!(run["outcome"], "reconciled", "{run}");
    let (version, new) = secret(&s, &id).await;
    assert_eq!(version, 3);
    assert_eq!(logs_in(&t, ROLE, &new).await, Some(true));
    assert_eq!(
        logs_in(&t, ROLE, "changed-behind-the-vault-1").await,
        Some(false)
    );
    assert_eq!(status(&s, &id).await["last_result"], "reconciled");

    // Reconcile on demand, after another change behind the vault's back.
    change_out_of_band(&t, "changed-behind-the-vault-2").await;
    let (st, run) = s
        .post(
            &format!("/api/v1/credentials/{id}/reconcile"),
            &s.root,
            json!({}),
        )
        .await;
    assert_eq!(
        (st, &run["outcome"]),
        (StatusCode::OK, &json!("reconciled")),
        "{run}"
    );
    let (version, newer) = secret(&s, &id).await;
    assert_eq!(version, 4);
    assert_eq!(logs_in(&t, ROLE, &newer).await, Some(true));
    let outcomes: Vec<String> = rotate_audit(&s, &id)
        .await
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert_eq!(
        outcomes,
        [
            "started",
            "failed",
            "started",
            "reconciled",
            "started",
            "reconciled"
        ]
    );
}

/// `change_after_release`: an application checks the password out through the A2A door (custody)
/// and releases it; the engine then changes it by itself, so the value the application saw no
/// longer logs in.
#[tokio::test]
async fn a_custody_release_changes_the_password_when_the_settings_ask() {
    let Some(t) = target() else { return };
    create_role(&t).await;
    let s = Server::dev().await;
    let id = setup(&s, &t, SUPERUSER_PW, json!({"change_after_release": true})).await;
    let r = &s.root;
    let (st, a) = s
        .post(
            "/api/v1/apps",
            r,
            json!({"app_id": "Ops", "sources": ["127.0.0.0/8"], "client_secret": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, _) = s
        .post(
            "/api/v1/apps/Ops/allow",
            r,
            json!({"type": "safe-write", "name": "db"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let tok = s
        .a2a_token("Ops", a["client_secret_value"].as_str().unwrap())
        .await;
    let (st, got) = s
        .req(
            Method::GET,
            &format!("/iso/pam/credential/{id}"),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["credential"]["password"], INITIAL_PW);
    assert_eq!(
        status(&s, &id).await["history"],
        json!([]),
        "no change while checked out"
    );
    let (st, rel) = s
        .req(
            Method::DELETE,
            &format!("/iso/pam/credential/custody/{id}"),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rel}");

    // The engine is woken by the release; give it a few seconds.
    let mut changed = Value::Null;
    for _ in 0..100 {
        changed = status(&s, &id).await;
        if changed["last_result"] == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(changed["last_result"], "ok", "{changed}");
    let (version, new) = secret(&s, &id).await;
    assert_eq!(version, 2);
    assert_eq!(logs_in(&t, ROLE, &new).await, Some(true));
    assert_eq!(
        logs_in(&t, ROLE, INITIAL_PW).await,
        Some(false),
        "the checked-out value is dead"
    );
}
