//! Bounded HTTP fuzzing of every door against the real in-process server: random methods, paths,
//! query strings, headers and bodies (valid requests mutated: wrong types, unknown and missing
//! fields, huge, deep, unicode and control-character values, truncated JSON, form bodies, raw
//! bytes). Asserts that no request gets a 5xx and that the server keeps answering (a panic would
//! drop the connection), then that the audit chain still verifies.
//!
//! `CREDVAULT_FUZZ_REQUESTS` requests per door (default 10,000); `CREDVAULT_FUZZ_SEED` replays a run.
//! Figures in docs/reliability.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::common::Server;

#[derive(Clone)]
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Awkward strings: empty, long, unicode, control characters, encodings, traversal, injection.
fn nasty_string(r: &mut Rng) -> String {
    match r.below(14) {
        0 => String::new(),
        1 => "a".repeat(1 + r.below(5000)),
        2 => "ünïcødé-🔑-名前".to_owned(),
        3 => "line\nbreak\ttab\u{0}nul\u{7}bell".to_owned(),
        4 => "%00%ff%2e%2e%2f".to_owned(),
        5 => "../../etc/passwd".to_owned(),
        6 => "' OR 1=1; DROP TABLE credentials; --".to_owned(),
        7 => "${jndi:ldap://x}".to_owned(),
        8 => "(.*)+$".to_owned(),
        9 => "kv:secret/x".to_owned(),
        10 => "entity:pkg".to_owned(),
        11 => "mirror:int/a/b".to_owned(),
        12 => format!("{}", r.next()),
        _ => {
            let n = 1 + r.below(24);
            (0..n)
                .map(|_| char::from_u32(32 + (r.next() % 95) as u32).unwrap_or('x'))
                .collect()
        }
    }
}

fn nasty_value(r: &mut Rng, depth: usize) -> Value {
    match r.below(if depth > 3 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(r.chance(50)),
        2 => json!(r.next() as i64),
        3 => json!(-1.5e300),
        4 => json!(u64::MAX),
        5 | 6 => Value::String(nasty_string(r)),
        7 => Value::Array((0..r.below(4)).map(|_| nasty_value(r, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..r.below(4) {
                m.insert(nasty_string(r), nasty_value(r, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// A valid body, mutated: a value replaced, a field added or removed, or nested deep.
fn mutate(r: &mut Rng, valid: &Value) -> Value {
    let mut v = valid.clone();
    for _ in 0..1 + r.below(3) {
        if let Value::Object(m) = &mut v {
            let keys: Vec<String> = m.keys().cloned().collect();
            match r.below(5) {
                0 if !keys.is_empty() => {
                    let k = r.pick(&keys).clone();
                    m.remove(&k);
                }
                1 => {
                    m.insert(nasty_string(r), nasty_value(r, 0));
                }
                2 => {
                    let mut deep = json!("x");
                    for _ in 0..(64 + r.below(200)) {
                        deep = json!([deep]);
                    }
                    m.insert("deep".into(), deep);
                }
                _ if !keys.is_empty() => {
                    let k = r.pick(&keys).clone();
                    m.insert(k, nasty_value(r, 0));
                }
                _ => {}
            }
        }
    }
    v
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

fn body(r: &mut Rng, valid: &Value) -> Body {
    match r.below(10) {
        0 => Body::None,
        1 => {
            let s = mutate(r, valid).to_string();
            let cut = r.below(s.len().max(1));
            Body::Raw("application/json", s.as_bytes()[..cut].to_vec())
        }
        2 => Body::Raw(
            "application/json",
            (0..r.below(256)).map(|_| r.next() as u8).collect(),
        ),
        3 => {
            // Form-encoded, sometimes labelled as JSON.
            let pairs: Vec<(String, String)> = match mutate(r, valid) {
                Value::Object(m) => m
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or(v.to_string())))
                    .collect(),
                _ => vec![],
            };
            let ct = if r.chance(50) {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            };
            Body::Raw(
                ct,
                serde_urlencoded::to_string(&pairs)
                    .unwrap_or_default()
                    .into_bytes(),
            )
        }
        4 => Body::Json(nasty_value(r, 0)),
        _ => Body::Json(mutate(r, valid)),
    }
}

fn seg(r: &mut Rng, good: &[&str]) -> String {
    if r.chance(60) {
        (*r.pick(good)).to_owned()
    } else {
        let s = nasty_string(r);
        // A path segment: encode what a URL cannot carry raw.
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~@:".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
}

fn query(r: &mut Rng, keys: &[&str]) -> String {
    let n = r.below(6);
    let mut q: Vec<String> = (0..n)
        .map(|_| {
            let k = if r.chance(80) {
                (*r.pick(keys)).to_owned()
            } else {
                nasty_string(r)
            };
            let v = if r.chance(50) {
                format!("{}", r.below(5))
            } else {
                nasty_string(r)
            };
            format!(
                "{}={}",
                urlencode(&k),
                if r.chance(10) {
                    "%zz".to_owned()
                } else {
                    urlencode(&v)
                }
            )
        })
        .collect();
    if r.chance(10) {
        q.push("&&==&".into());
    }
    q.join("&")
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap_or_default()[1..].to_owned()
}

struct Req {
    method: Method,
    path: String,
    auth: Option<String>,
    body: Body,
}

/// Context the generators draw valid values from.
struct Known {
    root: String,
    a2a: String,
    cred_id: String,
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "LIST", "HEAD", "OPTIONS",
];

fn method(r: &mut Rng, usual: &[&str]) -> Method {
    let m = if r.chance(80) {
        r.pick(usual)
    } else {
        r.pick(METHODS)
    };
    Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET)
}

fn token(r: &mut Rng, good: &str) -> Option<String> {
    match r.below(10) {
        0 => None,
        1 => Some(nasty_string(r)),
        2 => Some("cvt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        _ => Some(good.to_owned()),
    }
}

fn native(r: &mut Rng, k: &Known) -> Req {
    let valid_cred = json!({"name": "n", "username": "u", "secret": "s", "safe": "fuzz", "tags": ["a"],
        "parameters": {"p": "v"}, "properties": {"PolicyID": "x"}, "device": {"hostname": "h", "ip": "1.2.3.4"},
        "settings": {}, "identifier": "fz-1", "expected_version": 1});
    let ids = [k.cred_id.as_str(), "00000000-0000-0000-0000-000000000000"];
    let (path, valid, usual): (String, Value, &[&str]) = match r.below(9) {
        0 => (
            "/api/v1/credentials".to_owned(),
            valid_cred,
            &["POST", "GET"],
        ),
        1 => (
            format!("/api/v1/credentials/{}", seg(r, &ids)),
            valid_cred,
            &["GET", "PUT", "PATCH", "DELETE"],
        ),
        2 => (
            format!(
                "/api/v1/credentials/{}/secret?{}",
                seg(r, &ids),
                query(r, &["version"])
            ),
            json!({}),
            &["GET"],
        ),
        3 => (
            format!(
                "/api/v1/credentials/{}/versions/{}",
                seg(r, &ids),
                seg(r, &["1", "2", "-1", "999999999999999999999"])
            ),
            json!({}),
            &["GET"],
        ),
        4 => (
            format!("/api/v1/credentials/{}/rollback", seg(r, &ids)),
            json!({"version": 1}),
            &["POST"],
        ),
        5 => (
            format!(
                "/api/v1/credentials?{}",
                query(
                    r,
                    &[
                        "safe",
                        "name",
                        "tag",
                        "limit",
                        "after",
                        "owner",
                        "identifier",
                        "hostname"
                    ]
                )
            ),
            json!({}),
            &["GET"],
        ),
        6 => (
            "/api/v1/credentials/import".to_owned(),
            json!({"credentials": [valid_cred]}),
            &["POST"],
        ),
        7 => (
            format!(
                "/api/v1/{}",
                seg(
                    r,
                    &[
                        "safes",
                        "users",
                        "groups",
                        "tokens",
                        "apps",
                        "domains",
                        "safes/fuzz/members"
                    ]
                )
            ),
            json!({"name": "fz", "kind": "service", "user": "fz", "app_id": "fz", "type": "user", "permissions": ["read"], "sources": ["1.2.3.4"]}),
            &["GET", "POST", "PUT"],
        ),
        _ => (
            format!("/api/v1/audit/tail?{}", query(r, &["n"])),
            json!({}),
            &["GET"],
        ),
    };
    Req {
        method: method(r, usual),
        path,
        auth: token(r, &k.root),
        body: body(r, &valid),
    }
}

fn ccp(r: &mut Rng, _k: &Known) -> Req {
    let keys = [
        "AppID",
        "Safe",
        "Folder",
        "Object",
        "UserName",
        "Address",
        "Database",
        "PolicyID",
        "Query",
        "QueryFormat",
        "Reason",
        "FailRequestOnPasswordChange",
        "ConnectionTimeout",
    ];
    let mut q = query(r, &keys);
    if r.chance(80) {
        q = format!("AppID=FuzzApp&{q}");
    }
    if r.chance(30) {
        q.push_str(&format!(
            "&Query={}",
            urlencode("Safe=fuzz;Object=(.*);UserName=u")
        ));
    }
    Req {
        method: method(r, &["GET"]),
        path: format!("/AIMWebService/api/Accounts?{q}"),
        auth: None,
        body: Body::None,
    }
}

fn vaultkv(r: &mut Rng, k: &Known) -> Req {
    let mount = seg(r, &["fuzz", "secret", "sys"]);
    let p = seg(r, &["app/db", "a", "x/y/z"]);
    let path = match r.below(8) {
        0 | 1 => format!("/v1/{mount}/data/{p}?{}", query(r, &["version", "list"])),
        2 => format!("/v1/{mount}/metadata/{p}?{}", query(r, &["list"])),
        3 => format!(
            "/v1/{mount}/{}/{p}",
            seg(r, &["delete", "undelete", "destroy"])
        ),
        4 => format!(
            "/v1/sys/{}?{}",
            seg(
                r,
                &["health", "seal-status", "mounts", "internal/ui/mounts/fuzz"]
            ),
            query(r, &["standbyok", "sealedcode", "uninitcode"])
        ),
        5 => "/v1/auth/approle/login".to_owned(),
        6 => "/v1/auth/token/lookup-self".to_owned(),
        _ => format!("/v1/{mount}/metadata"),
    };
    let valid = json!({"data": {"pw": "s"}, "options": {"cas": 0}, "versions": [1, 2], "max_versions": 3,
                       "cas_required": false, "custom_metadata": {"a": "b"}, "role_id": "FuzzApp", "secret_id": "x"});
    Req {
        method: method(r, &["GET", "POST", "PUT", "PATCH", "DELETE", "LIST"]),
        path,
        auth: token(r, &k.root),
        body: body(r, &valid),
    }
}

fn fetch_and_entity(r: &mut Rng, k: &Known) -> Req {
    let (path, valid, usual): (String, Value, &[&str]) = match r.below(4) {
        0 => (
            format!(
                "/api/fetch-credentials?{}",
                query(r, &["credential_names", "identifier"])
            ),
            json!({}),
            &["GET"],
        ),
        1 => (
            format!(
                "/api/credentials/for/{}?{}",
                seg(r, &["PKG", "PKG.CONN", "a.b.c"]),
                query(r, &["owner"])
            ),
            json!({"login": "u", "password": "p"}),
            &["GET", "POST"],
        ),
        2 => (
            "/api/public/v1/credentials".to_owned(),
            json!({"entityBindId": "PKG", "parameters": {"a": "b"}, "group": "g"}),
            &["POST"],
        ),
        _ => (
            format!(
                "/api/public/v1/credentials/{}",
                seg(r, &[&k.cred_id, "PKG"])
            ),
            json!({}),
            &["GET", "DELETE"],
        ),
    };
    Req {
        method: method(r, usual),
        path,
        auth: token(r, &k.root),
        body: body(r, &valid),
    }
}

fn pam(r: &mut Rng, k: &Known) -> Req {
    let prefix = if r.chance(50) { "/iso" } else { "/api" };
    let valid = json!({"username": "u", "hostname": "h", "ip": "10.0.0.1", "identifier": "fz-id", "content": "c",
        "tags": "a, b", "domain": "corp", "device_domain": "corp", "connectivities": "SSH:22", "parent_password": 3,
        "execution_settings": {"automatic_change": true}, "session_settings": {"macros": [{"remote_app": "x"}]},
        "additional_settings": {"criticality": "High", "secret_key": "k"}, "jit_settings": {"jit": false}});
    let (path, usual, valid): (String, &[&str], Value) = match r.below(5) {
        0 | 1 => (format!("{prefix}/pam/credential"), &["POST", "GET"], valid),
        2 => (
            format!(
                "{prefix}/pam/credential/{}",
                seg(r, &["fz-id", "u@h", &k.cred_id])
            ),
            &["GET", "DELETE", "PUT"],
            valid,
        ),
        3 => (
            format!(
                "{prefix}/pam/credential/custody/{}",
                seg(r, &["fz-id", &k.cred_id])
            ),
            &["DELETE"],
            json!({}),
        ),
        _ => (
            format!("{prefix}/oauth2/token"),
            &["POST"],
            json!({"grant_type": "client_credentials", "client_id": "FuzzA2A", "client_secret": "x"}),
        ),
    };
    Req {
        method: method(r, usual),
        path,
        auth: token(r, &k.a2a),
        body: body(r, &valid),
    }
}

async fn send(s: &Server, req: Req) -> Result<u16, String> {
    let mut b = s.http.request(req.method.clone(), s.url(&req.path));
    if let Some(t) = &req.auth {
        if t.is_ascii() && !t.contains(['\n', '\r', '\0']) {
            b = b
                .header("X-Vault-Token", t.as_str())
                .header("Authorization", format!("Bearer {t}"));
        }
    }
    b = match req.body {
        Body::None => b,
        Body::Json(v) => b.json(&v),
        Body::Raw(ct, bytes) => b.header("content-type", ct).body(bytes),
    };
    let resp = b
        .send()
        .await
        .map_err(|e| format!("{} {} failed: {e}", req.method, req.path))?;
    let st = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if st >= 500 {
        return Err(format!(
            "{} {} -> {st}: {}",
            req.method,
            req.path.chars().take(200).collect::<String>(),
            text.chars().take(300).collect::<String>()
        ));
    }
    Ok(st)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_door_survives_random_requests_without_a_5xx() {
    // Random strings are written as secrets and also sent in paths and queries on purpose.
    crate::common::disable_leak_check();
    let per_door: usize = std::env::var("CREDVAULT_FUZZ_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("CREDVAULT_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("HTTP fuzz: {per_door} requests per door, CREDVAULT_FUZZ_SEED={seed}");
    let s = Arc::new(
        Server::dev_with(|c| {
            c.auth_failures_per_minute = 1_000_000;
            c.max_body_bytes = 256 * 1024;
        })
        .await,
    );
    // Something to find: a safe, a credential, a CCP app, an A2A app, a domain.
    let root = s.root.clone();
    s.post("/api/v1/safes", &root, json!({"name": "fuzz"}))
        .await;
    let cred_id = s.cred(&root, json!({"name": "n", "username": "u", "secret": "s", "safe": "fuzz", "identifier": "fz-1",
        "device": {"hostname": "h", "ip": "10.0.0.1"}})).await;
    s.post(
        "/api/v1/apps",
        &root,
        json!({"app_id": "FuzzApp", "sources": ["127.0.0.1"]}),
    )
    .await;
    s.post(
        "/api/v1/apps/FuzzApp/allow",
        &root,
        json!({"type": "safe", "name": "fuzz"}),
    )
    .await;
    let (_, a) = s
        .post(
            "/api/v1/apps",
            &root,
            json!({"app_id": "FuzzA2A", "sources": ["127.0.0.1"], "client_secret": true}),
        )
        .await;
    s.post(
        "/api/v1/apps/FuzzA2A/allow",
        &root,
        json!({"type": "safe-write", "name": "fuzz"}),
    )
    .await;
    s.post("/api/v1/domains", &root, json!({"name": "corp"}))
        .await;
    let secret = a["client_secret_value"].as_str().unwrap().to_owned();
    let known = Arc::new(Known {
        root,
        a2a: s.a2a_token("FuzzA2A", &secret).await,
        cred_id,
    });

    type Gen = fn(&mut Rng, &Known) -> Req;
    let doors: [(&str, Gen); 5] = [
        ("native", native),
        ("ccp", ccp),
        ("vaultkv", vaultkv),
        ("fetch+entity", fetch_and_entity),
        ("pam", pam),
    ];
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    for (name, gen) in doors {
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (s, k, mut r) = (s.clone(), known.clone(), Rng(rng.next() | 1));
                tokio::spawn(async move {
                    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
                    let mut bad = Vec::new();
                    for _ in 0..per_door / 8 {
                        match send(&s, gen(&mut r, &k)).await {
                            Ok(st) => *statuses.entry(st).or_default() += 1,
                            Err(e) => bad.push(e),
                        }
                    }
                    (statuses, bad)
                })
            })
            .collect();
        let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
        for t in tasks {
            let (st, bad) = t.await.unwrap();
            for (k, v) in st {
                *statuses.entry(k).or_default() += v;
            }
            failures.extend(bad.into_iter().map(|b| format!("{name}: {b}")));
        }
        eprintln!(
            "HTTP fuzz {name}: {} requests in {:.1?}, statuses {statuses:?}",
            per_door / 8 * 8,
            started.elapsed()
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    // Still serving, and the audit chain of everything that happened verifies.
    let (st, h) = s.get("/api/v1/sys/health", &s.root).await;
    assert_eq!((st.as_u16(), h["sealed"].clone()), (200, json!(false)));
    let (_, v) = s.post("/api/v1/audit/verify", &s.root, json!({})).await;
    assert_eq!(v["ok"], true, "{v}");
}

/// Found by the HTTP fuzz on PostgreSQL (its text cannot hold NUL): a NUL in a lookup, an AppID or
/// an OAuth client id was answered 503 (a storage or audit "failure"). Now a 4xx, on both backends.
#[tokio::test]
async fn nul_characters_are_a_client_error_on_every_backend() {
    let s = Server::dev().await;
    let r = s.root.clone();
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::GET,
            "/api/v1/credentials?identifier=a%00b".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v1/credentials?tag=a%00b&name=x%00".into(),
            None,
        ),
        (Method::GET, "/v1/a%00b/data/x".into(), None),
        (
            Method::GET,
            "/api/fetch-credentials?identifier=a%00b".into(),
            None,
        ),
        (
            Method::GET,
            "/AIMWebService/api/Accounts?AppID=Fuzz%00App&Object=x".into(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/credentials".into(),
            Some(json!({"name": "a\u{0}b", "secret": "s"})),
        ),
    ];
    for (m, p, b) in cases {
        let (st, v) = s.req(m.clone(), &p, Some(&r), b).await;
        assert!(st.as_u16() < 500, "{m} {p}: {st} {v}");
    }
    let resp = s
        .http
        .post(s.url("/iso/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "a\u{0}b"),
            ("client_secret", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (_, v) = s.post("/api/v1/audit/verify", &r, json!({})).await;
    assert_eq!(v["ok"], true);
}
