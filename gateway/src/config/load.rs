//! Loading: a config file over the built-in defaults, checked field by field into the internal
//! [`Config`] (errors name the field), and the server secret for key hashes.

use super::*;

/// A duration in milliseconds from the file, else the defaults, else `fallback`; 0 is refused by
/// clamping to 1 ms so no bound silently disappears.
pub(super) fn ms(file: Option<u64>, defaults: Option<u64>, fallback: u64) -> Duration {
    Duration::from_millis(file.or(defaults).unwrap_or(fallback).max(1))
}

/// A count that must be at least 1.
fn positive(v: Option<usize>, fallback: usize, what: &str) -> Result<usize> {
    match v.unwrap_or(fallback) {
        0 => bail!("{what} must be at least 1"),
        n => Ok(n),
    }
}

fn usd_per_mtok(v: f64, what: &str) -> Result<u64> {
    if !(0.0..=1e6).contains(&v) {
        bail!("{what}: price {v} out of range (USD per million tokens)");
    }
    Ok((v * 1e6).round() as u64)
}

fn plugin_settings(base: &PluginSettings, s: &schema::PluginLimits) -> Result<PluginSettings> {
    let mut out = base.clone();
    if let Some(ms) = s.deadline_ms {
        out.deadline = Duration::from_millis(ms);
    }
    if let Some(mb) = s.memory_limit_mb {
        out.memory_limit_bytes = mb << 20;
    }
    if let Some(mb) = s.max_output_mb {
        out.max_output_bytes = mb << 20;
    }
    if let Some(mode) = s.instance_mode {
        out.instance_mode = mode;
    }
    if let Some(n) = s.max_calls_per_instance {
        out.max_calls_per_instance = n;
    }
    if let Some(n) = s.pool_size {
        out.pool_size = n;
    }
    if let Some(cfg) = &s.config {
        out.config_json = Arc::from(serde_json::to_string(cfg)?.as_str());
    }
    Ok(out)
}

/// The plugin engine's options: the file's, else the defaults', else the built-in ones.
fn engine_options(
    f: &schema::Plugins,
    d: &schema::Plugins,
) -> Result<crate::plugins::EngineOptions> {
    let mut out = crate::plugins::EngineOptions::default();
    if let Some(ms) = f.epoch_tick_ms.or(d.epoch_tick_ms) {
        if !(1..=1000).contains(&ms) {
            bail!("plugins.epoch_tick_ms: {ms} is out of range (1-1000)");
        }
        out.epoch_tick = Duration::from_millis(ms);
    }
    if let Some(ms) = f.inline_budget_ms.or(d.inline_budget_ms) {
        if !(1..=10_000).contains(&ms) {
            bail!("plugins.inline_budget_ms: {ms} is out of range (1-10000)");
        }
        out.inline_budget = Duration::from_millis(ms);
    }
    if let Some(n) = f.slow_lane_threads.or(d.slow_lane_threads) {
        out.lane.threads = positive(Some(n), 1, "plugins.slow_lane_threads")?;
    }
    if let Some(nice) = f.slow_lane_nice.or(d.slow_lane_nice) {
        if !(0..=19).contains(&nice) {
            bail!("plugins.slow_lane_nice: {nice} is out of range (0-19)");
        }
        out.lane.nice = nice;
    }
    if let Some(n) = f.output_lines_per_sec.or(d.output_lines_per_sec) {
        if !(0.0..=1e6).contains(&n) {
            bail!("plugins.output_lines_per_sec: {n} is out of range (0-1000000)");
        }
        out.output.lines_per_sec = n;
    }
    Ok(out)
}

fn parse_base_url(name: &str, url: &str) -> Result<(bool, String, u16, String)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("providers.{name}.base_url: '{url}' is not a URL"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => bail!("providers.{name}.base_url: '{url}' must start with http:// or https://"),
    };
    let host = uri
        .host()
        .with_context(|| format!("providers.{name}.base_url: '{url}' has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok((https, host, port, base_path))
}

/// Model name -> its routes, and model name -> its catalog metadata.
pub(crate) type Catalog = (BTreeMap<String, Vec<Route>>, BTreeMap<String, ModelInfo>);

/// The catalog from `[[models]]` (config file or policy files): each model's routes in policy
/// order with prices, and its catalog metadata. Errors name the model and route.
pub(crate) fn compile_models(
    providers: &BTreeMap<String, Provider>,
    model_src: Vec<schema::Model>,
) -> Result<Catalog> {
    let mut models = BTreeMap::new();
    let mut model_info = BTreeMap::new();
    for m in model_src {
        let kind = match m.kind.as_deref() {
            None | Some("chat") => ModelKind::Chat,
            Some("embedding") => ModelKind::Embedding,
            Some(other) => bail!(
                "models '{}': kind '{other}' is not chat or embedding",
                m.name
            ),
        };
        model_info.insert(
            m.name.clone(),
            ModelInfo {
                kind,
                context_length: m.context_length,
                input_modalities: m.input_modalities.unwrap_or_else(|| vec!["text".into()]),
                output_modalities: m.output_modalities.unwrap_or_else(|| {
                    vec![if kind == ModelKind::Embedding {
                        "embeddings".into()
                    } else {
                        "text".into()
                    }]
                }),
                supported_parameters: m.supported_parameters.clone(),
                description: m.description.unwrap_or_default(),
            },
        );
        let mut routes = Vec::new();
        for r in m.routes {
            if !providers.contains_key(&r.provider) {
                bail!(
                    "models '{}': route names unknown provider '{}'",
                    m.name,
                    r.provider
                );
            }
            let what = format!("models '{}' route '{}'", m.name, r.provider);
            let priced = [
                Some(r.input_per_mtok),
                Some(r.output_per_mtok),
                r.cache_read_per_mtok,
                r.cache_write_per_mtok,
            ]
            .iter()
            .any(|p| p.is_some_and(|v| v > 0.0));
            if r.free && priced {
                bail!("{what}: `free = true` with prices set; choose one");
            }
            routes.push(Route {
                unpriced: !priced && !r.free,
                upstream_model: r.model.unwrap_or_else(|| m.name.clone()),
                price: Price {
                    input: usd_per_mtok(r.input_per_mtok, &what)?,
                    output: usd_per_mtok(r.output_per_mtok, &what)?,
                    cache_read: usd_per_mtok(
                        r.cache_read_per_mtok.unwrap_or(r.input_per_mtok),
                        &what,
                    )?,
                    cache_write: usd_per_mtok(
                        r.cache_write_per_mtok.unwrap_or(r.input_per_mtok),
                        &what,
                    )?,
                },
                provider: r.provider,
                context_length: r.context_length.or(m.context_length),
                supported_parameters: r
                    .supported_parameters
                    .or_else(|| m.supported_parameters.clone()),
            });
        }
        if models.insert(m.name.clone(), routes).is_some() {
            bail!("models '{}' is defined twice", m.name);
        }
    }
    Ok((models, model_info))
}

impl Config {
    /// Loads a config file over the built-in defaults (or the defaults alone).
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let defaults: schema::File =
            toml::from_str(DEFAULT_CONFIG).context("built-in default config")?;
        let Some(path) = path else {
            return Config::from_schema(defaults, None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let file: schema::File =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        Config::from_schema(file, Some(defaults))
    }

    /// Parses config text (for tests and `tollgate config check`).
    pub fn from_toml(text: &str) -> Result<Config> {
        let defaults: schema::File = toml::from_str(DEFAULT_CONFIG)?;
        Config::from_schema(toml::from_str(text)?, Some(defaults))
    }

    fn from_schema(f: schema::File, defaults: Option<schema::File>) -> Result<Config> {
        // Sections missing from the file come from the defaults.
        let d = defaults.unwrap_or_default();
        let pick = |a: Option<String>, b: Option<String>, fallback: &str| {
            a.or(b).unwrap_or_else(|| fallback.to_string())
        };
        let data_dir = f
            .server
            .data_dir
            .or(d.server.data_dir)
            .unwrap_or_else(|| "data".into());
        let mut base = PluginSettings::default();
        base = plugin_settings(&base, &d.plugins.defaults)?;
        base = plugin_settings(&base, &f.plugins.defaults)?;
        let mut table = SettingsTable {
            default: base.clone(),
            ..SettingsTable::default()
        };
        for (name, s) in d.plugins.settings.iter().chain(f.plugins.settings.iter()) {
            let start = table
                .by_name
                .get(name)
                .cloned()
                .unwrap_or_else(|| base.clone());
            table
                .by_name
                .insert(name.clone(), plugin_settings(&start, s)?);
        }

        let provider_src = if f.providers.is_empty() {
            d.providers
        } else {
            f.providers
        };
        let mut providers = BTreeMap::new();
        for (name, p) in provider_src {
            let (scheme_https, host, port, base_path) = parse_base_url(&name, &p.base_url)?;
            let auth = match p.auth.as_deref() {
                None | Some("bearer") => ProviderAuth::Bearer,
                Some("x-api-key") => ProviderAuth::XApiKey,
                Some(other) => bail!("providers.{name}.auth: '{other}' is not bearer or x-api-key"),
            };
            let formats = match p.formats {
                Some(list) => {
                    for f in &list {
                        if !CLIENT_FORMATS.contains(&f.as_str()) {
                            bail!(
                                "providers.{name}.formats: '{f}' is not one of {}",
                                CLIENT_FORMATS.join(", ")
                            );
                        }
                    }
                    list
                }
                None => vec!["openai-chat".to_string()],
            };
            providers.insert(
                name.clone(),
                Provider {
                    name,
                    scheme_https,
                    host,
                    port,
                    base_path,
                    api_key_env: p.api_key_env,
                    transform: p.transform,
                    auth,
                    zero_retention: p.zero_retention,
                    trains_on_data: p.trains_on_data,
                    region: p.region.unwrap_or_default(),
                    ca_file: p.ca_file,
                    formats,
                },
            );
        }
        let model_src = if f.models.is_empty() {
            d.models
        } else {
            f.models
        };
        let (models, model_info) = compile_models(&providers, model_src)?;

        let logging = pick(
            f.stages.logging.clone(),
            d.stages.logging.clone(),
            "retention-metadata-only",
        );
        let plugin_engine = engine_options(&f.plugins, &d.plugins)?;
        let config = Config {
            listen: pick(f.server.listen, d.server.listen, "127.0.0.1:8080"),
            admin_listen: pick(
                f.server.admin_listen,
                d.server.admin_listen,
                "127.0.0.1:9090",
            ),
            admin_token: f
                .server
                .admin_token_env
                .or(d.server.admin_token_env)
                .and_then(|v| std::env::var(v).ok())
                .filter(|t| !t.is_empty()),
            threads: f.server.threads.or(d.server.threads).unwrap_or(2).max(1),
            grace_period: Duration::from_secs(
                f.server
                    .grace_period_seconds
                    .or(d.server.grace_period_seconds)
                    .unwrap_or(1),
            ),
            key_secret_env: pick(
                f.server.key_secret_env,
                d.server.key_secret_env,
                "TOLLGATE_KEY_SECRET",
            ),
            database_url: f
                .database
                .url
                .or(d.database.url)
                .unwrap_or_else(|| format!("sqlite://{}/tollgate.db", data_dir.display())),
            usage_batch: f
                .database
                .usage_batch
                .or(d.database.usage_batch)
                .unwrap_or(256)
                .max(1),
            usage_flush: Duration::from_millis(
                f.database
                    .usage_flush_ms
                    .or(d.database.usage_flush_ms)
                    .unwrap_or(200),
            ),
            plugin_dir: f
                .plugins
                .dir
                .or(d.plugins.dir)
                .unwrap_or_else(|| "target/plugins".into()),
            plugin_cache_dir: f
                .plugins
                .cache_dir
                .or(d.plugins.cache_dir)
                .unwrap_or_else(|| data_dir.join("plugin-cache")),
            watch_plugins: f.plugins.watch.or(d.plugins.watch).unwrap_or(true),
            plugin_engine,
            plugin_settings: table,
            auth_plugin: pick(f.stages.auth, d.stages.auth, "auth-apikey"),
            guardrail_plugins: f
                .stages
                .guardrails
                .or(d.stages.guardrails)
                .unwrap_or_default(),
            routing_plugin: pick(f.stages.routing, d.stages.routing, "route-policy"),
            billing_plugin: pick(f.stages.billing, d.stages.billing, "billing-credits"),
            logging_plugin: logging.clone(),
            metrics_require_token: f
                .server
                .metrics_require_token
                .or(d.server.metrics_require_token)
                .unwrap_or(false),
            downstream: DownstreamLimits {
                header_timeout: ms(
                    f.server.header_timeout_ms,
                    d.server.header_timeout_ms,
                    10_000,
                ),
                keepalive_timeout: ms(
                    f.server.keepalive_timeout_ms,
                    d.server.keepalive_timeout_ms,
                    60_000,
                ),
                write_timeout: ms(
                    f.server.client_write_timeout_ms,
                    d.server.client_write_timeout_ms,
                    30_000,
                ),
                max_connections: positive(
                    f.server.max_connections.or(d.server.max_connections),
                    4096,
                    "server.max_connections",
                )?,
                max_connections_per_ip: positive(
                    f.server
                        .max_connections_per_ip
                        .or(d.server.max_connections_per_ip),
                    1024,
                    "server.max_connections_per_ip",
                )?,
                max_header_bytes: positive(
                    f.server.max_header_bytes.or(d.server.max_header_bytes),
                    32 << 10,
                    "server.max_header_bytes",
                )?
                .min(1 << 20),
                max_headers: positive(
                    f.server.max_headers.or(d.server.max_headers),
                    100,
                    "server.max_headers",
                )?
                .min(250),
                max_requests_per_connection: f
                    .server
                    .max_requests_per_connection
                    .or(d.server.max_requests_per_connection)
                    .unwrap_or(0),
                body_timeout: ms(f.limits.body_timeout_ms, d.limits.body_timeout_ms, 30_000),
                max_body_bytes: f
                    .limits
                    .max_body_bytes
                    .or(d.limits.max_body_bytes)
                    .unwrap_or(4 << 20),
            },
            upstream: UpstreamLimits {
                connect: ms(
                    f.limits.connect_timeout_ms,
                    d.limits.connect_timeout_ms,
                    5_000,
                ),
                first_byte: ms(
                    f.limits.first_byte_timeout_ms,
                    d.limits.first_byte_timeout_ms,
                    60_000,
                ),
                stall: ms(f.limits.stall_timeout_ms, d.limits.stall_timeout_ms, 30_000),
                total: ms(
                    f.limits.upstream_timeout_ms,
                    d.limits.upstream_timeout_ms,
                    300_000,
                ),
                max_body_bytes: positive(
                    f.limits
                        .max_upstream_body_bytes
                        .or(d.limits.max_upstream_body_bytes),
                    64 << 20,
                    "limits.max_upstream_body_bytes",
                )?,
            },
            validation: ValidationLimits {
                max_n: f.limits.max_n.or(d.limits.max_n).unwrap_or(16).max(1),
                max_output_tokens: f
                    .limits
                    .max_output_tokens
                    .or(d.limits.max_output_tokens)
                    .unwrap_or(1_000_000)
                    .max(1),
                max_json_depth: f
                    .limits
                    .max_json_depth
                    .or(d.limits.max_json_depth)
                    .unwrap_or(64)
                    .clamp(4, 1024),
            },
            data_dir,
            providers,
            models,
            model_info,
            reserve_credits: f
                .limits
                .reserve_credits
                .or(d.limits.reserve_credits)
                .unwrap_or(true),
            unpriced_models: match f
                .limits
                .unpriced_models
                .as_deref()
                .or(d.limits.unpriced_models.as_deref())
                .unwrap_or("refuse")
            {
                "refuse" => UnpricedPolicy::Refuse,
                "alert" => UnpricedPolicy::Alert,
                other => {
                    bail!("limits.unpriced_models: '{other}' is not one of \"refuse\", \"alert\"")
                }
            },
            low_balance_check: ms(
                f.server.low_balance_check_ms,
                d.server.low_balance_check_ms,
                5000,
            ),
            usage_cost_in_responses: f
                .server
                .usage_cost_in_responses
                .or(d.server.usage_cost_in_responses)
                .unwrap_or(true),
            responses_ttl: Duration::from_secs(
                f.server
                    .responses_ttl_seconds
                    .or(d.server.responses_ttl_seconds)
                    .unwrap_or(3600),
            ),
            responses_purge_interval: Duration::from_millis(
                f.server
                    .responses_purge_interval_ms
                    .or(d.server.responses_purge_interval_ms)
                    .unwrap_or(1000)
                    .max(10),
            ),
            byok: ByokSettings {
                master_key_env: pick(
                    f.byok.master_key_env,
                    d.byok.master_key_env,
                    "TOLLGATE_MASTER_KEY",
                ),
                master_key_file: f.byok.master_key_file.or(d.byok.master_key_file),
                fee_percent: match f.byok.fee_percent.or(d.byok.fee_percent).unwrap_or(0.0) {
                    p if (0.0..=100.0).contains(&p) => p,
                    p => bail!("byok.fee_percent: {p} is not between 0 and 100"),
                },
            },
            rate_limits: super::rate_limits::load(&f.rate_limits, &d.rate_limits)?,
            retention: super::rate_limits::retention(&f.retention, &d.retention, &logging)?,
            policy: PolicySettings {
                required: f.policy.dir.is_some(),
                dir: f
                    .policy
                    .dir
                    .or(d.policy.dir)
                    .or_else(|| Some(PathBuf::from("policies")))
                    .filter(|d| !d.as_os_str().is_empty()),
                watch: f.policy.watch.or(d.policy.watch).unwrap_or(true),
                debounce: ms(f.policy.debounce_ms, d.policy.debounce_ms, 100),
            },
        };
        Ok(config)
    }

    /// The server secret keyed hashes of API keys are made with: from the env var named by
    /// `server.key_secret_env`, else from `<data_dir>/key-secret` (created once, mode 0600).
    pub fn key_secret(&self) -> Result<Vec<u8>> {
        if let Ok(s) = std::env::var(&self.key_secret_env) {
            if !s.is_empty() {
                return Ok(s.into_bytes());
            }
        }
        let path = self.data_dir.join("key-secret");
        if let Ok(existing) = std::fs::read_to_string(&path) {
            if !existing.trim().is_empty() {
                return Ok(existing.trim().as_bytes().to_vec());
            }
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        let mut raw = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut raw);
        let secret = hex::encode(raw);
        write_private(&path, secret.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(secret.into_bytes())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
