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
}

pub fn config(dir: PathBuf) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        data_dir: dir,
        ..Config::default()
    }
}

impl Server {
    /// A fresh, uninitialised server.
    pub async fn fresh_with(f: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(dir.path().join("data"));
        f(&mut cfg);
        let running = credvault_server::start(cfg).await.expect("server starts");
        Self {
            running,
            http: reqwest::Client::new(),
            dir,
            root: String::new(),
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

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("credvault.db")
    }

    /// A direct connection to the SQLite file, for tampering tests.
    pub async fn db(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!("sqlite://{}", self.db_path().display()))
            .await
            .expect("open db")
    }
}

/// The error code of a native error body.
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}
