//! Online backup and offline restore (`credvault operator backup` / `restore`).
//!
//! A backup is every row of every table as of one instant (`Store::export_snapshot`: one read
//! transaction, repeatable read on PostgreSQL), taken while the server keeps serving, and encrypted
//! as a whole: a fresh backup key encrypts the rows, and the key is wrapped by the root key, so a
//! backup opens only with the vault's unseal keys (the same ones the restored vault needs anyway).
//!
//! File format:
//! - one JSON header line ([`Header`]: format, version, id, time, wrapped key, seal shape, tables);
//! - frames: `len: u32 BE | rows: u32 BE | kind: u8 | ciphertext (len bytes)`; `kind` 0 = rows,
//!   1 = end. A rows frame holds JSON lines `[table index, [cells]]`; the end frame the row count of
//!   every table. Each frame is sealed with AAD `credvault:backup:<id>:<n>:<kind>`, so frames cannot
//!   be altered, reordered, dropped or taken from another backup; a file without its end frame is
//!   refused as incomplete, one with bytes after it as tampered. `kind` is bound by the AAD; `rows`
//!   is a progress hint only (the end frame's counts are what is checked). The wrapped key is bound
//!   to a hash of the header, so the header cannot be edited either.

use std::io::Read;
use std::sync::Arc;

use base64::Engine;
use credvault_crypto::{shamir, DataKey, Keyring, RootKey};
use credvault_store::migrate::{Cell, Kind, TABLES};
use credvault_store::{CredentialFilter, CredentialWithPayload, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::{ServiceError, ServiceResult};
use crate::{Ctx, Vault};

pub const FORMAT: &str = "credvault-backup";
pub const VERSION: u32 = 1;
const KIND_ROWS: u8 = 0;
const KIND_END: u8 = 1;
const MAX_FRAME: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub id: Uuid,
    pub created_at: String,
    /// The backup key wrapped by the root key (base64).
    pub key: String,
    pub shares: u8,
    pub threshold: u8,
    /// Rows counted just before the snapshot (for a progress bar; the end frame has the exact ones).
    pub approx_rows: u64,
    pub tables: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a credvault backup, or a version this build cannot read")]
    Format,
    #[error("the backup is incomplete (it ends before its end marker): it was cut short")]
    Incomplete,
    #[error("the backup failed its integrity check at frame {0}: it was altered or damaged")]
    Tampered(u64),
    #[error("the unseal keys given do not open this backup (or its header was altered)")]
    WrongKeys,
    #[error("the destination already holds a vault; restore into an empty one")]
    NotEmpty,
    #[error("restored table {table}: {got} rows, the backup has {want}")]
    Count { table: String, want: u64, got: u64 },
    #[error("verification after restore failed: {0}")]
    Verify(String),
    #[error("reading the backup: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0}")]
    Store(#[from] credvault_store::StoreError),
    #[error("{0}")]
    Service(#[from] ServiceError),
}

/// The wrapped key is bound to the whole header (but the key itself), so no header field can be
/// changed without the backup failing to open.
fn key_binding(h: &Header) -> String {
    use sha2::Digest;
    let mut bare = h.clone();
    bare.key = String::new();
    let digest = sha2::Sha256::digest(serde_json::to_vec(&bare).unwrap_or_default());
    format!("credvault:backup:{}:key:{}", h.id, hex::encode(digest))
}

fn frame_binding(id: Uuid, n: u64, kind: u8) -> String {
    format!("credvault:backup:{id}:{n}:{kind}")
}

fn cell_json(c: &Cell) -> Value {
    match c {
        Cell::Null => Value::Null,
        Cell::Text(s) => Value::String(s.clone()),
        Cell::Int(i) => json!(i),
        Cell::Bool(b) => json!(b),
        Cell::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

fn cell_from(v: &Value, k: Kind) -> Option<Cell> {
    Some(match (v, k) {
        (Value::Null, _) => Cell::Null,
        (Value::String(s), Kind::Text) => Cell::Text(s.clone()),
        (Value::String(s), Kind::Bytes) => {
            Cell::Bytes(base64::engine::general_purpose::STANDARD.decode(s).ok()?)
        }
        (Value::Number(n), Kind::Int) => Cell::Int(n.as_i64()?),
        (Value::Bool(b), Kind::Bool) => Cell::Bool(*b),
        _ => return None,
    })
}

fn frame(kind: u8, rows: u32, sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + sealed.len());
    out.extend_from_slice(
        &u32::try_from(sealed.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&rows.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(sealed);
    out
}

fn keyring_of(key: DataKey) -> Keyring {
    let mut k = Keyring::new();
    k.insert(1, key);
    k
}

impl Vault {
    /// Start a backup: the header line now, then frames through the returned channel as the
    /// snapshot is read (an `Err` item means the backup failed; the stream then ends without its
    /// end frame, which `restore` refuses).
    pub async fn backup(
        &self,
        ctx: &Ctx,
    ) -> ServiceResult<(
        Vec<u8>,
        tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    )> {
        self.require_admin(ctx)?;
        let cfg = self
            .store
            .seal_config()
            .await?
            .ok_or(ServiceError::NotInitialized)?;
        let id = Uuid::now_v7();
        let key = DataKey::generate();
        let approx_rows = credvault_store::migrate::total_rows(self.store.as_ref()).await?;
        let mut header = Header {
            format: FORMAT.into(),
            version: VERSION,
            id,
            created_at: self
                .clock
                .now()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            key: String::new(),
            shares: cfg.shares,
            threshold: cfg.threshold,
            approx_rows,
            tables: TABLES.iter().map(|t| t.name.to_owned()).collect(),
        };
        let wrapped = self.barrier.wrap_key(&key, &key_binding(&header)).await?;
        header.key = base64::engine::general_purpose::STANDARD.encode(wrapped);
        // Fail closed: no audit record, no backup.
        self.audit(
            ctx,
            "sys.backup",
            id.to_string(),
            "ok",
            json!({"approx_rows": approx_rows}),
        )
        .await?;
        let mut line = serde_json::to_vec(&header).map_err(|_| ServiceError::Integrity)?;
        line.push(b'\n');

        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(4);
        let store = self.store.clone();
        let ring = Arc::new(keyring_of(key));
        tokio::spawn(async move {
            let counts = Arc::new(std::sync::Mutex::new(vec![0u64; TABLES.len()]));
            let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (tx2, ring2, counts2, n2) = (tx.clone(), ring.clone(), counts.clone(), n.clone());
            let mut sink = move |table: usize, rows: Vec<Vec<Cell>>| {
                let (tx, ring, counts, n) =
                    (tx2.clone(), ring2.clone(), counts2.clone(), n2.clone());
                Box::pin(async move {
                    let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(rows.len() * 256));
                    for r in &rows {
                        let cells: Vec<Value> = r.iter().map(cell_json).collect();
                        if serde_json::to_writer(&mut *plain, &json!([table, cells])).is_err() {
                            return false;
                        }
                        plain.push(b'\n');
                    }
                    if let Ok(mut c) = counts.lock() {
                        c[table] += rows.len() as u64;
                    }
                    let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Ok(sealed) = ring.encrypt(&plain, &frame_binding(id, i, KIND_ROWS)) else {
                        return false;
                    };
                    let rows = u32::try_from(rows.len()).unwrap_or(u32::MAX);
                    tx.send(Ok(frame(KIND_ROWS, rows, &sealed))).await.is_ok()
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
            };
            let result = store.export_snapshot(&mut sink).await;
            match result {
                Ok(()) => {
                    let counts = counts.lock().map(|c| c.clone()).unwrap_or_default();
                    let i = n.load(std::sync::atomic::Ordering::SeqCst);
                    let end = serde_json::to_vec(&json!({"rows": counts})).unwrap_or_default();
                    match ring.encrypt(&end, &frame_binding(id, i, KIND_END)) {
                        Ok(sealed) => {
                            let _ = tx.send(Ok(frame(KIND_END, 0, &sealed))).await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string())).await;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, backup = %id, "backup failed");
                    let _ = tx.send(Err(e.to_string())).await;
                }
            }
        });
        Ok((line, rx))
    }

    /// Decrypt every credential's current secret (after a restore): proves keys and ciphertexts.
    pub async fn verify_all_secrets(&self) -> ServiceResult<u64> {
        let mut n = 0;
        let mut after = None;
        loop {
            let page = self
                .store
                .list_credentials(&CredentialFilter {
                    after,
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            for c in &page {
                if let Some(CredentialWithPayload {
                    credential: cur,
                    payload: blob,
                }) = self.store.credential_with_payload(c.id).await?
                {
                    if !blob.is_empty() {
                        self.decrypt_payload(cur.id, cur.version, &blob).await?;
                    }
                    n += 1;
                }
            }
            if page.len() < 1000 {
                return Ok(n);
            }
            after = page.last().map(|c| c.id);
        }
    }
}

/// Read the header line of a backup.
pub fn read_header(r: &mut impl Read) -> Result<Header, BackupError> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if r.read(&mut b)? == 0 || line.len() > 64 * 1024 {
            return Err(BackupError::Format);
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    let h: Header = serde_json::from_slice(&line).map_err(|_| BackupError::Format)?;
    let tables_match = h
        .tables
        .iter()
        .map(String::as_str)
        .eq(TABLES.iter().map(|t| t.name));
    if h.format != FORMAT || h.version != VERSION || !tables_match {
        return Err(BackupError::Format);
    }
    Ok(h)
}

/// Import a batch of table `t`, or hold it back when it is `seal_config`.
async fn import(
    dst: &dyn Store,
    t: usize,
    seal_idx: Option<usize>,
    held: &mut Vec<Vec<Cell>>,
    batch: &mut [Vec<Cell>],
) -> Result<(), BackupError> {
    if Some(t) == seal_idx {
        held.extend(batch.iter().cloned());
    } else {
        dst.import_rows(&TABLES[t], batch).await?;
    }
    Ok(())
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub backup_id: Uuid,
    pub created_at: String,
    pub tables: Vec<(String, u64)>,
    pub credentials_verified: u64,
    pub audit_records: i64,
}

/// Restore a backup into the empty store `dst` with the vault's unseal keys (`threshold` of them),
/// then verify: per-table counts against the end frame, the audit chain, and every credential's
/// secret decrypting under the restored keyring.
pub async fn restore(
    r: &mut impl Read,
    unseal_keys: &[String],
    dst: Arc<dyn Store>,
    mut progress: impl FnMut(u64, u64),
) -> Result<RestoreReport, BackupError> {
    let header = read_header(r)?;
    let shares = unseal_keys
        .iter()
        .map(|k| shamir::decode_share(k.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| BackupError::WrongKeys)?;
    let root: RootKey = shamir::combine(&shares).map_err(|_| BackupError::WrongKeys)?;
    let wrapped = base64::engine::general_purpose::STANDARD
        .decode(&header.key)
        .map_err(|_| BackupError::Format)?;
    let key = root
        .unwrap_key(&wrapped, &key_binding(&header))
        .map_err(|_| BackupError::WrongKeys)?;
    let ring = keyring_of(key);
    if dst.seal_config().await?.is_some() {
        return Err(BackupError::NotEmpty);
    }
    let mut counts = vec![0u64; TABLES.len()];
    let mut done = 0u64;
    // `seal_config` makes a store "hold a vault": it is written last, after the end frame checked
    // out, so a refused backup never leaves something that looks like a whole vault.
    let seal_idx = TABLES.iter().position(|t| t.name == "seal_config");
    let mut held: Vec<Vec<Cell>> = Vec::new();
    for n in 0u64.. {
        let mut head = [0u8; 9];
        if let Err(e) = r.read_exact(&mut head) {
            return Err(match e.kind() {
                std::io::ErrorKind::UnexpectedEof => BackupError::Incomplete,
                _ => e.into(),
            });
        }
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = head[8];
        if len > MAX_FRAME || kind > KIND_END {
            return Err(BackupError::Tampered(n));
        }
        let mut sealed = vec![0u8; len];
        r.read_exact(&mut sealed).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => BackupError::Incomplete,
            _ => e.into(),
        })?;
        let plain = ring
            .decrypt(&sealed, &frame_binding(header.id, n, kind))
            .map_err(|_| BackupError::Tampered(n))?;
        if kind == KIND_END {
            let end: Value =
                serde_json::from_slice(plain.expose()).map_err(|_| BackupError::Tampered(n))?;
            let want: Vec<u64> = end["rows"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let mut rest = [0u8; 1];
            if r.read(&mut rest)? != 0 {
                return Err(BackupError::Tampered(n + 1));
            }
            for (i, t) in TABLES.iter().enumerate() {
                let w = want.get(i).copied().unwrap_or(0);
                let got = if Some(i) == seal_idx {
                    held.len() as u64
                } else {
                    u64::try_from(dst.count_rows(t).await?).unwrap_or(0)
                };
                if w != counts[i] || w != got {
                    return Err(BackupError::Count {
                        table: t.name.into(),
                        want: w,
                        got,
                    });
                }
            }
            if let Some(i) = seal_idx {
                dst.import_rows(&TABLES[i], &held).await?;
            }
            break;
        }
        // Rows frame: consecutive rows of one table are imported together.
        let mut batch: Vec<Vec<Cell>> = Vec::new();
        let mut batch_table: Option<usize> = None;
        for line in plain
            .expose()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let v: Value = serde_json::from_slice(line).map_err(|_| BackupError::Tampered(n))?;
            let table = v[0]
                .as_u64()
                .map(|t| t as usize)
                .filter(|t| *t < TABLES.len());
            let (Some(table), Some(cells)) = (table, v[1].as_array()) else {
                return Err(BackupError::Tampered(n));
            };
            let spec = &TABLES[table];
            if cells.len() != spec.columns.len() {
                return Err(BackupError::Tampered(n));
            }
            let row = cells
                .iter()
                .zip(spec.columns)
                .map(|(c, (_, k))| cell_from(c, *k))
                .collect::<Option<Vec<Cell>>>()
                .ok_or(BackupError::Tampered(n))?;
            done += 1;
            if batch_table.is_some_and(|t| t != table) {
                let t = batch_table.unwrap_or(table);
                import(dst.as_ref(), t, seal_idx, &mut held, &mut batch).await?;
                counts[t] += batch.len() as u64;
                batch.clear();
            }
            batch_table = Some(table);
            batch.push(row);
        }
        if let Some(t) = batch_table {
            import(dst.as_ref(), t, seal_idx, &mut held, &mut batch).await?;
            counts[t] += batch.len() as u64;
        }
        progress(done, header.approx_rows);
    }
    // Verify with the restored keyring: the audit chain and every secret.
    let vault = Vault::new(dst.clone(), 1000, crate::Clock::system());
    vault.barrier.unseal_with(&root).await?;
    let audit = crate::audit::verify(dst.as_ref(), &vault.barrier).await?;
    if !audit.ok {
        return Err(BackupError::Verify(format!(
            "audit chain: {}",
            audit.message
        )));
    }
    let credentials_verified = vault
        .verify_all_secrets()
        .await
        .map_err(|e| BackupError::Verify(e.to_string()))?;
    vault.barrier.seal().await;
    Ok(RestoreReport {
        backup_id: header.id,
        created_at: header.created_at,
        tables: TABLES
            .iter()
            .zip(&counts)
            .map(|(t, c)| (t.name.to_owned(), *c))
            .collect(),
        credentials_verified,
        audit_records: audit.records,
    })
}
