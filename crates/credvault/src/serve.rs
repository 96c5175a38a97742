//! `credvault server`: configuration (defaults < credvault.toml < CREDVAULT_* < flags) and start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Where credentials are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// The embedded default: `<data_dir>/credvault.db`.
    Sqlite,
    /// PostgreSQL, for several servers on one database (needs `database_url`).
    Postgres,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Every server setting, one field each. A field is read, lowest first, from the built-in default,
/// `credvault.toml` (`field = value`), the environment (`CREDVAULT_FIELD`) and the flag
/// (`--field`): adding a setting is adding a field here and using it in [`Settings::server_config`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on [default: 127.0.0.1:8200].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Data directory for the embedded SQLite store [default: ./credvault-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Storage backend [default: sqlite].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageKind>,
    /// PostgreSQL URL for --storage postgres (prefer CREDVAULT_DATABASE_URL: it may hold a password).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<credvault_crypto::SecretString>,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates applications may present (mTLS; needs HTTPS).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CRL(s) of the client CA: revoked client certificates are refused at the handshake.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_crl: Option<PathBuf>,
    /// Unseal automatically at start with the single key in this file (see `operator init --key-file`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseal_key_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes [default: 1048576].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// A request still running after this many seconds is answered 408 [default: 30].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_seconds: Option<u64>,
    /// A request head must arrive complete within this many seconds of the connection's start or
    /// the previous answer; slower clients are disconnected [default: 10].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_seconds: Option<u64>,
    /// A connection idle this many seconds (no request running, nothing sent) is closed [default: 5].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive_timeout_seconds: Option<u64>,
    /// Open connections at most; more are closed at once [default: 4096].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Open connections from one source address at most, 0 for no cap [default: 1024].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_source: Option<usize>,
    /// Failed authentications allowed per source address and minute [default: 30].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_failures_per_minute: Option<u32>,
    /// Free space (MB) of the data directory's filesystem below which writes are refused, keeping
    /// room for the audit of reads; 0 for no floor [default: 64].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_free_disk_mb: Option<u64>,
    /// Also append every audit record to this file, as JSON lines (created 0600).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_file: Option<PathBuf>,
    /// Refuse audited requests while the audit file cannot be written, like the main log
    /// [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_file_required: Option<bool>,
    /// Also send every audit record to syslog (RFC 5424): `local` (/dev/log), `unix:PATH` or
    /// `udp://HOST:PORT`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_syslog: Option<String>,
    /// Refuse audited requests while syslog cannot be written, like the main log [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_syslog_required: Option<bool>,
    /// Seconds after a key rotation before the old data keys may be deleted, once unused [default: 60].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_retire_grace_seconds: Option<u64>,
    /// Log level filter, e.g. info, debug, credvault_server=trace [default: info].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Log format [default: text].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Let the server dump core (for debugging only: a core dump holds the unsealed keys)
    /// [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_core_dumps: Option<bool>,
}

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Development mode: initialise and unseal automatically, print the root token. Secrets are
    /// only as safe as the data directory, which then holds the unseal key.
    #[arg(long)]
    pub dev: bool,
    /// Configuration file (TOML). Default: ./credvault.toml when it exists.
    #[arg(long, short = 'c', env = "CREDVAULT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

/// The setting names, as `CREDVAULT_<NAME>` environment variables may give them (taken from the
/// flags, so the list cannot drift from the struct). Other `CREDVAULT_*` variables (the CLI's
/// `CREDVAULT_ADDR`, `CREDVAULT_TOKEN`, ...) are not settings.
fn setting_names() -> Vec<String> {
    use clap::Args as _;
    Settings::augment_args(clap::Command::new("settings"))
        .get_arguments()
        .map(|a| a.get_id().as_str().to_owned())
        .collect()
}

/// The settings in force: defaults < config file < `CREDVAULT_*` < flags.
pub fn load(args: &ServerArgs) -> Result<Settings> {
    let mut fig = Figment::new();
    match &args.config {
        Some(p) => {
            anyhow::ensure!(p.exists(), "config file {} does not exist", p.display());
            fig = fig.merge(Toml::file(p));
        }
        None => fig = fig.merge(Toml::file("credvault.toml")),
    }
    let names = setting_names();
    fig = fig
        .merge(Env::prefixed("CREDVAULT_").filter(move |k| names.iter().any(|n| k == n.as_str())))
        .merge(Serialized::defaults(&args.settings));
    fig.extract().context("invalid configuration")
}

impl Settings {
    /// The server's configuration: each setting, or its default.
    pub fn server_config(&self, dev: bool) -> Result<credvault_server::Config> {
        let d = credvault_server::Config::default();
        let storage = match (
            self.storage.unwrap_or(StorageKind::Sqlite),
            &self.database_url,
        ) {
            (StorageKind::Sqlite, _) => credvault_server::Storage::Sqlite,
            (StorageKind::Postgres, Some(url)) => {
                credvault_server::Storage::Postgres { url: url.clone() }
            }
            (StorageKind::Postgres, None) => {
                anyhow::bail!("--storage postgres needs --database-url (or CREDVAULT_DATABASE_URL)")
            }
        };
        let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
        use credvault_service::audit_sink::{SinkConfig, SinkTarget};
        let mut audit_sinks = Vec::new();
        if let Some(p) = &self.audit_file {
            audit_sinks.push(SinkConfig {
                target: SinkTarget::File(p.clone()),
                required: self.audit_file_required.unwrap_or(false),
            });
        }
        if let Some(a) = &self.audit_syslog {
            audit_sinks.push(SinkConfig {
                target: SinkTarget::syslog(a).map_err(anyhow::Error::msg)?,
                required: self.audit_syslog_required.unwrap_or(false),
            });
        }
        Ok(credvault_server::Config {
            listen: self.listen.unwrap_or(d.listen),
            data_dir: self.data_dir.clone().unwrap_or(d.data_dir),
            storage,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            tls_client_crl: self.tls_client_crl.clone(),
            unseal_key_file: self.unseal_key_file.clone(),
            dev,
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
            request_timeout: secs(self.request_timeout_seconds, d.request_timeout),
            header_read_timeout: secs(self.header_read_timeout_seconds, d.header_read_timeout),
            keep_alive_timeout: secs(self.keep_alive_timeout_seconds, d.keep_alive_timeout),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_connections_per_source: self
                .max_connections_per_source
                .unwrap_or(d.max_connections_per_source),
            auth_failures_per_minute: self
                .auth_failures_per_minute
                .unwrap_or(d.auth_failures_per_minute),
            min_free_disk_bytes: self
                .min_free_disk_mb
                .map_or(d.min_free_disk_bytes, |mb| mb.saturating_mul(1024 * 1024)),
            audit_sinks,
            key_retire_grace: secs(self.key_retire_grace_seconds, d.key_retire_grace),
            clock: d.clock,
        })
    }
}

pub fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

/// Process hardening at start (issue 16.7): files the server creates are its owner's alone (umask
/// 0o077), and unless `allow_core_dumps`, no core dump can be written (`RLIMIT_CORE` 0, soft and
/// hard) and the process is not dumpable (`PR_SET_DUMPABLE` 0: no core, no ptrace by other
/// processes of the same user, `/proc/PID/mem` and `environ` closed to them), since its memory holds
/// the unsealed keys. A refusal by the kernel is an error: the server does not start unprotected.
pub fn harden(allow_core_dumps: bool) -> Result<()> {
    use rustix::process::{self, DumpableBehavior, Resource, Rlimit};
    process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    if !allow_core_dumps {
        process::setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )
        .context("setting RLIMIT_CORE to 0")?;
        process::set_dumpable_behavior(DumpableBehavior::NotDumpable)
            .context("prctl(PR_SET_DUMPABLE, 0)")?;
    }
    Ok(())
}

pub async fn run(args: ServerArgs) -> Result<()> {
    let settings = load(&args)?;
    init_logging(
        settings.log_level.as_deref().unwrap_or("info"),
        settings.log_format.unwrap_or(LogFormat::Text),
    );
    let allow_core_dumps = settings.allow_core_dumps.unwrap_or(false);
    harden(allow_core_dumps)?;
    if allow_core_dumps {
        tracing::warn!(
            "core dumps allowed (allow_core_dumps): a core dump holds the unsealed keys"
        );
    }
    let cfg = settings.server_config(args.dev)?;
    let data_dir = cfg.data_dir.clone();
    let running = credvault_server::start(cfg)
        .await
        .context("starting the server")?;
    if let Some(t) = &running.dev_root_token {
        eprintln!(
            "credvault dev server on {} (data in {})",
            running.url(),
            data_dir.display()
        );
        eprintln!("The dev vault is initialised and unsealed. Use it with:\n");
        eprintln!("    export CREDVAULT_ADDR={}", running.url());
        eprintln!("    export CREDVAULT_TOKEN={}\n", t.expose());
        eprintln!("Development mode keeps the unseal key in the data directory: never store real secrets in it.");
    } else {
        eprintln!("credvault listening on {}", running.url());
    }
    // SIGINT or SIGTERM (systemd, containers): finish in-flight requests, then write the refusal
    // summaries still counting (`Running::wait`).
    let handle = running.handle();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        handle.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    running.wait().await.context("server stopped")
}
