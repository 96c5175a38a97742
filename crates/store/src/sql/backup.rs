//! [`BackupStore`]: whole-vault copy, table by table (`migrate::TABLES`).

use async_trait::async_trait;
use futures_util::TryStreamExt;

use super::common::cells_of;
use super::{dialect, Backend};
use crate::migrate::{Cell, Kind, TableSpec, TABLES};
use crate::sql::{corrupt, db_err};
use crate::{BackupStore, Result, SnapshotSink, StoreError};

/// `SELECT <every column> FROM <table>`.
fn select_all(t: &TableSpec) -> String {
    let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
    format!("SELECT {} FROM {}", cols.join(", "), t.name)
}

#[async_trait]
impl BackupStore for Backend {
    async fn count_rows(&self, t: &TableSpec) -> Result<i64> {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", t.name))
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)
    }

    async fn export_rows(&self, t: &TableSpec, offset: i64, limit: i64) -> Result<Vec<Vec<Cell>>> {
        let sql = format!(
            "{} ORDER BY {} LIMIT $1 OFFSET $2",
            select_all(t),
            t.order_by
        );
        let rows = sqlx::query(&sql)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| cells_of(r, t)).collect()
    }

    async fn export_snapshot(&self, sink: SnapshotSink<'_>) -> Result<()> {
        const BATCH: usize = 500;
        let stopped = || StoreError::Unavailable("the export was stopped".into());
        let mut tx = self.reader.begin().await.map_err(db_err)?;
        if let Some(s) = dialect::SNAPSHOT {
            sqlx::query(s).execute(&mut *tx).await.map_err(db_err)?;
        }
        for (i, t) in TABLES.iter().enumerate() {
            let sql = format!("{} ORDER BY {}", select_all(t), t.order_by);
            let mut batch = Vec::with_capacity(BATCH);
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(r) = rows.try_next().await.map_err(db_err)? {
                batch.push(cells_of(&r, t)?);
                if batch.len() == BATCH && !sink(i, std::mem::take(&mut batch)).await {
                    return Err(stopped());
                }
            }
            drop(rows);
            if !batch.is_empty() && !sink(i, batch).await {
                return Err(stopped());
            }
        }
        tx.rollback().await.map_err(db_err)
    }

    async fn import_rows(&self, t: &TableSpec, rows: &[Vec<Cell>]) -> Result<()> {
        let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            t.name,
            cols.join(", "),
            marks.join(", ")
        );
        let mut tx = self.begin_write().await?;
        for row in rows {
            let mut q = sqlx::query(&sql);
            for ((_, kind), cell) in t.columns.iter().zip(row) {
                q = match (kind, cell) {
                    (Kind::Text, Cell::Text(v)) => q.bind(Some(v.clone())),
                    (Kind::Text, Cell::Null) => q.bind(None::<String>),
                    (Kind::Int, Cell::Int(v)) => q.bind(Some(*v)),
                    (Kind::Int, Cell::Null) => q.bind(None::<i64>),
                    (Kind::Bool, Cell::Bool(v)) => q.bind(Some(*v)),
                    (Kind::Bool, Cell::Null) => q.bind(None::<bool>),
                    (Kind::Bytes, Cell::Bytes(v)) => q.bind(Some(v.clone())),
                    (Kind::Bytes, Cell::Null) => q.bind(None::<Vec<u8>>),
                    _ => return Err(corrupt("a value does not match its column's kind")),
                };
            }
            q.execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }
}
