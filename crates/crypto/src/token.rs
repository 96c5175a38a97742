//! API tokens: 256 random bits with an identifiable prefix, stored only as a keyed hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{DataKey, SecretString};

/// Every credvault token starts with this, so leaked tokens are easy to find by secret scanners.
pub const TOKEN_PREFIX: &str = "cvt_";

/// A new random token: `cvt_` + 43 base64url characters (256 bits).
pub fn generate_token() -> SecretString {
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(b.as_mut());
    SecretString::new(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(b.as_ref())
    ))
}

/// Random bytes as base64url text (for ids of app secrets and similar).
pub fn random_b64(n: usize) -> SecretString {
    let mut b = zeroize::Zeroizing::new(vec![0u8; n]);
    OsRng.fill_bytes(b.as_mut());
    SecretString::new(URL_SAFE_NO_PAD.encode(b.as_slice()))
}

/// Keyed hashing of tokens and audit records. The key lives in the sealed keyring, so a copy of the
/// database alone lets nobody test token guesses or rewrite the audit chain.
#[derive(Clone, Debug)]
pub struct Hasher {
    key: DataKey,
}

impl Hasher {
    pub fn new(key: DataKey) -> Self {
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        match Hmac::<Sha256>::new_from_slice(self.key.expose()) {
            Ok(m) => m,
            Err(_) => unreachable_mac(),
        }
    }

    /// The stored form of a token: hex HMAC-SHA-256.
    pub fn token_hash(&self, token: &str) -> String {
        let mut m = self.mac();
        m.update(b"credvault-token-v1\0");
        m.update(token.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// The stored form of an application's shared header secret (its own domain, so it can never
    /// be confused with a token hash).
    pub fn app_secret_hash(&self, secret: &str) -> String {
        let mut m = self.mac();
        m.update(b"credvault-app-secret-v1\0");
        m.update(secret.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// One link of the audit hash chain: HMAC(prev ‖ record).
    pub fn chain(&self, prev: &[u8], record: &[u8]) -> [u8; 32] {
        let mut m = self.mac();
        m.update(b"credvault-audit-v1\0");
        m.update(&(prev.len() as u64).to_be_bytes());
        m.update(prev);
        m.update(record);
        m.finalize().into_bytes().into()
    }
}

#[allow(clippy::panic)]
fn unreachable_mac() -> ! {
    // Hmac::new_from_slice only fails for fixed-size-key MACs; HMAC has none.
    unreachable!("HMAC accepts any key length")
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hash_stably() {
        let a = generate_token();
        let b = generate_token();
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 43);
        assert_ne!(a.expose(), b.expose());
        let h = Hasher::new(DataKey::generate());
        assert_eq!(h.token_hash(a.expose()), h.token_hash(a.expose()));
        assert_ne!(h.token_hash(a.expose()), h.token_hash(b.expose()));
        let h2 = Hasher::new(DataKey::generate());
        assert_ne!(h.token_hash(a.expose()), h2.token_hash(a.expose()));
        assert!(!h.token_hash(a.expose()).contains(&a.expose()[4..]));
        assert_ne!(
            h.app_secret_hash(a.expose()),
            h.token_hash(a.expose()),
            "separate domains"
        );
    }

    #[test]
    fn chain_depends_on_every_input() {
        let h = Hasher::new(DataKey::generate());
        let x = h.chain(b"p", b"r");
        assert_ne!(x, h.chain(b"q", b"r"));
        assert_ne!(x, h.chain(b"p", b"s"));
        assert_ne!(h.chain(b"pr", b""), h.chain(b"p", b"r"));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
