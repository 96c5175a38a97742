//! The client commands, one module per command group: each holds its clap `Subcommand` enum and
//! the handler that maps it onto one or two native API calls.

pub mod app;
pub mod audit;
pub mod backup;
pub mod cred;
pub mod cred_ref;
pub mod docs;
pub mod domain;
pub mod entity;
pub mod group;
pub mod import;
pub mod integration;
pub mod login;
pub mod migrate;
pub mod operator;
pub mod rotate;
pub mod safe;
pub mod token;
pub mod user;

use std::io::{BufRead, IsTerminal, Read};

use anyhow::{bail, Result};

use crate::client::{enc, Client};
use crate::output::Format;
use crate::Cmd;

/// Run one client command (everything but `server`).
pub async fn run(c: &Client, fmt: Format, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Server(_) | Cmd::Completions { .. } | Cmd::Man { .. } => {
            bail!("handled before connecting")
        }
        Cmd::Operator(cmd) => operator::run(c, fmt, cmd).await,
        Cmd::Cred(cmd) => cred::run(c, fmt, cmd).await,
        Cmd::User(cmd) => user::run(c, fmt, cmd).await,
        Cmd::Group(cmd) => group::run(c, fmt, cmd).await,
        Cmd::Safe(cmd) => safe::run(c, fmt, cmd).await,
        Cmd::Token(cmd) => token::run(c, fmt, cmd).await,
        Cmd::App(cmd) => app::run(c, fmt, cmd).await,
        Cmd::Audit(cmd) => audit::run(c, fmt, cmd).await,
        Cmd::Entity(cmd) => entity::run(c, fmt, cmd).await,
        Cmd::Apikey(cmd) => entity::apikey(c, fmt, cmd).await,
        Cmd::Integration(cmd) => integration::run(c, fmt, cmd).await,
        Cmd::Domain(cmd) => domain::run(c, fmt, cmd).await,
        Cmd::Login { username } => login::run(c, fmt, &username).await,
    }
}

/// A secret from standard input: one line at a terminal (after a prompt), everything when piped.
pub fn read_stdin_secret(what: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{what}: ");
    }
    let mut s = String::new();
    if stdin.is_terminal() {
        stdin.lock().read_line(&mut s)?;
    } else {
        stdin.lock().read_to_string(&mut s)?;
    }
    Ok(s.trim_end_matches(['\n', '\r']).to_owned())
}

/// `?k=v&...` of the pairs that have a value (empty when none has).
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// `user:NAME` or `group:NAME` split into its kind and name.
pub fn member(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once(':') {
        Some((k, n)) => Ok((k.to_owned(), n.to_owned())),
        None => bail!("{what} must be user:NAME or group:NAME"),
    }
}
