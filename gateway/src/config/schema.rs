//! The TOML schema users write: every field optional (the built-in defaults fill the gaps),
//! unknown fields refused. Checked into the internal [`super::Config`] by `load.rs`.

use super::*;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct File {
    pub server: Server,
    pub database: Database,
    pub plugins: Plugins,
    pub stages: Stages,
    pub limits: Limits,
    pub providers: BTreeMap<String, Provider>,
    pub models: Vec<Model>,
    pub byok: Byok,
    pub rate_limits: RateLimits,
    pub retention: Retention,
    pub policy: PolicySection,
}

/// `[policy]`: where the operator's policy files are, and whether they are watched.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    pub dir: Option<PathBuf>,
    pub watch: Option<bool>,
    pub debounce_ms: Option<u64>,
}

/// `[retention]`: the logging plugin of each retention mode, how much content is captured,
/// and how often the purge runs.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Mode names (`retain-all`, `metadata-only`, `zero`) to logging plugin names.
    pub plugins: Option<BTreeMap<String, String>>,
    pub max_content_bytes: Option<usize>,
    pub purge_interval_ms: Option<u64>,
    pub purge_batch: Option<u64>,
}

/// `[rate_limits]`: where limits are counted, and the defaults for keys and orgs that set none.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub redis_url: Option<String>,
    pub key_prefix: Option<String>,
    pub redis_timeout_ms: Option<u64>,
    pub on_redis_error: Option<String>,
    pub lease_divisor: Option<u64>,
    pub max_scopes: Option<usize>,
    pub default_key_rpm: Option<u64>,
    pub default_key_tpm: Option<u64>,
    pub default_key_concurrency: Option<u64>,
    pub default_org_rpm: Option<u64>,
    pub default_org_tpm: Option<u64>,
    pub default_org_concurrency: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub admin_token_env: Option<String>,
    pub threads: Option<usize>,
    pub grace_period_seconds: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub key_secret_env: Option<String>,
    pub metrics_require_token: Option<bool>,
    pub header_timeout_ms: Option<u64>,
    pub keepalive_timeout_ms: Option<u64>,
    pub client_write_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_requests_per_connection: Option<u32>,
    /// How long Responses API conversation state is kept (0 = never stored).
    pub responses_ttl_seconds: Option<u64>,
    /// How often expired Responses state is deleted.
    pub responses_purge_interval_ms: Option<u64>,
    /// Add `usage.cost` (USD) to OpenAI-format answers.
    pub usage_cost_in_responses: Option<bool>,
    /// How often orgs' balances are checked against their low-balance thresholds.
    pub low_balance_check_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    pub url: Option<String>,
    pub usage_batch: Option<usize>,
    pub usage_flush_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Plugins {
    pub dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub watch: Option<bool>,
    /// Epoch tick: deadline granularity, and the longest a guest runs on a proxy worker before
    /// its call moves to the slow lane.
    pub epoch_tick_ms: Option<u64>,
    /// CPU a guest call may use on a proxy worker before it moves to the slow lane.
    pub inline_budget_ms: Option<u64>,
    /// Threads of the slow lane, and their nice value (0-19).
    pub slow_lane_threads: Option<usize>,
    pub slow_lane_nice: Option<i32>,
    /// Lines per second a plugin's stdout/stderr may put in the log (burst: 50).
    pub output_lines_per_sec: Option<f64>,
    pub defaults: PluginLimits,
    pub settings: BTreeMap<String, PluginLimits>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    pub deadline_ms: Option<u64>,
    pub memory_limit_mb: Option<u64>,
    pub max_output_mb: Option<u64>,
    pub instance_mode: Option<InstanceMode>,
    pub max_calls_per_instance: Option<u64>,
    pub pool_size: Option<usize>,
    pub config: Option<toml::Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Stages {
    pub auth: Option<String>,
    /// Guardrail plugins, run in order after auth (none by default).
    pub guardrails: Option<Vec<String>>,
    pub routing: Option<String>,
    pub billing: Option<String>,
    pub logging: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: Option<usize>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub stall_timeout_ms: Option<u64>,
    pub upstream_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub max_upstream_body_bytes: Option<usize>,
    pub max_n: Option<u32>,
    pub max_output_tokens: Option<u64>,
    pub max_json_depth: Option<usize>,
    /// Hold each request's worst-case cost against the balance before it goes upstream.
    pub reserve_credits: Option<bool>,
    /// `refuse` (default) or `alert`: what happens to a route with no price.
    pub unpriced_models: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub transform: String,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub zero_retention: bool,
    /// The provider may train on what it is sent (refused for orgs with `deny_training`).
    #[serde(default)]
    pub trains_on_data: bool,
    /// Where the provider processes data (e.g. `eu`, `us`), matched against an org's
    /// allowed regions.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client APIs the provider serves natively (pass-through), besides canonical chat.
    #[serde(default)]
    pub formats: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub name: String,
    pub routes: Vec<Route>,
    /// `chat` (default) or `embedding`.
    pub kind: Option<String>,
    pub context_length: Option<u64>,
    pub input_modalities: Option<Vec<String>>,
    pub output_modalities: Option<Vec<String>>,
    pub supported_parameters: Option<Vec<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub provider: String,
    pub model: Option<String>,
    /// USD per million tokens.
    #[serde(default)]
    pub input_per_mtok: f64,
    #[serde(default)]
    pub output_per_mtok: f64,
    #[serde(default)]
    pub cache_read_per_mtok: Option<f64>,
    #[serde(default)]
    pub cache_write_per_mtok: Option<f64>,
    /// The route is free on purpose (no prices): served even under `unpriced_models = "refuse"`.
    #[serde(default)]
    pub free: bool,
    /// This route's context window, when it differs from the model's (context-length fallback
    /// moves to a route with a larger one).
    pub context_length: Option<u64>,
    /// Request parameters this route accepts, when it differs from the model's
    /// (`provider.require_parameters`).
    pub supported_parameters: Option<Vec<String>>,
}

/// `[byok]`: org-provided provider keys.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Byok {
    pub master_key_env: Option<String>,
    pub master_key_file: Option<PathBuf>,
    /// Percent of a BYOK request's cost charged as credits.
    pub fee_percent: Option<f64>,
}
