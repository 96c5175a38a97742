//! `credvault login USER`: a password (from stdin) for a token.

use anyhow::Result;
use reqwest::Method;
use serde_json::{json, Value};

use super::read_stdin_secret;
use crate::client::Client;
use crate::output::{self, Format};

/// Print the token alone (for `export CREDVAULT_TOKEN=$(...)`), or the whole answer as JSON.
pub async fn run(c: &Client, fmt: Format, username: &str) -> Result<()> {
    let pw = read_stdin_secret("password")?;
    let v = c
        .send(
            Method::POST,
            "/auth/login",
            &json!({"username": username, "password": pw}),
        )
        .await?;
    if fmt == Format::Json {
        output::object(fmt, &v);
    } else {
        let token = v.get("token").and_then(Value::as_str).unwrap_or_default();
        println!("{token}");
    }
    Ok(())
}
