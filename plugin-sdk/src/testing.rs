//! A native stand-in for the gateway's host interface, for unit tests of plugin logic.
//!
//! State is thread-local: each test sets up what it needs with [`TestHost::install`] and reads
//! back what the plugin did (logs, counters, kv) with [`TestHost::with`].

use std::cell::RefCell;
use std::collections::HashMap;

use crate::{ApiKeyInfo, LogLevel, Price};

/// What a test host knows and what plugins did to it.
#[derive(Default, Clone)]
pub struct TestHost {
    pub config: String,
    pub now_ms: u64,
    pub kv: HashMap<String, Vec<u8>>,
    pub keys_by_hash: HashMap<String, ApiKeyInfo>,
    pub balances: HashMap<String, i64>,
    pub prices: HashMap<(String, String), Price>,
    pub counters: HashMap<String, i64>,
    pub logs: Vec<(LogLevel, String)>,
    /// The last content a logging plugin asked to keep (`host::keep_content`).
    pub kept_content: Option<(Vec<u8>, Vec<u8>)>,
}

thread_local! {
    static HOST: RefCell<TestHost> = RefCell::new(TestHost::default());
}

impl TestHost {
    /// Replaces this thread's test host.
    pub fn install(host: TestHost) {
        HOST.with(|h| *h.borrow_mut() = host);
    }

    /// Runs `f` with this thread's test host.
    pub fn with<R>(f: impl FnOnce(&mut TestHost) -> R) -> R {
        HOST.with(|h| f(&mut h.borrow_mut()))
    }

    /// The hash the test host gives a presented key. Not the gateway's HMAC: tests of plugin
    /// logic only need a stable, distinct mapping.
    pub fn test_hash(presented: &str) -> String {
        format!("test-hash:{presented}")
    }
}

/// Native implementations of the host functions, backed by the thread-local test host.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use super::*;

    pub fn log(level: LogLevel, message: &str) {
        TestHost::with(|h| h.logs.push((level, message.to_string())))
    }
    pub fn config() -> String {
        TestHost::with(|h| {
            if h.config.is_empty() {
                "{}".to_string()
            } else {
                h.config.clone()
            }
        })
    }
    pub fn counter_add(name: &str, delta: i64) {
        TestHost::with(|h| *h.counters.entry(name.to_string()).or_default() += delta)
    }
    pub fn kv_get(key: &str) -> Option<Vec<u8>> {
        TestHost::with(|h| h.kv.get(key).cloned())
    }
    pub fn kv_set(key: &str, value: &[u8], _ttl_ms: u64) {
        TestHost::with(|h| {
            h.kv.insert(key.to_string(), value.to_vec());
        })
    }
    pub fn now_ms() -> u64 {
        TestHost::with(|h| h.now_ms)
    }
    pub fn keep_content(request_body: &[u8], response_body: &[u8]) {
        TestHost::with(|h| h.kept_content = Some((request_body.to_vec(), response_body.to_vec())))
    }
    pub fn hash_api_key(presented: &str) -> String {
        TestHost::test_hash(presented)
    }
    pub fn lookup_api_key(key_hash: &str) -> Option<ApiKeyInfo> {
        TestHost::with(|h| h.keys_by_hash.get(key_hash).cloned())
    }
    pub fn credit_balance(org_id: &str) -> Option<i64> {
        TestHost::with(|h| h.balances.get(org_id).copied())
    }
    pub fn model_price(provider: &str, model: &str) -> Option<Price> {
        TestHost::with(|h| {
            h.prices
                .get(&(provider.to_string(), model.to_string()))
                .cloned()
        })
    }
}
