//! `credvault cred rotate`, `cred reconcile` and `cred rotation`: the automatic password change
//! (issue 17) through `POST /api/v1/credentials/{id}/rotate`, `POST .../reconcile` and
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
