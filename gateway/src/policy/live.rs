//! The live policy: read from the policy directory at start, swapped whole (arc-swap) when a
//! file changes (notify, debounced) or on SIGHUP. A policy that fails its checks is not
//! applied: the previous one keeps serving, and the error (file, line, field) is logged and
//! shown by `GET /admin/policy` until a good version loads.
//!
//! Requests take one `Arc<Policy>` when they start, so a reload never changes the rules under a
//! request in flight, and a reload costs requests nothing (no lock on the request path).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use parking_lot::Mutex;
use serde::Serialize;

use super::file::{load_dir, PolicyError};
use super::Policy;
use crate::config::Config;

/// Whether a plugin is loaded (so a route cannot name one that is not), and its config schema.
pub type PluginCheck = Arc<dyn super::file::Plugins + Send + Sync>;

/// Called with every policy that becomes live.
pub type OnLoad = Arc<dyn Fn(&Policy) + Send + Sync>;

/// What the gateway hooks into policy loading (the policy knows nothing of plugins itself).
#[derive(Default, Clone)]
pub struct Hooks {
    /// Checks that plugins a policy names are loaded.
    pub plugins: Option<PluginCheck>,
    /// Runs on every policy that becomes live (e.g. hands plugin config to the plugin host).
    pub on_load: Option<OnLoad>,
}

/// What the admin API shows of the policy.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub dir: Option<String>,
    pub files: Vec<String>,
    pub digest: String,
    pub routes: Vec<RouteSummary>,
    pub aliases: usize,
    pub models: usize,
    #[serde(with = "crate::util::unix_ms_opt")]
    pub loaded_at: Option<SystemTime>,
    pub reloads: u64,
    pub failed_reloads: u64,
    /// The last reload's error, while the previous policy keeps serving.
    pub last_error: Option<String>,
    #[serde(with = "crate::util::unix_ms_opt")]
    pub last_error_at: Option<SystemTime>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteSummary {
    pub name: String,
    pub source: String,
    pub strategy: &'static str,
    pub models: Vec<String>,
    pub orgs: usize,
    pub keys: usize,
    pub providers: Option<Vec<String>>,
    pub fallback_on: Vec<&'static str>,
    pub routing_plugin: Option<String>,
    pub billing_plugin: Option<String>,
}

struct Counters {
    loaded_at: Option<SystemTime>,
    reloads: u64,
    failed: u64,
    last_error: Option<(String, SystemTime)>,
}

pub struct PolicyHandle {
    current: ArcSwap<Policy>,
    dir: Option<PathBuf>,
    /// The config file's providers and models, which policies build on.
    base: Config,
    hooks: Hooks,
    counters: Mutex<Counters>,
}

impl PolicyHandle {
    /// Reads the policy directory (None: the config file's models alone). An invalid policy at
    /// start is an error: the gateway refuses to start on it.
    pub fn open(
        base: &Config,
        dir: Option<&Path>,
        hooks: Hooks,
    ) -> Result<PolicyHandle, PolicyError> {
        let policy = match dir {
            Some(d) => load_dir(
                d,
                base,
                hooks
                    .plugins
                    .as_deref()
                    .map(|p| p as &dyn super::file::Plugins),
            )?,
            None => Policy::from_config(base),
        };
        if let Some(on_load) = &hooks.on_load {
            on_load(&policy);
        }
        Ok(PolicyHandle {
            current: ArcSwap::from_pointee(policy),
            dir: dir.map(Path::to_path_buf),
            base: base.clone(),
            hooks,
            counters: Mutex::new(Counters {
                loaded_at: Some(SystemTime::now()),
                reloads: 0,
                failed: 0,
                last_error: None,
            }),
        })
    }

    /// The policy now (requests keep the `Arc` for their whole life).
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Re-reads the directory. `Ok(true)`: a new version is live; `Ok(false)`: nothing changed;
    /// `Err`: the files are invalid and the previous policy keeps serving.
    pub fn reload(&self) -> Result<bool, PolicyError> {
        let Some(dir) = &self.dir else {
            return Ok(false);
        };
        match load_dir(
            dir,
            &self.base,
            self.hooks
                .plugins
                .as_deref()
                .map(|p| p as &dyn super::file::Plugins),
        ) {
            Ok(policy) => {
                let changed = policy.digest != self.current.load().digest;
                let mut c = self.counters.lock();
                c.last_error = None;
                if changed {
                    if let Some(on_load) = &self.hooks.on_load {
                        on_load(&policy);
                    }
                    self.current.store(Arc::new(policy));
                    c.loaded_at = Some(SystemTime::now());
                    c.reloads += 1;
                    tracing::info!(dir = %dir.display(), reloads = c.reloads, "policy reloaded");
                }
                Ok(changed)
            }
            Err(e) => {
                let mut c = self.counters.lock();
                c.failed += 1;
                c.last_error = Some((e.to_string(), SystemTime::now()));
                tracing::error!(error = %e, "policy not reloaded: the previous policy keeps serving");
                Err(e)
            }
        }
    }

    pub fn status(&self) -> PolicyStatus {
        let p = self.current();
        let c = self.counters.lock();
        PolicyStatus {
            dir: self.dir.as_ref().map(|d| d.display().to_string()),
            files: p.files.clone(),
            digest: p.digest.clone(),
            routes: p
                .rules
                .iter()
                .map(|r| RouteSummary {
                    name: r.name.clone(),
                    source: r.source.clone(),
                    strategy: r.strategy.as_str(),
                    models: r.models.clone(),
                    orgs: r.orgs.len(),
                    keys: r.keys.len(),
                    providers: r.providers.clone(),
                    fallback_on: r.fallback.names(),
                    routing_plugin: r.routing.as_ref().map(|p| p.plugin.clone()),
                    billing_plugin: r.billing.as_ref().map(|p| p.plugin.clone()),
                })
                .collect(),
            aliases: p.aliases.len(),
            models: p.models.len(),
            loaded_at: c.loaded_at,
            reloads: c.reloads,
            failed_reloads: c.failed,
            last_error: c.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: c.last_error.as_ref().map(|(_, t)| *t),
        }
    }
}

/// Keeps the watch alive; dropping it stops watching.
pub struct PolicyWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Watches the policy directory and reloads once changes have been quiet for `debounce`
/// (editors write in several steps; a half-written file fails its checks and the next event
/// retries).
pub fn watch(handle: Arc<PolicyHandle>, debounce: Duration) -> notify::Result<Option<PolicyWatch>> {
    let Some(dir) = handle.dir().map(Path::to_path_buf) else {
        return Ok(None);
    };
    let (tx, rx) = channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let relevant = event
                .paths
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "toml"));
            if relevant && !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("policy-watch".into())
        .spawn(move || {
            let mut pending = false;
            let mut last = Instant::now();
            loop {
                let wait = if pending {
                    debounce.saturating_sub(last.elapsed())
                } else {
                    Duration::from_secs(3600)
                };
                match rx.recv_timeout(wait) {
                    Ok(()) => {
                        pending = true;
                        last = Instant::now();
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if pending {
                            pending = false;
                            let _ = handle.reload();
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(Some(PolicyWatch { _watcher: watcher }))
}
