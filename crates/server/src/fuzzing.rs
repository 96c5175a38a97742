//! Entry points for the fuzzers in `fuzz/` (cargo fuzz): each runs one door's real decoding of
//! untrusted input, from bytes, exactly as the door does before anything reaches the service.
//! They must never panic, whatever the input; the unit test below runs each on awkward inputs so
//! CI keeps them compiling and sound. Not an API.

use axum::body::Bytes;
use credvault_core::model::{CredentialMeta, SecretPayload};
use credvault_core::{ccp, pam, validate};

/// The CCP door: the query string, then the request it names.
pub fn ccp_query(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pairs) = ccp::parse_query(q) {
        let _ = ccp::parse(&pairs);
    }
}

/// The native door: create and update bodies, then the checks a create runs.
pub fn native_body(data: &[u8]) {
    if let Ok(c) = serde_json::from_slice::<crate::native::credentials::CreateCredential>(data) {
        let (meta, payload) = c.into_parts();
        let _ = validate::credential(&meta, &payload);
    }
    if let Ok(u) = serde_json::from_slice::<crate::native::credentials::UpdateCredential>(data) {
        let mut meta = empty_meta();
        let mut payload = SecretPayload::default();
        u.apply(&mut meta, &mut payload);
        let _ = validate::credential(&meta, &payload);
    }
}

/// The Vault KV door: a write body (`data`, `options`, `versions`).
pub fn kv_body(data: &[u8]) {
    if let Ok(m) = crate::vaultkv::body_object(&Bytes::copy_from_slice(data)) {
        let _ = crate::vaultkv::string_data(m.get("data"));
        let _ = crate::vaultkv::versions_field(&m);
    }
}

/// The entity door: a parameters body.
pub fn entity_body(data: &[u8]) {
    if let Ok(v) = crate::entity::json_body(&Bytes::copy_from_slice(data)) {
        let _ = crate::entity::parameters(&v);
    }
}

/// The PAM A2A door: JSON or form body, then the create-or-update checks.
pub fn pam_body(data: &[u8]) {
    if let Ok((v, form)) = crate::pam::decode_body(Ok(Bytes::copy_from_slice(data))) {
        let _ = pam::parse_upsert(&v, form);
    }
}

/// The ciphertext decoder: header parsing and authenticated decryption of arbitrary bytes.
pub fn ciphertext(data: &[u8]) {
    let _ = credvault_crypto::barrier::parse_header(data);
    let mut ring = credvault_crypto::barrier::Keyring::new();
    if let Ok(k) = credvault_crypto::barrier::DataKey::from_bytes(&[7u8; 32]) {
        ring.insert(0, k.clone());
        ring.insert(1, k);
    }
    let _ = ring.decrypt(data, "credvault:cred:fuzz:v1");
}

fn empty_meta() -> CredentialMeta {
    CredentialMeta::named("n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_takes_awkward_input() {
        let inputs: Vec<Vec<u8>> = vec![
            vec![],
            b"{}".to_vec(),
            b"[]".to_vec(),
            b"{\"data\": {\"a\": 1}, \"versions\": [\"x\"]}".to_vec(),
            b"AppID=a&Query=Safe=s;Object=(.*)&Object=%zz".to_vec(),
            b"username=u&hostname=h&ip=i&execution_settings[x][y][z][w]=1".to_vec(),
            b"{\"name\": \"n\", \"secret\": \"s\", \"device\": {\"hostname\": 5}}".to_vec(),
            vec![0x01, 0, 0, 0, 1, 0xff, 0xfe],
            vec![0xff; 100],
            "{\"a\": \"\u{0}\u{7}ü\"}".as_bytes().to_vec(),
            format!("{}{}", "[".repeat(300), "]".repeat(300)).into_bytes(),
        ];
        for i in &inputs {
            ccp_query(i);
            native_body(i);
            kv_body(i);
            entity_body(i);
            pam_body(i);
            ciphertext(i);
        }
    }
}
