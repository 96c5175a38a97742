//! `credvault safe ...`: safes and who may do what in them.

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::member;
use crate::client::{enc, Client};
use crate::output::{self, Format};

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

pub async fn run(c: &Client, fmt: Format, cmd: SafeCmd) -> Result<()> {
    match cmd {
        SafeCmd::Add { name, description } => {
            let b = json!({"name": name, "description": description});
            output::object(fmt, &c.send(Method::POST, "/safes", &b).await?);
            Ok(())
        }
        SafeCmd::List => {
            output::list(fmt, &c.get("/safes").await?, &["name", "description"]);
            Ok(())
        }
        SafeCmd::Rm { name } => c.delete(&format!("/safes/{}", enc(&name))).await,
        SafeCmd::Members { name } => {
            let v = c.get(&format!("/safes/{}/members", enc(&name))).await?;
            output::list(fmt, &v, &["type", "name", "permissions"]);
            Ok(())
        }
        SafeCmd::Grant {
            safe,
            member: m,
            permissions,
        } => {
            let (k, n) = member(&m, "member")?;
            let b = json!({"type": k, "name": n, "permissions": permissions});
            let path = format!("/safes/{}/members", enc(&safe));
            output::object(fmt, &c.send(Method::PUT, &path, &b).await?);
            Ok(())
        }
        SafeCmd::Revoke { safe, member: m } => {
            let (k, n) = member(&m, "member")?;
            let path = format!("/safes/{}/members/{}/{}", enc(&safe), enc(&k), enc(&n));
            c.delete(&path).await
        }
    }
}
