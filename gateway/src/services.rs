//! What the gateway offers plugins through the host interface, backed by the store.
//!
//! Plugin calls are synchronous, the store is not: the pipeline *prefetches* (async) what a
//! stage will ask for — the key record for the presented key, the org's balance — into moka
//! caches, and the host functions then answer from memory. Caches are short-lived and updated
//! in place on local changes (a settled charge lowers the cached balance at once).

use std::collections::{HashMap, HashSet};
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
    refreshing: Refreshing,
    prices: HashMap<(String, String), Price>,
}

/// How long a key lookup (found or not) is trusted: bounds how late a revocation made by
/// another process (CLI, other replica) takes effect.
const KEY_TTL: Duration = Duration::from_secs(2);
/// How long a balance read from the database is trusted before re-reading.
const BALANCE_TTL: Duration = Duration::from_secs(2);

/// Entries live twice as long as they are trusted. Past the trust period one request refreshes
/// an entry while concurrent ones keep using it (no stampede on the database), and the plugin
/// call that follows a prefetch always finds the entry still there.
enum Freshness {
    Fresh,
    Stale,
    Missing,
}

fn freshness<T>(entry: Option<(Instant, T)>, ttl: Duration) -> Freshness {
    match entry {
        Some((at, _)) if at.elapsed() < ttl => Freshness::Fresh,
        Some(_) => Freshness::Stale,
        None => Freshness::Missing,
    }
}

/// Keys being refreshed right now; a claim is released when dropped.
#[derive(Default)]
struct Refreshing(parking_lot::Mutex<HashSet<String>>);

struct Claim<'a>(&'a Refreshing, String);

impl Refreshing {
    fn claim(&self, key: &str) -> Option<Claim<'_>> {
        self.0
            .lock()
            .insert(key.to_string())
            .then(|| Claim(self, key.to_string()))
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0 .0.lock().remove(&self.1);
    }
}

/// Whether a prefetch must read the database now.
fn must_refresh<'a, T>(
    entry: Option<(Instant, T)>,
    ttl: Duration,
    refreshing: &'a Refreshing,
    key: &str,
) -> (bool, Option<Claim<'a>>) {
    match freshness(entry, ttl) {
        Freshness::Fresh => (false, None),
        Freshness::Missing => (true, None),
        Freshness::Stale => match refreshing.claim(key) {
            Some(claim) => (true, Some(claim)),
            None => (false, None),
        },
    }
}

impl GatewayServices {
    pub fn new(config: &Config, store: Store, secret: Vec<u8>) -> Self {
        let mut prices = HashMap::new();
        for routes in config.models.values() {
            for r in routes {
                prices.insert(
                    (r.provider.clone(), r.upstream_model.clone()),
                    Price::from(r.price),
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
            refreshing: Refreshing::default(),
        }
    }

    /// The keyed hash of a presented key.
    pub fn hash(&self, presented: &str) -> String {
        crate::keys::keyed_hash(&self.secret, presented)
    }

    /// Makes sure the key record for `presented` is in memory for the auth plugin.
    pub async fn prefetch_key(&self, presented: &str) -> Result<(), StoreError> {
        let hash = self.hash(presented);
        let (refresh, _claim) =
            must_refresh(self.keys.get(&hash), KEY_TTL, &self.refreshing, &hash);
        if !refresh {
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
        let claim_key = format!("balance:{org_id}");
        let (refresh, _claim) = must_refresh(
            self.balances.get(org_id),
            BALANCE_TTL,
            &self.refreshing,
            &claim_key,
        );
        if !refresh {
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
