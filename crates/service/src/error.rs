//! The service layer's error. Each front door maps it to its own dialect (see `native::ApiError`).

use credvault_core::DomainError;
use credvault_crypto::CryptoError;
use credvault_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("credvault is sealed: unseal it with `credvault operator unseal` (or configure an unseal key file)")]
    Sealed,
    #[error("credvault is not initialised: run `credvault operator init`")]
    NotInitialized,
    #[error("{0}")]
    Unseal(String),
    #[error("too many failed authentication attempts from this address; try again later")]
    RateLimited,
    #[error("stored data failed its integrity check (tampered or corrupted)")]
    Integrity,
    #[error("the audit log could not be written, so the request was refused")]
    AuditFailed,
    #[error("version conflict: the credential is at version {current}")]
    VersionConflict { current: i64 },
    #[error("storage: {0}")]
    Store(StoreError),
    /// Free disk space is below the floor (`min_free_disk_mb`): writes are refused so the audit
    /// of reads keeps room (`disk.rs`).
    #[error(
        "free disk space is below the configured floor: writes are refused until space is freed"
    )]
    InsufficientStorage,
    /// An external vault an integration pulls from failed (down, refused, answered nonsense).
    #[error("{0}")]
    Integration(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(w) => ServiceError::Domain(DomainError::NotFound(w)),
            StoreError::Conflict(m) => ServiceError::Domain(DomainError::Conflict(m)),
            StoreError::VersionMismatch { current } => ServiceError::VersionConflict { current },
            StoreError::Corrupt(_) => ServiceError::Integrity,
            StoreError::Invalid(m) => ServiceError::Domain(DomainError::invalid("input", m)),
            StoreError::AuditFailed(m) => {
                tracing::error!(error = %m, "audit append failed; the write was not made");
                metrics::counter!("credvault_audit_failures_total").increment(1);
                ServiceError::AuditFailed
            }
            other => ServiceError::Store(other),
        }
    }
}

impl From<CryptoError> for ServiceError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::InvalidShare(m) => {
                ServiceError::Unseal(format!("invalid unseal key: {m}"))
            }
            CryptoError::InvalidSharing(m) => {
                ServiceError::Domain(DomainError::invalid("shares", m))
            }
            _ => ServiceError::Integrity,
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
