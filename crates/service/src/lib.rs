//! The vault's one core path. Every door (in `credvault-server`) calls these operations; none of
//! them reaches the store, the keyring, the audit log or the caches except through here, because
//! [`Vault`]'s state is private to this crate.
//!
//! ```text
//! door: dialect → lookup request ─▶ Vault: lookup → authorise (credvault_core::policy)
//!                                    → decrypt/encrypt (barrier.rs) → store + audit (one transaction
//!                                    for a write; audit.rs) → caches (cache.rs)
//! ```
//!
//! Modules by concern: credentials and identities (`vault.rs`), applications and the CCP read
//! (`apps.rs`), PAM A2A rules, devices and domains (`pam.rs`), the Vault-KV mapping (`kv.rs`),
//! entity credentials (`entity.rs`), fetch-credentials (`fetch.rs`), integrations (`integrations.rs`),
//! the seal and keys (`barrier.rs`, `rotation.rs`), audit (`audit.rs`), authentication (`auth.rs`),
//! automatic password change on target systems (`pwchange.rs`, plugins in
//! `credvault_connectors::change`), backup (`backup.rs`), health: the store's circuit, write
//! outcomes and the background probe (`health.rs`), repeated refusals summarised (`refusals.rs`),
//! disk space and its floor (`disk.rs`), audit archives (`archive.rs`) and sinks (`audit_sink.rs`).

pub mod apps;
pub mod archive;
pub mod audit;
pub mod audit_sink;
pub mod auth;
pub mod backup;
pub mod barrier;
mod cache;
mod clock;
pub mod disk;
pub mod entity;
pub mod error;
pub mod fetch;
pub mod health;
mod identity;
pub mod integrations;
pub mod kv;
pub mod pam;
pub mod pwchange;
mod refusals;
pub mod rotation;
mod system;
mod vault;

pub use clock::Clock;
pub use vault::{Ctx, SecretRead, Vault};
