//! `credvault cred import`: bulk import from JSON Lines through `POST /api/v1/credentials/import`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Client;

const MAX_BATCH: usize = 1000;

pub async fn run(c: &Client, file: &str, batch: usize, ids_out: Option<&Path>) -> Result<()> {
    if batch == 0 || batch > MAX_BATCH {
        bail!("--batch must be 1 to {MAX_BATCH}");
    }
    let (reader, total) = open(file)?;
    let pb = progress(total);
    let mut out = match ids_out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut pending: Vec<Value> = Vec::with_capacity(batch);
    let mut done = 0u64;
    let mut lines = reader.lines().enumerate();
    loop {
        let next = lines.next();
        if let Some((i, line)) = next.as_ref() {
            let line = line
                .as_ref()
                .map_err(|e| anyhow::anyhow!("reading line {}: {e}", i + 1))?;
            if let Some(v) = parse_line(*i, line)? {
                pending.push(v);
            }
        }
        if pending.len() == batch || (next.is_none() && !pending.is_empty()) {
            let n = pending.len() as u64;
            let ids = send_batch(c, std::mem::take(&mut pending), done).await?;
            if let Some(o) = out.as_mut() {
                for id in &ids {
                    writeln!(o, "{id}")?;
                }
            }
            done += n;
            pb.set_position(done);
        }
        if next.is_none() {
            break;
        }
    }
    if let Some(mut o) = out {
        o.flush()?;
    }
    pb.finish_and_clear();
    eprintln!("imported {done} credentials");
    Ok(())
}

/// The input (`-` is stdin) and, for a file, its line count for a real progress bar.
fn open(file: &str) -> Result<(Box<dyn BufRead>, Option<u64>)> {
    if file == "-" {
        return Ok((Box::new(BufReader::new(std::io::stdin())), None));
    }
    let f = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
    // Count lines first (cheap next to the import itself).
    let n = BufReader::new(&f).lines().count() as u64;
    let f = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
    Ok((Box::new(BufReader::new(f)), Some(n)))
}

fn progress(total: Option<u64>) -> indicatif::ProgressBar {
    let pb = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} credentials ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// Line `i` (0-based) as a JSON object; `None` for a blank line.
fn parse_line(i: usize, line: &str) -> Result<Option<Value>> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    // Parse errors name the line only: the line may hold a secret.
    let v: Value = serde_json::from_str(line)
        .map_err(|_| anyhow::anyhow!("line {} is not a JSON object", i + 1))?;
    if !v.is_object() {
        bail!("line {} is not a JSON object", i + 1);
    }
    Ok(Some(v))
}

/// One all-or-nothing request; the new ids in input order.
async fn send_batch(c: &Client, batch: Vec<Value>, done: u64) -> Result<Vec<String>> {
    let n = batch.len() as u64;
    let r = c
        .send(
            Method::POST,
            "/credentials/import",
            &json!({"credentials": batch}),
        )
        .await
        .with_context(|| {
            format!(
                "importing credentials {}..{} (nothing of this batch was stored)",
                done + 1,
                done + n
            )
        })?;
    let ids = r["ids"].as_array().cloned().unwrap_or_default();
    Ok(ids
        .iter()
        .map(|id| id.as_str().unwrap_or_default().to_owned())
        .collect())
}
