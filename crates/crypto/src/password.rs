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

/// The shortest and longest generated password.
pub const MIN_GENERATED: usize = 12;
pub const MAX_GENERATED: usize = 128;

/// A random password of `len` characters (12 to 128) from a 64-character alphabet: at least one
/// upper-case letter, one lower-case letter, one digit and one punctuation mark. Each character is
/// drawn uniformly (6 bits each: 32 characters are 192 bits).
pub fn generate(len: usize) -> crate::SecretString {
    draw(GENERATED, len)
}

/// Check password rules: a length from 12 to 128, and characters to avoid that still leave each
/// class (upper case, lower case, digit, punctuation) at least one character. The error says which.
pub fn check_rules(len: usize, avoid: &str) -> Result<(), String> {
    if !(MIN_GENERATED..=MAX_GENERATED).contains(&len) {
        return Err(format!(
            "the length must be from {MIN_GENERATED} to {MAX_GENERATED}"
        ));
    }
    let left: Vec<u8> = GENERATED
        .iter()
        .copied()
        .filter(|c| !avoid.contains(char::from(*c)))
        .collect();
    type Class = (&'static str, fn(&u8) -> bool);
    let classes: [Class; 4] = [
        ("upper-case letter", u8::is_ascii_uppercase),
        ("lower-case letter", u8::is_ascii_lowercase),
        ("digit", u8::is_ascii_digit),
        ("punctuation mark", u8::is_ascii_punctuation),
    ];
    for (name, f) in classes {
        if !left.iter().any(f) {
            return Err(format!("the characters to avoid leave no {name}"));
        }
    }
    Ok(())
}

/// A random password of `len` characters from the alphabet of [`generate`] without the characters
/// of `avoid` (rules checked by [`check_rules`]).
pub fn generate_with(len: usize, avoid: &str) -> Result<crate::SecretString, String> {
    check_rules(len, avoid)?;
    let alphabet: Vec<u8> = GENERATED
        .iter()
        .copied()
        .filter(|c| !avoid.contains(char::from(*c)))
        .collect();
    Ok(draw(&alphabet, len))
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 characters, each class present),
/// until each class occurs.
fn draw(alphabet: &[u8], len: usize) -> crate::SecretString {
    use argon2::password_hash::rand_core::RngCore;
    let len = len.clamp(MIN_GENERATED, MAX_GENERATED);
    let n = alphabet.len().clamp(1, 256);
    // Bytes at or above `limit` are drawn again, so every character is equally likely.
    let limit = 256 - 256 % n;
    loop {
        let mut out = zeroize::Zeroizing::new(String::with_capacity(len));
        let mut raw = zeroize::Zeroizing::new([0u8; 64]);
        while out.len() < len {
            OsRng.fill_bytes(raw.as_mut());
            for b in raw.iter().map(|b| usize::from(*b)) {
                match alphabet.get(b % n) {
                    Some(c) if b < limit && out.len() < len => out.push(char::from(*c)),
                    _ => {}
                }
            }
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
    fn rules_set_the_length_and_the_characters_to_avoid() {
        let p = generate_with(48, "aeiouAEIOU0-_").unwrap();
        assert_eq!(p.len(), 48);
        assert!(!p.expose().chars().any(|c| "aeiouAEIOU0-_".contains(c)));
        assert!(check_rules(11, "").is_err());
        assert!(check_rules(129, "").is_err());
        let e = check_rules(20, "23456789").unwrap_err();
        assert!(e.contains("digit"), "{e}");
        assert!(generate_with(20, "-_.!+=@").is_err());
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
