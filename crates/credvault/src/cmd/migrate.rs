//! `credvault operator migrate`: copy a whole vault between storage backends, offline, and verify
//! the copy. `open_spec` is shared with `operator restore`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::output::{self, Format};

/// Open `sqlite:DATA_DIR` or a `postgres://` URL.
pub async fn open_spec(spec: &str) -> Result<Arc<dyn credvault_store::Store>> {
    let (storage, dir) = if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        (
            credvault_server::Storage::Postgres { url: spec.into() },
            PathBuf::from("."),
        )
    } else if let Some(dir) = spec.strip_prefix("sqlite:") {
        (credvault_server::Storage::Sqlite, PathBuf::from(dir))
    } else {
        bail!(
            "'{}' is neither sqlite:DATA_DIR nor a postgres:// URL",
            spec.split('@').next_back().unwrap_or("")
        );
    };
    storage.open(&dir).await.context("opening the store")
}

pub async fn run(fmt: Format, from: &str, to: &str) -> Result<()> {
    let src = open_spec(from).await.context("source")?;
    let dst = open_spec(to).await.context("destination")?;
    let total = credvault_store::migrate::total_rows(src.as_ref()).await?;
    let bar = output::rows_bar(total, "copying");
    let report = credvault_store::migrate::copy(src.as_ref(), dst.as_ref(), |n| bar.inc(n)).await;
    bar.finish_and_clear();
    let report = report.context(
        "migration failed (the destination may hold a partial copy: empty it before retrying)",
    )?;
    let v = json!({
        "tables": report.tables.iter().map(|(t, n)| json!({"table": t, "rows": n})).collect::<Vec<_>>(),
        "audit_records": report.audit_records,
        "verified": true,
    });
    output::copy_report(
        fmt,
        &v,
        &[
            format!(
                "Copied and verified: equal row counts, identical audit chain of {} records.",
                report.audit_records
            ),
            "Start the servers on the destination and unseal them as before.".into(),
        ],
    )
}
