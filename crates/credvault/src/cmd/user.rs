//! `credvault user ...`: users, human (optionally with a password) and service (tokens only).

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::read_stdin_secret;
use crate::client::{enc, Client};
use crate::output::{self, Format};

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

pub async fn run(c: &Client, fmt: Format, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add {
            name,
            service,
            admin,
            password_stdin,
        } => {
            let kind = if service { "service" } else { "human" };
            let mut b = json!({"name": name, "kind": kind, "admin": admin});
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
            let path = format!("/users/{}", enc(&name));
            output::object(fmt, &c.get::<Value>(&path).await?);
            Ok(())
        }
        UserCmd::Rm { name } => c.delete(&format!("/users/{}", enc(&name))).await,
    }
}
