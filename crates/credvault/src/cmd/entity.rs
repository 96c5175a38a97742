//! `credvault entity ...` (credentials bound to packages and connections) and `credvault apikey ...`
//! (API keys: tokens meant for service users and scripts, shown once, stored hashed).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::{enc, Client};
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum EntityCmd {
    /// Set the parameters of PACKAGE or PACKAGE.CONNECTION (a new version), from a JSON object on
    /// stdin or in a file. Example: credvault entity set NLP --owner group:ml < creds.json
    Set {
        entity: String,
        /// JSON file with the parameters (a flat object of strings); default: standard input.
        #[arg(long)]
        file: Option<PathBuf>,
        /// user:NAME or group:NAME (default: all-users for a new entity, unchanged otherwise).
        #[arg(long)]
        owner: Option<String>,
    },
    /// Show the parameters of PACKAGE or PACKAGE.CONNECTION (the read is audited).
    Get { entity: String },
    /// Import a connection defined in JSON: its `credentials.parameters` go into the vault, and the
    /// file is written back without them, so it can be shared. The entity is --entity, or
    /// PACKAGE.NAME from --package and the file's `name`.
    Import {
        file: PathBuf,
        #[arg(long, conflicts_with = "package")]
        entity: Option<String>,
        #[arg(long)]
        package: Option<String>,
        #[arg(long)]
        owner: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create an API key (shown once). Send it as `Authorization: <key>`.
    Create {
        /// For this user, e.g. a service user (admins only; default: yourself).
        #[arg(long)]
        user: Option<String>,
        /// Lifetime in seconds (default: no expiry).
        #[arg(long)]
        ttl: Option<i64>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List API keys (never their values).
    List,
    /// Revoke an API key by its id.
    Revoke { id: String },
}

const KEY_PREFIX: &str = "api key";

fn read_object(file: Option<&PathBuf>) -> Result<Value> {
    let text = match file {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => super::read_stdin_secret("parameters (JSON)")?,
    };
    let v: Value = serde_json::from_str(&text).context("the parameters are not valid JSON")?;
    if !v.is_object() {
        bail!("the parameters must be a JSON object of strings");
    }
    Ok(v)
}

fn set_path(entity: &str, owner: Option<&str>) -> String {
    let mut p = format!("/credentials/for/{}", enc(entity));
    if let Some(o) = owner {
        p.push_str(&format!("?owner={}", enc(o)));
    }
    p
}

pub async fn run(c: &Client, fmt: Format, cmd: EntityCmd) -> Result<()> {
    match cmd {
        EntityCmd::Set {
            entity,
            file,
            owner,
        } => {
            let params = read_object(file.as_ref())?;
            let v = c
                .send_raw(Method::POST, &set_path(&entity, owner.as_deref()), &params)
                .await?;
            output::object(fmt, &v);
            Ok(())
        }
        EntityCmd::Get { entity } => {
            let v = c
                .send_raw(
                    Method::GET,
                    &format!("/credentials/for/{}", enc(&entity)),
                    &Value::Null,
                )
                .await?;
            if v.is_null() {
                bail!("credentials are not set for {entity} (or you may not read them)");
            }
            output::object(fmt, &v);
            Ok(())
        }
        EntityCmd::Import {
            file,
            entity,
            package,
            owner,
        } => import(c, fmt, &file, entity, package, owner.as_deref()).await,
    }
}

/// `entity import`: store the file's `credentials.parameters`, then write the file back without.
async fn import(
    c: &Client,
    fmt: Format,
    file: &Path,
    entity: Option<String>,
    package: Option<String>,
    owner: Option<&str>,
) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut doc: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", file.display()))?;
    let entity = match (entity, package) {
        (Some(e), _) => e,
        (None, Some(p)) => {
            let name = doc
                .get("name")
                .and_then(Value::as_str)
                .context("the file has no \"name\"; give --entity")?;
            format!("{p}.{name}")
        }
        (None, None) => bail!("give --entity PACKAGE.CONNECTION or --package PACKAGE"),
    };
    let params = doc
        .pointer("/credentials/parameters")
        .cloned()
        .context("the file has no credentials.parameters block")?;
    let v = c
        .send_raw(Method::POST, &set_path(&entity, owner), &params)
        .await?;
    // Only once the vault has them: write the file back without them.
    strip_parameters(&mut doc);
    let out = serde_json::to_string_pretty(&doc)? + "\n";
    std::fs::write(file, out).with_context(|| format!("writing {}", file.display()))?;
    eprintln!(
        "stored {} parameter(s) for {entity}; removed them from {}",
        params.as_object().map_or(0, Map::len),
        file.display()
    );
    output::object(fmt, &v);
    Ok(())
}

/// Remove `credentials.parameters`, and `credentials` when nothing else is left in it.
fn strip_parameters(doc: &mut Value) {
    if let Some(Value::Object(creds)) = doc.get_mut("credentials") {
        creds.remove("parameters");
        if creds.is_empty() {
            if let Value::Object(top) = doc {
                top.remove("credentials");
            }
        }
    }
}

pub async fn apikey(c: &Client, fmt: Format, cmd: ApiKeyCmd) -> Result<()> {
    match cmd {
        ApiKeyCmd::Create {
            user,
            ttl,
            description,
        } => {
            let d = match description {
                Some(d) => format!("{KEY_PREFIX}: {d}"),
                None => KEY_PREFIX.to_owned(),
            };
            let v = c
                .send(
                    Method::POST,
                    "/tokens",
                    &json!({"user": user, "ttl_seconds": ttl, "description": d}),
                )
                .await?;
            output::object(fmt, &v);
            Ok(())
        }
        ApiKeyCmd::List => {
            let mut v: Value = c.get("/tokens").await?;
            if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
                items.retain(|t| {
                    t["description"]
                        .as_str()
                        .is_some_and(|d| d.starts_with(KEY_PREFIX))
                });
            }
            output::list(
                fmt,
                &v,
                &["id", "user", "description", "expires_at", "revoked"],
            );
            Ok(())
        }
        ApiKeyCmd::Revoke { id } => c.delete(&format!("/tokens/{}", enc(&id))).await,
    }
}
