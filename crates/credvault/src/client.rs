//! A small HTTP client for the native API, used by every CLI command except `server`.

use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(
        address: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .use_rustls_tls();
        if let Some(p) = ca_cert {
            let pem = std::fs::read(p)
                .with_context(|| format!("reading CA certificate {}", p.display()))?;
            b = b.add_root_certificate(
                reqwest::Certificate::from_pem(&pem).context("parsing CA certificate")?,
            );
        }
        Ok(Self {
            http: b.build()?,
            base: address.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        self.call_at("/api/v1", method, path, body).await
    }

    /// A call to another door under `/api` (for example `/credentials/for/PKG`); `Value::Null` as the
    /// body sends none.
    pub async fn send_raw(&self, method: Method, path: &str, body: &Value) -> Result<Value> {
        let body = (!body.is_null()).then_some(body);
        Ok(self
            .call_at("/api", method, path, body)
            .await?
            .unwrap_or(Value::Null))
    }

    /// A GET under `/api/v1` whose body is streamed by the caller (a backup); errors as `call`.
    pub async fn download(&self, path: &str) -> Result<reqwest::Response> {
        let url = format!("{}/api/v1{}", self.base, path);
        // A backup of a large vault streams for a long time: no 60 s limit on the whole body.
        let mut req = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_secs(7 * 24 * 3600));
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach credvault at {}: {e}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|j| j["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(200).collect());
        bail!("{}: {}", status.as_u16(), msg)
    }

    async fn call_at(
        &self,
        prefix: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let url = format!("{}{prefix}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach credvault at {}: {e}", self.base))?;
        let status = resp.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let text = resp.text().await?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if !status.is_success() {
            let (code, msg) = json
                .as_ref()
                .and_then(|j| j.get("error"))
                .map(|e| {
                    (
                        e.get("code")
                            .and_then(Value::as_str)
                            .unwrap_or("error")
                            .to_owned(),
                        e.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    )
                })
                .unwrap_or_else(|| ("error".into(), text.chars().take(200).collect()));
            bail!("{} ({}): {}", status.as_u16(), code, msg);
        }
        Ok(json)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let v = self
            .call(Method::GET, path, None)
            .await?
            .unwrap_or(Value::Null);
        serde_json::from_value(v).context("unexpected response")
    }

    pub async fn send(&self, method: Method, path: &str, body: &Value) -> Result<Value> {
        Ok(self
            .call(method, path, Some(body))
            .await?
            .unwrap_or(Value::Null))
    }

    /// A POST under `/api/v1` with a raw body (an archive file to verify); errors as `call`.
    pub async fn upload(&self, path: &str, body: Vec<u8>) -> Result<Value> {
        let url = format!("{}/api/v1{}", self.base, path);
        let mut req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .timeout(std::time::Duration::from_secs(3600))
            .body(body);
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach credvault at {}: {e}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = json["error"]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| text.chars().take(200).collect());
            bail!("{}: {}", status.as_u16(), msg);
        }
        Ok(json)
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.call(Method::DELETE, path, None).await.map(|_| ())
    }
}

/// Percent-encode one path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
