//! Responses API conversation state, encrypted at rest. State is kept only because a client
//! asked for it (`store: true`, for its TTL; never under retention mode `zero`), but it is
//! content: sealed with AES-256-GCM under a key derived from the server secret
//! (HMAC-SHA256(secret, label)), the org and response id as associated data (a ciphertext moved
//! to another org's row does not open). So a copy of the database (file, WAL, dump) holds no
//! conversation text under any mode except `retain-all`'s own content table.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Marks a sealed value (rows written before sealing existed are read as they are).
const PREFIX: &str = "tgenc1:";

/// The key sealing Responses state.
pub struct StateKey(Aes256Gcm);

impl StateKey {
    /// Derives the key from the server secret (the one API keys are hashed with).
    pub fn derive(secret: &[u8]) -> StateKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"tollgate responses-state v1");
        let bytes = mac.finalize().into_bytes();
        StateKey(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)))
    }

    fn aad(org_id: &str, id: &str) -> Vec<u8> {
        [org_id.as_bytes(), b"\0", id.as_bytes()].concat()
    }

    /// `text` sealed for the response `id` of `org_id`.
    pub fn seal(&self, org_id: &str, id: &str, text: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = Self::aad(org_id, id);
        match self.0.encrypt(
            &nonce,
            Payload {
                msg: text.as_bytes(),
                aad: &aad,
            },
        ) {
            Ok(ct) => format!(
                "{PREFIX}{}",
                STANDARD.encode([nonce.as_slice(), &ct].concat())
            ),
            // AES-GCM fails only past 64 GiB: an answer is capped far below that.
            Err(_) => unreachable!("AES-GCM encryption of a bounded message"),
        }
    }

    /// The text of a stored value: opened when sealed (None when it does not open — another
    /// org's or a tampered row), as it is when written before sealing.
    pub fn open(&self, org_id: &str, id: &str, stored: &str) -> Option<String> {
        let Some(b64) = stored.strip_prefix(PREFIX) else {
            return Some(stored.to_string());
        };
        let raw = STANDARD.decode(b64).ok()?;
        if raw.len() < 12 {
            return None;
        }
        let (nonce, ct) = raw.split_at(12);
        let aad = Self::aad(org_id, id);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_binds_to_org_and_id() {
        let k = StateKey::derive(b"secret");
        let sealed = k.seal("org_a", "resp_1", "MARKER text");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("MARKER"));
        assert_eq!(
            k.open("org_a", "resp_1", &sealed).as_deref(),
            Some("MARKER text")
        );
        assert_eq!(k.open("org_b", "resp_1", &sealed), None);
        assert_eq!(k.open("org_a", "resp_2", &sealed), None);
        assert_eq!(
            StateKey::derive(b"other").open("org_a", "resp_1", &sealed),
            None
        );
        assert_eq!(
            k.open("org_a", "resp_1", "[]").as_deref(),
            Some("[]"),
            "old rows read as they are"
        );
    }
}
