//! `credvault audit ...`: the audit log.

use anyhow::{bail, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Client;
use crate::output::{self, Format};

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

const COLS: [&str; 8] = [
    "seq", "time", "actor", "door", "action", "target", "source", "outcome",
];

pub async fn run(c: &Client, fmt: Format, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify => {
            let v = c.send(Method::POST, "/audit/verify", &json!({})).await?;
            output::object(fmt, &v);
            if v.get("ok") != Some(&Value::Bool(true)) {
                bail!("the audit chain does not verify");
            }
            Ok(())
        }
        AuditCmd::Tail { n } => {
            output::list(fmt, &c.get(&format!("/audit/tail?n={n}")).await?, &COLS);
            Ok(())
        }
    }
}
