//! `credvault audit ...`: the audit log, its verification and its archives.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Client;
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Walk the whole hash chain and report the first tampered record; with FILE, verify an
    /// archive written by `audit archive` instead.
    Verify {
        /// An archive file to verify (against this vault's audit key).
        file: Option<PathBuf>,
    },
    /// Move the records older than a date into a signed archive FILE (created new, owner-only)
    /// and remove them from the log; `audit verify` still proves the rest, `audit verify FILE`
    /// the archive.
    Archive {
        /// Archive the records older than this: RFC 3339 (2026-01-31T00:00:00Z) or a date
        /// (2026-01-31, midnight UTC).
        #[arg(long)]
        before: String,
        /// The archive file to write (must not exist).
        file: PathBuf,
    },
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
        AuditCmd::Verify { file: Some(file) } => {
            let body =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let v = c.upload("/audit/verify-archive", body).await?;
            output::object(fmt, &v);
            if v.get("ok") != Some(&Value::Bool(true)) {
                bail!("the archive does not verify");
            }
            Ok(())
        }
        AuditCmd::Archive { before, file } => archive(c, fmt, &before, &file).await,
        AuditCmd::Verify { file: None } => {
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

/// `2026-01-31` as midnight UTC; anything else is passed on as RFC 3339 for the server to check.
fn rfc3339(date: &str) -> String {
    let b = date.as_bytes();
    let is_date = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if is_date {
        format!("{date}T00:00:00Z")
    } else {
        date.to_owned()
    }
}

/// Export, write and sync the archive, then commit it: nothing leaves the log before its archive
/// is on disk.
async fn archive(c: &Client, fmt: Format, before: &str, file: &Path) -> Result<()> {
    let export = c
        .send(
            Method::POST,
            "/audit/archive",
            &json!({"before": rfc3339(before)}),
        )
        .await?;
    let (Some(text), Some(through), Some(hash)) = (
        export["archive"].as_str(),
        export["through_seq"].as_i64(),
        export["last_hash"].as_str(),
    ) else {
        bail!("unexpected answer from the server");
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = (|| -> std::io::Result<()> {
        let mut f = opts.open(file)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(file);
        }
        return Err(e)
            .with_context(|| format!("writing {} (it must not exist yet)", file.display()));
    }
    let done = c
        .send(
            Method::POST,
            "/audit/archive/commit",
            &json!({"through_seq": through, "last_hash": hash}),
        )
        .await
        .context("the archive file is written but the records were not removed from the log")?;
    output::object(
        fmt,
        &json!({
            "file": file.display().to_string(),
            "records": export["records"],
            "through_seq": through,
            "deleted": done["deleted"],
        }),
    );
    Ok(())
}
