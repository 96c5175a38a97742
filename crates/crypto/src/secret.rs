//! Secret-holding types. The value is zeroized on drop and never printed by `Debug` or `Display`.
//! Reading it requires an explicit `expose()` call, which is easy to grep for in review.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

const REDACTED: &str = "***";

/// A secret UTF-8 string (a password, a parameter value, a token).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }
    /// The secret value. Never log what this returns.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}
impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self::new(s.to_owned())
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}
impl std::fmt::Display for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Serialising a secret writes the real value: it is how a secret read returns it. Types that carry
/// secrets are only serialised into responses of explicit secret-read calls and into encrypted blobs.
impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}
impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// Secret bytes (key material, decrypted plaintext).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(v: Vec<u8>) -> Self {
        Self(Zeroizing::new(v))
    }
    /// The secret bytes. Never log what this returns.
    pub fn expose(&self) -> &[u8] {
        self.0.as_slice()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({REDACTED}, {} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = SecretString::from("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        let b = SecretBytes::new(b"hunter2".to_vec());
        assert!(!format!("{b:?}").contains("hunter2"));
        assert!(!format!("{b:?}").contains("104")); // no byte values either
    }

    #[test]
    fn serde_round_trip_keeps_the_value() {
        let s = SecretString::from("p@ss");
        let j = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(j, "\"p@ss\"");
        let back: SecretString = serde_json::from_str(&j).unwrap_or_default();
        assert_eq!(back.expose(), "p@ss");
    }
}
