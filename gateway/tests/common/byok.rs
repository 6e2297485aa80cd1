//! BYOK test helpers shared by `byok.rs` and `byok_cache_cli.rs`.
#![allow(dead_code)]

use tollgate::byok::{new_credential_id, ByokSettings, MasterKey, Sealed};
use tollgate::store::Store;

pub fn master(byte: u8) -> MasterKey {
    MasterKey::from_bytes(&[byte; 32])
}

pub fn settings() -> ByokSettings {
    ByokSettings {
        // An env var nobody sets, so only what the test passes counts.
        master_key_env: "TOLLGATE_TEST_BYOK_UNSET".into(),
        ..ByokSettings::default()
    }
}

/// Seals `secret` for a fresh row and stores it.
pub async fn put(store: &Store, m: &MasterKey, org: &str, provider: &str, secret: &str) -> Sealed {
    let sealed = m.seal(org, provider, &new_credential_id(), secret).unwrap();
    store
        .put_provider_key(org, provider, "label", &sealed)
        .await
        .unwrap();
    sealed
}

/// A second connection to the test database, for what the store API does not offer (an
/// attacker's edit, a raw scan).
pub async fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::AnyPool::connect(url).await.unwrap()
}
