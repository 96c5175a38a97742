//! credvault's pure domain core: the credential model, validation rules and the access policy.
//!
//! No I/O, no async, no crypto beyond the secret types. Every front door maps its own dialect onto
//! these types, and the server's service layer enforces [`policy`] before touching the store.

pub mod app;
pub mod ccp;
pub mod error;
pub mod model;
pub mod pam;
pub mod policy;
pub mod validate;

pub use error::DomainError;
