//! `credvault token ...`: API tokens (shown once, stored as a keyed hash).

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use crate::client::{enc, Client};
use crate::output::{self, Format};

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

pub async fn run(c: &Client, fmt: Format, cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Create {
            user,
            ttl,
            description,
        } => {
            let b = json!({"user": user, "ttl_seconds": ttl, "description": description});
            output::object(fmt, &c.send(Method::POST, "/tokens", &b).await?);
            if fmt == Format::Table {
                eprintln!("The token is shown only now; credvault keeps only a keyed hash of it.");
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
    }
}
