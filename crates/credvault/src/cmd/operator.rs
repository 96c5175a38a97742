//! `credvault operator ...`: initialise, unseal, seal, rotate keys, show status; whole-vault copies
//! (`migrate`), backups and restores.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::read_stdin_secret;
use crate::client::Client;
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// Initialise a new vault: creates the root key, prints the unseal key shares and a root token
    /// once. Keep the shares apart; any THRESHOLD of them unseal the vault.
    Init {
        #[arg(long, default_value_t = 5)]
        shares: u8,
        #[arg(long, default_value_t = 3)]
        threshold: u8,
        /// Use a single unseal key and write it to this file (mode 0600) instead of printing shares;
        /// start the server with --unseal-key-file to unseal automatically.
        #[arg(long, conflicts_with_all = ["shares", "threshold"])]
        key_file: Option<PathBuf>,
    },
    /// Give one unseal key share (read from stdin when not given as an argument).
    Unseal {
        key: Option<String>,
        /// Forget the shares given so far.
        #[arg(long)]
        reset: bool,
    },
    /// Seal the vault: the server drops its keys and refuses everything until unsealed again.
    Seal,
    /// Add a new data key: new writes use it at once; the server then encrypts every stored value
    /// again under it in the background and deletes the old keys once nothing uses them.
    Rotate,
    /// Run one rewrap pass now (after a rotation) and show what is left: values rewrapped, old
    /// key terms retired, key terms still held (1 when done).
    Rewrap,
    /// Show whether the vault is initialised and sealed.
    Status,
    /// Copy a whole vault between storage backends, then verify row counts and the audit chain.
    /// Stop the servers first. Works offline on the databases; nothing is decrypted.
    ///
    /// Example: credvault operator migrate --from sqlite:./credvault-data --to postgres://user@db/credvault
    Migrate {
        /// Source: sqlite:DATA_DIR or a postgres:// URL.
        #[arg(long)]
        from: String,
        /// Destination (must not hold a vault yet): sqlite:DATA_DIR or a postgres:// URL.
        #[arg(long)]
        to: String,
    },
    /// Save an encrypted, consistent snapshot of the whole vault to FILE while the server keeps
    /// serving (admin). It opens only with the vault's unseal keys; keep it apart from them.
    ///
    /// Example: credvault operator backup vault-2026-12-01.cvb
    Backup { file: PathBuf },
    /// Restore a backup into an empty store, offline (no server running on it), then verify it:
    /// row counts, the audit chain, every credential's secret decrypting. Unseal keys come from
    /// --unseal-key-file (one per line) or standard input. Then start a server on it and unseal.
    ///
    /// Example: credvault operator restore vault.cvb --to sqlite:./credvault-data --unseal-key-file keys.txt
    Restore {
        file: PathBuf,
        /// Destination (must not hold a vault yet): sqlite:DATA_DIR or a postgres:// URL.
        #[arg(long)]
        to: String,
        /// A file with the unseal keys needed (the threshold), one per line.
        #[arg(long)]
        unseal_key_file: Option<PathBuf>,
    },
}

pub async fn run(c: &Client, fmt: Format, cmd: OperatorCmd) -> Result<()> {
    match cmd {
        OperatorCmd::Init {
            shares,
            threshold,
            key_file,
        } => init(c, fmt, shares, threshold, key_file.as_deref()).await,
        OperatorCmd::Unseal { key, reset } => unseal(c, fmt, key, reset).await,
        OperatorCmd::Seal => post_sys(c, fmt, "/sys/seal").await,
        OperatorCmd::Rotate => post_sys(c, fmt, "/sys/rotate").await,
        OperatorCmd::Rewrap => post_sys(c, fmt, "/sys/rewrap").await,
        OperatorCmd::Status => {
            output::object(fmt, &c.get::<Value>("/sys/seal-status").await?);
            Ok(())
        }
        OperatorCmd::Migrate { from, to } => super::migrate::run(fmt, &from, &to).await,
        OperatorCmd::Backup { file } => super::backup::backup(c, fmt, &file).await,
        OperatorCmd::Restore {
            file,
            to,
            unseal_key_file,
        } => super::backup::restore(fmt, &file, &to, unseal_key_file.as_deref()).await,
    }
}

/// A body-less `POST /sys/...` whose answer is shown as is.
async fn post_sys(c: &Client, fmt: Format, path: &str) -> Result<()> {
    output::object(fmt, &c.send(Method::POST, path, &json!({})).await?);
    Ok(())
}

async fn unseal(c: &Client, fmt: Format, key: Option<String>, reset: bool) -> Result<()> {
    let body = if reset {
        json!({"reset": true})
    } else {
        let k = match key {
            Some(k) => k,
            None => read_stdin_secret("unseal key")?,
        };
        json!({"key": k.trim()})
    };
    output::object(fmt, &c.send(Method::POST, "/sys/unseal", &body).await?);
    Ok(())
}

async fn init(
    c: &Client,
    fmt: Format,
    shares: u8,
    threshold: u8,
    key_file: Option<&Path>,
) -> Result<()> {
    let (s, t) = if key_file.is_some() {
        (1, 1)
    } else {
        (shares, threshold)
    };
    let v = c
        .send(
            Method::POST,
            "/sys/init",
            &json!({"shares": s, "threshold": t}),
        )
        .await?;
    let keys: Vec<String> = v
        .get("keys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let root = v
        .get("root_token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match key_file {
        Some(path) => write_key_file(fmt, path, &keys, root),
        None if fmt == Format::Json => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        None => {
            print_shares(&keys, root, s, t);
            Ok(())
        }
    }
}

/// `init --key-file`: the single key goes to the file, the root token to stdout.
fn write_key_file(fmt: Format, path: &Path, keys: &[String], root: &str) -> Result<()> {
    let key = keys.first().context("the server returned no key")?;
    credvault_server::write_private(path, key.as_bytes())?;
    if fmt == Format::Json {
        println!("{}", json!({"key_file": path, "root_token": root}));
    } else {
        println!("Unseal key written to {} (mode 0600).", path.display());
        println!("Initial root token: {root}");
        println!(
            "\nStart the server with --unseal-key-file {} to unseal automatically.",
            path.display()
        );
    }
    Ok(())
}

fn print_shares(keys: &[String], root: &str, shares: u8, threshold: u8) {
    for (i, k) in keys.iter().enumerate() {
        println!("Unseal key {}: {k}", i + 1);
    }
    println!("\nInitial root token: {root}\n");
    println!("The vault is initialised and sealed. Give {threshold} of these {shares} keys to `credvault operator unseal`.");
    println!("They are shown only now: store each one apart from the others.");
}
