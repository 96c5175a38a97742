//! Tables for people, JSON for scripts.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Object(o)) if o.contains_key("type") && o.contains_key("name") => {
            format!("{}:{}", cell(o.get("type")), cell(o.get("name")))
        }
        Some(other) => other.to_string(),
    }
}

/// Print a list of objects as a table with the given columns, or the whole value as JSON.
pub fn list(fmt: Format, v: &Value, columns: &[&str]) {
    if fmt == Format::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(columns.iter().map(|c| c.to_uppercase()));
    for it in &items {
        t.add_row(columns.iter().map(|c| cell(it.get(*c))));
    }
    println!("{t}");
    if let Some(n) = v.get("next").and_then(Value::as_str) {
        println!("more: --after {n}");
    }
}

/// Print one object as key/value rows, or as JSON.
pub fn object(fmt: Format, v: &Value) {
    if fmt == Format::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(["KEY", "VALUE"]);
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            let shown = match val {
                Value::Object(_) if !(val.get("type").is_some() && val.get("name").is_some()) => {
                    val.to_string()
                }
                _ => cell(Some(val)),
            };
            t.add_row([k.clone(), shown]);
        }
    }
    println!("{t}");
}

/// A progress bar counting rows (copies, backups, restores).
pub fn rows_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} rows ({{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The report of a whole-vault copy (`migrate`, `restore`): the JSON as is, or the per-table rows
/// (`v["tables"]`) as a table followed by `lines`.
pub fn copy_report(fmt: Format, v: &Value, lines: &[String]) -> anyhow::Result<()> {
    if fmt == Format::Json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        list(
            fmt,
            &serde_json::json!({"items": v["tables"]}),
            &["table", "rows"],
        );
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}
