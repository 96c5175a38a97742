//! The client commands. Each maps onto one or two native API calls.

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::{enc, Client};
use crate::output::{self, Format};
use crate::Cmd;

#[derive(Debug, Subcommand)]
pub enum Operator {
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

#[derive(Debug, Subcommand)]
pub enum Cred {
    /// Create a credential, or update one with --id (only the fields given change).
    Put {
        /// Display name (required when creating).
        name: Option<String>,
        /// Update this credential instead of creating one.
        #[arg(long)]
        id: Option<String>,
        /// Fail unless the credential is still at this version (compare-and-set).
        #[arg(long, requires = "id")]
        expected_version: Option<i64>,
        #[command(flatten)]
        fields: Box<CredFields>,
    },
    /// Show a credential's metadata; with --secret, also its secret (audited).
    Get {
        id: String,
        #[arg(long)]
        secret: bool,
        /// A past version.
        #[arg(long)]
        version: Option<i64>,
    },
    /// List credentials you may see.
    List {
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
    },
    /// List a credential's versions.
    History { id: String },
    /// Make a new version equal to VERSION.
    Rollback { id: String, version: i64 },
    /// Delete a credential and its history.
    Rm { id: String },
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

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user. Human users may get a password (read from stdin) for `credvault login`.
    Add {
        name: String,
        /// A service user: authenticates with API tokens only.
        #[arg(long)]
        service: bool,
        #[arg(long)]
        admin: bool,
        #[arg(long, conflicts_with = "service")]
        password_stdin: bool,
    },
    List,
    Show {
        name: String,
    },
    Rm {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    Add {
        name: String,
    },
    List,
    Show {
        name: String,
    },
    Rm {
        name: String,
    },
    /// Add USER to GROUP.
    AddMember {
        group: String,
        user: String,
    },
    /// Remove USER from GROUP.
    RmMember {
        group: String,
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SafeCmd {
    Add {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    List,
    Rm {
        name: String,
    },
    /// Show a safe's members.
    Members {
        name: String,
    },
    /// Grant a user or group permissions in a safe: list, read, write, manage (comma-separated).
    Grant {
        safe: String,
        /// user:NAME or group:NAME
        member: String,
        #[arg(long, value_delimiter = ',', default_value = "list,read")]
        permissions: Vec<String>,
    },
    /// Remove a member from a safe.
    Revoke {
        safe: String,
        member: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token (shown once).
    Create {
        /// For another user (admins only).
        #[arg(long)]
        user: Option<String>,
        /// Lifetime in seconds.
        #[arg(long)]
        ttl: Option<i64>,
        #[arg(long)]
        description: Option<String>,
    },
    List,
    Revoke {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Register an application (AppID). It needs at least one rule to authenticate: --source,
    /// --cert-issuer (with --cert-subject and/or --cert-serial), or --header-secret-stdin.
    Create {
        app_id: String,
        #[arg(long)]
        description: Option<String>,
        /// Allowed source address or CIDR, repeatable.
        #[arg(long = "source")]
        sources: Vec<String>,
        /// Issuer DN of an allowed client certificate (mTLS).
        #[arg(long)]
        cert_issuer: Option<String>,
        #[arg(long, requires = "cert_issuer")]
        cert_subject: Option<String>,
        /// Serial number (hex) of an allowed client certificate.
        #[arg(long, requires = "cert_issuer")]
        cert_serial: Option<String>,
        /// Read a shared secret (sent as X-CCP-App-Secret) from stdin.
        #[arg(long)]
        header_secret_stdin: bool,
        /// Generate a client secret for logins as the application (Vault AppRole: role_id = the
        /// AppID, secret_id = this secret). Printed once as client_secret_value; keep it.
        #[arg(long)]
        client_secret: bool,
    },
    List,
    Show {
        app_id: String,
    },
    Rm {
        app_id: String,
    },
    /// Give the application a new client secret (its client id is its AppID): for OAuth client
    /// credentials (`POST /iso/oauth2/token`) and Vault AppRole. The old secret stops working.
    /// Printed once as client_secret_value.
    ClientSecret {
        app_id: String,
    },
    /// Let the application read a safe (--safe) or one credential (--credential). With --write it
    /// may also create and change credentials in the safe (PAM A2A door: `POST /iso/pam/credential`
    /// creates in the first such safe by name).
    Allow {
        app_id: String,
        #[arg(
            long,
            conflicts_with = "credential",
            required_unless_present = "credential"
        )]
        safe: Option<String>,
        #[arg(long)]
        credential: Option<String>,
        /// Also allow writes to the safe (create, update, deactivate).
        #[arg(long, requires = "safe")]
        write: bool,
    },
    /// Take a safe or credential away from the application.
    Deny {
        app_id: String,
        #[arg(
            long,
            conflicts_with = "credential",
            required_unless_present = "credential"
        )]
        safe: Option<String>,
        #[arg(long)]
        credential: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Walk the whole hash chain and report the first tampered record.
    Verify,
    /// Show the newest records.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: i64,
    },
}

pub(crate) fn read_stdin_secret(what: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{what}: ");
    }
    let mut s = String::new();
    if stdin.is_terminal() {
        stdin.lock().read_line(&mut s)?;
    } else {
        stdin.lock().read_to_string(&mut s)?;
    }
    Ok(s.trim_end_matches(['\n', '\r']).to_owned())
}

fn owner_json(o: &str) -> Result<Value> {
    let (k, n) = o
        .split_once(':')
        .context("owner must be user:NAME or group:NAME")?;
    Ok(json!({"type": k, "name": n}))
}

fn fields_json(f: CredFields, body: &mut Map<String, Value>) -> Result<()> {
    let mut set = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            body.insert(k.into(), Value::String(v));
        }
    };
    set("username", f.username);
    set("identifier", f.identifier);
    set("safe", f.safe);
    set("folder", f.folder);
    set("additional_info", f.additional_info);
    set("credential_type", f.credential_type);
    set("domain", f.domain);
    let secret = if f.secret_stdin {
        Some(read_stdin_secret("secret")?)
    } else {
        f.secret
    };
    set("secret", secret);
    if !f.tags.is_empty() {
        body.insert("tags".into(), json!(f.tags));
    }
    if !f.params.is_empty() {
        body.insert(
            "parameters".into(),
            Value::Object(
                f.params
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ),
        );
    }
    if !f.properties.is_empty() {
        body.insert(
            "properties".into(),
            Value::Object(
                f.properties
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ),
        );
    }
    if let Some(o) = f.owner {
        body.insert("owner".into(), owner_json(&o)?);
    }
    if f.hostname.is_some() || f.ip.is_some() {
        body.insert(
            "device".into(),
            json!({"hostname": f.hostname.unwrap_or_default(), "ip": f.ip.unwrap_or_default()}),
        );
    }
    Ok(())
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

const CRED_COLS: [&str; 7] = [
    "id",
    "name",
    "username",
    "safe",
    "folder",
    "version",
    "updated_at",
];

pub async fn run(c: &Client, fmt: Format, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Server(_) => unreachable_server(),
        Cmd::Operator(op) => operator(c, fmt, op).await,
        Cmd::Cred(cmd) => cred(c, fmt, cmd).await,
        Cmd::Integration(cmd) => crate::cmd_integration::run(c, fmt, cmd).await,
        Cmd::Entity(cmd) => crate::cmd_entity::run(c, fmt, cmd).await,
        Cmd::Domain(cmd) => crate::cmd_domain::run(c, fmt, cmd).await,
        Cmd::Apikey(cmd) => crate::cmd_entity::apikey(c, fmt, cmd).await,
        Cmd::User(cmd) => match cmd {
            UserCmd::Add {
                name,
                service,
                admin,
                password_stdin,
            } => {
                let mut b = json!({"name": name, "kind": if service {"service"} else {"human"}, "admin": admin});
                if password_stdin {
                    b["password"] = Value::String(read_stdin_secret("password")?);
                }
                output::object(fmt, &c.send(Method::POST, "/users", &b).await?);
                Ok(())
            }
            UserCmd::List => {
                output::list(
                    fmt,
                    &c.get("/users").await?,
                    &["name", "kind", "admin", "created_at"],
                );
                Ok(())
            }
            UserCmd::Show { name } => {
                output::object(
                    fmt,
                    &c.get::<Value>(&format!("/users/{}", enc(&name))).await?,
                );
                Ok(())
            }
            UserCmd::Rm { name } => c.delete(&format!("/users/{}", enc(&name))).await,
        },
        Cmd::Group(cmd) => match cmd {
            GroupCmd::Add { name } => {
                output::object(
                    fmt,
                    &c.send(Method::POST, "/groups", &json!({"name": name}))
                        .await?,
                );
                Ok(())
            }
            GroupCmd::List => {
                output::list(fmt, &c.get("/groups").await?, &["name", "members"]);
                Ok(())
            }
            GroupCmd::Show { name } => {
                output::object(
                    fmt,
                    &c.get::<Value>(&format!("/groups/{}", enc(&name))).await?,
                );
                Ok(())
            }
            GroupCmd::Rm { name } => c.delete(&format!("/groups/{}", enc(&name))).await,
            GroupCmd::AddMember { group, user } => {
                let v = c
                    .send(
                        Method::PUT,
                        &format!("/groups/{}/members/{}", enc(&group), enc(&user)),
                        &json!({}),
                    )
                    .await?;
                output::object(fmt, &v);
                Ok(())
            }
            GroupCmd::RmMember { group, user } => {
                c.delete(&format!("/groups/{}/members/{}", enc(&group), enc(&user)))
                    .await
            }
        },
        Cmd::Safe(cmd) => match cmd {
            SafeCmd::Add { name, description } => {
                let v = c
                    .send(
                        Method::POST,
                        "/safes",
                        &json!({"name": name, "description": description}),
                    )
                    .await?;
                output::object(fmt, &v);
                Ok(())
            }
            SafeCmd::List => {
                output::list(fmt, &c.get("/safes").await?, &["name", "description"]);
                Ok(())
            }
            SafeCmd::Rm { name } => c.delete(&format!("/safes/{}", enc(&name))).await,
            SafeCmd::Members { name } => {
                output::list(
                    fmt,
                    &c.get(&format!("/safes/{}/members", enc(&name))).await?,
                    &["type", "name", "permissions"],
                );
                Ok(())
            }
            SafeCmd::Grant {
                safe,
                member,
                permissions,
            } => {
                let (k, n) = member
                    .split_once(':')
                    .context("member must be user:NAME or group:NAME")?;
                let b = json!({"type": k, "name": n, "permissions": permissions});
                output::object(
                    fmt,
                    &c.send(Method::PUT, &format!("/safes/{}/members", enc(&safe)), &b)
                        .await?,
                );
                Ok(())
            }
            SafeCmd::Revoke { safe, member } => {
                let (k, n) = member
                    .split_once(':')
                    .context("member must be user:NAME or group:NAME")?;
                c.delete(&format!(
                    "/safes/{}/members/{}/{}",
                    enc(&safe),
                    enc(k),
                    enc(n)
                ))
                .await
            }
        },
        Cmd::Token(cmd) => match cmd {
            TokenCmd::Create {
                user,
                ttl,
                description,
            } => {
                let v = c
                    .send(
                        Method::POST,
                        "/tokens",
                        &json!({"user": user, "ttl_seconds": ttl, "description": description}),
                    )
                    .await?;
                output::object(fmt, &v);
                if fmt == Format::Table {
                    eprintln!(
                        "The token is shown only now; credvault keeps only a keyed hash of it."
                    );
                }
                Ok(())
            }
            TokenCmd::List => {
                output::list(
                    fmt,
                    &c.get("/tokens").await?,
                    &["id", "user", "description", "expires_at", "revoked"],
                );
                Ok(())
            }
            TokenCmd::Revoke { id } => c.delete(&format!("/tokens/{}", enc(&id))).await,
        },
        Cmd::App(cmd) => app(c, fmt, cmd).await,
        Cmd::Audit(cmd) => match cmd {
            AuditCmd::Verify => {
                let v = c.send(Method::POST, "/audit/verify", &json!({})).await?;
                output::object(fmt, &v);
                if v.get("ok") != Some(&Value::Bool(true)) {
                    bail!("the audit chain does not verify");
                }
                Ok(())
            }
            AuditCmd::Tail { n } => {
                let v = c.get(&format!("/audit/tail?n={n}")).await?;
                output::list(
                    fmt,
                    &v,
                    &[
                        "seq", "time", "actor", "door", "action", "target", "source", "outcome",
                    ],
                );
                Ok(())
            }
        },
        Cmd::Login { username } => {
            let pw = read_stdin_secret("password")?;
            let v = c
                .send(
                    Method::POST,
                    "/auth/login",
                    &json!({"username": username, "password": pw}),
                )
                .await?;
            if fmt == Format::Json {
                output::object(fmt, &v);
            } else {
                println!(
                    "{}",
                    v.get("token").and_then(Value::as_str).unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

fn unreachable_server() -> Result<()> {
    bail!("`server` is handled before connecting")
}

async fn operator(c: &Client, fmt: Format, op: Operator) -> Result<()> {
    match op {
        Operator::Init {
            shares,
            threshold,
            key_file,
        } => {
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
            if let Some(path) = key_file {
                let key = keys.first().context("the server returned no key")?;
                credvault_server::write_private(&path, key.as_bytes())?;
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
                return Ok(());
            }
            if fmt == Format::Json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for (i, k) in keys.iter().enumerate() {
                println!("Unseal key {}: {k}", i + 1);
            }
            println!("\nInitial root token: {root}\n");
            println!("The vault is initialised and sealed. Give {t} of these {s} keys to `credvault operator unseal`.");
            println!("They are shown only now: store each one apart from the others.");
            Ok(())
        }
        Operator::Unseal { key, reset } => {
            let body = if reset {
                json!({"reset": true})
            } else {
                let k = match key {
                    Some(k) => k,
                    None => read_stdin_secret("unseal key")?,
                };
                json!({"key": k.trim()})
            };
            let v = c.send(Method::POST, "/sys/unseal", &body).await?;
            output::object(fmt, &v);
            Ok(())
        }
        Operator::Seal => {
            output::object(fmt, &c.send(Method::POST, "/sys/seal", &json!({})).await?);
            Ok(())
        }
        Operator::Rotate => {
            let v = c.send(Method::POST, "/sys/rotate", &json!({})).await?;
            output::object(fmt, &v);
            Ok(())
        }
        Operator::Rewrap => {
            let v = c.send(Method::POST, "/sys/rewrap", &json!({})).await?;
            output::object(fmt, &v);
            Ok(())
        }
        Operator::Status => {
            output::object(fmt, &c.get::<Value>("/sys/seal-status").await?);
            Ok(())
        }
        Operator::Migrate { from, to } => migrate(fmt, &from, &to).await,
        Operator::Backup { file } => crate::cmd_backup::backup(c, fmt, &file).await,
        Operator::Restore {
            file,
            to,
            unseal_key_file,
        } => crate::cmd_backup::restore(fmt, &file, &to, unseal_key_file.as_deref()).await,
    }
}

async fn cred(c: &Client, fmt: Format, cmd: Cred) -> Result<()> {
    match cmd {
        Cred::Put {
            name,
            id,
            expected_version,
            fields,
        } => {
            let mut body = Map::new();
            if let Some(n) = &name {
                body.insert("name".into(), Value::String(n.clone()));
            }
            fields_json(*fields, &mut body)?;
            let v = match id {
                Some(id) => {
                    if let Some(e) = expected_version {
                        body.insert("expected_version".into(), json!(e));
                    }
                    c.send(
                        Method::PATCH,
                        &format!("/credentials/{}", enc(&id)),
                        &Value::Object(body),
                    )
                    .await?
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
        Cred::Get {
            id,
            secret,
            version,
        } => {
            let path = match version {
                Some(n) => format!("/credentials/{}/versions/{n}", enc(&id)),
                None => format!("/credentials/{}", enc(&id)),
            };
            let mut v: Value = c.get(&path).await?;
            if secret {
                let q = version.map(|n| format!("?version={n}")).unwrap_or_default();
                let s: Value = c
                    .get(&format!("/credentials/{}/secret{q}", enc(&id)))
                    .await?;
                if let (Some(o), Some(so)) = (v.as_object_mut(), s.as_object()) {
                    o.insert(
                        "secret".into(),
                        so.get("secret").cloned().unwrap_or(Value::Null),
                    );
                    o.insert(
                        "parameters".into(),
                        so.get("parameters").cloned().unwrap_or(Value::Null),
                    );
                }
            }
            output::object(fmt, &v);
            Ok(())
        }
        Cred::List {
            safe,
            folder,
            name,
            username,
            tag,
            hostname,
            limit,
            after,
        } => {
            let q = query(&[
                ("safe", safe),
                ("folder", folder),
                ("name", name),
                ("username", username),
                ("tag", tag),
                ("hostname", hostname),
                ("limit", Some(limit.to_string())),
                ("after", after),
            ]);
            output::list(fmt, &c.get(&format!("/credentials{q}")).await?, &CRED_COLS);
            Ok(())
        }
        Cred::History { id } => {
            let v = c
                .get(&format!("/credentials/{}/versions", enc(&id)))
                .await?;
            output::list(
                fmt,
                &v,
                &["version", "created_at", "created_by", "operation"],
            );
            Ok(())
        }
        Cred::Import {
            file,
            batch,
            ids_out,
        } => crate::cmd_import::run(c, &file, batch, ids_out.as_deref()).await,
        Cred::Rollback { id, version } => {
            let v = c
                .send(
                    Method::POST,
                    &format!("/credentials/{}/rollback", enc(&id)),
                    &json!({"version": version}),
                )
                .await?;
            output::object(fmt, &v);
            Ok(())
        }
        Cred::Rm { id } => c.delete(&format!("/credentials/{}", enc(&id))).await,
    }
}

pub(crate) async fn open_spec(spec: &str) -> Result<std::sync::Arc<dyn credvault_store::Store>> {
    let (storage, dir) = if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        (
            credvault_server::Storage::Postgres { url: spec.into() },
            PathBuf::from("."),
        )
    } else if let Some(dir) = spec.strip_prefix("sqlite:") {
        (credvault_server::Storage::Sqlite, PathBuf::from(dir))
    } else {
        bail!(
            "'{}' is neither sqlite:DATA_DIR nor a postgres:// URL",
            spec.split('@').next_back().unwrap_or("")
        );
    };
    storage.open(&dir).await.context("opening the store")
}

async fn migrate(fmt: Format, from: &str, to: &str) -> Result<()> {
    let src = open_spec(from).await.context("source")?;
    let dst = open_spec(to).await.context("destination")?;
    let total = credvault_store::migrate::total_rows(src.as_ref()).await?;
    let bar = output::rows_bar(total, "copying");
    let report = credvault_store::migrate::copy(src.as_ref(), dst.as_ref(), |n| bar.inc(n)).await;
    bar.finish_and_clear();
    let report = report.context(
        "migration failed (the destination may hold a partial copy: empty it before retrying)",
    )?;
    let v = json!({
        "tables": report.tables.iter().map(|(t, n)| json!({"table": t, "rows": n})).collect::<Vec<_>>(),
        "audit_records": report.audit_records,
        "verified": true,
    });
    output::copy_report(
        fmt,
        &v,
        &[
            format!(
                "Copied and verified: equal row counts, identical audit chain of {} records.",
                report.audit_records
            ),
            "Start the servers on the destination and unseal them as before.".into(),
        ],
    )
}

const APP_COLS: [&str; 5] = ["app_id", "owner", "sources", "header_secret", "grants"];

/// `app allow` / `app deny`: one safe or one credential.
async fn grant(
    c: &Client,
    fmt: Format,
    app_id: &str,
    verb: &str,
    safe_kind: &str,
    safe: Option<String>,
    credential: Option<String>,
) -> Result<()> {
    let body = match (safe, credential) {
        (Some(s), _) => json!({"type": safe_kind, "name": s}),
        (None, c) => json!({"type": "credential", "name": c.unwrap_or_default()}),
    };
    let v = c
        .send(
            Method::POST,
            &format!("/apps/{}/{verb}", enc(app_id)),
            &body,
        )
        .await?;
    output::object(fmt, &v);
    Ok(())
}

async fn app(c: &Client, fmt: Format, cmd: AppCmd) -> Result<()> {
    match cmd {
        AppCmd::Create {
            app_id,
            description,
            sources,
            cert_issuer,
            cert_subject,
            cert_serial,
            header_secret_stdin,
            client_secret,
        } => {
            let mut b = json!({"app_id": app_id, "description": description, "sources": sources, "client_secret": client_secret});
            if let Some(issuer) = cert_issuer {
                b["certificates"] =
                    json!([{"issuer": issuer, "subject": cert_subject, "serial": cert_serial}]);
            }
            if header_secret_stdin {
                b["header_secret"] = Value::String(read_stdin_secret("header secret")?);
            }
            output::object(fmt, &c.send(Method::POST, "/apps", &b).await?);
            Ok(())
        }
        AppCmd::List => {
            output::list(fmt, &c.get("/apps").await?, &APP_COLS);
            Ok(())
        }
        AppCmd::Show { app_id } => {
            output::object(
                fmt,
                &c.get::<Value>(&format!("/apps/{}", enc(&app_id))).await?,
            );
            Ok(())
        }
        AppCmd::Rm { app_id } => c.delete(&format!("/apps/{}", enc(&app_id))).await,
        AppCmd::ClientSecret { app_id } => {
            let v = c
                .send(
                    Method::POST,
                    &format!("/apps/{}/client-secret", enc(&app_id)),
                    &json!({}),
                )
                .await?;
            output::object(fmt, &v);
            Ok(())
        }
        AppCmd::Allow {
            app_id,
            safe,
            credential,
            write,
        } => {
            let kind = if write { "safe-write" } else { "safe" };
            grant(c, fmt, &app_id, "allow", kind, safe, credential).await
        }
        AppCmd::Deny {
            app_id,
            safe,
            credential,
        } => grant(c, fmt, &app_id, "deny", "safe", safe, credential).await,
    }
}
