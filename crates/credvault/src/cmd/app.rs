//! `credvault app ...`: applications: AppID readers (the CCP door), Vault AppRole and OAuth
//! client-credentials clients (the PAM A2A door), and what they may read or write.

use anyhow::Result;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::cred_ref::resolve;
use super::read_stdin_secret;
use crate::client::{enc, Client};
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Register an application (AppID). It needs at least one rule to authenticate: --source,
    /// --cert-issuer (with --cert-subject and/or --cert-serial), or --header-secret-stdin.
    Create(CreateArgs),
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
        /// The credential: its id, SAFE/NAME, or a NAME unique among the credentials you can see.
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
        /// The credential: its id, SAFE/NAME, or a NAME unique among the credentials you can see.
        #[arg(long)]
        credential: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
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
}

const COLS: [&str; 5] = ["app_id", "owner", "sources", "header_secret", "grants"];

pub async fn run(c: &Client, fmt: Format, cmd: AppCmd) -> Result<()> {
    let path = |id: &str, verb: &str| format!("/apps/{}{verb}", enc(id));
    match cmd {
        AppCmd::Create(args) => create(c, fmt, args).await,
        AppCmd::List => {
            output::list(fmt, &c.get("/apps").await?, &COLS);
            Ok(())
        }
        AppCmd::Show { app_id } => {
            output::object(fmt, &c.get::<Value>(&path(&app_id, "")).await?);
            Ok(())
        }
        AppCmd::Rm { app_id } => c.delete(&path(&app_id, "")).await,
        AppCmd::ClientSecret { app_id } => {
            let v = c
                .send(Method::POST, &path(&app_id, "/client-secret"), &json!({}))
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

async fn create(c: &Client, fmt: Format, a: CreateArgs) -> Result<()> {
    let mut b = json!({
        "app_id": a.app_id, "description": a.description, "sources": a.sources,
        "client_secret": a.client_secret,
    });
    if let Some(issuer) = a.cert_issuer {
        b["certificates"] =
            json!([{"issuer": issuer, "subject": a.cert_subject, "serial": a.cert_serial}]);
    }
    if a.header_secret_stdin {
        b["header_secret"] = Value::String(read_stdin_secret("header secret")?);
    }
    output::object(fmt, &c.send(Method::POST, "/apps", &b).await?);
    Ok(())
}

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
        (None, Some(cred)) => json!({"type": "credential", "name": resolve(c, &cred).await?}),
        (None, None) => json!({"type": "credential", "name": ""}),
    };
    let path = format!("/apps/{}/{verb}", enc(app_id));
    output::object(fmt, &c.send(Method::POST, &path, &body).await?);
    Ok(())
}
