//! Server wiring for `tollgate serve`: the store and usage writer, the plugin engine and
//! registry (with hot reload), the shared [`AppState`], the Pingora server, and the flush of
//! usage records once Pingora has stopped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::pipeline::upstream::Upstreams;
use crate::pipeline::AppState;
use crate::plugins::{HostContext, PluginEngine, PluginRegistry, Stage};
use crate::policy::live::Hooks;
use crate::policy::PolicyHandle;
use crate::proxy::build_server;
use crate::services::GatewayServices;
use crate::store::{Store, UsageWriter};

/// Refuses to start without a plugin for every configured stage, provider and retention mode.
/// (A loaded plugin of the wrong stage was refused at load, so it is missing here too, and its
/// load error says why.)
fn check_required(config: &Config, registry: &PluginRegistry) -> Result<()> {
    let mut missing = Vec::new();
    for (name, _) in config.plugin_stages() {
        if registry.get(&name).is_none() && !missing.contains(&name) {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        bail!(
            "plugins not loaded from {}: {} (build them with scripts/build-plugins)",
            config.plugin_dir.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// The loaded plugins, as policy loading sees them: which exist, and their config schemas.
struct LoadedPlugins(Arc<PluginRegistry>);

impl crate::policy::file::Plugins for LoadedPlugins {
    fn exists(&self, name: &str) -> bool {
        self.0.get(name).is_some()
    }
    fn check_config(&self, name: &str, config: &str) -> Result<(), (String, String)> {
        self.0
            .check_config(name, config)
            .map_err(|m| (m.field, m.message))
    }
}

/// The policy directory, read and checked (the gateway refuses to start on an invalid one),
/// with the plugin host told of the plugin config it sets.
fn open_policy(config: &Config, registry: &Arc<PluginRegistry>) -> Result<Arc<PolicyHandle>> {
    let dir = match &config.policy.dir {
        Some(d) if d.is_dir() => Some(d.as_path()),
        Some(d) if config.policy.required => {
            bail!("policy.dir: {} is not a directory", d.display())
        }
        Some(d) => {
            tracing::info!(dir = %d.display(), "no policy directory: routing as the config file says");
            None
        }
        None => None,
    };
    let loaded = registry.clone();
    let hooks = Hooks {
        plugins: Some(Arc::new(LoadedPlugins(registry.clone()))),
        on_load: Some(Arc::new(move |p: &crate::policy::Policy| {
            loaded
                .host_context()
                .set_config_overrides(p.plugin_config.clone());
            // A plugin version loaded later is checked against the configs the policy gives it.
            let mut configs: Vec<(String, String, Arc<str>)> = p
                .plugin_config
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        format!("the policy's [plugins.{name}] config"),
                        c.clone(),
                    )
                })
                .collect();
            for r in &p.rules {
                for (stage, choice) in [("routing", &r.routing), ("billing", &r.billing)] {
                    if let Some(c) = choice {
                        configs.push((
                            c.plugin.clone(),
                            format!("{}: routes '{}'.{stage}.config", r.source, r.name),
                            c.config.clone(),
                        ));
                    }
                }
            }
            loaded.set_policy_configs(configs);
            // A routing or billing plugin a route names keeps its stage across reloads.
            loaded.expect_stages(p.rules.iter().flat_map(|r| {
                let routing = r
                    .routing
                    .as_ref()
                    .map(|c| (c.plugin.clone(), Stage::Routing));
                let billing = r
                    .billing
                    .as_ref()
                    .map(|c| (c.plugin.clone(), Stage::Billing));
                routing.into_iter().chain(billing)
            }));
        })),
    };
    let handle =
        PolicyHandle::open(config, dir, hooks).map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    if let Some(d) = dir {
        let p = handle.current();
        tracing::info!(dir = %d.display(), files = p.files.len(), routes = p.rules.len(),
            aliases = p.aliases.len(), "policy loaded");
    }
    Ok(Arc::new(handle))
}

fn config_watch(config: &Config) -> bool {
    config.policy.watch && config.policy.dir.as_ref().is_some_and(|d| d.is_dir())
}

/// Reloads on SIGHUP: the policy files, then every plugin in the plugin directory.
fn spawn_sighup(
    policy: Arc<PolicyHandle>,
    registry: Arc<PluginRegistry>,
    plugin_dir: std::path::PathBuf,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the policy and plugins");
            let policy = policy.clone();
            let registry = registry.clone();
            let dir = plugin_dir.clone();
            // Compiling plugins is CPU work: off the async workers.
            let _ = tokio::task::spawn_blocking(move || {
                let _ = policy.reload();
                for (path, outcome) in registry.load_dir(&dir) {
                    if let Err(e) = outcome {
                        tracing::error!(file = %path.display(), error = %e, "plugin not reloaded");
                    }
                }
            })
            .await;
        }
    });
    Ok(())
}

/// Both listeners' addresses must be free: Pingora would retry a taken one forever.
fn check_ports(config: &Config) -> Result<()> {
    for (what, addr) in [
        ("server.listen", &config.listen),
        ("server.admin_listen", &config.admin_listen),
    ] {
        if let Err(e) = std::net::TcpListener::bind(addr.as_str()) {
            bail!("{what}: cannot listen on {addr}: {e} (is another gateway running?)");
        }
    }
    Ok(())
}

/// Runs the gateway until it is told to stop; exits the process.
pub fn serve(config: Config) -> Result<()> {
    let background = crate::cli::runtime()?;
    let secret = config.key_secret()?;
    let (store, usage) = background.block_on(async {
        let store = Store::connect(&config.database_url).await?;
        let usage = UsageWriter::spawn(
            store.clone(),
            config.usage_batch,
            config.usage_flush,
            config.data_dir.join("usage-dead-letter.jsonl"),
        );
        anyhow::Ok((store, usage))
    })?;
    let services = Arc::new(GatewayServices::new(&config, store.clone(), secret));
    // Orgs below their low-balance threshold get one webhook per crossing.
    let _alerts = {
        let _entered = background.enter();
        crate::alerts::spawn_low_balance_alerts(
            store.clone(),
            config.key_secret()?,
            config.low_balance_check,
        )
    };
    // Key and org changes reach the caches at once (this process, and other replicas through
    // PostgreSQL's NOTIFY).
    let _invalidation = {
        let _entered = background.enter();
        crate::services::spawn_invalidation(services.clone(), &store, &config.database_url)
    };
    // Expired Responses state is deleted in the background (reads past expiry already miss).
    let _purge = {
        let _entered = background.enter();
        crate::store::spawn_response_purge(store.clone(), config.responses_purge_interval, 500)
    };
    // Usage rows, content and client IPs past their retention period (docs/retention.md).
    let _retention = {
        let _entered = background.enter();
        crate::retention::purge::spawn_purge(store.clone(), &config.retention)
    };
    // Holds whose request never settled (the process died mid-request) are released once no
    // request could still be running: the whole-attempt bound plus ten minutes.
    let stale_after = config.upstream.total + Duration::from_secs(600);
    let sweeping = store.clone();
    background.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            let before = crate::store::now_ms()
                - i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX / 2);
            match sweeping.release_stale_holds(before).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    released = n,
                    "released credit holds of requests that never settled"
                ),
                Err(e) => tracing::error!(error = %e, "sweeping stale credit holds failed"),
            }
        }
    });
    // The tokenizer for usage estimates is not built here: its tables cost ~45 MB of RSS
    // (measured), paid only once a provider answers without usage (then on the blocking pool).
    let engine = Arc::new(PluginEngine::new(config.plugin_engine.clone())?);
    let shared = Arc::new(HostContext::new(services.clone(), 100_000));
    let registry = Arc::new(PluginRegistry::new(
        engine,
        shared,
        config.plugin_settings.clone(),
        Some(&config.plugin_cache_dir),
    )?);
    registry.expect_stages(config.plugin_stages());
    for (path, outcome) in registry.load_dir(&config.plugin_dir) {
        if let Err(e) = outcome {
            tracing::error!(file = %path.display(), error = %e, "plugin not loaded");
        }
    }
    check_required(&config, &registry)?;
    let policy = open_policy(&config, &registry)?;
    let _watch = if config.watch_plugins {
        Some(crate::plugins::watch(
            registry.clone(),
            Path::new(&config.plugin_dir),
            Duration::from_millis(50),
        )?)
    } else {
        None
    };
    tracing::info!(listen = %config.listen, admin = %config.admin_listen, database = %config.database_url,
        plugins = %config.plugin_dir.display(), "tollgate starting");
    // BYOK keys: a missing or wrong master key is said loudly here; requests that do not use
    // BYOK are served regardless.
    let byok = Arc::new(
        crate::byok::ByokKeys::new(store.clone(), &config.byok)
            .context("loading the BYOK master key")?,
    );
    match background.block_on(byok.check()) {
        Ok(0) => {}
        Ok(n) => tracing::info!(keys = n, "BYOK provider keys stored and openable"),
        Err(e) => tracing::error!(error = %e, "BYOK provider keys cannot be used"),
    }
    let limiter = {
        let _entered = background.enter();
        crate::ratelimit::RateLimiter::from_config(&config.rate_limits)
            .map_err(anyhow::Error::msg)?
    };
    check_ports(&config)?;
    let state = Arc::new(AppState {
        policy: policy.clone(),
        state_key: crate::retention::state_seal::StateKey::derive(&config.key_secret()?),
        limiter,
        byok,
        upstreams: Upstreams::new(&config),
        registry,
        services,
        store,
        usage: usage.clone(),
        metrics: Default::default(),
        connections: Arc::new(crate::proxy::front_door::Connections::new(
            config.downstream.max_connections,
            config.downstream.max_connections_per_ip,
        )),
        config,
    });
    // After a flood of connections drains, give its memory back (checked every 2 s).
    let watched = state.clone();
    background.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            if watched.connections.trim_after_surge(1024) {
                tracing::info!("connection surge over: freed memory returned to the system");
            }
        }
    });
    let _policy_watch = if config_watch(&state.config) {
        crate::policy::live::watch(policy.clone(), state.config.policy.debounce)
            .context("watching the policy directory")?
    } else {
        None
    };
    // SIGHUP reloads the policy and the plugin directory (it would otherwise end the process).
    {
        let _entered = background.enter();
        spawn_sighup(
            policy.clone(),
            state.registry.clone(),
            state.config.plugin_dir.clone(),
        )?;
    }
    let server = build_server(state)?;
    server.run(pingora_core::server::RunArgs::default());
    // Pingora returns once its runtimes stopped, so every request has queued its record by now:
    // write whatever is still queued before the process exits. (A shutdown hook inside Pingora
    // raced with the runtimes stopping and lost records.)
    background.block_on(async {
        if tokio::time::timeout(Duration::from_secs(30), usage.flush())
            .await
            .is_err()
        {
            tracing::error!("usage records still unwritten after 30 s at shutdown");
        } else {
            tracing::info!("usage records flushed");
        }
    });
    std::process::exit(0)
}
