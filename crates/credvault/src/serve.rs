//! `credvault server`: configuration (defaults < credvault.toml < CREDVAULT_* < flags) and start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The server settings, as read from `credvault.toml` and `CREDVAULT_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite` (embedded, default) or `postgres`.
    pub storage: String,
    /// For `postgres`: postgres://user:password@host:port/database
    pub database_url: Option<credvault_crypto::SecretString>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub tls_client_crl: Option<PathBuf>,
    pub unseal_key_file: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub request_timeout_seconds: u64,
    pub auth_failures_per_minute: u32,
    /// Seconds after a key rotation before the old data keys may be deleted (once unused).
    pub key_retire_grace_seconds: u64,
    pub log_level: String,
    pub log_format: String,
}

impl Default for FileConfig {
    fn default() -> Self {
        let d = credvault_server::Config::default();
        Self {
            listen: d.listen,
            data_dir: d.data_dir,
            storage: "sqlite".into(),
            database_url: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_crl: None,
            unseal_key_file: None,
            max_body_bytes: d.max_body_bytes,
            request_timeout_seconds: d.request_timeout.as_secs(),
            auth_failures_per_minute: d.auth_failures_per_minute,
            key_retire_grace_seconds: d.key_retire_grace.as_secs(),
            log_level: "info".into(),
            log_format: "text".into(),
        }
    }
}

const ENV_KEYS: [&str; 15] = [
    "key_retire_grace_seconds",
    "tls_client_ca",
    "tls_client_crl",
    "listen",
    "data_dir",
    "storage",
    "database_url",
    "tls_cert",
    "tls_key",
    "unseal_key_file",
    "max_body_bytes",
    "request_timeout_seconds",
    "auth_failures_per_minute",
    "log_level",
    "log_format",
];

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Development mode: initialise and unseal automatically, print the root token. Secrets are
    /// only as safe as the data directory, which then holds the unseal key.
    #[arg(long)]
    pub dev: bool,
    /// Configuration file (TOML). Default: ./credvault.toml when it exists.
    #[arg(long, short = 'c', env = "CREDVAULT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8200].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Data directory for the embedded SQLite store [default: ./credvault-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Storage backend: sqlite (embedded, default) or postgres (several servers on one database).
    #[arg(long, value_parser = ["sqlite", "postgres"])]
    pub storage: Option<String>,
    /// PostgreSQL URL for --storage postgres (prefer CREDVAULT_DATABASE_URL: it may hold a password).
    #[arg(long)]
    pub database_url: Option<String>,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates applications may present (mTLS; needs HTTPS).
    #[arg(long)]
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CRL(s) of the client CA: revoked client certificates are refused at the handshake.
    #[arg(long)]
    pub tls_client_crl: Option<PathBuf>,
    /// Unseal automatically at start with the single key in this file (see `operator init --key-file`).
    #[arg(long)]
    pub unseal_key_file: Option<PathBuf>,
    /// Log level filter, e.g. info, debug, credvault_server=trace [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long)]
    pub log_format: Option<String>,
}

pub fn load(args: &ServerArgs) -> Result<FileConfig> {
    let mut fig = Figment::from(Serialized::defaults(FileConfig::default()));
    match &args.config {
        Some(p) => {
            anyhow::ensure!(p.exists(), "config file {} does not exist", p.display());
            fig = fig.merge(Toml::file(p));
        }
        None => fig = fig.merge(Toml::file("credvault.toml")),
    }
    fig = fig.merge(Env::prefixed("CREDVAULT_").only(&ENV_KEYS));
    let mut c: FileConfig = fig.extract().context("invalid configuration")?;
    macro_rules! flag {
        ($f:ident) => {
            if let Some(v) = &args.$f {
                c.$f = v.clone().into();
            }
        };
    }
    flag!(listen);
    flag!(data_dir);
    flag!(storage);
    if args.database_url.is_some() {
        c.database_url = args.database_url.as_deref().map(Into::into);
    }
    flag!(tls_cert);
    flag!(tls_key);
    flag!(tls_client_ca);
    flag!(tls_client_crl);
    flag!(unseal_key_file);
    flag!(log_level);
    flag!(log_format);
    Ok(c)
}

pub fn init_logging(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

pub async fn run(args: ServerArgs) -> Result<()> {
    let fc = load(&args)?;
    init_logging(&fc.log_level, &fc.log_format);
    let storage = match (fc.storage.as_str(), fc.database_url) {
        ("sqlite", _) => credvault_server::Storage::Sqlite,
        ("postgres", Some(url)) => credvault_server::Storage::Postgres { url },
        ("postgres", None) => {
            anyhow::bail!("--storage postgres needs --database-url (or CREDVAULT_DATABASE_URL)")
        }
        (other, _) => anyhow::bail!("unknown storage '{other}': use sqlite or postgres"),
    };
    let cfg = credvault_server::Config {
        listen: fc.listen,
        data_dir: fc.data_dir.clone(),
        storage,
        tls_cert: fc.tls_cert,
        tls_key: fc.tls_key,
        tls_client_ca: fc.tls_client_ca,
        tls_client_crl: fc.tls_client_crl,
        unseal_key_file: fc.unseal_key_file,
        dev: args.dev,
        max_body_bytes: fc.max_body_bytes,
        request_timeout: Duration::from_secs(fc.request_timeout_seconds),
        auth_failures_per_minute: fc.auth_failures_per_minute,
        key_retire_grace: Duration::from_secs(fc.key_retire_grace_seconds),
    };
    let running = credvault_server::start(cfg)
        .await
        .context("starting the server")?;
    if let Some(t) = &running.dev_root_token {
        eprintln!(
            "credvault dev server on {} (data in {})",
            running.url(),
            fc.data_dir.display()
        );
        eprintln!("The dev vault is initialised and unsealed. Use it with:\n");
        eprintln!("    export CREDVAULT_ADDR={}", running.url());
        eprintln!("    export CREDVAULT_TOKEN={}\n", t.expose());
        eprintln!("Development mode keeps the unseal key in the data directory: never store real secrets in it.");
    } else {
        eprintln!("credvault listening on {}", running.url());
    }
    let handle = running.handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        handle.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    running.wait().await.context("server stopped")
}
