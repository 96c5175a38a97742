//! `credvault operator backup` (online, through the server) and `restore` (offline, into an empty
//! store). The format and the checks are `credvault_service::backup`'s.

use std::io::{BufReader, Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::client::Client;
use crate::output::{self, Format};

/// Save the server's backup stream to `file` (created new, owner-only), showing rows as they come.
pub async fn backup(c: &Client, fmt: Format, file: &Path) -> Result<()> {
    let mut resp = c
        .download("/sys/backup")
        .await
        .context("starting the backup")?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let out = opts
        .open(file)
        .with_context(|| format!("creating {} (it must not exist yet)", file.display()))?;
    match receive(&mut resp, out).await {
        Ok(v) => {
            output::object(fmt, &v);
            Ok(())
        }
        Err(e) => {
            // Nothing half-written is left behind.
            let _ = std::fs::remove_file(file);
            Err(e)
        }
    }
}

/// Write the stream to `out`, following its frames for progress; fails unless the end frame came.
async fn receive(
    resp: &mut reqwest::Response,
    mut out: std::fs::File,
) -> Result<serde_json::Value> {
    // Follow the frames for progress: the header line, then `len | rows | kind | bytes`.
    let mut buf: Vec<u8> = Vec::new();
    let mut header: Option<credvault_service::backup::Header> = None;
    let mut pb = None;
    let (mut rows, mut frames, mut bytes, mut ended) = (0u64, 0u64, 0u64, false);
    while let Some(chunk) = resp.chunk().await.context("receiving the backup")? {
        out.write_all(&chunk)?;
        bytes += chunk.len() as u64;
        buf.extend_from_slice(&chunk);
        if header.is_none() {
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let h = credvault_service::backup::read_header(&mut &buf[..=nl])
                    .context("the server sent something that is not a backup")?;
                pb = Some(output::rows_bar(h.approx_rows, "backing up"));
                header = Some(h);
                buf.drain(..=nl);
            }
        }
        while header.is_some() && buf.len() >= 9 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let n = u64::from(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]));
            ended |= buf[8] == 1;
            rows += n;
            frames += 1;
            if let Some(p) = &pb {
                p.inc(n);
            }
            buf.drain(..9 + len);
        }
    }
    if let Some(p) = pb {
        p.finish_and_clear();
    }
    out.sync_all()?;
    if !ended {
        bail!("the backup stream ended early (the server reported a failure; see its log); nothing was kept");
    }
    let h = header.context("no backup header")?;
    Ok(
        json!({"backup_id": h.id.to_string(), "created_at": h.created_at,
              "rows": rows, "frames": frames, "bytes": bytes, "unseal_keys_needed": h.threshold}),
    )
}

/// Restore `file` into the empty store `to`, then verify it.
pub async fn restore(fmt: Format, file: &Path, to: &str, key_file: Option<&Path>) -> Result<()> {
    let mut r = BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let keys = unseal_keys(key_file)?;
    let dst = super::migrate::open_spec(to).await.context("destination")?;
    let pb = output::rows_bar(0, "restoring");
    let report = credvault_service::backup::restore(&mut r, &keys, dst, |done, total| {
        pb.set_length(total.max(done));
        pb.set_position(done);
    })
    .await;
    pb.finish_and_clear();
    let report = report.context(
        "restore failed (the destination may hold a partial copy: empty it before retrying)",
    )?;
    let v = json!({
        "backup_id": report.backup_id.to_string(),
        "created_at": report.created_at,
        "tables": report.tables.iter().map(|(t, n)| json!({"table": t, "rows": n})).collect::<Vec<_>>(),
        "credentials_verified": report.credentials_verified,
        "audit_records": report.audit_records,
        "verified": true,
    });
    output::copy_report(
        fmt,
        &v,
        &[
            format!(
                "Restored and verified: {} credentials decrypt, audit chain of {} records intact.",
                report.credentials_verified, report.audit_records
            ),
            "Start a server on it and unseal it with the same unseal keys.".into(),
        ],
    )
}

/// The unseal keys, one per line, from `key_file` or standard input.
fn unseal_keys(key_file: Option<&Path>) -> Result<Vec<String>> {
    let keys_text = match key_file {
        Some(k) => {
            std::fs::read_to_string(k).with_context(|| format!("reading {}", k.display()))?
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("unseal keys, one per line, then end of input (Ctrl-D):");
            }
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    let keys: Vec<String> = keys_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        bail!("no unseal keys given (--unseal-key-file or standard input)");
    }
    Ok(keys)
}
