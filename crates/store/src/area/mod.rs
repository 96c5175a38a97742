//! The [`Store`](crate::Store) interface split by area: one sub-trait per file. A backend
//! implements each of them (the SQL backends in `src/sql/`, one file per area); `Store` is their
//! sum. Callers bring them into scope with `use credvault_store::prelude::*;`.

mod apps;
mod audit;
mod backend;
mod backup;
mod credentials;
mod identity;
mod integrations;
mod keyring;
mod pam;
mod pwchange;

pub use apps::AppStore;
pub use audit::AuditStore;
pub use backend::BackendStore;
pub use backup::BackupStore;
pub use credentials::CredentialStore;
pub use identity::IdentityStore;
pub use integrations::IntegrationStore;
pub use keyring::KeyringStore;
pub use pam::PamStore;
pub use pwchange::PasswordChangeStore;
