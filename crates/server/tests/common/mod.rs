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
        let running = credvault_server::start(cfg).await.expect("server starts");
        Self {
            running,
            http: reqwest::Client::new(),
            dir,
            root: String::new(),
            db_url,
        }
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
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
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

    pub fn start_new() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/pg.sh installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .expect("a PostgreSQL version");
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
        let out = c
            .as_postgres("initdb")
            .arg("-D")
            .arg(c.dir.path().join("data"))
            .args(["--auth=trust", "-U", "postgres"])
            .output()
            .expect("initdb");
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
