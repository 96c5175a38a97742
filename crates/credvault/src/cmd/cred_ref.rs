//! Naming a credential on the command line: its id, `SAFE/NAME`, a `NAME` unique among the
//! credentials the caller can see, or `--identifier ID`. Names are looked up through the list
//! endpoint (`GET /credentials?safe=&name=`, every page), so they mean what the caller can see.

use anyhow::{bail, Result};
use clap::Args;
use serde_json::Value;

use super::query;
use crate::client::Client;

/// Which credential a command acts on.
#[derive(Debug, Args)]
pub struct CredRef {
    /// The credential: its id, SAFE/NAME, or a NAME unique among the credentials you can see.
    #[arg(
        value_name = "CREDENTIAL",
        required_unless_present = "identifier",
        conflicts_with = "identifier"
    )]
    pub credential: Option<String>,
    /// The credential with this identifier (the unique key set with `cred put --identifier`).
    #[arg(long, value_name = "ID")]
    pub identifier: Option<String>,
}

impl CredRef {
    /// The credential's id.
    pub async fn resolve(&self, c: &Client) -> Result<String> {
        match (&self.credential, &self.identifier) {
            (_, Some(ident)) => by_identifier(c, ident).await,
            (Some(r), None) => resolve(c, r).await,
            (None, None) => bail!("name a credential: ID, SAFE/NAME, NAME or --identifier ID"),
        }
    }
}

/// An id as given, else `SAFE/NAME`, else a `NAME` unique among what the caller sees.
pub async fn resolve(c: &Client, given: &str) -> Result<String> {
    if uuid::Uuid::parse_str(given).is_ok() {
        return Ok(given.to_owned());
    }
    if let Some((safe, name)) = given.split_once('/') {
        let found = find(c, Some(safe), "name", name).await?;
        // A name may hold a slash itself: `a/b` is also the name `a/b` in any safe.
        if found.is_empty() {
            let whole = find(c, None, "name", given).await?;
            if whole.is_empty() {
                bail!("no credential named {name} in safe {safe}");
            }
            return pick(whole, &format!("named {given}"));
        }
        return pick(found, &format!("named {name} in safe {safe}"));
    }
    one(c, None, "name", given).await
}

async fn by_identifier(c: &Client, ident: &str) -> Result<String> {
    one(c, None, "identifier", ident).await
}

/// The one credential whose `field` is `value` (in `safe`, or among everything visible).
async fn one(c: &Client, safe: Option<&str>, field: &str, value: &str) -> Result<String> {
    let found = find(c, safe, field, value).await?;
    let what = match field {
        "identifier" => format!("with identifier {value}"),
        _ => format!("named {value}"),
    };
    if found.is_empty() {
        bail!("no credential {what} visible to you");
    }
    pick(found, &what)
}

/// Every credential visible to the caller whose `field` is `value`, following the list's pages.
async fn find(c: &Client, safe: Option<&str>, field: &str, value: &str) -> Result<Vec<Value>> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = query(&[
            ("safe", safe.map(str::to_owned)),
            (field, Some(value.to_owned())),
            ("limit", Some("1000".to_owned())),
            ("after", after.take()),
        ]);
        let page: Value = c.get(&format!("/credentials{q}")).await?;
        if let Some(items) = page.get("items").and_then(Value::as_array) {
            found.extend(items.iter().cloned());
        }
        match page.get("next").and_then(Value::as_str) {
            Some(n) => after = Some(n.to_owned()),
            None => return Ok(found),
        }
    }
}

/// The id of the one candidate; several are an error that lists them.
fn pick(found: Vec<Value>, what: &str) -> Result<String> {
    if let [only] = found.as_slice() {
        return Ok(only["id"].as_str().unwrap_or_default().to_owned());
    }
    let lines: Vec<String> = found.iter().map(candidate).collect();
    bail!(
        "{} credentials are {what}; name one as SAFE/NAME or by its id:\n{}",
        found.len(),
        lines.join("\n")
    )
}

/// `  SAFE/NAME  ID` (a credential without a safe shows its name alone).
fn candidate(v: &Value) -> String {
    let name = v["name"].as_str().unwrap_or_default();
    let id = v["id"].as_str().unwrap_or_default();
    match v["safe"].as_str() {
        Some(s) => format!("  {s}/{name}  {id}"),
        None => format!("  {name} (no safe)  {id}"),
    }
}
