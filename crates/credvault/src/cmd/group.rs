//! `credvault group ...`: groups and their members.

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{enc, Client};
use crate::output::{self, Format};

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

pub async fn run(c: &Client, fmt: Format, cmd: GroupCmd) -> Result<()> {
    let members = |g: &str, u: &str| format!("/groups/{}/members/{}", enc(g), enc(u));
    match cmd {
        GroupCmd::Add { name } => {
            let v = c
                .send(Method::POST, "/groups", &json!({"name": name}))
                .await?;
            output::object(fmt, &v);
            Ok(())
        }
        GroupCmd::List => {
            output::list(fmt, &c.get("/groups").await?, &["name", "members"]);
            Ok(())
        }
        GroupCmd::Show { name } => {
            let path = format!("/groups/{}", enc(&name));
            output::object(fmt, &c.get::<Value>(&path).await?);
            Ok(())
        }
        GroupCmd::Rm { name } => c.delete(&format!("/groups/{}", enc(&name))).await,
        GroupCmd::AddMember { group, user } => {
            let v = c
                .send(Method::PUT, &members(&group, &user), &json!({}))
                .await?;
            output::object(fmt, &v);
            Ok(())
        }
        GroupCmd::RmMember { group, user } => c.delete(&members(&group, &user)).await,
    }
}
