//! The Vault KV v2 operations in the service layer. A mount is a safe; the secret at `path` is the
//! credential with identifier `kv:<mount>/<path>` in that safe (name = last segment, folder = the
//! directories); its key/value data is the payload's `parameters`; KV versions are credential
//! versions. What Vault keeps and the credential model does not (max_versions, cas_required,
//! custom_metadata, per-version deletion and destruction) lives in `kv_meta` as JSON ([`KvMeta`]).

use std::collections::BTreeMap;

use credvault_core::model::{Credential, CredentialMeta, Perms, SecretPayload, VersionInfo};
use credvault_core::validate::Reserved;
use credvault_core::DomainError;
use credvault_crypto::SecretString;
use credvault_store::{CredentialFilter, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::error::{ServiceError, ServiceResult};
use crate::vault::Found;
use crate::{Ctx, Vault};

/// The KV door's name in `Ctx::door` (owns the `kv:` identifier prefix).
pub const DOOR: &str = "vaultkv";
const MAX_PATH: usize = 512;

/// Per-secret KV state beside the credential.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KvMeta {
    #[serde(default)]
    pub max_versions: u32,
    #[serde(default)]
    pub cas_required: bool,
    #[serde(default)]
    pub custom_metadata: Option<BTreeMap<String, String>>,
    /// Soft-deleted versions and when.
    #[serde(default)]
    pub deleted: BTreeMap<i64, String>,
    #[serde(default)]
    pub destroyed: Vec<i64>,
}

/// One version as a KV read answers it. `data` is `None` when deleted or destroyed.
pub struct KvRead {
    pub version: i64,
    pub created_time: OffsetDateTime,
    pub deletion_time: Option<String>,
    pub destroyed: bool,
    pub custom_metadata: Option<BTreeMap<String, String>>,
    pub data: Option<BTreeMap<String, SecretString>>,
}

/// A secret's metadata as `GET metadata/<path>` answers it.
pub struct KvMetadata {
    pub cred: Credential,
    pub meta: KvMeta,
    pub versions: Vec<VersionInfo>,
}

/// Why a KV write was refused beyond the service's own errors.
pub const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";
pub const CAS_REQUIRED: &str = "check-and-set parameter required for this call";

pub fn identifier(mount: &str, path: &str) -> String {
    Reserved::Kv.identifier(&format!("{mount}/{path}"))
}

/// Check a secret path: non-empty segments, no `.`/`..`, bounded.
pub fn check_path(path: &str) -> ServiceResult<()> {
    if path.is_empty()
        || path.len() > MAX_PATH
        || path.split('/').any(|seg| {
            seg.is_empty() || seg == "." || seg == ".." || seg.chars().any(char::is_control)
        })
    {
        return Err(DomainError::invalid("path", "is not a valid secret path").into());
    }
    Ok(())
}

fn not_found() -> ServiceError {
    DomainError::NotFound("secret".into()).into()
}

fn invalid(msg: &str) -> ServiceError {
    DomainError::invalid("request", msg).into()
}

impl Vault {
    /// The caller's permissions on a mount; a mount that does not exist is "permission denied", as
    /// for a mount the caller cannot see (no existence probing).
    async fn kv_perms(&self, ctx: &Ctx, mount: &str) -> ServiceResult<Perms> {
        match self.safe_perms(&ctx.actor, mount).await {
            Ok(p) if p != Perms::NONE => Ok(p),
            Ok(_) | Err(ServiceError::Domain(DomainError::NotFound(_))) => {
                Err(DomainError::Forbidden.into())
            }
            Err(e) => Err(e),
        }
    }

    async fn kv_require(&self, ctx: &Ctx, mount: &str, need: Perms) -> ServiceResult<()> {
        if self.kv_perms(ctx, mount).await?.contains(need) {
            Ok(())
        } else {
            Err(DomainError::Forbidden.into())
        }
    }

    /// The secret at `path`, its KV state, and that state's stored text (to replace it only if
    /// nobody changed it meanwhile).
    async fn kv_find(
        &self,
        mount: &str,
        path: &str,
    ) -> ServiceResult<Option<(Credential, KvMeta, Option<String>)>> {
        check_path(path)?;
        let Some(cred) = self
            .store
            .credential_by_identifier(&identifier(mount, path))
            .await?
        else {
            return Ok(None);
        };
        let raw = self.store.kv_meta(cred.id).await?;
        let meta = match &raw {
            Some(m) => serde_json::from_str(m).map_err(|_| ServiceError::Integrity)?,
            None => KvMeta::default(),
        };
        Ok(Some((cred, meta, raw)))
    }

    /// A read-modify-write of a secret's KV state with its audit record: `change` edits the state
    /// (and names versions to destroy); the store replaces it only if nobody changed it since it
    /// was read, else it is read and changed again. `None` when the path holds no secret.
    async fn kv_change(
        &self,
        ctx: &Ctx,
        mount: &str,
        path: &str,
        action: &'static str,
        change: impl Fn(&Credential, &mut KvMeta) -> ServiceResult<Vec<i64>>,
    ) -> ServiceResult<Option<()>> {
        for _ in 0..16 {
            let Some((cred, mut meta, raw)) = self.kv_find(mount, path).await? else {
                return Ok(None);
            };
            let destroy = change(&cred, &mut meta)?;
            let text = serde_json::to_string(&meta).map_err(|_| ServiceError::Integrity)?;
            let audit = self
                .write_audit(ctx, action, cred.id.to_string(), json!({"path": path}))
                .await?;
            match self
                .store
                .set_kv_meta(cred.id, raw.as_deref(), &text, &destroy, &audit.append())
                .await
            {
                Ok(()) => return Ok(Some(())),
                Err(StoreError::VersionMismatch { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::Conflict(
            "the secret's metadata is being changed concurrently; try again".into(),
        )
        .into())
    }

    /// Read the latest or a given version. Deleted and destroyed versions come back without data.
    pub async fn kv_read(
        &self,
        ctx: &Ctx,
        mount: &str,
        path: &str,
        version: Option<i64>,
    ) -> ServiceResult<KvRead> {
        self.kv_require(ctx, mount, Perms::READ).await?;
        check_path(path)?;
        let entry = self
            .kv_entry(&identifier(mount, path))
            .await?
            .ok_or_else(not_found)?;
        let meta: KvMeta = match &entry.raw_meta {
            Some(m) => serde_json::from_str(m).map_err(|_| ServiceError::Integrity)?,
            None => KvMeta::default(),
        };
        let cred = &entry.cred;
        let v = match version {
            Some(v) if v > 0 => v,
            _ => cred.version,
        };
        let info = entry
            .versions
            .iter()
            .find(|i| i.version == v)
            .ok_or_else(not_found)?;
        let mut out = KvRead {
            version: v,
            created_time: info.created_at,
            deletion_time: meta.deleted.get(&v).cloned(),
            destroyed: meta.destroyed.contains(&v),
            custom_metadata: meta.custom_metadata.clone(),
            data: None,
        };
        if out.deletion_time.is_none() && !out.destroyed {
            let read = match v == cred.version {
                // The current version's payload came with the entry (no store read).
                true => {
                    let found = Found {
                        cred: cred.clone(),
                        version: v,
                        blob: entry.payload.clone(),
                        latest: false,
                    };
                    self.read_found(ctx, found).await?
                }
                false => self.read_secret(ctx, cred.id, Some(v)).await?,
            };
            out.data = Some(read.parameters);
        }
        Ok(out)
    }

    /// Write a new version (creating the secret when needed), honouring check-and-set.
    pub async fn kv_write(
        &self,
        ctx: &Ctx,
        mount: &str,
        path: &str,
        data: BTreeMap<String, SecretString>,
        cas: Option<i64>,
    ) -> ServiceResult<KvRead> {
        self.kv_require(ctx, mount, Perms::WRITE).await?;
        let payload = SecretPayload {
            secret: SecretString::default(),
            parameters: data,
        };
        // Two rounds at most: a create that loses a race with another writer becomes an update.
        let mut written = None;
        for _ in 0..2 {
            if let Some((cur, meta, _)) = self.kv_find(mount, path).await? {
                if meta.cas_required && cas.is_none() {
                    return Err(invalid(CAS_REQUIRED));
                }
                if cas.is_some_and(|c| c != cur.version) {
                    return Err(invalid(CAS_MISMATCH));
                }
                let p = payload.clone();
                let r = self
                    .update_credential(ctx, cur.id, cas, "kv.write", move |_, pl| {
                        *pl = p.clone();
                        Ok(())
                    })
                    .await;
                written = Some(match r {
                    Err(ServiceError::VersionConflict { .. }) => return Err(invalid(CAS_MISMATCH)),
                    other => other?,
                });
                break;
            }
            if cas.is_some_and(|c| c != 0) {
                return Err(invalid(CAS_MISMATCH));
            }
            let (folder, name) = match path.rsplit_once('/') {
                Some((f, n)) => (Some(f.to_owned()), n.to_owned()),
                None => (None, path.to_owned()),
            };
            let meta = CredentialMeta {
                identifier: Some(identifier(mount, path)),
                safe: Some(mount.to_owned()),
                folder,
                ..CredentialMeta::named(name)
            };
            match self.create_credential(ctx, meta, payload.clone()).await {
                Ok(c) => {
                    written = Some(c);
                    break;
                }
                Err(ServiceError::Domain(DomainError::Conflict(_))) if cas.is_none() => continue,
                Err(ServiceError::Domain(DomainError::Conflict(_))) => {
                    return Err(invalid(CAS_MISMATCH))
                }
                Err(e) => return Err(e),
            }
        }
        let cred = written
            .ok_or_else(|| invalid("the secret is being written concurrently; write again"))?;
        Ok(KvRead {
            version: cred.version,
            created_time: cred.updated_at,
            deletion_time: None,
            destroyed: false,
            custom_metadata: None,
            data: None,
        })
    }

    /// The latest version's data, for PATCH (merge) and for fetch-style callers. 404 when the latest
    /// version is deleted or destroyed.
    pub async fn kv_current_data(
        &self,
        ctx: &Ctx,
        mount: &str,
        path: &str,
    ) -> ServiceResult<(i64, BTreeMap<String, SecretString>)> {
        let r = self.kv_read(ctx, mount, path, None).await?;
        Ok((r.version, r.data.ok_or_else(not_found)?))
    }

    /// The immediate children of a folder: secret names and `dir/` entries.
    pub async fn kv_list(
        &self,
        ctx: &Ctx,
        mount: &str,
        folder: &str,
    ) -> ServiceResult<Vec<String>> {
        self.kv_require(ctx, mount, Perms::LIST).await?;
        let prefix = identifier(mount, folder.trim_matches('/'));
        let prefix = if folder.trim_matches('/').is_empty() {
            prefix
        } else {
            format!("{prefix}/")
        };
        let mut keys = std::collections::BTreeSet::new();
        let mut after = None;
        loop {
            // The caller's own listing (its visibility), never the store's whole safe.
            let page = self
                .list_credentials(
                    ctx,
                    CredentialFilter {
                        safe: Some(mount.to_owned()),
                        // Only the folder's descendants, through the identifier index: a folder of
                        // 10 keys costs the same in a mount of 1,000 or 1,000,000 (issue 15).
                        identifier_prefix: Some(prefix.clone()),
                        after,
                        limit: 1000,
                        ..CredentialFilter::default()
                    },
                )
                .await?;
            after = page.last().map(|c| c.id);
            for c in &page {
                if let Some(rest) = c
                    .meta
                    .identifier
                    .as_deref()
                    .and_then(|i| i.strip_prefix(&prefix))
                {
                    match rest.split_once('/') {
                        Some((dir, _)) => keys.insert(format!("{dir}/")),
                        None => keys.insert(rest.to_owned()),
                    };
                }
            }
            if page.len() < 1000 {
                break;
            }
        }
        if keys.is_empty() {
            return Err(not_found());
        }
        Ok(keys.into_iter().collect())
    }

    pub async fn kv_metadata(
        &self,
        ctx: &Ctx,
        mount: &str,
        path: &str,
    ) -> ServiceResult<KvMetadata> {
        self.kv_require(ctx, mount, Perms::LIST).await?;
        let (cred, meta, _) = self.kv_find(mount, path).await?.ok_or_else(not_found)?;
        let versions = self.store.list_versions(cred.id).await?;
        Ok(KvMetadata {
            cred,
            meta,
            versions,
        })
    }

    /// Set max_versions, cas_required and custom_metadata (each only when given).
    pub async fn kv_set_metadata(
        &self,
        ctx: &Ctx,
        mount: &str,
        path: &str,
        max_versions: Option<u32>,
        cas_required: Option<bool>,
        custom_metadata: Option<BTreeMap<String, String>>,
    ) -> ServiceResult<()> {
        self.kv_require(ctx, mount, Perms::WRITE).await?;
        if let Some(cm) = &custom_metadata {
            if cm.len() > 64 || cm.iter().any(|(k, v)| k.len() > 128 || v.len() > 512) {
                return Err(invalid(
                    "custom_metadata: at most 64 keys of 128 bytes, values of 512",
                ));
            }
        }
        self.kv_change(ctx, mount, path, "kv.metadata", |_, meta| {
            if let Some(m) = max_versions {
                meta.max_versions = m;
            }
            if let Some(c) = cas_required {
                meta.cas_required = c;
            }
            if let Some(cm) = &custom_metadata {
                meta.custom_metadata = Some(cm.clone());
            }
            Ok(vec![])
        })
        .await?
        .ok_or_else(not_found)
    }

    /// Soft-delete (`Delete`), undelete or destroy versions; `None` = the latest version.
    pub async fn kv_versions_op(
        &self,
        ctx: &Ctx,
        mount: &str,
        path: &str,
        op: VersionOp,
        versions: Option<Vec<i64>>,
    ) -> ServiceResult<()> {
        self.kv_require(ctx, mount, Perms::WRITE).await?;
        let Some((cred, _, _)) = self.kv_find(mount, path).await? else {
            // Vault answers 204 for versions of a path that does not exist.
            return Ok(());
        };
        let existing: Vec<i64> = self
            .store
            .list_versions(cred.id)
            .await?
            .iter()
            .map(|v| v.version)
            .collect();
        let now = credvault_store::format_time(self.clock.now());
        let changed = self
            .kv_change(ctx, mount, path, op.action(), |cred, meta| {
                let asked = versions.clone().unwrap_or_else(|| vec![cred.version]);
                let mut destroy = vec![];
                for v in asked.into_iter().filter(|v| existing.contains(v)) {
                    match op {
                        VersionOp::Delete => {
                            meta.deleted.entry(v).or_insert_with(|| now.clone());
                        }
                        VersionOp::Undelete => {
                            if !meta.destroyed.contains(&v) {
                                meta.deleted.remove(&v);
                            }
                        }
                        VersionOp::Destroy => {
                            destroy.push(v);
                            if !meta.destroyed.contains(&v) {
                                meta.destroyed.push(v);
                            }
                        }
                    }
                }
                Ok(destroy)
            })
            .await?;
        // Removed meanwhile: as for a path that does not exist.
        let _ = changed;
        Ok(())
    }

    /// Remove the secret with every version and its metadata.
    pub async fn kv_delete_all(&self, ctx: &Ctx, mount: &str, path: &str) -> ServiceResult<()> {
        self.kv_require(ctx, mount, Perms::WRITE).await?;
        match self.kv_find(mount, path).await? {
            Some((cred, _, _)) => self.delete_credential(ctx, cred.id).await,
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum VersionOp {
    Delete,
    Undelete,
    Destroy,
}

impl VersionOp {
    fn action(self) -> &'static str {
        match self {
            VersionOp::Delete => "kv.delete",
            VersionOp::Undelete => "kv.undelete",
            VersionOp::Destroy => "kv.destroy",
        }
    }
}
