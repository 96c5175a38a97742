//! `credvault integration ...`: external vaults credvault pulls credentials from, read-only.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{enc, Client};
use crate::output::{self, Format};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// HashiCorp Vault or OpenBao, KV version 2 (token or AppRole).
    VaultKv,
    /// A Central Credential Provider (AppID; client certificate and/or header secret).
    Ccp,
    /// Another credvault (its /api/fetch-credentials endpoint, with a token).
    Credvault,
}

#[derive(Debug, Subcommand)]
pub enum IntegrationCmd {
    /// Add an integration. Its credentials are mirrored read-only into SAFE at once (unless
    /// --disabled), and fetched again on read once older than --cache-expiry seconds.
    ///
    /// Examples:
    ///   credvault integration add vault1 --kind vault-kv --url https://vault:8200 --safe mirrors \
    ///     --mount secret --folder apps --names db,web --cache-expiry 60 --secret-stdin <<< "$VAULT_TOKEN"
    ///   credvault integration add cp --kind ccp --url https://ccp:443 --safe mirrors --app-id Billing \
    ///     --remote-safe Prod --names db-prod --client-cert app.pem --client-key app.key
    #[command(verbatim_doc_comment)]
    Add(Box<AddArgs>),
    /// List integrations with their status.
    List,
    /// Show one integration: settings, which secrets are set, status of the last runs.
    Show { name: String },
    /// Run the fetch once and show what it saw (names and users, never passwords). Changes nothing.
    Test { name: String },
    /// Fetch everything now and update the mirrors.
    Sync { name: String },
    /// Fetch one credential by its name now and mirror it (several matches are refused).
    Fetch { name: String, identifier: String },
    /// Enable: fetch and mirror again.
    Enable { name: String },
    /// Disable: stop fetching and remove the mirrored credentials.
    Disable { name: String },
    /// Remove the integration and its mirrored credentials.
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    name: String,
    #[arg(long, value_enum)]
    kind: Kind,
    /// Base URL of the remote vault.
    #[arg(long)]
    url: String,
    /// The local safe the mirrored credentials go into.
    #[arg(long)]
    safe: String,
    /// Names of the credentials to pull, comma-separated (Vault KV: empty = the whole folder).
    #[arg(long, value_delimiter = ',')]
    names: Vec<String>,
    /// Seconds a fetched credential is served before it is fetched again; 0 = no cache.
    #[arg(long, default_value_t = 0)]
    cache_expiry: u64,
    /// Vault KV mount (default secret).
    #[arg(long)]
    mount: Option<String>,
    /// Vault KV folder inside the mount, or the CCP Folder.
    #[arg(long)]
    folder: Option<String>,
    /// Vault KV AppRole role_id (give the secret_id with --secret-stdin or --secret-id-file).
    #[arg(long)]
    role_id: Option<String>,
    /// CCP application ID.
    #[arg(long)]
    app_id: Option<String>,
    /// CCP Safe parameter (the remote's safe).
    #[arg(long)]
    remote_safe: Option<String>,
    /// PEM CA certificate to trust for the remote's TLS certificate.
    #[arg(long)]
    remote_ca: Option<PathBuf>,
    /// CCP client certificate (PEM), with --client-key.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// CCP client private key (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Read the main secret from stdin: the token (Vault KV, credvault), the AppRole secret_id
    /// (with --role-id), or the CCP header secret.
    #[arg(long)]
    secret_stdin: bool,
    /// Read the remote token from a file instead.
    #[arg(long)]
    remote_token_file: Option<PathBuf>,
    /// Read the AppRole secret_id from a file instead.
    #[arg(long)]
    secret_id_file: Option<PathBuf>,
    /// Request timeout in seconds (default 10).
    #[arg(long)]
    timeout: Option<u64>,
    /// Create it disabled (nothing is fetched until `integration enable`).
    #[arg(long)]
    disabled: bool,
}

const COLS: [&str; 5] = ["name", "kind", "safe", "enabled", "status"];

fn read_file(p: &PathBuf, what: &str) -> Result<String> {
    let s =
        std::fs::read_to_string(p).with_context(|| format!("reading {what} {}", p.display()))?;
    Ok(s.trim_end_matches(['\n', '\r']).to_owned())
}

/// A spinner on stderr while a remote vault is asked (it can take a while).
async fn with_spinner<T>(msg: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(msg.to_owned());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    let r = f.await;
    pb.finish_and_clear();
    r
}

pub async fn run(c: &Client, fmt: Format, cmd: IntegrationCmd) -> Result<()> {
    let path = |name: &str, verb: &str| format!("/integrations/{}{verb}", enc(name));
    match cmd {
        IntegrationCmd::Add(args) => add(c, fmt, *args).await,
        IntegrationCmd::List => {
            output::list(fmt, &c.get("/integrations").await?, &COLS);
            Ok(())
        }
        IntegrationCmd::Show { name } => {
            output::object(fmt, &c.get::<Value>(&path(&name, "")).await?);
            Ok(())
        }
        IntegrationCmd::Test { name } => {
            let v: Value = with_spinner(
                "asking the remote vault",
                c.send(Method::POST, &path(&name, "/test"), &json!({})),
            )
            .await?;
            output::object(fmt, &v);
            if v["ok"] != json!(true) {
                bail!("the fetch did not fully succeed (see above)");
            }
            Ok(())
        }
        IntegrationCmd::Sync { name } => {
            let v: Value = with_spinner(
                "fetching from the remote vault",
                c.send(Method::POST, &path(&name, "/sync"), &json!({})),
            )
            .await?;
            output::object(fmt, &v);
            Ok(())
        }
        IntegrationCmd::Fetch { name, identifier } => {
            let v: Value = with_spinner(
                "fetching from the remote vault",
                c.send(
                    Method::POST,
                    &path(&name, "/fetch"),
                    &json!({"identifier": identifier}),
                ),
            )
            .await?;
            output::object(fmt, &v);
            Ok(())
        }
        IntegrationCmd::Enable { name } => {
            let v: Value = c
                .send(Method::POST, &path(&name, "/enable"), &json!({}))
                .await?;
            output::object(fmt, &v);
            Ok(())
        }
        IntegrationCmd::Disable { name } => {
            let v: Value = c
                .send(Method::POST, &path(&name, "/disable"), &json!({}))
                .await?;
            output::object(fmt, &v);
            Ok(())
        }
        IntegrationCmd::Rm { name } => c.delete(&path(&name, "")).await,
    }
}

/// `integration add`: the body from the flags and files, then one request that also fetches.
async fn add(c: &Client, fmt: Format, args: AddArgs) -> Result<()> {
    let b = add_body(args)?;
    let v: Value = with_spinner(
        "adding the integration and fetching its credentials",
        c.send(Method::POST, "/integrations", &b),
    )
    .await?;
    output::object(fmt, &v);
    if let Some(e) = v.pointer("/status/last_error").and_then(Value::as_str) {
        eprintln!("warning: the first fetch failed: {e}");
    }
    Ok(())
}

fn add_body(args: AddArgs) -> Result<Value> {
    let AddArgs {
        name,
        kind,
        url,
        safe,
        names,
        cache_expiry,
        mount,
        folder,
        role_id,
        app_id,
        remote_safe,
        remote_ca,
        client_cert,
        client_key,
        secret_stdin,
        remote_token_file,
        secret_id_file,
        timeout,
        disabled,
    } = args;
    let kind_name = match kind {
        Kind::VaultKv => "vault-kv",
        Kind::Ccp => "ccp",
        Kind::Credvault => "credvault",
    };
    let mut b = json!({
        "name": name, "kind": kind_name, "url": url, "safe": safe,
        "credential_names": names.into_iter().filter(|n| !n.trim().is_empty()).collect::<Vec<_>>(),
        "cache_expiry_seconds": cache_expiry, "enabled": !disabled,
        "mount": mount, "folder": folder, "app_id": app_id, "remote_safe": remote_safe,
        "timeout_seconds": timeout,
    });
    if let Some(r) = &role_id {
        b["role_id"] = json!(r);
    }
    if let Some(p) = &remote_ca {
        b["ca_cert"] = json!(read_file(p, "CA certificate")?);
    }
    if let (Some(cert), Some(key)) = (&client_cert, &client_key) {
        let identity = format!(
            "{}\n{}\n",
            read_file(cert, "client certificate")?,
            read_file(key, "client key")?
        );
        b["client_identity"] = json!(identity);
    }
    if let Some(p) = &remote_token_file {
        b["token"] = json!(read_file(p, "token")?);
    }
    if let Some(p) = &secret_id_file {
        b["secret_id"] = json!(read_file(p, "secret_id")?);
    }
    if secret_stdin {
        let (field, s) = stdin_secret(kind, role_id.is_some())?;
        b[field] = json!(s);
    }
    Ok(b)
}

/// `--secret-stdin`: the kind's main secret (with `--role-id`, the AppRole secret_id).
fn stdin_secret(kind: Kind, approle: bool) -> Result<(&'static str, String)> {
    let field = match (kind, approle) {
        (Kind::VaultKv, true) => "secret_id",
        (Kind::Ccp, _) => "header_secret",
        _ => "token",
    };
    let s = super::read_stdin_secret(field)?;
    if s.is_empty() {
        bail!("no {field} on standard input");
    }
    Ok((field, s))
}
