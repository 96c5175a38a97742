//! The key hierarchy ("barrier", after OpenBao's term).
//!
//! ```text
//! unseal shares ──combine──▶ RootKey ──wraps──▶ Keyring { term 1, term 2, … } ──encrypts──▶ values
//! ```
//!
//! Every encrypted value has the layout
//! `VERSION (1 byte) ‖ term (u32 big-endian) ‖ nonce (24 bytes) ‖ ciphertext+tag`.
//! The AEAD is XChaCha20-Poly1305 with a fresh random 192-bit nonce per value, so no nonce counting is
//! needed. The associated data is the 5-byte header followed by the caller's binding string (for
//! example `cred:<id>:v<version>:secret`), so a ciphertext copied to another row, another version or
//! relabelled with another term fails to decrypt.

use std::collections::BTreeMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, SecretBytes};

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4;
/// Smallest possible value: header, nonce and the 16-byte tag of an empty plaintext.
const MIN_LEN: usize = HEADER_LEN + NONCE_LEN + 16;

/// 256 bits of key material, zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut k);
        Self(k)
    }
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; KEY_LEN] = b.try_into().map_err(|_| CryptoError::Malformed)?;
        Ok(Self(arr))
    }
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn seal(&self, term: u32, plaintext: &[u8], binding: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(MIN_LEN + plaintext.len());
        out.push(VERSION);
        out.extend_from_slice(&term.to_be_bytes());
        let aad = aad(&out, binding);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open(&self, blob: &[u8], binding: &[u8]) -> Result<SecretBytes, CryptoError> {
        let (header, rest) = blob.split_at(HEADER_LEN);
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let aad = aad(header, binding);
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map(SecretBytes::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(***)")
    }
}

fn aad(header: &[u8], binding: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(header.len() + binding.len());
    v.extend_from_slice(header);
    v.extend_from_slice(binding);
    v
}

/// Parse the header of a value: its format version and key term.
pub fn parse_header(blob: &[u8]) -> Result<u32, CryptoError> {
    if blob.len() < MIN_LEN || blob[0] != VERSION {
        return Err(CryptoError::Malformed);
    }
    let mut t = [0u8; 4];
    t.copy_from_slice(&blob[1..5]);
    Ok(u32::from_be_bytes(t))
}

/// The root key. It only ever wraps other keys; it never encrypts user data directly.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RootKey(DataKey);

impl RootKey {
    pub fn generate() -> Self {
        Self(DataKey::generate())
    }
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        DataKey::from_bytes(b).map(Self)
    }
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose()
    }
    /// Wrap key material (a data key, the audit or token key) under the root key.
    pub fn wrap(&self, key: &DataKey, binding: &str) -> Result<Vec<u8>, CryptoError> {
        self.0.seal(0, key.expose(), binding.as_bytes())
    }
    /// Unwrap key material. A wrong root key (bad unseal shares) fails here.
    pub fn unwrap_key(&self, blob: &[u8], binding: &str) -> Result<DataKey, CryptoError> {
        if parse_header(blob)? != 0 {
            return Err(CryptoError::Malformed);
        }
        let pt = self.0.open(blob, binding.as_bytes())?;
        DataKey::from_bytes(pt.expose())
    }
}

/// Numbered data keys. New values are encrypted with the newest (active) term; older terms stay
/// readable until their values have been rewrapped.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<u32, DataKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("terms", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, term: u32, key: DataKey) {
        self.keys.insert(term, key);
    }
    pub fn active_term(&self) -> Option<u32> {
        self.keys.keys().next_back().copied()
    }
    pub fn terms(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Encrypt with the active term, binding the value to `binding` (where it is stored).
    pub fn encrypt(&self, plaintext: &[u8], binding: &str) -> Result<Vec<u8>, CryptoError> {
        let (term, key) = self.keys.iter().next_back().ok_or(CryptoError::Encrypt)?;
        key.seal(*term, plaintext, binding.as_bytes())
    }

    /// Decrypt a value written by [`Keyring::encrypt`] with the same binding.
    pub fn decrypt(&self, blob: &[u8], binding: &str) -> Result<SecretBytes, CryptoError> {
        let term = parse_header(blob)?;
        let key = self.keys.get(&term).ok_or(CryptoError::UnknownTerm(term))?;
        key.open(blob, binding.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> Keyring {
        let mut r = Keyring::new();
        r.insert(1, DataKey::generate());
        r
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_uses_new_term() {
        let mut r = ring();
        let old = r.encrypt(b"old", "b").unwrap_or_default();
        r.insert(2, DataKey::generate());
        let new = r.encrypt(b"new", "b").unwrap_or_default();
        assert_eq!(parse_header(&old), Ok(1));
        assert_eq!(parse_header(&new), Ok(2));
        assert_eq!(
            r.decrypt(&old, "b").map(|p| p.expose().to_vec()),
            Ok(b"old".to_vec())
        );
        assert_eq!(
            r.decrypt(&new, "b").map(|p| p.expose().to_vec()),
            Ok(b"new".to_vec())
        );
    }

    #[test]
    fn unknown_term_and_garbage_are_errors_not_panics() {
        let r = ring();
        assert_eq!(r.decrypt(b"", "b").err(), Some(CryptoError::Malformed));
        assert_eq!(
            r.decrypt(&[1u8; 10], "b").err(),
            Some(CryptoError::Malformed)
        );
        let mut v = r.encrypt(b"x", "b").unwrap_or_default();
        v[4] = 9; // term 9
        assert_eq!(r.decrypt(&v, "b").err(), Some(CryptoError::UnknownTerm(9)));
    }

    #[test]
    fn wrong_root_key_cannot_unwrap() {
        let root = RootKey::generate();
        let dk = DataKey::generate();
        let w = root.wrap(&dk, "keyring:1").unwrap_or_default();
        assert_eq!(root.unwrap_key(&w, "keyring:1").ok(), Some(dk));
        let other = RootKey::generate();
        assert_eq!(
            other.unwrap_key(&w, "keyring:1").err(),
            Some(CryptoError::Decrypt)
        );
        assert_eq!(
            root.unwrap_key(&w, "keyring:2").err(),
            Some(CryptoError::Decrypt)
        );
    }

    proptest! {
        #[test]
        fn round_trip(pt in proptest::collection::vec(any::<u8>(), 0..512), binding in ".{0,40}") {
            let r = ring();
            let ct = r.encrypt(&pt, &binding).unwrap_or_default();
            prop_assert_eq!(r.decrypt(&ct, &binding).map(|p| p.expose().to_vec()), Ok(pt));
        }

        #[test]
        fn any_single_bit_flip_fails(pt in proptest::collection::vec(any::<u8>(), 0..128), bit in any::<proptest::sample::Index>()) {
            let r = ring();
            let mut ct = r.encrypt(&pt, "cred:1:v1").unwrap_or_default();
            let i = bit.index(ct.len() * 8);
            ct[i / 8] ^= 1 << (i % 8);
            prop_assert!(r.decrypt(&ct, "cred:1:v1").is_err());
        }

        #[test]
        fn another_binding_fails(pt in proptest::collection::vec(any::<u8>(), 0..128), a in "[a-z0-9:]{1,20}", b in "[a-z0-9:]{1,20}") {
            prop_assume!(a != b);
            let r = ring();
            let ct = r.encrypt(&pt, &a).unwrap_or_default();
            prop_assert_eq!(r.decrypt(&ct, &b).err(), Some(CryptoError::Decrypt));
        }
    }
}
