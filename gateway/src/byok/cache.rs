//! The request path's view of BYOK: per org, its mode and its provider keys decrypted, kept in
//! memory for a short TTL (2 s by default, bounded in count) so a request costs no database
//! round trip and a key change reaches every replica within the TTL. An org without keys is
//! cached too ("none"), so the common case is a hash-map hit.
//!
//! A key that cannot be decrypted (no master key loaded, sealed under another master, altered)
//! is cached as a fault for that provider: `has_key` still says the org has one, so an `only`
//! org is refused rather than silently served (and charged) on the gateway's key.
//!
//! Master-key rotation without a restart: when a row names a master id other than the loaded
//! one and the master key comes from a file, the file is read again (at most once per TTL), so
//! an operator who replaces the file after `tollgate byok rotate-master` needs no restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::{ByokError, ByokMode, ByokSettings, MasterKey, Secret};
use crate::store::Store;

/// How long an org's decrypted keys stay in memory.
pub const DEFAULT_TTL: Duration = Duration::from_secs(2);

/// Orgs held at once; past it the least recently used go first.
const MAX_ORGS: u64 = 100_000;

enum KeyState {
    Ready(Secret),
    Fault(Arc<str>),
}

struct OrgEntry {
    mode: ByokMode,
    keys: HashMap<String, KeyState>,
}

/// One org's BYOK state as loaded: cheap to clone, valid for as long as it is held.
#[derive(Clone)]
pub struct OrgKeys(Arc<OrgEntry>);

impl std::fmt::Debug for OrgKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut providers: Vec<&String> = self.0.keys.keys().collect();
        providers.sort();
        f.debug_struct("OrgKeys")
            .field("mode", &self.0.mode)
            .field("providers", &providers)
            .finish()
    }
}

impl OrgKeys {
    fn none() -> OrgKeys {
        OrgKeys(Arc::new(OrgEntry {
            mode: ByokMode::default(),
            keys: HashMap::new(),
        }))
    }

    pub fn mode(&self) -> ByokMode {
        self.0.mode
    }

    /// The org's decrypted key for `provider` (None: it has none, or it does not open).
    pub fn secret(&self, provider: &str) -> Option<Secret> {
        match self.0.keys.get(provider) {
            Some(KeyState::Ready(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Whether the org stored a key for `provider`, whether or not it opens.
    pub fn has_key(&self, provider: &str) -> bool {
        self.0.keys.contains_key(provider)
    }

    /// Why the org's key for `provider` cannot be used (None: it can, or there is none).
    pub fn fault(&self, provider: &str) -> Option<Arc<str>> {
        match self.0.keys.get(provider) {
            Some(KeyState::Fault(why)) => Some(why.clone()),
            _ => None,
        }
    }
}

/// The cache of decrypted BYOK keys the request path reads.
pub struct ByokKeys {
    store: Store,
    settings: ByokSettings,
    master: RwLock<Option<Arc<MasterKey>>>,
    /// When the master key file was last read because a row named another master.
    last_reload: Mutex<Option<Instant>>,
    ttl: Duration,
    orgs: moka::sync::Cache<String, OrgKeys>,
}

impl ByokKeys {
    /// The cache with the configured master key (a missing one is not an error here: orgs
    /// without keys are served as usual; see [`ByokKeys::check`]).
    pub fn new(store: Store, settings: &ByokSettings) -> Result<ByokKeys, ByokError> {
        let master = MasterKey::load(settings)?;
        Ok(ByokKeys::with_master(store, settings, master, DEFAULT_TTL))
    }

    /// The cache with a given master key and TTL (tests, or a caller that loaded the key).
    pub fn with_master(
        store: Store,
        settings: &ByokSettings,
        master: Option<MasterKey>,
        ttl: Duration,
    ) -> ByokKeys {
        ByokKeys {
            store,
            settings: settings.clone(),
            master: RwLock::new(master.map(Arc::new)),
            last_reload: Mutex::new(None),
            ttl,
            orgs: moka::sync::Cache::builder()
                .max_capacity(MAX_ORGS)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The loaded master key's id, if any.
    pub fn master_key_id(&self) -> Option<String> {
        self.master.read().as_ref().map(|m| m.id().to_string())
    }

    /// At startup: how many provider keys are stored, or a clear error when some are stored
    /// but no master key is loaded or they were sealed under another one. The gateway can log
    /// the error and go on serving requests that do not use BYOK.
    pub async fn check(&self) -> Result<i64, ByokError> {
        let ids = self.store.byok_master_ids().await?;
        let total = ids.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return Ok(0);
        }
        let Some(master) = self.current_master(ids.iter().map(|(id, _)| id.as_str())) else {
            return Err(ByokError::NoMasterKey {
                env: self.settings.master_key_env.clone(),
            });
        };
        if let Some((other, _)) = ids.iter().find(|(id, _)| id != master.id()) {
            return Err(ByokError::WrongMaster {
                sealed_under: other.clone(),
                loaded: master.id().to_string(),
            });
        }
        Ok(total)
    }

    /// Loads the org's mode and keys into the cache unless they are there already, and
    /// returns them. Fails only when the database does; keys that do not open are recorded
    /// as faults (and logged, without the key).
    pub async fn prefetch(&self, org_id: &str) -> Result<OrgKeys, ByokError> {
        if let Some(hit) = self.orgs.get(org_id) {
            return Ok(hit);
        }
        let loaded = match self.store.byok_state(org_id).await? {
            None => OrgKeys::none(),
            Some(state) => {
                let master =
                    self.current_master(state.keys.iter().map(|(_, s)| s.master_key_id.as_str()));
                let mut keys = HashMap::with_capacity(state.keys.len());
                for (provider, sealed) in &state.keys {
                    let opened = match &master {
                        Some(m) => m.open(org_id, provider, sealed),
                        None => Err(ByokError::NoMasterKey {
                            env: self.settings.master_key_env.clone(),
                        }),
                    };
                    let entry = match opened {
                        Ok(secret) => KeyState::Ready(secret),
                        Err(e) => {
                            tracing::error!(org = org_id, provider = provider.as_str(),
                                error = %e, "BYOK provider key unusable");
                            KeyState::Fault(Arc::from(e.to_string()))
                        }
                    };
                    keys.insert(provider.clone(), entry);
                }
                OrgKeys(Arc::new(OrgEntry {
                    mode: state.mode,
                    keys,
                }))
            }
        };
        self.orgs.insert(org_id.to_string(), loaded.clone());
        Ok(loaded)
    }

    /// The org's decrypted key for `provider`, from the cache (None: none stored, unusable,
    /// or not prefetched within the TTL).
    pub fn secret(&self, org_id: &str, provider: &str) -> Option<Secret> {
        self.orgs.get(org_id).and_then(|o| o.secret(provider))
    }

    /// The org's BYOK mode from the cache (the default, `prefer`, when not prefetched).
    pub fn mode(&self, org_id: &str) -> ByokMode {
        self.orgs.get(org_id).map(|o| o.mode()).unwrap_or_default()
    }

    /// Drops the org from the cache (after a change made through this process).
    pub fn invalidate(&self, org_id: &str) {
        self.orgs.invalidate(org_id);
    }

    /// The loaded master key; when rows name another master and the key comes from a file,
    /// the file is read again first (at most once per TTL).
    fn current_master<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Option<Arc<MasterKey>> {
        let current = self.master.read().clone();
        let mut ids = ids.peekable();
        let stale = match &current {
            Some(m) => ids.any(|id| id != m.id()),
            None => ids.peek().is_some(),
        };
        if !stale || !self.file_is_the_source() {
            return current;
        }
        {
            let mut last = self.last_reload.lock();
            if last.is_some_and(|t| t.elapsed() < self.ttl) {
                return current;
            }
            *last = Some(Instant::now());
        }
        let Some(path) = &self.settings.master_key_file else {
            return current;
        };
        match MasterKey::from_file(path) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                if current.as_ref().map(|m| m.id()) != Some(fresh.id()) {
                    tracing::info!(master_key_id = fresh.id(), "BYOK master key reloaded");
                }
                *self.master.write() = Some(fresh.clone());
                Some(fresh)
            }
            Err(e) => {
                tracing::error!(error = %e, "reloading the BYOK master key file");
                current
            }
        }
    }

    /// Whether the master key comes from the file (the env var is unset or empty).
    fn file_is_the_source(&self) -> bool {
        self.settings.master_key_file.is_some()
            && std::env::var(&self.settings.master_key_env)
                .map(|v| v.trim().is_empty())
                .unwrap_or(true)
    }
}
