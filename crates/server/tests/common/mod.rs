#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Test harness: a real server in-process on an ephemeral port, spoken to over HTTP.

#![allow(dead_code)]

use std::path::PathBuf;

use credvault_server::{Config, Running};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub struct Server {
    pub running: Running,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub root: String,
    /// Where the store lives, for direct access in tampering tests (sqlite:// or postgres://).
    pub db_url: String,
    /// The server runs on a runtime of its own, so dropping the `Server` can still talk to it.
    runtime: Option<tokio::runtime::Runtime>,
}

// ------------------------------------------------------------------ secrets never leak (issue 8.4)
//
// Every test server runs with trace-level log capture. When a `Server` is dropped at the end of a
// passing test, every secret stored in it (each credential's secret and parameter values of at
// least 8 characters, every version, read as root) is searched for in the captured logs, the audit
// records and the metrics; a hit fails the test. Error bodies are checked as the tests read them
// (`Server::req` fails on a secret seen in an error body).

static CAPTURE: std::sync::OnceLock<Option<Capture>> = std::sync::OnceLock::new();

/// Every HTTP call a test makes is bounded: a server that stops answering fails the test in
/// seconds instead of hanging the suite (issue 13). Longer than the server's own 30 s request
/// timeout, so a slow answer the server gives up on is still seen as the server's answer.
pub const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// The suite's HTTP client: a connect timeout and a whole-request timeout.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("http client")
}
static NO_LEAK_CHECK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SEEN_SECRETS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// For tests that write random data as secrets on purpose (the HTTP fuzz): no capture, no check.
pub fn disable_leak_check() {
    NO_LEAK_CHECK.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn install_capture() {
    CAPTURE.get_or_init(|| {
        if NO_LEAK_CHECK.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let cap = Capture::default();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(cap.clone())
            .with_ansi(false)
            .try_init()
            .ok()
            .map(|()| cap)
    });
}

/// The secret values of a request body: `secret`, `password`, `content`, `secret_id`,
/// `client_secret`, `header_secret`, and the values of `parameters` and `data` (KV), 8+ characters.
fn body_secrets(body: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(Value::Object(m)) = body else {
        return out;
    };
    for (k, v) in m {
        match (k.as_str(), v) {
            (
                "secret" | "password" | "content" | "secret_id" | "client_secret" | "header_secret",
                Value::String(s),
            ) => {
                out.push(s.clone());
            }
            ("parameters" | "data", Value::Object(p)) => {
                out.extend(p.values().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
    }
    out.retain(|s| s.chars().count() >= 8);
    out
}

/// Why the leak check could not finish: the server stopped answering (a hang fails the test).
fn hung(what: &str, e: &reqwest::Error) -> String {
    format!("the server did not answer the leak check ({what}): {e}")
}

/// GET `base``path` as `root`: `Ok(None)` when the server refuses (sealed, stopped), `Err` when it
/// does not answer in time.
async fn leak_get(
    http: &reqwest::Client,
    base: &str,
    root: &str,
    path: &str,
) -> Result<Option<String>, String> {
    let r = match http
        .get(format!("{base}{path}"))
        .header("X-Vault-Token", root)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Err(hung(path, &e)),
        Err(_) => return Ok(None),
    };
    if !r.status().is_success() {
        return Ok(None);
    }
    r.text().await.map(Some).map_err(|e| hung(path, &e))
}

/// Every secret stored in the vault behind `base` (as `root`), every version. `Ok(None)` when the
/// vault cannot be read (sealed or stopped at the end of the test).
async fn stored_secrets(
    http: &reqwest::Client,
    base: &str,
    root: &str,
) -> Result<Option<Vec<String>>, String> {
    let get = |p: String| async move {
        let text = leak_get(http, base, root, &p).await?;
        Ok::<_, String>(text.and_then(|t| serde_json::from_str::<Value>(&t).ok()))
    };
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let Some(page) = get(format!("/api/v1/credentials?limit=1000{after}")).await? else {
            return Ok(None);
        };
        let items = page["items"].as_array().cloned().unwrap_or_default();
        for c in &items {
            let id = c["id"].as_str().unwrap_or_default();
            for v in 1..=c["version"].as_i64().unwrap_or(1) {
                let Some(s) = get(format!("/api/v1/credentials/{id}/secret?version={v}")).await?
                else {
                    continue;
                };
                out.extend(s["secret"].as_str().map(str::to_owned));
                if let Some(m) = s["parameters"].as_object() {
                    out.extend(m.values().filter_map(Value::as_str).map(str::to_owned));
                }
            }
        }
        match items.last() {
            Some(last) if items.len() >= 1000 => {
                after = format!("&after={}", last["id"].as_str().unwrap_or_default());
            }
            _ => break,
        }
    }
    out.retain(|s| s.chars().count() >= 8);
    Ok(Some(out))
}

/// The whole leak check may take this long; past it the test fails as hung (issue 13).
const LEAK_CHECK_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Search the logs, audit records and metrics of the server at `base` for its stored secrets.
async fn leak_check(base: String, root: String, cap: Capture) -> Result<Vec<String>, String> {
    let http = http_client();
    let Some(mut secrets) = stored_secrets(&http, &base, &root).await? else {
        return Ok(vec![]);
    };
    secrets.extend(SEEN_SECRETS.lock().map(|s| s.clone()).unwrap_or_default());
    let audit = leak_get(&http, &base, &root, "/api/v1/audit/tail?n=10000")
        .await?
        .unwrap_or_default();
    let metrics = leak_get(&http, &base, &root, "/metrics")
        .await?
        .unwrap_or_default();
    let logs =
        String::from_utf8_lossy(&cap.0.lock().map(|b| b.clone()).unwrap_or_default()).into_owned();
    let mut found = Vec::new();
    for s in &secrets {
        for (place, hay) in [
            ("logs", &logs),
            ("audit records", &audit),
            ("metrics", &metrics),
        ] {
            if hay.contains(s.as_str()) {
                found.push(format!(
                    "a stored secret ({} chars, starts {:?}) is in the {place}",
                    s.len(),
                    s.chars().take(3).collect::<String>()
                ));
            }
        }
    }
    Ok(found)
}

impl Server {
    /// The check run on drop; returns what leaked where.
    fn leaks(&self) -> Vec<String> {
        let Some(Some(cap)) = CAPTURE.get() else {
            return vec![];
        };
        if self.root.is_empty() || NO_LEAK_CHECK.load(std::sync::atomic::Ordering::Relaxed) {
            return vec![];
        }
        let (base, root, cap) = (self.running.url(), self.root.clone(), cap.clone());
        // A thread and runtime of its own: the test's runtime is blocked in `Drop`.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("leak check runtime");
            rt.block_on(async move {
                match tokio::time::timeout(LEAK_CHECK_LIMIT, leak_check(base, root, cap)).await {
                    Ok(Ok(found)) => found,
                    Ok(Err(hang)) => vec![hang],
                    Err(_) => vec![format!(
                        "the leak check did not finish within {LEAK_CHECK_LIMIT:?}: the server hangs"
                    )],
                }
            })
        })
        .join()
        .unwrap_or_else(|_| vec!["the leak check panicked".into()])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let leaks = self.leaks();
            if let Some(rt) = self.runtime.take() {
                rt.shutdown_background();
            }
            assert!(
                leaks.is_empty(),
                "secrets leaked, or the leak check could not run: {leaks:#?}"
            );
        } else if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

pub fn config(dir: PathBuf) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        data_dir: dir,
        ..Config::default()
    }
}

/// The PostgreSQL cluster to test against, when `CREDVAULT_TEST_DATABASE_URL` is set.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("CREDVAULT_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A new, empty store for one test: a fresh database on the PostgreSQL test cluster when one is
/// configured, else SQLite in `data_dir`. Returns the storage config and a URL for direct access.
pub async fn test_storage(data_dir: &std::path::Path) -> (credvault_server::Storage, String) {
    match postgres_admin_url() {
        Some(admin) => {
            use sqlx::Connection;
            let name = format!("cv_{}", uuid::Uuid::now_v7().simple());
            let mut c = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to the test cluster");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await
                .expect("create test database");
            let (base, _) = admin.rsplit_once('/').expect("URL with a database");
            let url = format!("{base}/{name}");
            (
                credvault_server::Storage::Postgres {
                    url: url.as_str().into(),
                },
                url,
            )
        }
        None => (
            credvault_server::Storage::Sqlite,
            format!("sqlite://{}", data_dir.join("credvault.db").display()),
        ),
    }
}

impl Server {
    /// A fresh, uninitialised server.
    pub async fn fresh_with(f: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(dir.path().join("data"));
        let (storage, db_url) = test_storage(&cfg.data_dir).await;
        cfg.storage = storage;
        f(&mut cfg);
        Self::start(cfg, dir, String::new(), db_url).await
    }

    /// Start a server with this configuration (on a runtime of its own).
    pub async fn start(cfg: Config, dir: tempfile::TempDir, root: String, db_url: String) -> Self {
        install_capture();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let running = runtime
            .spawn(credvault_server::start(cfg))
            .await
            .expect("start task")
            .expect("server starts");
        Self {
            running,
            http: http_client(),
            dir,
            root,
            db_url,
            runtime: Some(runtime),
        }
    }

    /// Run `f` on the server's own runtime and wait for it. Tests that call the server's `Vault`
    /// directly must go through here: a pooled database connection opened from the test's runtime
    /// stays bound to that runtime's I/O driver, and once the test's runtime blocks (in `Drop`, for
    /// the leak check) the server's requests on that connection are never woken (issue 13).
    pub async fn on_server<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("server runtime")
            .spawn(f)
            .await
            .expect("task on the server's runtime")
    }

    pub async fn fresh() -> Self {
        Self::fresh_with(|_| {}).await
    }

    /// An initialised and unsealed dev server with a root token.
    pub async fn dev() -> Self {
        Self::dev_with(|_| {}).await
    }

    pub async fn dev_with(f: impl FnOnce(&mut Config)) -> Self {
        let mut s = Self::fresh_with(|c| {
            c.dev = true;
            f(c)
        })
        .await;
        s.root = s
            .running
            .dev_root_token
            .as_ref()
            .expect("dev token")
            .expose()
            .to_owned();
        s
    }

    /// Stop serving (the server goes away as if shut down) and wait until the port is closed.
    pub async fn stop(&self) {
        self.running
            .handle()
            .graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.running.addr)
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the server did not stop");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.running.url(), path)
    }

    pub async fn req(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.http.request(method, self.url(path));
        if let Some(t) = token {
            r = r.header("X-Vault-Token", t);
        }
        let body_for_check = body.clone();
        if let Some(b) = body {
            r = r.json(&b);
        }
        let sent = body_secrets(body_for_check.as_ref());
        if let Ok(mut seen) = SEEN_SECRETS.lock() {
            seen.extend(sent.iter().cloned());
        }
        let resp = r.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        if status.as_u16() >= 400 {
            let known = SEEN_SECRETS.lock().map(|s| s.clone()).unwrap_or_default();
            for s in &known {
                assert!(
                    !text.contains(s.as_str()),
                    "a secret sent by this test came back in an error body: {status} {path}"
                );
            }
        }
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.req(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.req(Method::POST, path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.req(Method::PATCH, path, Some(token), Some(body)).await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.req(Method::PUT, path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.req(Method::DELETE, path, Some(token), None).await
    }

    /// An application's OAuth client-credentials token (PAM A2A door).
    pub async fn a2a_token(&self, app_id: &str, secret: &str) -> String {
        let resp = self
            .http
            .post(self.url("/iso/oauth2/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", app_id),
                ("client_secret", secret),
            ])
            .send()
            .await
            .expect("token request");
        assert_eq!(resp.status(), StatusCode::OK, "token for {app_id}");
        let v: Value = resp.json().await.expect("token body");
        v["access_token"].as_str().expect("access_token").to_owned()
    }

    /// Move the server's clock forward (token expiry, custody, key retirement go by it).
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.running.vault.clock().advance(by);
    }

    /// Create a user and a token for it.
    pub async fn user(&self, name: &str) -> String {
        let (s, _) = self
            .post("/api/v1/users", &self.root, json!({"name": name}))
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, t) = self
            .post("/api/v1/tokens", &self.root, json!({"user": name}))
            .await;
        assert_eq!(s, StatusCode::CREATED);
        t["token"].as_str().expect("token").to_owned()
    }

    /// Create a credential as `token`, returning its id.
    pub async fn cred(&self, token: &str, body: Value) -> String {
        let (s, c) = self.post("/api/v1/credentials", token, body).await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        c["id"].as_str().expect("id").to_owned()
    }

    pub fn is_postgres(&self) -> bool {
        self.db_url.starts_with("postgres")
    }

    /// A direct connection to the store's database (either backend), for tampering tests.
    pub async fn db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.db_url).await.expect("open db")
    }
}

/// The error code of a native error body.
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// A PostgreSQL cluster of a test's own (Debian's binaries), which the test may stop and start.
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgCluster {
    fn as_postgres(&self, prog: &str) -> std::process::Command {
        let path = self.bin.join(prog);
        // initdb and postgres refuse to run as root.
        if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    /// Debian's PostgreSQL binaries, newest version, if installed.
    pub fn binaries() -> Option<PathBuf> {
        std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
    }

    pub fn start_new() -> Self {
        Self::start_new_with(None)
    }

    /// A cluster whose TCP logins need a password (SCRAM), with superuser `postgres` /
    /// `superuser_password`; local socket logins stay `trust`.
    pub fn start_new_with_password(superuser_password: &str) -> Self {
        Self::start_new_with(Some(superuser_password))
    }

    fn start_new_with(password: Option<&str>) -> Self {
        let bin = Self::binaries().expect("PostgreSQL is installed (scripts/pg.sh installs it)");
        let dir = tempfile::tempdir().expect("tempdir");
        if running_as_root() {
            let ok = std::process::Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Self { bin, dir, port };
        let mut initdb = c.as_postgres("initdb");
        initdb.arg("-D").arg(c.dir.path().join("data"));
        match password {
            None => {
                initdb.args(["--auth=trust", "-U", "postgres"]);
            }
            Some(pw) => {
                let file = c.dir.path().join("pwfile");
                std::fs::write(&file, pw).expect("pwfile");
                initdb
                    .args([
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "-U",
                        "postgres",
                    ])
                    .arg(format!("--pwfile={}", file.display()));
            }
        }
        let out = initdb.output().expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c.start();
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-o", &opts, "start"])
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stop like a crash (`-m immediate`): no checkpoint, recovery on the next start.
    pub fn crash(&self) {
        let out = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .expect("pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}
