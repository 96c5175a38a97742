//! `credvault`: the server and the command-line client.
//!
//! Every command except `server` talks to a running server over HTTP, like the Vault CLI:
//! set `CREDVAULT_ADDR` (default http://127.0.0.1:8200) and `CREDVAULT_TOKEN`.

mod client;
mod cmd;
mod output;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "credvault",
    version,
    about = "A self-hosted credential vault: one binary, encrypted at rest, every read audited.",
    long_about = "A self-hosted credential vault: one binary, encrypted at rest, every read audited.\n\n\
Quick start:\n  credvault server --dev                 # in one terminal: a dev vault on 127.0.0.1:8200\n  \
export CREDVAULT_TOKEN=<printed root token>\n  \
credvault cred put db-prod --username app --secret-stdin <<< 's3cret'\n  \
credvault cred list\n  credvault cred get db-prod --secret\n  credvault audit tail",
    after_help = "Environment: CREDVAULT_ADDR (server URL), CREDVAULT_TOKEN (API token), CREDVAULT_CACERT (CA for HTTPS)."
)]
struct Cli {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "CREDVAULT_ADDR",
        default_value = "http://127.0.0.1:8200"
    )]
    address: String,
    /// API token (prefer the environment variable: flags end up in shell history).
    #[arg(long, global = true, env = "CREDVAULT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) to trust for an HTTPS server.
    #[arg(long, global = true, env = "CREDVAULT_CACERT")]
    ca_cert: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    format: Format,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Run the server (embedded SQLite store; `--dev` for a self-unsealing development vault).
    Server(Box<serve::ServerArgs>),
    /// Initialise, unseal, seal, rotate keys, show status.
    #[command(subcommand)]
    Operator(cmd::operator::OperatorCmd),
    /// Credentials: put, get, list, history, rollback, rm.
    #[command(subcommand)]
    Cred(cmd::cred::CredCmd),
    /// Users (human and service).
    #[command(subcommand)]
    User(cmd::user::UserCmd),
    /// Groups and their members.
    #[command(subcommand)]
    Group(cmd::group::GroupCmd),
    /// Safes and who may do what in them.
    #[command(subcommand)]
    Safe(cmd::safe::SafeCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(cmd::token::TokenCmd),
    /// Applications: AppID readers (GET /AIMWebService/api/Accounts), Vault AppRole and OAuth
    /// client-credentials clients (the PAM A2A door, client_id = AppID).
    #[command(subcommand)]
    App(cmd::app::AppCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCmd),
    /// Credentials bound to packages and connections (PACKAGE or PACKAGE.CONNECTION).
    #[command(subcommand)]
    Entity(cmd::entity::EntityCmd),
    /// API keys for service users and scripts (`Authorization: <key>`).
    #[command(subcommand)]
    Apikey(cmd::entity::ApiKeyCmd),
    /// External vaults credentials are pulled from, read-only (Vault KV v2, CCP, credvault).
    #[command(subcommand)]
    Integration(cmd::integration::IntegrationCmd),
    /// Domains that PAM A2A requests may name (`domain`, `device_domain`).
    #[command(subcommand)]
    Domain(cmd::domain::DomainCmd),
    /// Log in with a user name and password (read from stdin); prints a token.
    Login { username: String },
    /// Print a shell completion script. Example: credvault completions bash > /etc/bash_completion.d/credvault
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages, one per command and subcommand, into DIR; without DIR, print the top page.
    /// Example: credvault man /usr/local/share/man/man1
    Man { dir: Option<PathBuf> },
}

/// mimalloc instead of the system allocator: the read path's many small, short-lived allocations
/// (request, JSON, audit record) cost about a fifth of its CPU in glibc malloc (issue 15 profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Server(args) => serve::run(*args).await,
        Cmd::Completions { shell } => cmd::docs::completions(shell),
        Cmd::Man { dir } => cmd::docs::man(dir.as_deref()),
        command => {
            match client::Client::new(&cli.address, cli.token.clone(), cli.ca_cert.as_deref()) {
                Ok(c) => cmd::run(&c, cli.format, command).await,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
