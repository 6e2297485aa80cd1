//! What the gateway offers plugins through the host interface, backed by the store.
//!
//! Plugin calls are synchronous, the store is not: the pipeline *prefetches* (async) what a
//! stage will ask for — the key record for the presented key, the org's balance — into moka
//! caches, and the host functions then answer from memory. Caches are short-lived and updated
//! in place on local changes (a settled charge lowers the cached balance at once).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::plugins::bindings::{ApiKeyInfo, Price};
use crate::plugins::HostServices;
use crate::store::{Store, StoreError};

pub struct GatewayServices {
    secret: Vec<u8>,
    store: Store,
    /// key hash -> (fetched at, key record). None: no such key (cached too, against floods).
    keys: moka::sync::Cache<String, (Instant, Option<ApiKeyInfo>)>,
    balances: moka::sync::Cache<String, (Instant, Option<i64>)>,
    prices: HashMap<(String, String), Price>,
}

/// How long a key lookup (found or not) is trusted: bounds how late a revocation made by
/// another process (CLI, other replica) takes effect.
const KEY_TTL: Duration = Duration::from_secs(2);
/// How long a balance read from the database is trusted before re-reading.
const BALANCE_TTL: Duration = Duration::from_secs(2);

// Entries live twice as long as they are trusted: a prefetch refreshes anything older than the
// trust period, so the plugin call that follows it always finds the entry still there.
fn fresh<T>(entry: Option<(Instant, T)>, ttl: Duration) -> bool {
    entry.is_some_and(|(at, _)| at.elapsed() < ttl)
}

impl GatewayServices {
    pub fn new(config: &Config, store: Store, secret: Vec<u8>) -> Self {
        let mut prices = HashMap::new();
        for routes in config.models.values() {
            for r in routes {
                prices.insert(
                    (r.provider.clone(), r.upstream_model.clone()),
                    Price {
                        input: r.price.input,
                        output: r.price.output,
                        cache_read: r.price.cache_read,
                        cache_write: r.price.cache_write,
                    },
                );
            }
        }
        GatewayServices {
            secret,
            store,
            keys: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(KEY_TTL * 2)
                .build(),
            balances: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(BALANCE_TTL * 2)
                .build(),
            prices,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The keyed hash of a presented key.
    pub fn hash(&self, presented: &str) -> String {
        crate::keys::keyed_hash(&self.secret, presented)
    }

    /// Makes sure the key record for `presented` is in memory for the auth plugin.
    pub async fn prefetch_key(&self, presented: &str) -> Result<(), StoreError> {
        let hash = self.hash(presented);
        if fresh(self.keys.get(&hash), KEY_TTL) {
            return Ok(());
        }
        let info = self.store.key_by_hash(&hash).await?.map(|k| ApiKeyInfo {
            key_id: k.id,
            org_id: k.org_id,
            prefix: k.prefix,
            revoked: k.revoked_at.is_some(),
            expires_at_ms: u64::try_from(k.expires_at).unwrap_or(0),
            scopes: k.scopes,
        });
        self.keys.insert(hash, (Instant::now(), info));
        Ok(())
    }

    /// Makes sure the org's balance is in memory for the billing plugin.
    pub async fn prefetch_balance(&self, org_id: &str) -> Result<(), StoreError> {
        if fresh(self.balances.get(org_id), BALANCE_TTL) {
            return Ok(());
        }
        let balance = self.store.balance(org_id).await?;
        self.balances
            .insert(org_id.to_string(), (Instant::now(), balance));
        Ok(())
    }

    /// Applies a charge to the cached balance right away (the ledger write follows in a batch).
    pub fn debit(&self, org_id: &str, amount_micros: i64) {
        if let Some((at, Some(b))) = self.balances.get(org_id) {
            self.balances.insert(
                org_id.to_string(),
                (at, Some(b.saturating_sub(amount_micros))),
            );
        }
    }

    /// Forgets cached state for a key or org (after a change made through this process).
    pub fn invalidate(&self) {
        self.keys.invalidate_all();
        self.balances.invalidate_all();
    }
}

impl HostServices for GatewayServices {
    fn hash_api_key(&self, presented: &str) -> String {
        self.hash(presented)
    }
    fn lookup_api_key(&self, key_hash: &str) -> Option<ApiKeyInfo> {
        self.keys.get(key_hash).and_then(|(_, info)| info)
    }
    fn credit_balance(&self, org_id: &str) -> Option<i64> {
        self.balances.get(org_id).and_then(|(_, b)| b)
    }
    fn model_price(&self, provider: &str, model: &str) -> Option<Price> {
        self.prices
            .get(&(provider.to_string(), model.to_string()))
            .copied()
    }
}
