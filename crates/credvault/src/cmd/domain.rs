//! `credvault domain ...`: the domains credentials and devices of the PAM A2A door may name
//! (`domain`, `device_domain`). A domain must be registered before a request names it.

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use crate::client::{enc, Client};
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Register a domain. Requests may then name it by NAME or by its abbreviation, in any case.
    /// Example: credvault domain add senhasegura.lab --abbreviation SEG
    Add {
        name: String,
        /// A short name requests may use instead (for example the NetBIOS name).
        #[arg(long)]
        abbreviation: Option<String>,
    },
    /// List the registered domains.
    List,
    /// Remove a domain (credentials and devices that name it keep the name).
    Rm { name: String },
}

pub async fn run(c: &Client, fmt: Format, cmd: DomainCmd) -> Result<()> {
    match cmd {
        DomainCmd::Add { name, abbreviation } => {
            let v = c
                .send(
                    Method::POST,
                    "/domains",
                    &json!({"name": name, "abbreviation": abbreviation}),
                )
                .await?;
            output::object(fmt, &v);
            Ok(())
        }
        DomainCmd::List => {
            output::list(
                fmt,
                &c.get("/domains").await?,
                &["name", "abbreviation", "created_at"],
            );
            Ok(())
        }
        DomainCmd::Rm { name } => c.delete(&format!("/domains/{}", enc(&name))).await,
    }
}
