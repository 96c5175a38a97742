//! Clients that pull credentials, read-only, from external vaults: HashiCorp Vault / OpenBao KV v2
//! (token or AppRole), a Central Credential Provider (AppID, optional client certificate or header
//! secret) and another credvault (its fetch-credentials endpoint).
//!
//! Every kind maps what it reads onto the fetch-credentials contract's object
//! `{user, password, name}` ([`Fetched`]): a KV v2 secret gives one object per key/value pair
//! (`user` = key, `password` = value, `name` = the secret's name), a CCP account gives
//! `UserName`/`Content`/`Name`. Fetching one name never answers more than one object: several matches
//! are [`FetchError::Ambiguous`].
//!
//! No I/O besides HTTP to the configured remote; no secret in any error message or `Debug` output.
//!
//! [`change`]: the password-change plugins (issue 17), which log in to target systems.

pub mod change;

use std::time::Duration;

use credvault_crypto::SecretString;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds of external vault credvault can pull from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// HashiCorp Vault or OpenBao, KV version 2 (token or AppRole).
    VaultKv,
    /// A Central Credential Provider (`/AIMWebService/api/Accounts`).
    Ccp,
    /// Another credvault, through its fetch-credentials endpoint.
    Credvault,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VaultKv => "vault-kv",
            Kind::Ccp => "ccp",
            Kind::Credvault => "credvault",
        }
    }
}

/// The non-secret settings of an integration (stored as JSON, shown to admins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kind: Kind,
    /// Base address of the remote, e.g. `https://vault.internal:8200`.
    pub url: String,
    /// Which credentials to pull (names); for Vault KV an empty list means every secret of the folder.
    #[serde(default)]
    pub credential_names: Vec<String>,
    /// How long a fetched credential is served before it is fetched again; 0 turns the cache off.
    #[serde(default)]
    pub cache_expiry_seconds: u64,
    /// Vault KV: the mount (default `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// Vault KV: the folder inside the mount; CCP: the `Folder` parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// Vault KV: AppRole `role_id` (with `secret_id` among the secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
    /// CCP: the application ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// CCP: the `Safe` parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe: Option<String>,
    /// A PEM CA certificate to trust for the remote's TLS certificate (besides the public roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// Per-request timeout in seconds (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// The secret settings of an integration: sealed by the barrier at rest, never shown.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// Vault KV token auth, or a credvault token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretString>,
    /// Vault KV AppRole `secret_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<SecretString>,
    /// CCP: client certificate and its private key, PEM, for mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_identity: Option<SecretString>,
    /// CCP: the `X-CCP-App-Secret` header secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_secret: Option<SecretString>,
}

pub const MAX_CACHE_EXPIRY_SECONDS: u64 = 86_400;
pub const MAX_NAMES: usize = 1000;

/// Why an integration's settings were refused (field, reason). Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

impl Settings {
    /// Check the settings (and which secrets they need) before they are stored.
    pub fn validate(&self, secrets: &Secrets) -> Result<(), Invalid> {
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
            return Err(invalid("url", "must be an http:// or https:// address"));
        }
        if reqwest::Url::parse(url).is_err() {
            return Err(invalid("url", "is not a valid address"));
        }
        if self.credential_names.len() > MAX_NAMES {
            return Err(invalid(
                "credential_names",
                format!("at most {MAX_NAMES} names"),
            ));
        }
        for n in &self.credential_names {
            if n.trim().is_empty() || n.len() > 256 || n.chars().any(char::is_control) {
                return Err(invalid(
                    "credential_names",
                    "names must be 1 to 256 printable characters",
                ));
            }
        }
        if self.cache_expiry_seconds > MAX_CACHE_EXPIRY_SECONDS {
            return Err(invalid(
                "cache_expiry_seconds",
                format!("must be 0 (no cache) to {MAX_CACHE_EXPIRY_SECONDS}"),
            ));
        }
        if matches!(self.timeout_seconds, Some(0) | Some(301..)) {
            return Err(invalid("timeout_seconds", "must be 1 to 300"));
        }
        if let Some(pem) = &self.ca_cert {
            reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|_| invalid("ca_cert", "is not a PEM certificate"))?;
        }
        match self.kind {
            Kind::VaultKv => {
                let approle = self.role_id.is_some() || secrets.secret_id.is_some();
                if approle && (self.role_id.is_none() || secrets.secret_id.is_none()) {
                    return Err(invalid(
                        "role_id",
                        "AppRole needs both role_id and secret_id",
                    ));
                }
                if !approle && secrets.token.is_none() {
                    return Err(invalid("token", "give a token, or role_id and secret_id"));
                }
                for (field, v) in [("mount", &self.mount), ("folder", &self.folder)] {
                    if v.as_deref()
                        .is_some_and(|p| p.contains("..") || p.contains('?') || p.contains('#'))
                    {
                        return Err(invalid(field, "must be a plain path"));
                    }
                }
            }
            Kind::Ccp => {
                if self.app_id.as_deref().is_none_or(|a| a.trim().is_empty()) {
                    return Err(invalid("app_id", "is required for a CCP integration"));
                }
                if self.credential_names.is_empty() {
                    return Err(invalid(
                        "credential_names",
                        "a CCP integration needs the names to fetch",
                    ));
                }
                if let Some(id) = &secrets.client_identity {
                    reqwest::Identity::from_pem(id.expose().as_bytes()).map_err(|_| {
                        invalid(
                            "client_identity",
                            "must be a PEM certificate followed by its private key",
                        )
                    })?;
                }
            }
            Kind::Credvault => {
                if secrets.token.is_none() {
                    return Err(invalid("token", "is required for a credvault integration"));
                }
                if self.credential_names.is_empty() {
                    return Err(invalid(
                        "credential_names",
                        "a credvault integration needs the names to fetch",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One fetched credential, as the fetch-credentials contract shapes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fetched {
    pub name: String,
    pub user: String,
    pub password: SecretString,
}

/// Why a fetch failed. Messages name the remote's answer, never a secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    #[error("the remote vault could not be reached: {0}")]
    Unreachable(String),
    #[error("the remote vault refused the request (HTTP {status}): {detail}")]
    Rejected { status: u16, detail: String },
    #[error("{0} credentials match one name; a name must identify exactly one")]
    Ambiguous(usize),
    #[error("the remote vault answered something unexpected: {0}")]
    Protocol(String),
    #[error("invalid integration settings: {0}")]
    Config(String),
}

/// What one fetch-all run saw: the credentials, and the names that failed with why.
#[derive(Debug, Default)]
pub struct Report {
    pub fetched: Vec<Fetched>,
    pub errors: Vec<(String, FetchError)>,
}

/// A client for one integration.
pub struct Connector {
    settings: Settings,
    secrets: Secrets,
    http: reqwest::Client,
}

fn transport(e: reqwest::Error) -> FetchError {
    // The URL carries no secret (tokens travel in headers), but drop it to keep messages short.
    FetchError::Unreachable(e.without_url().to_string())
}

/// A short, secret-free description of an error answer: Vault's `errors`, CCP's `ErrorCode`/`ErrorMsg`,
/// or the native `error.message`.
fn describe(body: &Value) -> String {
    if let Some(errs) = body.get("errors").and_then(Value::as_array) {
        let all: Vec<&str> = errs.iter().filter_map(Value::as_str).collect();
        return all.join("; ");
    }
    if let Some(code) = body.get("ErrorCode").and_then(Value::as_str) {
        let msg = body.get("ErrorMsg").and_then(Value::as_str).unwrap_or("");
        return format!("{code}: {msg}");
    }
    if let Some(m) = body.pointer("/error/message").and_then(Value::as_str) {
        return m.to_owned();
    }
    String::new()
}

fn string_field(v: &Value, key: &str) -> Result<String, FetchError> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| FetchError::Protocol(format!("no string field '{key}'")))
}

impl Connector {
    pub fn new(settings: Settings, secrets: Secrets) -> Result<Self, FetchError> {
        settings
            .validate(&secrets)
            .map_err(|e| FetchError::Config(e.to_string()))?;
        let timeout = Duration::from_secs(settings.timeout_seconds.unwrap_or(10));
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("credvault/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &settings.ca_cert {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|_| FetchError::Config("ca_cert is not a PEM certificate".into()))?;
            b = b.add_root_certificate(ca);
        }
        if let Some(id) = &secrets.client_identity {
            let identity = reqwest::Identity::from_pem(id.expose().as_bytes())
                .map_err(|_| FetchError::Config("client_identity is not valid PEM".into()))?;
            b = b.identity(identity);
        }
        let http = b
            .build()
            .map_err(|e| FetchError::Config(e.without_url().to_string()))?;
        Ok(Self {
            settings,
            secrets,
            http,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.settings.url.trim().trim_end_matches('/'), path)
    }

    /// Send a request and read a JSON answer. `Ok(None)` for 404; other non-2xx are `Rejected`.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        not_found_is_none: bool,
    ) -> Result<Option<Value>, FetchError> {
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Some(body));
        }
        if status == StatusCode::NOT_FOUND && not_found_is_none {
            return Ok(None);
        }
        Err(FetchError::Rejected {
            status: status.as_u16(),
            detail: describe(&body),
        })
    }

    /// Fetch every configured credential. Per-name failures are reported, not fatal; a failure that
    /// stops the whole run (remote down, login refused) is an error.
    pub async fn fetch_all(&self) -> Result<Report, FetchError> {
        match self.settings.kind {
            Kind::VaultKv => self.kv_fetch_all().await,
            Kind::Ccp | Kind::Credvault => {
                let mut report = Report::default();
                for name in &self.settings.credential_names {
                    match self.fetch_matching(name).await {
                        Ok(found) => report.fetched.extend(found),
                        Err(e @ (FetchError::Unreachable(_) | FetchError::Config(_))) => {
                            return Err(e)
                        }
                        Err(e) => report.errors.push((name.clone(), e)),
                    }
                }
                Ok(report)
            }
        }
    }

    /// Fetch the one credential named `name`: `None` when the remote has none, an error when it has
    /// several (never more than one is returned).
    pub async fn fetch_one(&self, name: &str) -> Result<Option<Fetched>, FetchError> {
        let mut found = self.fetch_matching(name).await?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            n => Err(FetchError::Ambiguous(n)),
        }
    }

    /// Every credential the remote has under `name` (a Vault KV secret gives one per key/value pair).
    pub async fn fetch_matching(&self, name: &str) -> Result<Vec<Fetched>, FetchError> {
        match self.settings.kind {
            Kind::VaultKv => {
                let token = self.kv_token().await?;
                self.kv_read(&token, name).await
            }
            Kind::Ccp => self.ccp_read(name).await,
            Kind::Credvault => self.credvault_read(name).await,
        }
    }

    // ------------------------------------------------------------------ Vault KV v2

    fn kv_mount(&self) -> &str {
        self.settings
            .mount
            .as_deref()
            .unwrap_or("secret")
            .trim_matches('/')
    }

    fn kv_folder(&self) -> String {
        let f = self
            .settings
            .folder
            .as_deref()
            .unwrap_or("")
            .trim_matches('/');
        if f.is_empty() {
            String::new()
        } else {
            format!("{f}/")
        }
    }

    fn kv_request(
        &self,
        method: Method,
        path: &str,
        token: &SecretString,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("X-Vault-Token", token.expose())
            .header("X-Vault-Request", "true")
    }

    /// The token to use: the configured one, or a fresh AppRole login.
    async fn kv_token(&self) -> Result<SecretString, FetchError> {
        if let (Some(role_id), Some(secret_id)) = (&self.settings.role_id, &self.secrets.secret_id)
        {
            let req = self
                .http
                .post(self.url("/v1/auth/approle/login"))
                .header("X-Vault-Request", "true")
                .json(&serde_json::json!({"role_id": role_id, "secret_id": secret_id.expose()}));
            let body = self.call(req, false).await?.unwrap_or(Value::Null);
            let token = body
                .pointer("/auth/client_token")
                .and_then(Value::as_str)
                .ok_or_else(|| FetchError::Protocol("AppRole login gave no client_token".into()))?;
            return Ok(SecretString::from(token));
        }
        self.secrets
            .token
            .clone()
            .ok_or_else(|| FetchError::Config("no token".into()))
    }

    async fn kv_fetch_all(&self) -> Result<Report, FetchError> {
        let token = self.kv_token().await?;
        let path = format!(
            "/v1/{}/metadata/{}?list=true",
            self.kv_mount(),
            self.kv_folder()
        );
        let listed = self
            .call(self.kv_request(Method::GET, &path, &token), true)
            .await?;
        let keys: Vec<String> = listed
            .as_ref()
            .and_then(|b| b.pointer("/data/keys"))
            .and_then(Value::as_array)
            .map(|ks| {
                ks.iter()
                    .filter_map(Value::as_str)
                    .filter(|k| !k.ends_with('/'))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let wanted = &self.settings.credential_names;
        let mut report = Report::default();
        for key in keys
            .into_iter()
            .filter(|k| wanted.is_empty() || wanted.contains(k))
        {
            match self.kv_read(&token, &key).await {
                Ok(found) => report.fetched.extend(found),
                Err(e @ FetchError::Unreachable(_)) => return Err(e),
                Err(e) => report.errors.push((key, e)),
            }
        }
        Ok(report)
    }

    /// Read one KV secret: each key/value pair is one credential named after the secret.
    async fn kv_read(&self, token: &SecretString, name: &str) -> Result<Vec<Fetched>, FetchError> {
        if name.contains('/') || name.contains('?') || name.contains('#') || name == ".." {
            return Err(FetchError::Config(format!("'{name}' is not a secret name")));
        }
        let path = format!("/v1/{}/data/{}{}", self.kv_mount(), self.kv_folder(), name);
        let Some(body) = self
            .call(self.kv_request(Method::GET, &path, token), true)
            .await?
        else {
            return Ok(Vec::new());
        };
        let data = body
            .pointer("/data/data")
            .and_then(Value::as_object)
            .ok_or_else(|| FetchError::Protocol("a KV v2 read without data.data".into()))?;
        data.iter()
            .map(|(k, v)| {
                let password = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Ok(Fetched {
                    name: name.to_owned(),
                    user: k.clone(),
                    password: SecretString::new(password),
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------ CCP

    async fn ccp_read(&self, name: &str) -> Result<Vec<Fetched>, FetchError> {
        let mut q: Vec<(&str, &str)> =
            vec![("AppID", self.settings.app_id.as_deref().unwrap_or(""))];
        if let Some(s) = &self.settings.safe {
            q.push(("Safe", s));
        }
        if let Some(f) = &self.settings.folder {
            q.push(("Folder", f));
        }
        q.push(("Object", name));
        let mut req = self
            .http
            .get(self.url("/AIMWebService/api/Accounts"))
            .query(&q);
        if let Some(h) = &self.secrets.header_secret {
            req = req.header("X-CCP-App-Secret", h.expose());
        }
        match self.call(req, true).await {
            Ok(None) => Ok(Vec::new()),
            Ok(Some(body)) => Ok(vec![Fetched {
                name: string_field(&body, "Name").unwrap_or_else(|_| name.to_owned()),
                user: string_field(&body, "UserName")?,
                password: SecretString::new(string_field(&body, "Content")?),
            }]),
            Err(FetchError::Rejected { detail, .. }) if detail.starts_with("APPAP227E") => {
                Err(FetchError::Ambiguous(2))
            }
            Err(e) => Err(e),
        }
    }

    // ------------------------------------------------------------------ credvault

    async fn credvault_read(&self, name: &str) -> Result<Vec<Fetched>, FetchError> {
        let token = self
            .secrets
            .token
            .as_ref()
            .ok_or_else(|| FetchError::Config("no token".into()))?;
        let req = self
            .http
            .get(self.url("/api/fetch-credentials"))
            .query(&[("identifier", name)])
            .header("X-Vault-Token", token.expose());
        let body = self.call(req, false).await?.unwrap_or(Value::Null);
        // The contract's answer is a bare list; accept it wrapped in `data` or `credentials` too.
        let list = body
            .as_array()
            .or_else(|| body.get("data").and_then(Value::as_array))
            .or_else(|| body.get("credentials").and_then(Value::as_array))
            .ok_or_else(|| {
                FetchError::Protocol("fetch-credentials did not answer a list".into())
            })?;
        list.iter()
            .map(|c| {
                Ok(Fetched {
                    name: string_field(c, "name")?,
                    user: string_field(c, "user")?,
                    password: SecretString::new(string_field(c, "password")?),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv() -> Settings {
        Settings {
            kind: Kind::VaultKv,
            url: "https://vault.example:8200".into(),
            credential_names: vec!["db".into()],
            cache_expiry_seconds: 60,
            mount: None,
            folder: None,
            role_id: None,
            app_id: None,
            safe: None,
            ca_cert: None,
            timeout_seconds: None,
        }
    }

    #[test]
    fn settings_are_checked() {
        let token = Secrets {
            token: Some("t".into()),
            ..Secrets::default()
        };
        assert!(kv().validate(&token).is_ok());
        assert_eq!(
            kv().validate(&Secrets::default()).map_err(|e| e.field),
            Err("token")
        );
        let mut s = kv();
        s.role_id = Some("r".into());
        assert_eq!(s.validate(&token).map_err(|e| e.field), Err("role_id"));
        let mut s = kv();
        s.url = "ftp://x".into();
        assert_eq!(s.validate(&token).map_err(|e| e.field), Err("url"));
        let mut s = kv();
        s.cache_expiry_seconds = MAX_CACHE_EXPIRY_SECONDS + 1;
        assert!(s.validate(&token).is_err());
        let mut s = kv();
        s.folder = Some("../other".into());
        assert!(s.validate(&token).is_err());
        let mut s = kv();
        s.kind = Kind::Ccp;
        assert_eq!(s.validate(&token).map_err(|e| e.field), Err("app_id"));
        s.app_id = Some("Billing".into());
        assert!(s.validate(&Secrets::default()).is_ok());
        s.credential_names.clear();
        assert!(s.validate(&Secrets::default()).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secrets {
            token: Some("hvs.topsecret".into()),
            ..Secrets::default()
        };
        assert!(!format!("{s:?}").contains("topsecret"));
        let f = Fetched {
            name: "n".into(),
            user: "u".into(),
            password: "pw-topsecret".into(),
        };
        assert!(!format!("{f:?}").contains("topsecret"));
    }

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(
            describe(&serde_json::json!({"errors": ["permission denied"]})),
            "permission denied"
        );
        assert_eq!(
            describe(&serde_json::json!({"ErrorCode": "APPAP227E", "ErrorMsg": "Too many"})),
            "APPAP227E: Too many"
        );
    }
}
