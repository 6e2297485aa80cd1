//! The host interface, callable from plugin code.
//!
//! Inside a wasm component these call the gateway. Compiled natively (for `cargo test`), they
//! call the thread-local [`crate::testing::TestHost`], so plugin logic can be unit-tested
//! without a gateway.

use crate::{ApiKeyInfo, LogLevel, Price};

#[cfg(target_arch = "wasm32")]
use crate::bindings::common::tollgate::plugin::host as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::native as imp;

/// Writes a line to the gateway log, tagged with the plugin and request id.
pub fn log(level: LogLevel, message: &str) {
    imp::log(level, message)
}

/// The plugin's configuration as JSON text (`{}` when none was given).
pub fn config() -> String {
    imp::config()
}

/// The plugin's configuration parsed as JSON; an unparsable config yields `Value::Null`.
///
/// The host may change it between calls (a policy route's config, a reloaded policy), so it is
/// fetched on every call and parsed again only when its text changed.
pub fn config_json() -> serde_json::Value {
    #[cfg(target_arch = "wasm32")]
    {
        // Parsed once per distinct config: the host may hand a call another config (a policy
        // route's, or a reloaded policy's), so the cache is keyed by the text.
        static CONFIG: std::sync::Mutex<Option<(String, serde_json::Value)>> =
            std::sync::Mutex::new(None);
        let raw = config();
        let mut cache = CONFIG.lock().unwrap_or_else(|e| e.into_inner());
        match cache.as_ref() {
            Some((text, value)) if *text == raw => value.clone(),
            _ => {
                let value = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
                *cache = Some((raw, value.clone()));
                value
            }
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    parse_config()
}

#[cfg(not(target_arch = "wasm32"))]
fn parse_config() -> serde_json::Value {
    serde_json::from_str(&config()).unwrap_or(serde_json::Value::Null)
}

/// Adds `delta` to a plugin counter exported as a Prometheus metric.
pub fn counter_add(name: &str, delta: i64) {
    imp::counter_add(name, delta)
}

/// Reads from the shared key-value store.
pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    imp::kv_get(key)
}

/// Writes to the shared key-value store with a TTL in ms (0 = none).
pub fn kv_set(key: &str, value: &[u8], ttl_ms: u64) {
    imp::kv_set(key, value, ttl_ms)
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    imp::now_ms()
}

/// Logging stage: store this request and response content instead of what the record carried
/// (e.g. redacted). Used by the host only when the decision says `store_content`.
pub fn keep_content(request_body: &[u8], response_body: &[u8]) {
    imp::keep_content(request_body, response_body)
}

/// Keyed hash (HMAC-SHA256 with the server secret) of a presented API key.
pub fn hash_api_key(presented: &str) -> String {
    imp::hash_api_key(presented)
}

/// Looks up an API key by keyed hash.
pub fn lookup_api_key(key_hash: &str) -> Option<ApiKeyInfo> {
    imp::lookup_api_key(key_hash)
}

/// The org's spendable credit balance in micro-USD.
pub fn credit_balance(org_id: &str) -> Option<i64> {
    imp::credit_balance(org_id)
}

/// Catalogue price of a model at a provider.
pub fn model_price(provider: &str, model: &str) -> Option<Price> {
    imp::model_price(provider, model)
}
