//! credvault's cryptography: everything that touches key material lives here.
//!
//! * [`secret`]: zeroizing secret types whose `Debug`/`Display` never print the value.
//! * [`barrier`]: the key hierarchy. A sealed root key wraps a keyring of numbered data keys
//!   ("terms"); values are `version ‖ term ‖ nonce ‖ XChaCha20-Poly1305 ciphertext` with
//!   associated data that binds them to where they are stored.
//! * [`shamir`]: splitting the root key into unseal shares and combining them again.
//! * [`token`]: API token generation, keyed hashing (HMAC-SHA-256) and constant-time compares.
//! * [`password`]: Argon2id for human passwords and client secrets.
//!
//! Nothing here does I/O; callers store the bytes.

pub mod barrier;
pub mod password;
pub mod secret;
pub mod shamir;
pub mod token;

pub use barrier::{DataKey, Keyring, RootKey, KEY_LEN};
pub use secret::{SecretBytes, SecretString};

/// Errors from the cryptographic layer. They never carry key material or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext uses unknown key term {0}")]
    UnknownTerm(u32),
    #[error("decryption failed: the data or its binding was tampered with, or the key is wrong")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("invalid unseal share: {0}")]
    InvalidShare(&'static str),
    #[error("invalid secret sharing parameters: {0}")]
    InvalidSharing(&'static str),
    #[error("password hashing failed")]
    PasswordHash,
}
