//! The credvault HTTP server: front doors over shared auth, policy, audit and the seal.
//!
//! ```text
//! request ─▶ router (one module per door) ─▶ edge.rs: source, token → caller (Ctx)
//!         ─▶ credvault_service::Vault (lookup, policy, crypto, store, audit) ─▶ door error/response
//! ```

pub mod ccp;
pub mod conn;
pub mod edge;
pub mod entity;
pub mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod native;
pub mod openapi;
pub mod pam;
mod telemetry;
pub mod tls;
pub mod vaultkv;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use credvault_crypto::SecretString;
use credvault_store::postgres::PgStore;
use credvault_store::sqlite::SqliteStore;
use credvault_store::Store;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use credvault_service::error::ServiceError;
pub use credvault_service::{Clock, Ctx, Vault};

use crate::native::ApiError;

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// SQLite database and dev-mode files live here.
    pub data_dir: PathBuf,
    /// Where credentials are stored.
    pub storage: Storage,
    /// PEM certificate chain and private key; HTTPS when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) whose client certificates are accepted (mTLS for application doors).
    pub tls_client_ca: Option<PathBuf>,
    /// PEM certificate revocation lists of that CA: revoked client certificates fail the handshake.
    pub tls_client_crl: Option<PathBuf>,
    /// A file holding a single unseal key: the server unseals itself at start.
    pub unseal_key_file: Option<PathBuf>,
    /// Initialise and unseal automatically (development only).
    pub dev: bool,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// A request head must arrive complete within this, counted from the connection's start or
    /// the end of the previous answer (slow clients, issue 16.3; see `conn.rs`).
    pub header_read_timeout: Duration,
    /// A connection with no request running and nothing read or written for this long is closed.
    pub keep_alive_timeout: Duration,
    /// Open connections at most; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Open connections from one source address at most (0: no per-source cap).
    pub max_connections_per_source: usize,
    pub auth_failures_per_minute: u32,
    /// Free space of the data directory's filesystem below which writes are refused (507), so the
    /// audit of reads keeps room (SQLite; 0: no floor). Issue 16.2, `service/src/disk.rs`.
    pub min_free_disk_bytes: u64,
    /// Where the audit trail is copied too (a JSON-lines file, syslog), each optionally required.
    pub audit_sinks: Vec<credvault_service::audit_sink::SinkConfig>,
    /// How long after a key rotation the old data keys may be deleted, once nothing uses them
    /// (longer than any request: default the request timeout plus 30 s).
    pub key_retire_grace: Duration,
    /// The time the vault goes by: the system clock; tests pass one they move forward.
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8200)),
            data_dir: PathBuf::from("./credvault-data"),
            storage: Storage::Sqlite,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_crl: None,
            unseal_key_file: None,
            dev: false,
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            max_connections: 4096,
            max_connections_per_source: 1024,
            auth_failures_per_minute: 30,
            min_free_disk_bytes: 64 * 1024 * 1024,
            audit_sinks: Vec::new(),
            key_retire_grace: Duration::from_secs(60),
            clock: Clock::system(),
        }
    }
}

/// The storage backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// The embedded default: `<data_dir>/credvault.db`.
    Sqlite,
    /// PostgreSQL for several servers on one database. The URL may hold a password, so it is a secret.
    Postgres { url: SecretString },
}

impl Storage {
    pub async fn open(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<Arc<dyn Store>, credvault_store::StoreError> {
        Ok(match self {
            Storage::Sqlite => {
                private_data_dir(data_dir)?;
                let store = Arc::new(SqliteStore::open(data_dir).await?);
                // SQLite gives its -wal and -shm files the database file's mode; any made before
                // the database file was private are fixed here.
                private_data_dir(data_dir)?;
                store
            }
            Storage::Postgres { url } => Arc::new(PgStore::connect(url.expose()).await?),
        })
    }
}

/// Make the data directory readable only by its owner (0700) and the database files in it 0600,
/// creating the directory and an empty database file when missing, so SQLite never makes a file
/// others can read.
fn private_data_dir(dir: &std::path::Path) -> Result<(), credvault_store::StoreError> {
    let io = |e: std::io::Error| {
        credvault_store::StoreError::Unavailable(format!("data directory {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(dir.join("credvault.db"))
            .map_err(io)?;
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let is_db = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("credvault.db"));
            if is_db {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Store(#[from] credvault_store::StoreError),
    #[error("{0}")]
    Service(#[from] ServiceError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

#[derive(Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub https: bool,
    pub vault: Arc<Vault>,
    /// Set in dev mode on the first start: the root token.
    pub dev_root_token: Option<SecretString>,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.addr
        )
    }
    /// Stop accepting, finish in-flight requests, and wait.
    pub async fn shutdown(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        let _ = self.task.await;
        self.vault.flush_all_refusals().await;
    }
    /// Wait until the server stops (it runs until shutdown or a fatal error); then the refusals
    /// counted but not yet summarised are written.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = self.task.await.unwrap_or(Ok(()));
        self.vault.flush_all_refusals().await;
        result
    }
    pub fn handle(&self) -> axum_server::Handle {
        self.handle.clone()
    }
}

/// Paths served while sealed or uninitialised.
fn open_while_sealed(path: &str) -> bool {
    matches!(
        path,
        "/api/v1/sys/health"
            | "/api/v1/sys/seal-status"
            | "/api/v1/sys/init"
            | "/api/v1/sys/unseal"
            | "/api/v1/openapi.json"
            | "/metrics"
    )
}

async fn seal_gate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    // Only the native API is gated here; other doors answer "sealed" in their own dialect.
    let path = req.uri().path();
    // The A2A door (`/api/pam/`, `/api/oauth2/`) answers in its own envelope.
    let own_dialect = path.starts_with("/api/pam/") || path.starts_with("/api/oauth2/");
    if path.starts_with("/api/") && !own_dialect && !open_while_sealed(path) {
        if let Some(e) = s.vault.sealed_error().await {
            return ApiError::from(e).into_response();
        }
    }
    next.run(req).await
}

/// The whole application router.
pub fn app(vault: Arc<Vault>, cfg: &Config) -> Router {
    let state = AppState { vault };
    Router::new()
        .nest("/api/v1", native::router())
        .merge(ccp::router())
        .merge(vaultkv::router())
        .merge(entity::router())
        .merge(pam::router())
        .route("/api/fetch-credentials", get(fetch::fetch))
        .route("/metrics", get(telemetry::metrics))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), seal_gate))
        .layer(middleware::from_fn(telemetry::track))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Open the store, prepare the seal (key file, dev mode) and start serving.
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    let store = cfg.storage.open(&cfg.data_dir).await?;
    start_with_store(cfg, store).await
}

/// [`start`] over a store opened by the caller (`cfg.storage` is ignored): tests wrap the real
/// store, e.g. in `credvault_store::fault::FaultStore` to inject storage and audit failures.
pub async fn start_with_store(cfg: Config, store: Arc<dyn Store>) -> Result<Running, StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    telemetry::install();
    let vault = Vault::new(
        store.clone(),
        cfg.auth_failures_per_minute,
        cfg.clock.clone(),
    );
    if store.backend() == "sqlite" {
        let files = ["credvault.db", "credvault.db-wal", "credvault.db-shm"]
            .iter()
            .map(|f| cfg.data_dir.join(f))
            .collect();
        vault.watch_disk(cfg.data_dir.clone(), files, cfg.min_free_disk_bytes);
    }
    vault.start_audit_sinks(cfg.audit_sinks.clone()).await;
    // Never shorter than a request: a writer holding the old term finishes within the timeout.
    vault.start_background(cfg.key_retire_grace.max(cfg.request_timeout));
    vault.start_password_changes();
    let dev_root_token = if cfg.dev {
        dev_bootstrap(&vault, &cfg).await?
    } else {
        None
    };
    if let Some(f) = &cfg.unseal_key_file {
        unseal_from_file(&vault, f).await?;
    }
    let listener = std::net::TcpListener::bind(cfg.listen)
        .map_err(|e| StartError::Io(format!("bind {}", cfg.listen), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| StartError::Io("listener".into(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Io("listener".into(), e))?;
    let app = app(vault.clone(), &cfg).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    if cfg.tls_client_crl.is_some() && cfg.tls_client_ca.is_none() {
        return Err(StartError::Tls("a client CRL needs a client CA".into()));
    }
    if cfg.tls_client_ca.is_some() && cfg.tls_cert.is_none() {
        return Err(StartError::Tls(
            "a client CA needs HTTPS: set a certificate and a key too".into(),
        ));
    }
    let limiter = conn::Limiter::new(conn::Limits {
        max_connections: cfg.max_connections.max(1),
        max_per_source: cfg.max_connections_per_source,
        keep_alive_timeout: cfg.keep_alive_timeout,
    });
    let (https, task) = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = tls::config(
                cert,
                key,
                cfg.tls_client_ca.as_deref(),
                cfg.tls_client_crl.as_deref(),
            )
            .map_err(StartError::Tls)?;
            let mut server = axum_server::from_tcp(listener)
                .acceptor(conn::LimitedAcceptor::new(
                    tls::CertAcceptor::new(tls),
                    limiter,
                ))
                .handle(handle.clone());
            http_timeouts(server.http_builder(), &cfg);
            (true, tokio::spawn(server.serve(app)))
        }
        (None, None) => {
            let mut server = axum_server::from_tcp(listener)
                .acceptor(conn::LimitedAcceptor::new(
                    axum_server::accept::DefaultAcceptor::new(),
                    limiter,
                ))
                .handle(handle.clone());
            http_timeouts(server.http_builder(), &cfg);
            (false, tokio::spawn(server.serve(app)))
        }
        _ => {
            return Err(StartError::Tls(
                "set both a certificate and a key, or neither".into(),
            ))
        }
    };
    tracing::info!(%addr, https, storage = vault.backend(), "credvault listening");
    Ok(Running {
        addr,
        https,
        vault,
        dev_root_token,
        handle,
        task,
    })
}

/// hyper's timers: the header read timeout (HTTP/1), and HTTP/2 keep-alive pings that close a
/// connection whose peer stopped answering.
fn http_timeouts(
    b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    cfg: &Config,
) {
    b.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout);
    b.http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(cfg.keep_alive_timeout)
        .keep_alive_timeout(cfg.keep_alive_timeout);
}

async fn unseal_from_file(vault: &Vault, path: &std::path::Path) -> Result<(), StartError> {
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            StartError::Io(format!("reading unseal key file {}", path.display()), e)
        })?);
    vault.reset_unseal().await;
    vault.submit_unseal_share(text.trim()).await?;
    if vault.is_sealed().await {
        return Err(ServiceError::Unseal(format!(
            "the key file {} holds one share but more are needed",
            path.display()
        ))
        .into());
    }
    Ok(())
}

const DEV_KEY: &str = "dev-unseal.key";
const DEV_TOKEN: &str = "dev-root-token";

/// Dev mode: initialise with a single key kept in the data directory, unseal, and hand back the root
/// token (kept in the data directory too, so restarts can show it). Never use for real secrets.
async fn dev_bootstrap(vault: &Vault, cfg: &Config) -> Result<Option<SecretString>, StartError> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| StartError::Io(format!("creating {}", cfg.data_dir.display()), e))?;
    let key_path = cfg.data_dir.join(DEV_KEY);
    let token_path = cfg.data_dir.join(DEV_TOKEN);
    if !vault.is_initialized().await? {
        let (shares, token) = vault.initialize(1, 1).await?;
        let share = shares
            .first()
            .ok_or_else(|| ServiceError::Unseal("no share".into()))?;
        write_private(&key_path, share.as_bytes())?;
        write_private(&token_path, token.expose().as_bytes())?;
    }
    unseal_from_file(vault, &key_path).await?;
    let token = std::fs::read_to_string(&token_path)
        .ok()
        .map(|t| SecretString::new(t.trim().to_owned()));
    Ok(token)
}

/// Write a file readable only by its owner.
pub fn write_private(path: &std::path::Path, data: &[u8]) -> Result<(), StartError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| StartError::Io(format!("writing {}", path.display()), e))?;
    // The mode above applies only to a new file: an existing one is made private too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StartError::Io(format!("writing {}", path.display()), e))?;
    }
    f.write_all(data)
        .map_err(|e| StartError::Io(format!("writing {}", path.display()), e))?;
    f.sync_all()
        .map_err(|e| StartError::Io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[test]
    fn write_private_makes_an_existing_file_private_too() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("key");
        std::fs::write(&path, b"old").unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| unreachable!("{e}"));
        super::write_private(&path, b"new").unwrap_or_else(|e| unreachable!("{e}"));
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).ok().as_deref(), Some(&b"new"[..]));
    }
}
