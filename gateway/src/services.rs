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
use crate::store::{ApiKey, Org, Store, StoreError};
use std::sync::Arc;

pub struct GatewayServices {
    secret: Vec<u8>,
    store: Store,
    /// key hash -> (fetched at, key record). None: no such key (cached too, against floods).
    /// Entries are dropped at once when a key changes (this process, or PostgreSQL NOTIFY).
    keys: moka::sync::Cache<String, (Instant, Option<Arc<ApiKey>>)>,
    /// org id -> (fetched at, org record: its rate limits).
    orgs: moka::sync::Cache<String, (Instant, Option<Arc<Org>>)>,
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
            orgs: moka::sync::Cache::builder()
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
    /// Returns the presented key's keyed hash and its record, if one is stored (hashed once
    /// per request: the host's checks use what this returns).
    pub async fn prefetch_key(
        &self,
        presented: &str,
    ) -> Result<(String, Option<Arc<ApiKey>>), StoreError> {
        let hash = self.hash(presented);
        let entry = self.keys.get(&hash);
        let (refresh, _claim) = must_refresh(entry.clone(), KEY_TTL, &self.refreshing, &hash);
        if !refresh {
            return Ok((hash, entry.and_then(|(_, k)| k)));
        }
        let info = self.store.key_by_hash(&hash).await?.map(Arc::new);
        self.keys
            .insert(hash.clone(), (Instant::now(), info.clone()));
        Ok((hash, info))
    }

    /// Forgets a key record (it changed): the next request reads it again.
    pub fn forget_key(&self, key_hash: &str) {
        self.keys.invalidate(key_hash);
    }

    /// Forgets an org record (its limits changed).
    pub fn forget_org(&self, org_id: &str) {
        self.orgs.invalidate(org_id);
    }

    /// The org's record (rate limits), read through a short-lived cache.
    pub async fn org(&self, org_id: &str) -> Result<Option<Arc<Org>>, StoreError> {
        let claim_key = format!("org:{org_id}");
        let entry = self.orgs.get(org_id);
        let (refresh, _claim) = must_refresh(entry.clone(), KEY_TTL, &self.refreshing, &claim_key);
        if !refresh {
            if let Some((_, org)) = entry {
                return Ok(org);
            }
        }
        let org = self.store.org(org_id).await?.map(Arc::new);
        self.orgs
            .insert(org_id.to_string(), (Instant::now(), org.clone()));
        Ok(org)
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
        let key = self.keys.get(key_hash).and_then(|(_, k)| k)?;
        Some(ApiKeyInfo {
            key_id: key.id.clone(),
            org_id: key.org_id.clone(),
            prefix: key.prefix.clone(),
            // Disabled, expired or a rotated-out secret: refused as revoked by any plugin.
            revoked: key.refusal(key_hash, crate::store::now_ms()).is_some(),
            expires_at_ms: u64::try_from(key.expires_at).unwrap_or(0),
            scopes: key.scopes.to_stored(),
        })
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

/// Keeps the key and org caches true to the store: changes made through this process arrive on
/// [`Store::key_changes`]; on PostgreSQL, changes made by any process (another replica, the
/// CLI) arrive by `LISTEN tollgate_keys` / `tollgate_orgs`. While the listener is down (it
/// reconnects with backoff) the caches' 2 s trust period still bounds how late a change lands,
/// and after a reconnect every cached key is dropped (notifications may have been missed).
pub fn spawn_invalidation(
    services: Arc<GatewayServices>,
    store: &Store,
    database_url: &str,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut local = store.key_changes();
    let s = services.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            match local.recv().await {
                Ok(change) => s.apply_change(&change),
                // Missed some: drop everything rather than keep a stale record.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => s.forget_all(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }));
    if store.kind() == crate::store::DbKind::Postgres {
        let url = database_url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match listen(&services, &url).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        tracing::warn!(error = %e, "key change listener failed; reconnecting");
                    }
                }
                services.forget_all();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }));
    }
    tasks
}

/// One listening session: returns when the connection ends.
async fn listen(services: &GatewayServices, url: &str) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen_all([KEY_CHANNEL, ORG_CHANNEL]).await?;
    // Anything cached before the listener was up may have missed a change.
    services.forget_all();
    loop {
        // `None`: the connection was lost; sqlx reconnects on the next call, but whatever was
        // announced meanwhile is lost, so nothing cached can be trusted.
        let Some(n) = listener.try_recv().await? else {
            services.forget_all();
            continue;
        };
        match n.channel() {
            KEY_CHANNEL => services.forget_key(n.payload()),
            ORG_CHANNEL => services.forget_org(n.payload()),
            _ => {}
        }
    }
}

/// PostgreSQL channels announcing key and org changes (payload: key hash, org id).
pub const KEY_CHANNEL: &str = "tollgate_keys";
pub const ORG_CHANNEL: &str = "tollgate_orgs";

impl GatewayServices {
    /// A change announced in this process: `org:<id>` for an org, else a key hash.
    fn apply_change(&self, change: &str) {
        match change.strip_prefix("org:") {
            Some(org) => self.forget_org(org),
            None => self.forget_key(change),
        }
    }

    fn forget_all(&self) {
        self.keys.invalidate_all();
        self.orgs.invalidate_all();
    }
}
