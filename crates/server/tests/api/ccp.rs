//! The Central Credential Provider door (`GET /AIMWebService/api/Accounts`) over HTTP.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::Server;

/// A vault with one safe, two accounts in it, one account elsewhere, and an application.
async fn setup(app: Value) -> (Server, String) {
    let s = Server::dev().await;
    let r = s.root.clone();
    s.post("/api/v1/safes", &r, json!({"name": "TSODemo"}))
        .await;
    s.post("/api/v1/safes", &r, json!({"name": "Other"})).await;
    let id = s
        .cred(
            &r,
            json!({"name": "Operating System-WinDesktopLocal-10.30.40.55-cyberarktsouser1", "username": "cyberarktsouser1",
                   "safe": "TSODemo", "secret": "ccp-password-1",
                   "device": {"hostname": "", "ip": "10.30.40.55", "type": "Operating System"},
                   "properties": {"PolicyID": "WinDesktopLocal", "CreationMethod": "PVWA", "LogonDomain": "CORP"}}),
        )
        .await;
    s.cred(&r, json!({"name": "second", "username": "svc_b", "safe": "TSODemo", "secret": "ccp-password-2",
                      "device": {"hostname": "db1", "ip": "10.0.0.9"}, "properties": {"PasswordChangeInProcess": "True"}})).await;
    s.cred(
        &r,
        json!({"name": "hidden", "username": "svc_b", "safe": "Other", "secret": "ccp-password-3",
                      "device": {"hostname": "db2", "ip": "10.0.0.10"}}),
    )
    .await;
    let (st, a) = s.post("/api/v1/apps", &r, app).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, _) = s
        .post(
            "/api/v1/apps/App1/allow",
            &r,
            json!({"type": "safe", "name": "TSODemo"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    (s, id)
}

async fn get(s: &Server, query: &str, secret: Option<&str>) -> (StatusCode, Value) {
    let mut r = s
        .http
        .get(s.url(&format!("/AIMWebService/api/Accounts?{query}")));
    if let Some(x) = secret {
        r = r.header("X-CCP-App-Secret", x);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["ErrorCode"].as_str().unwrap_or("")
}

#[tokio::test]
async fn get_password_success_and_the_error_table() {
    let (s, id) = setup(json!({"app_id": "App1", "sources": ["127.0.0.0/8"]})).await;

    // The seed's example query: exactly one match, every field a string, Content the password.
    let (st, v) = get(
        &s,
        "AppID=App1&Query=Address%3D10.30.40.55%3BUsername%3Dcyberarktsouser1&Reason=nightly%20job",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["Content"], "ccp-password-1");
    for (k, want) in [
        ("UserName", "cyberarktsouser1"),
        ("Address", "10.30.40.55"),
        ("Safe", "TSODemo"),
        ("Folder", "Root"),
        (
            "Name",
            "Operating System-WinDesktopLocal-10.30.40.55-cyberarktsouser1",
        ),
        ("PolicyID", "WinDesktopLocal"),
        ("DeviceType", "Operating System"),
        ("PasswordChangeInProcess", "False"),
        ("CreationMethod", "PVWA"),
        ("LogonDomain", "CORP"),
    ] {
        assert_eq!(v[k], want, "{k}");
    }
    assert!(v.as_object().unwrap().values().all(Value::is_string));

    // Separate parameters, case-insensitive names, unknown parameters ignored, trailing slash.
    let (st, v) = s.http.get(s.url("/AIMWebService/api/Accounts/?appid=App1&safe=TSODemo&object=Operating%20System-WinDesktopLocal-10.30.40.55-cyberarktsouser1&query_format=x")).send().await.map(|r| (r.status(), r)).unwrap();
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v.json::<Value>().await.unwrap()["Content"],
        "ccp-password-1"
    );
    // Regexp.
    let (st, v) = get(
        &s,
        "AppID=App1&Query=UserName%3D%5Ecyber.*1%24&QueryFormat=Regexp",
        None,
    )
    .await;
    assert_eq!(
        (st, v["Content"].clone()),
        (StatusCode::OK, json!("ccp-password-1"))
    );

    let cases: Vec<(&str, StatusCode, &str)> = vec![
        ("Safe=TSODemo", StatusCode::BAD_REQUEST, "AIMWS031E"),
        (
            "AppID=App1&Query=Safe",
            StatusCode::BAD_REQUEST,
            "AIMWS030E",
        ),
        (
            "AppID=App1&Query=UserName%3D(x&QueryFormat=Regexp",
            StatusCode::BAD_REQUEST,
            "AIMWS030E",
        ),
        (
            "AppID=App1&Safe=TSODemo&QueryFormat=Fuzzy",
            StatusCode::BAD_REQUEST,
            "AIMWS030E",
        ),
        (
            "AppID=App1&Safe=TSO%00Demo",
            StatusCode::BAD_REQUEST,
            "CASVL010E",
        ),
        (
            "AppID=App1&Query=Safe%3DTSODemo",
            StatusCode::BAD_REQUEST,
            "APPAP227E",
        ),
        (
            "AppID=Nobody&Query=Safe%3DTSODemo",
            StatusCode::FORBIDDEN,
            "APPAP008E",
        ),
        (
            "AppID=App1&Query=Address%3D10.0.1.20%3BUsername%3DInvalidUser",
            StatusCode::NOT_FOUND,
            "APPAP004E",
        ),
        // Exists, but in a safe the application was not granted: the same answer as "not found".
        (
            "AppID=App1&Query=Address%3D10.0.0.10",
            StatusCode::NOT_FOUND,
            "APPAP004E",
        ),
        (
            "AppID=App1&Query=UserName%3Dsvc_b&FailRequestOnPasswordChange=true",
            StatusCode::INTERNAL_SERVER_ERROR,
            "APPAP282E",
        ),
    ];
    for (q, status, c) in cases {
        let (st, v) = get(&s, q, None).await;
        assert_eq!((st, code(&v)), (status, c), "{q}: {v}");
        assert!(v["ErrorMsg"].is_string());
        assert!(
            !v.to_string().contains("ccp-password"),
            "no password in errors"
        );
    }
    let (_, v) = get(
        &s,
        "AppID=App1&Query=Address%3D10.0.1.20%3BUsername%3DInvalidUser",
        None,
    )
    .await;
    assert_eq!(v["ErrorMsg"], "Password object matching query [Address=10.0.1.20;Username=InvalidUser] was not found (Diagnostic Info: 5). Please check that there is a password object that answers your query in the Vault and that both the Provider and the application user have the appropriate permissions needed in order to use the password.");
    // Without the flag, the account being changed is still returned.
    let (st, v) = get(&s, "AppID=App1&Query=UserName%3Dsvc_b", None).await;
    assert_eq!(
        (st, v["Content"].clone()),
        (StatusCode::OK, json!("ccp-password-2"))
    );

    // A single-credential grant reaches into another safe.
    let (_, other) = s.get("/api/v1/credentials?safe=Other", &s.root).await;
    let hidden = other["items"][0]["id"].as_str().unwrap().to_owned();
    s.post(
        "/api/v1/apps/App1/allow",
        &s.root,
        json!({"type": "credential", "name": hidden}),
    )
    .await;
    let (st, v) = get(&s, "AppID=App1&Query=Address%3D10.0.0.10", None).await;
    assert_eq!(
        (st, v["Content"].clone()),
        (StatusCode::OK, json!("ccp-password-3"))
    );
    // Denying the safe takes it away again.
    s.post(
        "/api/v1/apps/App1/deny",
        &s.root,
        json!({"type": "safe", "name": "TSODemo"}),
    )
    .await;
    let (st, _) = get(&s, "AppID=App1&Query=Address%3D10.30.40.55", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Every call is audited with the AppID, the query, the source and the reason; no password.
    // (A refusal repeated from one source within a period is counted into a summary instead of a
    // record of its own, issue 16.2: each kind of refusal has its record.)
    let (_, tail) = s.get("/api/v1/audit/tail?n=1000", &s.root).await;
    let recs: Vec<&Value> = tail["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["door"] == "ccp")
        .collect();
    for c in [
        "AIMWS031E",
        "AIMWS030E",
        "CASVL010E",
        "APPAP227E",
        "APPAP008E",
        "APPAP004E",
        "APPAP282E",
    ] {
        assert!(
            recs.iter().any(|r| r["detail"]["error_code"] == c),
            "{c}: {recs:#?}"
        );
    }
    assert!(recs.len() >= 11, "{}", recs.len());
    let ok = recs
        .iter()
        .find(|r| r["outcome"] == "ok" && r["target"] == json!(id))
        .expect("granted read audited");
    assert_eq!(ok["actor"], "app:App1");
    assert_eq!(ok["detail"]["reason"], "nightly job");
    assert_eq!(
        ok["detail"]["query"],
        "Address=10.30.40.55;Username=cyberarktsouser1"
    );
    assert_eq!(ok["source"], "127.0.0.1");
    assert!(recs
        .iter()
        .any(|r| r["outcome"] == "denied" && r["detail"]["error_code"] == "APPAP008E"));
    assert!(!tail.to_string().contains("ccp-password"));

    // The legacy health probe.
    let st = s
        .http
        .get(s.url("/AIMWebService/v1.1/aim.asmx"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn application_authentication_rules() {
    // Source rule that excludes loopback: refused even though the AppID exists.
    let (s, _) = setup(json!({"app_id": "App1", "sources": ["10.0.0.0/8"]})).await;
    let (st, v) = get(&s, "AppID=App1&Query=Address%3D10.30.40.55", None).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "APPAP306E"));

    // No rule at all: refused, not open.
    let (st, _) = s
        .post("/api/v1/apps", &s.root, json!({"app_id": "Open"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    s.post(
        "/api/v1/apps/Open/allow",
        &s.root,
        json!({"type": "safe", "name": "TSODemo"}),
    )
    .await;
    let (st, v) = get(&s, "AppID=Open&Query=Address%3D10.30.40.55", None).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "APPAP306E"));

    // Header secret plus source: both must hold.
    let (st, _) = s.post("/api/v1/apps", &s.root, json!({"app_id": "Hdr", "sources": ["127.0.0.1"], "header_secret": "a-long-shared-secret-1"})).await;
    assert_eq!(st, StatusCode::CREATED);
    s.post(
        "/api/v1/apps/Hdr/allow",
        &s.root,
        json!({"type": "safe", "name": "TSODemo"}),
    )
    .await;
    let q = "AppID=Hdr&Query=Address%3D10.30.40.55";
    assert_eq!(get(&s, q, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&s, q, Some("wrong-secret-wrong-secret")).await.0,
        StatusCode::FORBIDDEN
    );
    let (st, v) = get(&s, q, Some("a-long-shared-secret-1")).await;
    assert_eq!(
        (st, v["Content"].clone()),
        (StatusCode::OK, json!("ccp-password-1"))
    );
    // The app listing never shows the header secret.
    let (_, apps) = s.get("/api/v1/apps", &s.root).await;
    assert!(!apps.to_string().contains("a-long-shared-secret-1"));
    assert_eq!(
        apps["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["app_id"] == "Hdr")
            .unwrap()["header_secret"],
        true
    );

    // A certificate rule cannot be met without mTLS: refused.
    let (st, _) = s
        .post(
            "/api/v1/apps",
            &s.root,
            json!({"app_id": "Cert", "certificates": [{"issuer": "CN=Corp CA", "serial": "1A"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        get(&s, "AppID=Cert&Query=Address%3D10.30.40.55", None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // Bad application definitions and non-admins.
    for bad in [
        json!({"app_id": "x y", "sources": ["127.0.0.1"]}),
        json!({"app_id": "B", "sources": ["not-an-ip"]}),
        json!({"app_id": "C", "header_secret": "short"}),
    ] {
        let (st, _) = s.post("/api/v1/apps", &s.root, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}");
    }
    let user = s.user("plain").await;
    let (st, _) = s
        .post(
            "/api/v1/apps",
            &user,
            json!({"app_id": "Mine", "sources": ["127.0.0.1"]}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(
            "/api/v1/apps/App1/allow",
            &s.root,
            json!({"type": "safe", "name": "NoSuchSafe"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Sealed: the door answers in its own format.
    s.post("/api/v1/sys/seal", &s.root, json!({})).await;
    let (st, v) = get(&s, q, Some("a-long-shared-secret-1")).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "CVSEALED01E")
    );
}

mod mtls {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
        DnType, IsCa, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    };
    use reqwest::StatusCode;
    use serde_json::{json, Value};

    use crate::common::Server;

    fn ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    /// (certificate PEM, key PEM) of a leaf signed by `ca`.
    fn leaf(
        ca: &CertifiedIssuer<'static, KeyPair>,
        cn: &str,
        serial: &[u8],
        sans: &[&str],
    ) -> (String, String) {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from_slice(serial));
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client(ca_pem: &str, s: &Server, identity: Option<&(String, String)>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .timeout(crate::common::HTTP_TIMEOUT)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .resolve("localhost", s.running.addr);
        if let Some((cert, key)) = identity {
            b = b.identity(
                reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap(),
            );
        }
        b.build().unwrap()
    }

    /// Issue 7: a CCP integration pulls from a remote credvault over mTLS with its client certificate.
    #[tokio::test]
    async fn ccp_integration_pulls_over_mtls_with_a_client_certificate() {
        let apps_ca = ca("Apps CA");
        let dir = tempfile::tempdir().unwrap();
        let (server_cert, server_key) = leaf(&apps_ca, "credvault", &[7], &["localhost"]);
        for (name, body) in [
            ("server.pem", &server_cert),
            ("server.key", &server_key),
            ("ca.pem", &apps_ca.pem()),
        ] {
            std::fs::write(dir.path().join(name), body.as_bytes()).unwrap();
        }
        let remote = Server::dev_with(|c| {
            c.tls_cert = Some(dir.path().join("server.pem"));
            c.tls_key = Some(dir.path().join("server.key"));
            c.tls_client_ca = Some(dir.path().join("ca.pem"));
        })
        .await;
        let admin = client(&apps_ca.pem(), &remote, None);
        let base = format!("https://localhost:{}", remote.running.addr.port());
        for (path, body) in [
            ("/api/v1/safes", json!({"name": "Pay"})),
            (
                "/api/v1/credentials",
                json!({"name": "pay-db", "username": "pay", "safe": "Pay", "secret": "mtls-pulled"}),
            ),
            (
                "/api/v1/apps",
                json!({"app_id": "Billing", "certificates": [{"issuer": "CN=Apps CA", "serial": "1A2B"}]}),
            ),
            (
                "/api/v1/apps/Billing/allow",
                json!({"type": "safe", "name": "Pay"}),
            ),
        ] {
            let r = admin
                .post(format!("{base}{path}"))
                .header("X-Vault-Token", &remote.root)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
        }
        let (cert, key) = leaf(&apps_ca, "billing", &[0x1a, 0x2b], &[]);
        let (other_cert, other_key) = leaf(&apps_ca, "billing", &[0x99], &[]);

        let local = Server::dev().await;
        local
            .post("/api/v1/safes", &local.root, json!({"name": "mirrors"}))
            .await;
        let add = |name: &str, identity: Option<String>| {
            let mut b = json!({"name": name, "kind": "ccp", "url": base, "safe": "mirrors",
                               "credential_names": ["pay-db"], "app_id": "Billing",
                               "remote_safe": "Pay", "ca_cert": apps_ca.pem()});
            if let Some(i) = identity {
                b["client_identity"] = json!(i);
            }
            local.post("/api/v1/integrations", &local.root, b)
        };
        let (st, i) = add("pay", Some(format!("{cert}\n{key}"))).await;
        assert_eq!(st, StatusCode::CREATED, "{i}");
        assert_eq!(i["status"]["fetched"], 1, "{i}");
        assert_eq!(i["secrets"], json!(["client_identity"]));
        let (_, l) = local
            .get("/api/v1/credentials?safe=mirrors", &local.root)
            .await;
        let id = l["items"][0]["id"].as_str().unwrap().to_owned();
        let (_, sec) = local
            .get(&format!("/api/v1/credentials/{id}/secret"), &local.root)
            .await;
        assert_eq!(sec["secret"], "mtls-pulled");
        // Without a certificate, or with one the AppID does not accept: the remote refuses, and the
        // integration's status says so.
        for (name, identity) in [
            ("nocert", None),
            ("wrongcert", Some(format!("{other_cert}\n{other_key}"))),
        ] {
            let (st, i) = add(name, identity).await;
            assert_eq!(st, StatusCode::CREATED);
            assert_eq!(i["status"]["fetched"], 0, "{i}");
            assert!(
                i["status"]["errors"].to_string().contains("APPAP306E"),
                "{name}: {i}"
            );
        }
        // A key that is not PEM is refused up front, without echoing it.
        let (st, e) = add("bad", Some("not a pem key".into())).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(!e.to_string().contains("not a pem key"));
    }

    #[tokio::test]
    async fn client_certificates_authenticate_applications() {
        let apps_ca = ca("Apps CA");
        let rogue_ca = ca("Rogue CA");
        let dir = tempfile::tempdir().unwrap();
        let (server_cert, server_key) = leaf(&apps_ca, "credvault", &[7], &["localhost"]);
        // The CA revoked the certificate with serial 0x55.
        let now = time::OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[0x55]),
                revocation_time: now - time::Duration::minutes(5),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&apps_ca)
        .unwrap()
        .pem()
        .unwrap();
        let paths = [
            ("server.pem", &server_cert),
            ("server.key", &server_key),
            ("ca.pem", &apps_ca.pem()),
            ("ca.crl", &crl),
        ];
        for (name, body) in paths {
            std::fs::write(dir.path().join(name), body.as_bytes()).unwrap();
        }
        let s = Server::dev_with(|c| {
            c.tls_cert = Some(dir.path().join("server.pem"));
            c.tls_key = Some(dir.path().join("server.key"));
            c.tls_client_ca = Some(dir.path().join("ca.pem"));
            c.tls_client_crl = Some(dir.path().join("ca.crl"));
        })
        .await;
        let good = leaf(&apps_ca, "billing", &[0x1a, 0x2b], &[]);
        let wrong_serial = leaf(&apps_ca, "billing", &[0x99], &[]);
        let rogue = leaf(&rogue_ca, "billing", &[0x1a, 0x2b], &[]);
        let revoked = leaf(&apps_ca, "billing", &[0x55], &[]);

        // Setup over HTTPS with a token and no client certificate: the native API still works.
        let admin = client(&apps_ca.pem(), &s, None);
        let base = format!("https://localhost:{}", s.running.addr.port());
        let post = |path: &str, body: Value| {
            admin
                .post(format!("{base}{path}"))
                .header("X-Vault-Token", &s.root)
                .json(&body)
                .send()
        };
        assert_eq!(
            post("/api/v1/safes", json!({"name": "Pay"}))
                .await
                .unwrap()
                .status(),
            StatusCode::CREATED
        );
        let c = post(
            "/api/v1/credentials",
            json!({"name": "pay-db", "username": "pay", "safe": "Pay", "secret": "mtls-secret"}),
        )
        .await
        .unwrap();
        assert_eq!(c.status(), StatusCode::CREATED);
        let app = json!({"app_id": "Billing", "certificates": [{"issuer": "CN=Apps CA", "serial": "1A2B"}]});
        assert_eq!(
            post("/api/v1/apps", app).await.unwrap().status(),
            StatusCode::CREATED
        );
        post(
            "/api/v1/apps/Billing/allow",
            json!({"type": "safe", "name": "Pay"}),
        )
        .await
        .unwrap();

        let url = format!("{base}/AIMWebService/api/Accounts?AppID=Billing&Safe=Pay&UserName=pay");
        let call = |c: reqwest::Client| {
            let url = url.clone();
            async move { c.get(url).send().await }
        };
        let ok: Value = call(client(&apps_ca.pem(), &s, Some(&good)))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ok["Content"], "mtls-secret");
        for (who, identity) in [
            ("no certificate", None),
            ("another serial", Some(&wrong_serial)),
        ] {
            let r = call(client(&apps_ca.pem(), &s, identity)).await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{who}");
            assert_eq!(
                r.json::<Value>().await.unwrap()["ErrorCode"],
                "APPAP306E",
                "{who}"
            );
        }
        // A certificate from another CA, or a revoked one, does not even complete the handshake,
        // even when the application's rule names the revoked serial.
        assert!(call(client(&apps_ca.pem(), &s, Some(&rogue)))
            .await
            .is_err());
        let app = json!({"app_id": "Revoked", "certificates": [{"issuer": "CN=Apps CA", "serial": "55"}]});
        assert_eq!(
            post("/api/v1/apps", app).await.unwrap().status(),
            StatusCode::CREATED
        );
        post(
            "/api/v1/apps/Revoked/allow",
            json!({"type": "safe", "name": "Pay"}),
        )
        .await
        .unwrap();
        let revoked_url =
            format!("{base}/AIMWebService/api/Accounts?AppID=Revoked&Safe=Pay&UserName=pay");
        assert!(client(&apps_ca.pem(), &s, Some(&revoked))
            .get(revoked_url)
            .send()
            .await
            .is_err());
        // A client that is not the AppID: Billing's valid certificate does not open another AppID.
        let app = json!({"app_id": "Payroll", "certificates": [{"issuer": "CN=Apps CA", "serial": "3C4D"}]});
        assert_eq!(
            post("/api/v1/apps", app).await.unwrap().status(),
            StatusCode::CREATED
        );
        post(
            "/api/v1/apps/Payroll/allow",
            json!({"type": "safe", "name": "Pay"}),
        )
        .await
        .unwrap();
        let r = client(&apps_ca.pem(), &s, Some(&good))
            .get(format!(
                "{base}/AIMWebService/api/Accounts?AppID=Payroll&Safe=Pay&UserName=pay"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.json::<Value>().await.unwrap()["ErrorCode"], "APPAP306E");

        // The same server driven by an independently written client: pyaim from PyPI.
        let dup = |n: &str| {
            post(
                "/api/v1/credentials",
                json!({"name": n, "username": "d", "safe": "Pay", "secret": "x"}),
            )
        };
        dup("dup-1").await.unwrap();
        dup("dup-2").await.unwrap();
        let (cp, kp) = (dir.path().join("client.pem"), dir.path().join("client.key"));
        std::fs::write(&cp, &good.0).unwrap();
        std::fs::write(&kp, &good.1).unwrap();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/pyaim_conformance.py"
        );
        let args = [
            script.to_owned(),
            format!("localhost:{}", s.running.addr.port()),
            dir.path().join("ca.pem").display().to_string(),
            cp.display().to_string(),
            kp.display().to_string(),
        ];
        // On the blocking pool: the server runs on this test's runtime thread meanwhile.
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("python3").args(args).output()
        })
        .await
        .unwrap()
        .expect("python3 runs");
        assert!(
            out.status.success(),
            "pyaim conformance script failed (scripts/test installs pyaim): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["by_username"]["ok"], true, "{r}");
        assert_eq!(r["by_username"]["Content"], "mtls-secret");
        assert_eq!(
            (
                r["by_username"]["Safe"].as_str(),
                r["by_username"]["Folder"].as_str()
            ),
            (Some("Pay"), Some("Root"))
        );
        assert_eq!(r["by_object"]["Content"], "mtls-secret");
        assert_eq!(r["missing"]["ok"], false);
        assert!(
            r["missing"]["message"]
                .as_str()
                .unwrap()
                .contains("not found"),
            "{r}"
        );
        assert!(
            r["two_match"]["message"]
                .as_str()
                .unwrap()
                .contains("APPAP227E"),
            "{r}"
        );
        assert!(
            r["unknown_app"]["message"]
                .as_str()
                .unwrap()
                .contains("Access forbidden"),
            "{r}"
        );

        // A client CA without HTTPS is a start-up error.
        let mut cfg = crate::common::config(dir.path().join("other"));
        cfg.tls_client_ca = Some(dir.path().join("ca.pem"));
        assert!(credvault_server::start(cfg)
            .await
            .err()
            .unwrap()
            .to_string()
            .contains("HTTPS"));
    }
}

/// Issue 16.5 and 16.6: unknown AppIDs and wrong header secrets count against the source, so neither
/// can be guessed at full speed: after the quota the source gets 429 even with the right secret.
#[tokio::test]
async fn guessing_appids_or_header_secrets_is_rate_limited() {
    let s = Server::dev_with(|c| c.auth_failures_per_minute = 5).await;
    s.post(
        "/api/v1/apps",
        &s.root,
        json!({"app_id": "Guarded", "sources": ["127.0.0.1"], "header_secret": "Right-Secret-0001"}),
    )
    .await;
    let ask = |app: &'static str, secret: &'static str| {
        let http = s.http.clone();
        let url = s.url(&format!("/AIMWebService/api/Accounts?AppID={app}&Object=x"));
        async move {
            let r = http
                .get(url)
                .header("X-CCP-App-Secret", secret)
                .send()
                .await
                .unwrap();
            let st = r.status();
            let v: Value = r.json().await.unwrap();
            (st, v["ErrorCode"].as_str().unwrap_or_default().to_owned())
        }
    };
    let mut codes = vec![];
    for i in 0..12 {
        let (st, code) = if i % 2 == 0 {
            ask("NoSuchApp", "whatever").await
        } else {
            ask("Guarded", "Wrong-Secret").await
        };
        codes.push((st, code));
    }
    assert!(
        codes[..4]
            .iter()
            .all(|(st, c)| *st == StatusCode::FORBIDDEN && (c == "APPAP008E" || c == "APPAP306E")),
        "{codes:?}"
    );
    assert_eq!(
        codes.last().unwrap(),
        &(StatusCode::TOO_MANY_REQUESTS, "CVLIMIT01E".to_owned()),
        "{codes:?}"
    );
    // Blocked: even the right secret waits.
    let (st, code) = ask("Guarded", "Right-Secret-0001").await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "CVLIMIT01E")
    );
}
