//! `credvault cred ...`: credentials: put, get, list, history, rollback, auto-change, rotate, reconcile, rotation, rm, import.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::cred_ref::{resolve, CredRef};
use super::{member, query, read_stdin_secret};
use crate::client::{enc, Client};
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum CredCmd {
    /// Create a credential, or update one with --id (only the fields given change).
    Put {
        /// Display name (required when creating).
        name: Option<String>,
        /// Update this credential instead of creating one: its id, SAFE/NAME, or a NAME unique
        /// among the credentials you can see.
        #[arg(long, value_name = "CREDENTIAL")]
        id: Option<String>,
        /// Fail unless the credential is still at this version (compare-and-set).
        #[arg(long, requires = "id")]
        expected_version: Option<i64>,
        #[command(flatten)]
        fields: Box<CredFields>,
    },
    /// Show a credential's metadata; with --secret, also its secret (audited).
    Get {
        #[command(flatten)]
        cred: CredRef,
        #[arg(long)]
        secret: bool,
        /// A past version.
        #[arg(long)]
        version: Option<i64>,
    },
    /// List credentials you may see.
    List(ListArgs),
    /// List a credential's versions.
    History {
        #[command(flatten)]
        cred: CredRef,
    },
    /// Make a new version equal to VERSION.
    #[command(allow_missing_positional = true)]
    Rollback {
        #[command(flatten)]
        cred: CredRef,
        version: i64,
    },
    /// Change the password on its target now (its execution_settings name the plugin), in two
    /// phases so the working password is never lost; each change is a new version.
    Rotate {
        #[command(flatten)]
        cred: CredRef,
    },
    /// Set a new password on its target through the reconciliation credential (execution_settings
    /// status and reconciliation_credential), as after somebody changed it there.
    Reconcile {
        #[command(flatten)]
        cred: CredRef,
    },
    /// Turn on (or --off) the automatic password change and set its plugin, login, schedule and
    /// reconciliation; shows the resulting status.
    ///
    /// Example: credvault cred auto-change db/app --plugin postgresql --auth pg-admin --every-days 30
    AutoChange {
        #[command(flatten)]
        cred: CredRef,
        #[command(flatten)]
        settings: super::rotate::AutoChangeArgs,
    },
    /// Show the automatic password change: settings, next run, last result, history of changes.
    Rotation {
        #[command(flatten)]
        cred: CredRef,
    },
    /// Delete a credential and its history.
    Rm {
        #[command(flatten)]
        cred: CredRef,
    },
    /// Bulk import from JSON Lines (one credential object per line, as for `POST /api/v1/credentials`;
    /// `-` reads stdin), in all-or-nothing batches, with a progress bar.
    ///
    /// Example: credvault cred import creds.jsonl --ids-out ids.txt
    Import {
        file: String,
        /// Credentials per request (1 to 1000); each batch is all or nothing.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Write the new ids here, one per line, in input order.
        #[arg(long)]
        ids_out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    safe: Option<String>,
    #[arg(long)]
    folder: Option<String>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    tag: Option<String>,
    #[arg(long)]
    hostname: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Cursor printed by the previous page.
    #[arg(long)]
    after: Option<String>,
}

#[derive(Debug, Args)]
pub struct CredFields {
    /// Login name stored with the credential.
    #[arg(long)]
    username: Option<String>,
    /// The secret (prefer --secret-stdin: command lines end up in shell history).
    #[arg(long, conflicts_with = "secret_stdin")]
    secret: Option<String>,
    /// Read the secret from standard input (one line, or everything when piped).
    #[arg(long)]
    secret_stdin: bool,
    /// Your own unique identifier for the credential.
    #[arg(long)]
    identifier: Option<String>,
    #[arg(long)]
    safe: Option<String>,
    #[arg(long)]
    folder: Option<String>,
    /// Repeatable.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Secret parameter KEY=VALUE, repeatable.
    #[arg(long = "param", value_parser = parse_kv)]
    params: Vec<(String, String)>,
    /// Non-secret account property NAME=VALUE (PolicyID, Database, LogonDomain, …), repeatable.
    #[arg(long = "property", value_parser = parse_kv)]
    properties: Vec<(String, String)>,
    /// Owner as user:NAME or group:NAME.
    #[arg(long)]
    owner: Option<String>,
    #[arg(long)]
    additional_info: Option<String>,
    #[arg(long)]
    credential_type: Option<String>,
    #[arg(long)]
    domain: Option<String>,
    /// Device host name.
    #[arg(long)]
    hostname: Option<String>,
    /// Device IP address.
    #[arg(long)]
    ip: Option<String>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected KEY=VALUE".to_owned())
}

const COLS: [&str; 7] = [
    "id",
    "name",
    "username",
    "safe",
    "folder",
    "version",
    "updated_at",
];

pub async fn run(c: &Client, fmt: Format, cmd: CredCmd) -> Result<()> {
    match cmd {
        CredCmd::Put {
            name,
            id,
            expected_version,
            fields,
        } => put(c, fmt, name, id, expected_version, *fields).await,
        CredCmd::Get {
            cred,
            secret,
            version,
        } => get(c, fmt, &cred.resolve(c).await?, secret, version).await,
        CredCmd::List(args) => list(c, fmt, args).await,
        CredCmd::History { cred } => history(c, fmt, &cred.resolve(c).await?).await,
        CredCmd::Rollback { cred, version } => {
            rollback(c, fmt, &cred.resolve(c).await?, version).await
        }
        CredCmd::Rotate { cred } => {
            super::rotate::rotate(c, fmt, &cred.resolve(c).await?, "rotate").await
        }
        CredCmd::Reconcile { cred } => {
            super::rotate::rotate(c, fmt, &cred.resolve(c).await?, "reconcile").await
        }
        CredCmd::AutoChange { cred, settings } => {
            super::rotate::auto_change(c, fmt, &cred.resolve(c).await?, settings).await
        }
        CredCmd::Rotation { cred } => super::rotate::status(c, fmt, &cred.resolve(c).await?).await,
        CredCmd::Rm { cred } => {
            let id = cred.resolve(c).await?;
            c.delete(&format!("/credentials/{}", enc(&id))).await
        }
        CredCmd::Import {
            file,
            batch,
            ids_out,
        } => super::import::run(c, &file, batch, ids_out.as_deref()).await,
    }
}

/// Create (`POST /credentials`), or update with `--id` (`PATCH /credentials/{id}`).
async fn put(
    c: &Client,
    fmt: Format,
    name: Option<String>,
    id: Option<String>,
    expected_version: Option<i64>,
    fields: CredFields,
) -> Result<()> {
    let mut body = Map::new();
    if let Some(n) = &name {
        body.insert("name".into(), Value::String(n.clone()));
    }
    fields.into_json(&mut body)?;
    let v = match id {
        Some(id) => {
            if let Some(e) = expected_version {
                body.insert("expected_version".into(), json!(e));
            }
            let path = format!("/credentials/{}", enc(&resolve(c, &id).await?));
            c.send(Method::PATCH, &path, &Value::Object(body)).await?
        }
        None => {
            if name.is_none() {
                bail!("a NAME is required to create a credential (or give --id to update one)");
            }
            c.send(Method::POST, "/credentials", &Value::Object(body))
                .await?
        }
    };
    output::object(fmt, &v);
    Ok(())
}

/// Metadata (of the current or a past version); with `secret`, the secret and parameters too.
async fn get(c: &Client, fmt: Format, id: &str, secret: bool, version: Option<i64>) -> Result<()> {
    let path = match version {
        Some(n) => format!("/credentials/{}/versions/{n}", enc(id)),
        None => format!("/credentials/{}", enc(id)),
    };
    let mut v: Value = c.get(&path).await?;
    if secret {
        let q = version.map(|n| format!("?version={n}")).unwrap_or_default();
        let s: Value = c
            .get(&format!("/credentials/{}/secret{q}", enc(id)))
            .await?;
        if let Some(o) = v.as_object_mut() {
            for k in ["secret", "parameters"] {
                o.insert(k.into(), s.get(k).cloned().unwrap_or(Value::Null));
            }
        }
    }
    output::object(fmt, &v);
    Ok(())
}

async fn list(c: &Client, fmt: Format, a: ListArgs) -> Result<()> {
    let q = query(&[
        ("safe", a.safe),
        ("folder", a.folder),
        ("name", a.name),
        ("username", a.username),
        ("tag", a.tag),
        ("hostname", a.hostname),
        ("limit", Some(a.limit.to_string())),
        ("after", a.after),
    ]);
    output::list(fmt, &c.get(&format!("/credentials{q}")).await?, &COLS);
    Ok(())
}

async fn history(c: &Client, fmt: Format, id: &str) -> Result<()> {
    let v = c.get(&format!("/credentials/{}/versions", enc(id))).await?;
    output::list(
        fmt,
        &v,
        &["version", "created_at", "created_by", "operation"],
    );
    Ok(())
}

async fn rollback(c: &Client, fmt: Format, id: &str, version: i64) -> Result<()> {
    let v = c
        .send(
            Method::POST,
            &format!("/credentials/{}/rollback", enc(id)),
            &json!({"version": version}),
        )
        .await?;
    output::object(fmt, &v);
    Ok(())
}

/// A string→string map as a JSON object.
fn string_map(pairs: Vec<(String, String)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

impl CredFields {
    /// Add the fields given to a create or update body.
    fn into_json(self, body: &mut Map<String, Value>) -> Result<()> {
        let secret = if self.secret_stdin {
            Some(read_stdin_secret("secret")?)
        } else {
            self.secret
        };
        for (k, v) in [
            ("username", self.username),
            ("identifier", self.identifier),
            ("safe", self.safe),
            ("folder", self.folder),
            ("additional_info", self.additional_info),
            ("credential_type", self.credential_type),
            ("domain", self.domain),
            ("secret", secret),
        ] {
            if let Some(v) = v {
                body.insert(k.into(), Value::String(v));
            }
        }
        if !self.tags.is_empty() {
            body.insert("tags".into(), json!(self.tags));
        }
        if !self.params.is_empty() {
            body.insert("parameters".into(), string_map(self.params));
        }
        if !self.properties.is_empty() {
            body.insert("properties".into(), string_map(self.properties));
        }
        if let Some(o) = self.owner {
            let (k, n) = member(&o, "owner")?;
            body.insert("owner".into(), json!({"type": k, "name": n}));
        }
        if self.hostname.is_some() || self.ip.is_some() {
            body.insert(
                "device".into(),
                json!({"hostname": self.hostname.unwrap_or_default(), "ip": self.ip.unwrap_or_default()}),
            );
        }
        Ok(())
    }
}
