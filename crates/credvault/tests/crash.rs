#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Crash consistency. The real `credvault` binary takes concurrent writes and secret reads through
//! several doors (native API, Vault KV, PAM A2A writes; native, KV, CCP, A2A reads) and is killed
//! with SIGKILL at a random moment, again and again. After each kill it is restarted (unsealed from
//! its key file) and checked:
//! - every acknowledged write is there with its exact value;
//! - a write that was in flight is either wholly there or wholly absent (never half);
//! - no credential is duplicated, every ciphertext decrypts (every secret is read back);
//! - the audit chain verifies.
//!
//! SQLite always (20 kills); PostgreSQL in the PostgreSQL phase of `scripts/test` (20 kills).
//! `CREDVAULT_CRASH_ROUNDS` changes the number of kills; figures in docs/reliability.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_credvault");
const SAFE: &str = "crash";
const CCP_APP: &str = "CrashReader";
const A2A_APP: &str = "CrashWriter";
const WORKERS: u64 = 4;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A small deterministic generator (xorshift64*), seeded per run so a failure can be replayed.
#[derive(Clone)]
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    Native,
    Kv,
    A2a,
}

/// One credential a worker owns: its key in its door, its last acknowledged value, and the value of
/// a write sent but not (yet) acknowledged.
#[derive(Clone, Debug)]
struct Slot {
    door: Door,
    /// Native: the name; KV: the path; A2A: the identifier.
    key: String,
    acked: Option<String>,
    pending: Option<String>,
}

struct Env {
    http: reqwest::Client,
    base: String,
    root: String,
    ccp_ok: bool,
    a2a_token: String,
}

impl Env {
    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }
    async fn native(
        &self,
        method: reqwest::Method,
        p: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let mut r = self
            .http
            .request(method, self.url(p))
            .header("X-Vault-Token", &self.root);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let st = resp.status();
        let v = resp.json().await.unwrap_or(Value::Null);
        Ok((st, v))
    }
}

/// Write `value` into the slot through its door. Ok(()) = acknowledged.
async fn write(env: &Env, slot: &Slot, value: &str) -> Result<(), String> {
    let net = |e: reqwest::Error| format!("net: {e}");
    let (st, v) = match slot.door {
        Door::Native => {
            if slot.acked.is_none() {
                env.native(
                    reqwest::Method::POST,
                    "/api/v1/credentials",
                    Some(json!({"name": slot.key, "username": "u", "secret": value, "safe": SAFE})),
                )
                .await
                .map_err(net)?
            } else {
                let id = native_id(env, &slot.key)
                    .await
                    .map_err(net)?
                    .ok_or("acknowledged credential missing")?;
                env.native(
                    reqwest::Method::PUT,
                    &format!("/api/v1/credentials/{id}"),
                    Some(json!({"secret": value})),
                )
                .await
                .map_err(net)?
            }
        }
        Door::Kv => env
            .native(
                reqwest::Method::POST,
                &format!("/v1/{SAFE}/data/{}", slot.key),
                Some(json!({"data": {"pw": value}})),
            )
            .await
            .map_err(net)?,
        Door::A2a => {
            let r = env
                .http
                .post(env.url("/iso/pam/credential"))
                .bearer_auth(&env.a2a_token)
                .json(
                    &json!({"identifier": slot.key, "username": slot.key, "hostname": "crash-host",
                              "ip": "10.66.0.1", "content": value}),
                )
                .send()
                .await
                .map_err(net)?;
            let st = r.status();
            (st, r.json().await.unwrap_or(Value::Null))
        }
    };
    if st.is_success() {
        Ok(())
    } else {
        Err(format!("{:?} write answered {st}: {v}", slot.door))
    }
}

/// The id of the one credential a listing query finds (None when none; two fail the test).
async fn only_id(env: &Env, query: &str) -> reqwest::Result<Option<String>> {
    let (_, l) = env
        .native(
            reqwest::Method::GET,
            &format!("/api/v1/credentials?{query}"),
            None,
        )
        .await?;
    let items = l["items"].as_array().cloned().unwrap_or_default();
    assert!(items.len() <= 1, "duplicate credentials for {query}: {l}");
    Ok(items
        .first()
        .and_then(|c| c["id"].as_str())
        .map(str::to_owned))
}

async fn native_id(env: &Env, name: &str) -> reqwest::Result<Option<String>> {
    only_id(env, &format!("safe={SAFE}&name={name}")).await
}

async fn identifier_id(env: &Env, identifier: &str) -> reqwest::Result<Option<String>> {
    only_id(env, &format!("identifier={identifier}")).await
}

/// The slot's current value as the vault has it (None = absent), read as root.
async fn current(env: &Env, slot: &Slot) -> reqwest::Result<Option<String>> {
    let id = match slot.door {
        Door::Native => native_id(env, &slot.key).await?,
        Door::Kv => identifier_id(env, &format!("kv:{SAFE}/{}", slot.key)).await?,
        Door::A2a => identifier_id(env, &slot.key).await?,
    };
    let Some(id) = id else { return Ok(None) };
    let (st, s) = env
        .native(
            reqwest::Method::GET,
            &format!("/api/v1/credentials/{id}/secret"),
            None,
        )
        .await?;
    assert_eq!(st, StatusCode::OK, "secret of {slot:?} reads back: {s}");
    Ok(Some(match slot.door {
        Door::Kv => s["parameters"]["pw"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        _ => s["secret"].as_str().unwrap_or_default().to_owned(),
    }))
}

/// A secret read through a door the slot can be read by; None when the request did not complete.
async fn read_through_door(
    env: &Env,
    slot: &Slot,
    rng: &mut Rng,
) -> Option<Result<String, String>> {
    let pick = rng.below(2);
    let res = match (slot.door, pick) {
        (Door::Native, 0) if env.ccp_ok => {
            let r = env
                .http
                .get(env.url(&format!(
                    "/AIMWebService/api/Accounts?AppID={CCP_APP}&Safe={SAFE}&Object={}",
                    slot.key
                )))
                .send()
                .await
                .ok()?;
            let st = r.status();
            let v: Value = r.json().await.ok()?;
            if st == StatusCode::OK {
                Ok(v["Content"].as_str().unwrap_or_default().to_owned())
            } else {
                Err(format!("CCP {st}: {v}"))
            }
        }
        (Door::Kv, _) => {
            let (st, v) = env
                .native(
                    reqwest::Method::GET,
                    &format!("/v1/{SAFE}/data/{}", slot.key),
                    None,
                )
                .await
                .ok()?;
            if st == StatusCode::OK {
                Ok(v["data"]["data"]["pw"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned())
            } else {
                Err(format!("KV {st}: {v}"))
            }
        }
        (Door::A2a, 0) => {
            let r = env
                .http
                .get(env.url(&format!("/iso/pam/credential/{}", slot.key)))
                .bearer_auth(&env.a2a_token)
                .send()
                .await
                .ok()?;
            let st = r.status();
            let v: Value = r.json().await.ok()?;
            if st == StatusCode::OK {
                Ok(v["credential"]["password"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned())
            } else {
                Err(format!("A2A {st}: {v}"))
            }
        }
        _ => current(env, slot)
            .await
            .ok()?
            .ok_or_else(|| "missing".to_owned()),
    };
    Some(res)
}

/// One worker: writes and reads its own slots until the server goes away. Returns its slots and
/// what went wrong while the server was up.
async fn worker(
    env: std::sync::Arc<Env>,
    mut slots: Vec<Slot>,
    w: u64,
    round: u64,
    mut rng: Rng,
) -> (Vec<Slot>, Vec<String>) {
    let mut failures = Vec::new();
    let doors = [Door::Native, Door::Kv, Door::A2a];
    for n in 0.. {
        let op = rng.below(10);
        if op < 3 || slots.is_empty() {
            let door = doors[(rng.below(3)) as usize];
            let key = format!("w{w}-r{round}-n{n}");
            slots.push(Slot {
                door,
                key,
                acked: None,
                pending: None,
            });
        }
        let i = rng.below(slots.len() as u64) as usize;
        if op >= 8 && slots[i].acked.is_some() {
            match read_through_door(&env, &slots[i], &mut rng).await {
                None => break,
                Some(Ok(v)) if Some(&v) == slots[i].acked.as_ref() => {}
                Some(Ok(v)) => failures.push(format!(
                    "{:?} read {v}, acknowledged {:?}",
                    slots[i], slots[i].acked
                )),
                Some(Err(e)) => failures.push(e),
            }
            continue;
        }
        let value = format!("v{}-{}", rng.next(), n);
        slots[i].pending = Some(value.clone());
        match write(&env, &slots[i], &value).await {
            Ok(()) => {
                slots[i].acked = Some(value);
                slots[i].pending = None;
            }
            Err(e) if e.starts_with("net:") => break,
            Err(e) => {
                failures.push(e);
                slots[i].pending = None;
                break;
            }
        }
    }
    (slots, failures)
}

async fn wait_unsealed(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/api/v1/sys/health")).send().await {
            if let Ok(v) = r.json::<Value>().await {
                if v["sealed"] == false {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not come up unsealed");
}

fn spawn(args: &[String]) -> Proc {
    Proc(
        Command::new(BIN)
            .arg("server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn set_up(http: &reqwest::Client, base: &str, root: &str) -> String {
    let post = |p: &str, b: Value| {
        let r = http
            .post(format!("{base}{p}"))
            .header("X-Vault-Token", root)
            .json(&b);
        async move {
            let resp = r.send().await.unwrap();
            let st = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            assert!(st.is_success(), "{st} {v}");
            v
        }
    };
    post("/api/v1/safes", json!({"name": SAFE})).await;
    post(
        "/api/v1/apps",
        json!({"app_id": CCP_APP, "sources": ["127.0.0.1"]}),
    )
    .await;
    post(
        &format!("/api/v1/apps/{CCP_APP}/allow"),
        json!({"type": "safe", "name": SAFE}),
    )
    .await;
    let a = post(
        "/api/v1/apps",
        json!({"app_id": A2A_APP, "sources": ["127.0.0.1"], "client_secret": true}),
    )
    .await;
    post(
        &format!("/api/v1/apps/{A2A_APP}/allow"),
        json!({"type": "safe-write", "name": SAFE}),
    )
    .await;
    a["client_secret_value"].as_str().unwrap().to_owned()
}

async fn a2a_login(http: &reqwest::Client, base: &str, secret: &str) -> String {
    let r = http
        .post(format!("{base}/iso/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", A2A_APP),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

/// Check every slot against the vault after a restart; settle in-flight writes to what is there.
/// Returns how many writes were in flight.
async fn verify_slots(env: &Env, slots: &mut Vec<Slot>) -> usize {
    let mut in_flight = 0;
    for slot in slots.iter_mut() {
        let now = current(env, slot).await.unwrap();
        match &slot.pending {
            None => assert_eq!(
                now, slot.acked,
                "acknowledged write lost or changed: {slot:?}"
            ),
            Some(p) => {
                in_flight += 1;
                assert!(
                    now == slot.acked || now.as_deref() == Some(p.as_str()),
                    "in-flight write half there: {slot:?}, vault has {now:?}"
                );
                slot.acked = now;
                slot.pending = None;
            }
        }
    }
    slots.retain(|s| s.acked.is_some());
    in_flight
}

/// Every credential of the safe decrypts (not only the tracked ones), there are exactly as many as
/// tracked (no duplicates, no strays), and the audit chain verifies.
async fn verify_vault(env: &Env, tracked: usize) {
    let mut after: Option<String> = None;
    let mut all = 0;
    loop {
        let q = after
            .as_ref()
            .map(|a| format!("&after={a}"))
            .unwrap_or_default();
        let (_, page) = env
            .native(
                reqwest::Method::GET,
                &format!("/api/v1/credentials?safe={SAFE}&limit=500{q}"),
                None,
            )
            .await
            .unwrap();
        let items = page["items"].as_array().cloned().unwrap_or_default();
        for c in &items {
            let id = c["id"].as_str().unwrap();
            let (st, s) = env
                .native(
                    reqwest::Method::GET,
                    &format!("/api/v1/credentials/{id}/secret"),
                    None,
                )
                .await
                .unwrap();
            assert_eq!(st, StatusCode::OK, "credential {id} decrypts: {s}");
            all += 1;
        }
        if items.len() < 500 {
            break;
        }
        after = items
            .last()
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned);
    }
    assert_eq!(
        all, tracked,
        "as many credentials as acknowledged creates: no duplicates, no strays"
    );
    let (st, v) = env
        .native(
            reqwest::Method::POST,
            "/api/v1/audit/verify",
            Some(json!({})),
        )
        .await
        .unwrap();
    assert_eq!(
        (st, v["ok"].clone()),
        (StatusCode::OK, json!(true)),
        "audit chain: {v}"
    );
}

async fn crash_rounds(data: &Path, storage: &[String]) {
    let rounds: u64 = std::env::var("CREDVAULT_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CREDVAULT_CRASH_SEED")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test: {rounds} rounds, CREDVAULT_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut common: Vec<String> = vec![
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    common.extend_from_slice(storage);
    // First start: a dev vault initialises itself and leaves its unseal key and root token.
    let mut first = common.clone();
    first.push("--dev".into());
    let mut proc = spawn(&first);
    wait_unsealed(&http, &base).await;
    let root = std::fs::read_to_string(data.join("dev-root-token"))
        .unwrap()
        .trim()
        .to_owned();
    let secret = set_up(&http, &base, &root).await;
    let key: PathBuf = data.join("dev-unseal.key");
    let mut restart = common.clone();
    restart.extend(["--unseal-key-file".to_owned(), key.display().to_string()]);

    let mut slots: Vec<Vec<Slot>> = (0..WORKERS).map(|_| Vec::new()).collect();
    let (mut in_flight_total, mut kills) = (0, 0);
    for round in 0..rounds {
        let env = std::sync::Arc::new(Env {
            http: http.clone(),
            base: base.clone(),
            root: root.clone(),
            ccp_ok: true,
            a2a_token: a2a_login(&http, &base, &secret).await,
        });
        let tasks: Vec<_> = (0..WORKERS)
            .map(|w| {
                let s = std::mem::take(&mut slots[w as usize]);
                tokio::spawn(worker(env.clone(), s, w, round, Rng(rng.next() | 1)))
            })
            .collect();
        // Kill at a random moment while the workers run.
        tokio::time::sleep(Duration::from_millis(150 + rng.below(700))).await;
        proc.0.kill().unwrap();
        proc.0.wait().unwrap();
        kills += 1;
        for (w, t) in tasks.into_iter().enumerate() {
            let (s, failures) = t.await.unwrap();
            assert!(
                failures.is_empty(),
                "round {round}, worker {w}: {failures:?}"
            );
            slots[w] = s;
        }
        proc = spawn(&restart);
        wait_unsealed(&http, &base).await;
        for s in slots.iter_mut() {
            in_flight_total += verify_slots(&env, s).await;
        }
        verify_vault(&env, slots.iter().map(Vec::len).sum()).await;
    }
    let n: usize = slots.iter().map(Vec::len).sum();
    eprintln!("crash test: {kills} kills, {n} credentials verified, {in_flight_total} writes in flight at a kill");
    drop(proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_keeps_every_acknowledged_write_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    crash_rounds(&tmp.path().join("data"), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run by the PostgreSQL phase of scripts/test (--run-ignored all)"]
async fn sigkill_under_load_keeps_every_acknowledged_write_postgres() {
    use sqlx::Connection;
    let admin = std::env::var("CREDVAULT_TEST_DATABASE_URL").expect("CREDVAULT_TEST_DATABASE_URL");
    let db = format!("cv_crash_{}", std::process::id());
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut c)
        .await
        .unwrap();
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    let tmp = tempfile::tempdir().unwrap();
    crash_rounds(
        &tmp.path().join("data"),
        &[
            "--storage".into(),
            "postgres".into(),
            "--database-url".into(),
            url,
        ],
    )
    .await;
}
