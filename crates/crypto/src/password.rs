//! Argon2id hashing for human passwords and client secrets (PHC string format).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::CryptoError;

pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| CryptoError::PasswordHash)
}

/// True when `password` matches the stored PHC string. Malformed stored hashes verify as false.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// The characters of a generated password: letters, digits and punctuation that needs no quoting
/// in a shell, a URL's user-info or a connection string.
const GENERATED: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.!+=@";

/// A random password of `len` characters (at least 12) from a 64-character alphabet: at least one
/// upper-case letter, one lower-case letter, one digit and one punctuation mark. Each character is
/// drawn uniformly (6 bits each: 32 characters are 192 bits).
pub fn generate(len: usize) -> crate::SecretString {
    use argon2::password_hash::rand_core::RngCore;
    let len = len.max(12);
    loop {
        let mut raw = zeroize::Zeroizing::new(vec![0u8; len]);
        OsRng.fill_bytes(raw.as_mut());
        let mut out = zeroize::Zeroizing::new(String::with_capacity(len));
        for b in raw.iter() {
            // 64 characters: the low 6 bits pick one uniformly.
            out.push(char::from(GENERATED[usize::from(b & 63)]));
        }
        let has = |f: fn(&char) -> bool| out.chars().any(|c| f(&c));
        if has(char::is_ascii_uppercase)
            && has(char::is_ascii_lowercase)
            && has(char::is_ascii_digit)
            && has(char::is_ascii_punctuation)
        {
            return crate::SecretString::new(std::mem::take(&mut *out));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_mixed_and_different() {
        assert_eq!(GENERATED.len(), 64);
        let a = generate(32);
        let b = generate(32);
        assert_eq!(a.len(), 32);
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().chars().any(|c| c.is_ascii_digit()));
        assert!(a.expose().chars().all(|c| GENERATED.contains(&(c as u8))));
        assert_eq!(generate(3).len(), 12);
    }

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse").unwrap_or_default();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
