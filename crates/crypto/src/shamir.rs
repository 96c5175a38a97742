//! Splitting the root key into unseal shares (Shamir's secret sharing over GF(2^8), from `vsss-rs`,
//! whose field arithmetic is constant-time) and combining them again.
//!
//! A share is printed as lowercase hex: one identifier byte followed by one byte per key byte.
//! Shares carry no integrity: a wrong share recombines to a wrong key, which the caller detects
//! because the wrong key cannot unwrap the keyring (AEAD failure).

use rand_core::OsRng;
use vsss_rs::Gf256;
use zeroize::Zeroizing;

use crate::{CryptoError, RootKey, KEY_LEN};

/// Split `root` into `shares` shares of which any `threshold` recover it.
pub fn split(
    root: &RootKey,
    shares: u8,
    threshold: u8,
) -> Result<Vec<Zeroizing<String>>, CryptoError> {
    if threshold < 1 || shares < threshold {
        return Err(CryptoError::InvalidSharing("need 1 <= threshold <= shares"));
    }
    if threshold == 1 {
        // Shamir with threshold 1 is the key itself; say so instead of pretending.
        if shares != 1 {
            return Err(CryptoError::InvalidSharing(
                "threshold 1 requires exactly 1 share",
            ));
        }
        let mut s = vec![1u8];
        s.extend_from_slice(root.expose());
        return Ok(vec![Zeroizing::new(hex::encode(Zeroizing::new(s)))]);
    }
    let parts = Gf256::split_array(threshold as usize, shares as usize, root.expose(), OsRng)
        .map_err(|_| CryptoError::InvalidSharing("split failed"))?;
    Ok(parts
        .into_iter()
        .map(|p| Zeroizing::new(hex::encode(Zeroizing::new(p))))
        .collect())
}

/// Decode one printed share. Checks its shape only; whether it is right shows when combining.
pub fn decode_share(s: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let bytes =
        Zeroizing::new(hex::decode(s.trim()).map_err(|_| CryptoError::InvalidShare("not hex"))?);
    if bytes.len() != KEY_LEN + 1 {
        return Err(CryptoError::InvalidShare("wrong length"));
    }
    if bytes[0] == 0 {
        return Err(CryptoError::InvalidShare("identifier 0 is not a share"));
    }
    Ok(bytes)
}

/// Combine decoded shares into a candidate root key.
pub fn combine(shares: &[Zeroizing<Vec<u8>>]) -> Result<RootKey, CryptoError> {
    match shares {
        [] => Err(CryptoError::InvalidShare("no shares")),
        [one] => RootKey::from_bytes(&one[1..]),
        _ => {
            let mut ids: Vec<u8> = shares.iter().map(|s| s[0]).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() != shares.len() {
                return Err(CryptoError::InvalidShare("the same share was given twice"));
            }
            let v: Vec<Vec<u8>> = shares.iter().map(|s| s.to_vec()).collect();
            let out =
                Gf256::combine_array(&v).map_err(|_| CryptoError::InvalidShare("cannot combine"));
            for mut s in v {
                zeroize::Zeroize::zeroize(&mut s);
            }
            let key = Zeroizing::new(out?);
            RootKey::from_bytes(&key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(v: &[Zeroizing<String>]) -> Vec<Zeroizing<Vec<u8>>> {
        v.iter().filter_map(|s| decode_share(s).ok()).collect()
    }

    #[test]
    fn any_threshold_subset_recovers_fewer_do_not() {
        let root = RootKey::generate();
        let shares = split(&root, 5, 3).unwrap_or_default();
        assert_eq!(shares.len(), 5);
        let d = dec(&shares);
        for (a, b, c) in [(0, 1, 2), (0, 2, 4), (4, 3, 1)] {
            let k = combine(&[d[a].clone(), d[b].clone(), d[c].clone()]);
            assert_eq!(k.ok(), Some(root.clone()));
        }
        let two = combine(&[d[0].clone(), d[1].clone()]);
        assert_ne!(two.ok(), Some(root.clone()));
    }

    #[test]
    fn single_key_and_bad_input() {
        let root = RootKey::generate();
        let one = split(&root, 1, 1).unwrap_or_default();
        assert_eq!(combine(&dec(&one)).ok(), Some(root.clone()));
        assert!(split(&root, 2, 3).is_err());
        assert!(split(&root, 3, 0).is_err());
        assert!(decode_share("zz").is_err());
        assert!(decode_share("0102").is_err());
        let shares = split(&root, 3, 2).unwrap_or_default();
        let d = dec(&shares);
        assert!(combine(&[d[0].clone(), d[0].clone()]).is_err());
    }
}
