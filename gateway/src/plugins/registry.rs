//! The set of loaded plugins, by name. Loading compiles (or takes from the artifact cache),
//! checks the world, exports, imports and WIT version, instantiates once as a self-test, and
//! only then publishes the new version with `arc-swap`. Callers holding the previous version's
//! `Arc` finish on it. A failed load keeps the previous version and records the error.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::cache::ArtifactCache;
use super::engine::PluginEngine;
use super::error::{PluginError, PluginErrorKind};
use super::instance::{StagePre, WitVersion};
use super::loaded::{LoadedPlugin, PluginVersion};
use super::schema::{self, ConfigSchema};
use super::settings::PluginSettings;
use super::state::HostContext;
use super::Stage;

/// The WIT package the host speaks. Plugins must match its major.minor (0.x: minor is breaking).
pub const WIT_PACKAGE: &str = "tollgate:plugin";
/// The latest WIT package version (plugins for older ones load through an adapter).
pub const WIT_VERSION: &str = "0.2.0";
/// Every version the host loads, oldest first.
pub const WIT_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// What the admin view shows for one plugin name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    pub name: String,
    /// The version serving calls, if any.
    pub active: Option<PluginVersion>,
    pub calls: u64,
    pub failures: u64,
    pub instantiations: u64,
    /// Calls that left the proxy worker for the slow lane (they used their inline CPU budget).
    pub slow_lane_calls: u64,
    pub idle_instances: usize,
    /// The last load error (the active version, if any, kept serving).
    pub last_error: Option<String>,
    #[serde(with = "crate::util::unix_ms_opt")]
    pub last_error_at: Option<SystemTime>,
}

/// Per-plugin settings: defaults plus overrides by plugin name.
#[derive(Debug, Clone, Default)]
pub struct SettingsTable {
    pub default: PluginSettings,
    pub by_name: HashMap<String, PluginSettings>,
}

impl SettingsTable {
    pub fn for_plugin(&self, name: &str) -> PluginSettings {
        self.by_name
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }
}

#[derive(Default)]
struct LoadErrors {
    by_name: BTreeMap<String, (String, SystemTime)>,
}

pub struct PluginRegistry {
    engine: Arc<PluginEngine>,
    shared: Arc<HostContext>,
    cache: Option<ArtifactCache>,
    settings: ArcSwap<SettingsTable>,
    plugins: ArcSwap<HashMap<String, Arc<LoadedPlugin>>>,
    errors: Mutex<LoadErrors>,
    /// Serializes publishers (loads from the watcher and from the API).
    publish: Mutex<()>,
    /// The stage each configured plugin name must implement (from the config and policy).
    expected: ArcSwap<HashMap<String, Stage>>,
    /// Configs the policy gives plugins: (plugin, where, config JSON). A new version whose
    /// config schema refuses one of them is not published.
    policy_configs: ArcSwap<Vec<(String, String, Arc<str>)>>,
}

/// The plugin name for a file: its stem (`auth-apikey.wasm` -> `auth-apikey`).
pub fn plugin_name(path: &Path) -> Option<String> {
    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem.starts_with('.') || stem.is_empty() {
        return None;
    }
    Some(stem.to_string())
}

/// What [`inspect`] learns of a component.
struct Inspected {
    stage: Stage,
    wit_version: String,
    version: WitVersion,
    uses_wasi: bool,
}

/// Finds the one stage interface a component exports, the WIT version it was built against, and
/// whether it imports WASI. Imports other than `tollgate:plugin` and `wasi:*` are refused here;
/// a `wasi:*` interface the host does not link (e.g. `wasi:http`) fails at link time.
fn inspect(engine: &wasmtime::Engine, component: &Component) -> Result<Inspected, String> {
    let ty = component.component_type();
    let mut uses_wasi = false;
    for (name, _) in ty.imports(engine) {
        if name.starts_with("wasi:") {
            uses_wasi = true;
            continue;
        }
        let allowed = name
            .strip_prefix(WIT_PACKAGE)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| rest.starts_with("host@") || rest.starts_with("types@"));
        if !allowed {
            return Err(format!(
                "imports '{name}'; plugins may import only {WIT_PACKAGE}/host and WASI \
                 (see docs/plugins.md)"
            ));
        }
    }
    let mut found = Vec::new();
    for (name, _) in ty.exports(engine) {
        let Some(rest) = name
            .strip_prefix(WIT_PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if let Some(stage) = Stage::from_interface(iface) {
            found.push((stage, version.to_string()));
        }
    }
    let (stage, version) = match found.as_slice() {
        [] => {
            return Err(format!(
                "exports no {WIT_PACKAGE} stage (auth, guardrail, routing, transform, billing or logging)"
            ))
        }
        [one] => one.clone(),
        many => {
            return Err(format!(
                "exports {} stages; a plugin implements exactly one",
                many.len()
            ))
        }
    };
    let Some(parsed) = WitVersion::parse(&version) else {
        return Err(format!(
            "was built against {WIT_PACKAGE}@{version}; this gateway loads {WIT_PACKAGE}@0.1.x and \
             @0.2.x (rebuild it with a matching plugin SDK)"
        ));
    };
    Ok(Inspected {
        stage,
        wit_version: version,
        version: parsed,
        uses_wasi,
    })
}

impl PluginRegistry {
    pub fn new(
        engine: Arc<PluginEngine>,
        shared: Arc<HostContext>,
        settings: SettingsTable,
        cache_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let cache = match cache_dir {
            Some(dir) => Some(ArtifactCache::new(dir, &engine.engine)?),
            None => None,
        };
        Ok(PluginRegistry {
            engine,
            shared,
            cache,
            settings: ArcSwap::from_pointee(settings),
            plugins: ArcSwap::from_pointee(HashMap::new()),
            errors: Mutex::new(LoadErrors::default()),
            publish: Mutex::new(()),
            expected: ArcSwap::from_pointee(HashMap::new()),
            policy_configs: ArcSwap::from_pointee(Vec::new()),
        })
    }

    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    pub fn host_context(&self) -> &Arc<HostContext> {
        &self.shared
    }

    /// Declares the stage each plugin name is configured for: a file under that name exporting
    /// another stage is refused at load (the version serving, if any, keeps serving).
    pub fn expect_stages(&self, stages: impl IntoIterator<Item = (String, Stage)>) {
        let mut map = HashMap::clone(&self.expected.load());
        map.extend(stages);
        self.expected.store(Arc::new(map));
    }

    /// A new version may not change a plugin's stage: not the stage it is configured for, not
    /// the stage of the version serving (a logging component written over a routing plugin's
    /// file would fail every request).
    fn check_stage(&self, name: &str, stage: Stage) -> Result<(), String> {
        if let Some(&want) = self.expected.load().get(name) {
            if want != stage {
                return Err(format!(
                    "exports the {stage} stage, but '{name}' is configured for the {want} stage"
                ));
            }
        }
        if let Some(active) = self.get(name) {
            if active.stage() != stage {
                return Err(format!(
                    "exports the {stage} stage, but the version serving implements {}; a \
                     plugin cannot change stage under the same name",
                    active.stage()
                ));
            }
        }
        Ok(())
    }

    /// The version of `name` currently serving calls.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.load().get(name).cloned()
    }

    /// The plugin `name`, which must implement `stage`.
    pub fn get_stage(&self, name: &str, stage: Stage) -> Result<Arc<LoadedPlugin>, PluginError> {
        let plugin = self
            .get(name)
            .ok_or_else(|| PluginError::new(name, Some(stage), PluginErrorKind::NotLoaded))?;
        if plugin.stage() != stage {
            return Err(PluginError::new(
                name,
                Some(stage),
                PluginErrorKind::WrongStage {
                    actual: plugin.stage(),
                },
            ));
        }
        Ok(plugin)
    }

    /// Loads every `*.wasm` in `dir`. Returns each file's outcome; failures are also recorded.
    pub fn load_dir(&self, dir: &Path) -> Vec<(PathBuf, Result<(), PluginError>)> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| plugin_name(p).is_some())
                .collect(),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot read plugin directory");
                Vec::new()
            }
        };
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let outcome = self.load_file(&path).map(|_| ());
                (path, outcome)
            })
            .collect()
    }

    /// Loads (or reloads) one plugin file and publishes it under its file stem. An unchanged
    /// file (same SHA-256 as the active version) is a no-op.
    pub fn load_file(&self, path: &Path) -> Result<Arc<LoadedPlugin>, PluginError> {
        let name = plugin_name(path).ok_or_else(|| {
            PluginError::new(
                &path.display().to_string(),
                None,
                PluginErrorKind::Load("not a .wasm plugin file".into()),
            )
        })?;
        let _publishing = self.publish.lock();
        match self.build(&name, path) {
            Ok(Some(plugin)) => {
                let mut next = HashMap::clone(&self.plugins.load());
                next.insert(name.clone(), plugin.clone());
                self.plugins.store(Arc::new(next));
                self.errors.lock().by_name.remove(&name);
                tracing::info!(
                    plugin = %name,
                    stage = %plugin.stage(),
                    sha256 = %&plugin.version.sha256[..12],
                    load_ms = plugin.version.load_ms,
                    "plugin loaded"
                );
                Ok(plugin)
            }
            Ok(None) => self
                .get(&name)
                .ok_or_else(|| PluginError::new(&name, None, PluginErrorKind::NotLoaded)),
            Err(err) => {
                let kept = self.get(&name).is_some();
                tracing::error!(
                    plugin = %name,
                    error = %err,
                    kept_previous_version = kept,
                    "plugin load failed"
                );
                self.errors
                    .lock()
                    .by_name
                    .insert(name, (err.to_string(), SystemTime::now()));
                Err(err)
            }
        }
    }

    /// The configs the live policy gives plugins (`(plugin, where, config)`), checked against
    /// each new version's config schema.
    pub fn set_policy_configs(&self, configs: Vec<(String, String, Arc<str>)>) {
        self.policy_configs.store(Arc::new(configs));
    }

    /// Checks `config` against the schema the loaded plugin declares (any config passes a
    /// plugin that declares none, or one not loaded).
    pub fn check_config(&self, plugin: &str, config: &str) -> Result<(), schema::Mismatch> {
        match self.get(plugin).and_then(|p| p.schema.clone()) {
            Some(s) => s.check(config),
            None => Ok(()),
        }
    }

    /// The schema a plugin file declares: embedded in the component, else `NAME.schema.json`
    /// beside it.
    fn schema_of(name: &str, path: &Path, wasm: &[u8]) -> Result<Option<ConfigSchema>, String> {
        if let Some(s) = schema::embedded(wasm)? {
            return Ok(Some(s));
        }
        let sidecar = path.with_file_name(format!("{name}.schema.json"));
        match std::fs::read(&sidecar) {
            Ok(bytes) => ConfigSchema::parse(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", sidecar.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", sidecar.display())),
        }
    }

    /// Every config this plugin is given, checked against its schema: the config file's, and
    /// the policy's.
    fn check_configs(
        &self,
        name: &str,
        schema: &ConfigSchema,
        settings: &PluginSettings,
    ) -> Result<(), String> {
        // No config in the config file is "{}": not a config the file gives.
        let mut given: Vec<(String, Arc<str>)> = Vec::new();
        if &*settings.config_json != "{}" {
            given.push((
                format!("[plugins.settings.{name}] config in the config file"),
                settings.config_json.clone(),
            ));
        }
        for (plugin, place, config) in self.policy_configs.load().iter() {
            if plugin == name {
                given.push((place.clone(), config.clone()));
            }
        }
        for (place, config) in given {
            schema
                .check(&config)
                .map_err(|m| format!("{place}: {m} (the plugin's config schema)"))?;
        }
        Ok(())
    }

    /// Compiles and checks a file. `Ok(None)` when it is identical to the active version.
    fn build(&self, name: &str, path: &Path) -> Result<Option<Arc<LoadedPlugin>>, PluginError> {
        let load_err = |msg: String| PluginError::new(name, None, PluginErrorKind::Load(msg));
        let started = Instant::now();
        let wasm = std::fs::read(path)
            .map_err(|e| load_err(format!("reading {}: {e}", path.display())))?;
        let sha256 = hex::encode(Sha256::digest(&wasm));
        if let Some(active) = self.get(name) {
            if active.version.sha256 == sha256 {
                return Ok(None);
            }
        }
        let engine = &self.engine.engine;
        let (component, from_cache) = match &self.cache {
            Some(cache) => cache.load_or_compile(engine, &sha256, &wasm),
            None => Component::new(engine, &wasm).map(|c| (c, false)),
        }
        .map_err(|e| load_err(format!("not a valid component: {e:#}")))?;
        let Inspected {
            stage,
            wit_version,
            version: wit,
            uses_wasi,
        } = inspect(engine, &component).map_err(load_err)?;
        self.check_stage(name, stage).map_err(load_err)?;
        let schema = Self::schema_of(name, path, &wasm).map_err(load_err)?;
        let settings = self.settings.load().for_plugin(name);
        if let Some(s) = &schema {
            self.check_configs(name, s, &settings).map_err(load_err)?;
        }
        let instance_pre = self
            .engine
            .linker
            .instantiate_pre(&component)
            .map_err(|e| {
                load_err(format!(
                    "cannot link: {e:#} (the host provides {WIT_PACKAGE}/host and WASI 0.2 \
                 clocks, random, cli, io, filesystem and sockets, granting none of them)"
                ))
            })?;
        let typed =
            |e: wasmtime::Error| load_err(format!("exports do not match the {stage} world: {e:#}"));
        let pre = StagePre::new(stage, wit, instance_pre).map_err(typed)?;
        let version = PluginVersion {
            name: name.to_string(),
            stage,
            wit_version,
            sha256,
            file: path.to_path_buf(),
            size_bytes: wasm.len() as u64,
            uses_wasi,
            config_schema: schema.is_some(),
            loaded_at: SystemTime::now(),
            load_ms: 0.0,
            from_cache,
        };
        let mut plugin = LoadedPlugin::new(
            version,
            pre,
            self.engine.clone(),
            settings,
            self.shared.clone(),
        );
        plugin.schema = schema.map(Arc::new);
        plugin.self_test()?;
        plugin.version.load_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(Some(Arc::new(plugin)))
    }

    /// Status of every plugin name seen (loaded or failed).
    pub fn list(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins.load();
        let errors = self.errors.lock();
        let mut names: Vec<&String> = plugins.keys().chain(errors.by_name.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let active = plugins.get(name);
                let error = errors.by_name.get(name);
                let stat = |f: fn(&LoadedPlugin) -> u64| active.map_or(0, |p| f(p));
                use std::sync::atomic::Ordering::Relaxed;
                PluginStatus {
                    name: name.clone(),
                    active: active.map(|p| p.version.clone()),
                    calls: stat(|p| p.stats.calls.load(Relaxed)),
                    failures: stat(|p| p.stats.failures.load(Relaxed)),
                    instantiations: stat(|p| p.stats.instantiations.load(Relaxed)),
                    slow_lane_calls: stat(|p| p.stats.slow_lane.load(Relaxed)),
                    idle_instances: active.map_or(0, |p| p.idle_instances()),
                    last_error: error.map(|(e, _)| e.clone()),
                    last_error_at: error.map(|(_, t)| *t),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let v = WitVersion::parse;
        assert_eq!(v("0.1.0"), Some(WitVersion::V0_1));
        assert_eq!(v("0.1.7"), Some(WitVersion::V0_1));
        assert_eq!(v("0.2.0"), Some(WitVersion::V0_2));
        assert_eq!(v("0.3.0"), None);
        assert_eq!(v("1.0.0"), None);
        assert_eq!(v(""), None);
        for known in WIT_VERSIONS {
            assert!(v(known).is_some(), "{known}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            plugin_name(Path::new("/x/auth-apikey.wasm")).as_deref(),
            Some("auth-apikey")
        );
        assert_eq!(plugin_name(Path::new("/x/.auth.wasm.tmp")), None);
        assert_eq!(plugin_name(Path::new("/x/readme.md")), None);
    }
}
