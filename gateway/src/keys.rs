//! API keys: generation and keyed hashing. Only the keyed hash and a visible prefix are ever
//! stored; the plaintext is shown once at creation.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `presented` under `secret`, hex-encoded.
pub fn keyed_hash(secret: &[u8], presented: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(presented.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hash_depends_on_secret_and_key() {
        let a = keyed_hash(b"s1", "tg-key");
        assert_eq!(a.len(), 64);
        assert_eq!(a, keyed_hash(b"s1", "tg-key"));
        assert_ne!(a, keyed_hash(b"s2", "tg-key"));
        assert_ne!(a, keyed_hash(b"s1", "tg-kez"));
    }
}
