//! `credvault cred auto-change`, `cred rotate`, `cred reconcile` and `cred rotation`: the
//! automatic password change (issue 17) through the credential's `settings`
//! (`PATCH /api/v1/credentials/{id}`), `POST .../rotate`, `POST .../reconcile` and
//! `GET .../rotation`.

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{enc, Client};
use crate::output::{self, Format};

/// Change the password on the target now (`what` = `rotate`), or reconcile it (`reconcile`); fails
/// (exit status 1) when the change failed or another server is making one, after printing why.
pub async fn rotate(c: &Client, fmt: Format, id: &str, what: &str) -> Result<()> {
    let v = c
        .send(
            Method::POST,
            &format!("/credentials/{}/{what}", enc(id)),
            &json!({}),
        )
        .await?;
    output::object(fmt, &v);
    match v["outcome"].as_str() {
        Some("changed" | "settled" | "reconciled") => Ok(()),
        _ => bail!(
            "the password was not changed: {}",
            v["error"].as_str().unwrap_or("unknown reason")
        ),
    }
}

/// The status: settings, schedule, last result, and the versions the changes made.
pub async fn status(c: &Client, fmt: Format, id: &str) -> Result<()> {
    let v: Value = c.get(&format!("/credentials/{}/rotation", enc(id))).await?;
    output::object(fmt, &v);
    Ok(())
}

/// `cred auto-change`: the automatic change's settings (seed 003's `execution_settings`); only the
/// options given change.
#[derive(Debug, clap::Args)]
pub struct AutoChangeArgs {
    /// The change plugin (`postgresql`).
    #[arg(long)]
    pub plugin: Option<String>,
    /// The plugin's template (default: its first, `alter-role` for postgresql).
    #[arg(long)]
    pub template: Option<String>,
    /// The credential that logs in to make the change (identifier, name or id, in the same safe
    /// and on the same device).
    #[arg(long, value_name = "CREDENTIAL")]
    pub auth: Option<String>,
    /// Log in as the account itself to change its password.
    #[arg(long)]
    pub own: bool,
    /// Change it every N hours.
    #[arg(long, value_name = "N")]
    pub every_hours: Option<u64>,
    /// Change it every N days.
    #[arg(long, value_name = "N")]
    pub every_days: Option<u64>,
    /// Change it after each custody release (PAM A2A checkout).
    #[arg(long)]
    pub after_release: bool,
    /// Reconcile through this credential when the login that makes the change is refused.
    #[arg(long, value_name = "CREDENTIAL")]
    pub reconcile_with: Option<String>,
    /// Length of generated passwords (12 to 128; default 32).
    #[arg(long, value_name = "N")]
    pub length: Option<u64>,
    /// Characters generated passwords must never contain (each class must keep one).
    #[arg(long, value_name = "CHARS")]
    pub avoid: Option<String>,
    /// Turn automatic change off (the settings stay).
    #[arg(long)]
    pub off: bool,
}

/// Merge `a` into the credential's `execution_settings` and write the settings back, unless the
/// credential changed meanwhile (compare-and-set on its version).
pub async fn auto_change(c: &Client, fmt: Format, id: &str, a: AutoChangeArgs) -> Result<()> {
    let cur: Value = c.get(&format!("/credentials/{}", enc(id))).await?;
    let mut settings = match cur.get("settings") {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let mut exec = match settings.get("execution_settings") {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    exec.insert("automatic_change".into(), json!(!a.off));
    let mut set = |k: &str, v: Value| {
        exec.insert(k.into(), v);
    };
    if let Some(p) = a.plugin {
        set("change_plugin", json!(p));
    }
    if let Some(t) = a.template {
        set("change_template", json!(t));
    }
    if let Some(x) = a.auth {
        set("authentication_credential", json!(x));
        set("use_own_credential_to_connect", json!(false));
    }
    if a.own {
        set("use_own_credential_to_connect", json!(true));
    }
    if let Some(h) = a.every_hours {
        set("change_every_hours", json!(h));
    }
    if let Some(d) = a.every_days {
        set("change_every_days", json!(d));
    }
    if a.after_release {
        set("change_after_release", json!(true));
    }
    if let Some(n) = a.length {
        set("password_length", json!(n));
    }
    if let Some(x) = a.avoid {
        set("password_avoid", json!(x));
    }
    if let Some(r) = a.reconcile_with {
        set("reconciliation_credential", json!(r));
        set("status", json!(true));
    }
    settings.insert("execution_settings".into(), Value::Object(exec));
    c.send(
        Method::PATCH,
        &format!("/credentials/{}", enc(id)),
        &json!({"settings": settings, "expected_version": cur["version"]}),
    )
    .await?;
    status(c, fmt, id).await
}
