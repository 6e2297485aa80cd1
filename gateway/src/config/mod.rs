//! Configuration: the TOML schema users write (`schema`), and the checked internal form the
//! gateway runs on (`Config`). Every field has a default, so `tollgate serve` works with no file;
//! the defaults are in `default-config.toml`, which is also the documented reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::plugins::{InstanceMode, PluginSettings, SettingsTable};

/// The built-in defaults, also shipped as the reference config.
pub const DEFAULT_CONFIG: &str = include_str!("../default-config.toml");

pub(crate) mod load;
mod rate_limits;
pub(crate) mod schema;
#[cfg(test)]
mod tests;

/// How the provider expects its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderAuth {
    /// `Authorization: Bearer <key>` (OpenAI and most compatibles).
    Bearer,
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub scheme_https: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix of the base URL (e.g. `/openai` for some proxies), without trailing slash.
    pub base_path: String,
    pub api_key_env: Option<String>,
    pub transform: String,
    pub auth: ProviderAuth,
    pub zero_retention: bool,
    /// The provider may train on what it is sent.
    pub trains_on_data: bool,
    /// Where the provider processes data ("" = not stated: refused by region policies).
    pub region: String,
    pub ca_file: Option<PathBuf>,
    /// Client APIs served natively (pass-through to the transform), by their WIT names
    /// (`anthropic-messages`, `openai-embeddings`, ...). Canonical chat is always served.
    pub formats: Vec<String>,
}

/// The client APIs a provider can declare in `formats`.
/// (`openai-responses` is not among them: the gateway keeps Responses state itself, so Responses
/// always reaches providers as canonical chat.)
pub const CLIENT_FORMATS: [&str; 3] = ["openai-chat", "anthropic-messages", "openai-embeddings"];

impl Provider {
    /// Whether the provider serves `format` natively.
    pub fn speaks(&self, format: &str) -> bool {
        self.formats.iter().any(|f| f == format)
    }

    /// The provider key from its env var, read per request so rotation needs no restart.
    pub fn api_key(&self) -> Option<String> {
        self.api_key_env
            .as_ref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|k| !k.is_empty())
    }
}

/// Price in micro-USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Chat,
    Embedding,
}

/// Catalog metadata of a model (what `GET /v1/models` shows).
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub kind: ModelKind,
    pub context_length: Option<u64>,
    pub input_modalities: Vec<String>,
    pub output_modalities: Vec<String>,
    /// None: the gateway's default list for the kind.
    pub supported_parameters: Option<Vec<String>>,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub provider: String,
    pub upstream_model: String,
    pub price: Price,
    /// No price configured and not declared `free`: see [`UnpricedPolicy`].
    pub unpriced: bool,
    /// The route's context window in tokens, when known (route's, else the model's).
    pub context_length: Option<u64>,
    /// Request parameters the route accepts, when declared (route's, else the model's).
    pub supported_parameters: Option<Vec<String>>,
}

/// What happens to a route with no price (`[limits] unpriced_models`): never silently free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpricedPolicy {
    /// Not offered to routing; a model with only unpriced routes is refused, naming the policy.
    Refuse,
    /// Served at no charge, with a warning in the log and `tollgate_unpriced_requests_total`.
    Alert,
}

/// What a client connection may hold, and for how long (the front door enforces these before a
/// request reaches the pipeline).
#[derive(Debug, Clone)]
pub struct DownstreamLimits {
    /// The whole request header must arrive within this, counted from its first byte.
    pub header_timeout: Duration,
    /// An idle keep-alive connection (or one that sent nothing yet) is closed after this.
    pub keepalive_timeout: Duration,
    /// A client that does not read its response is dropped after a write blocks this long.
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Requests served on one connection before it is closed (0 = no limit).
    pub max_requests_per_connection: u32,
    /// The whole request body must arrive within this.
    pub body_timeout: Duration,
    pub max_body_bytes: usize,
}

/// Bounds on each phase of an upstream attempt.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamLimits {
    pub connect: Duration,
    /// From the request written to the response header.
    pub first_byte: Duration,
    /// Longest gap between two reads of the response body (or two SSE events).
    pub stall: Duration,
    /// The whole attempt, connect to the last byte.
    pub total: Duration,
    pub max_body_bytes: usize,
}

/// What the gateway accepts in a request body before anything is routed or charged.
#[derive(Debug, Clone, Copy)]
pub struct ValidationLimits {
    pub max_n: u32,
    pub max_output_tokens: u64,
    pub max_json_depth: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub admin_listen: String,
    pub admin_token: Option<String>,
    pub threads: usize,
    pub grace_period: Duration,
    pub data_dir: PathBuf,
    pub key_secret_env: String,
    pub database_url: String,
    pub usage_batch: usize,
    pub usage_flush: Duration,
    pub plugin_dir: PathBuf,
    pub plugin_cache_dir: PathBuf,
    pub watch_plugins: bool,
    /// The plugin engine: epoch tick, slow lane, output limits (`[plugins]`).
    pub plugin_engine: crate::plugins::EngineOptions,
    pub plugin_settings: SettingsTable,
    pub auth_plugin: String,
    /// Guardrail plugins, in the order they run (`[stages] guardrails`).
    pub guardrail_plugins: Vec<String>,
    pub routing_plugin: String,
    pub billing_plugin: String,
    pub logging_plugin: String,
    pub metrics_require_token: bool,
    pub downstream: DownstreamLimits,
    pub upstream: UpstreamLimits,
    pub validation: ValidationLimits,
    pub providers: BTreeMap<String, Provider>,
    /// Model name -> routes in policy order.
    pub models: BTreeMap<String, Vec<Route>>,
    /// Catalog metadata per model (same keys as `models`).
    pub model_info: BTreeMap<String, ModelInfo>,
    /// Responses API state lifetime (zero: never stored).
    pub responses_ttl: Duration,
    /// Reserve each request's worst-case cost (the billing stage's hold) in the database before
    /// it goes upstream, so concurrent requests and replicas cannot overspend.
    pub reserve_credits: bool,
    pub unpriced_models: UnpricedPolicy,
    pub responses_purge_interval: Duration,
    /// Add `usage.cost` (USD, what the request was charged) to OpenAI-format answers.
    pub usage_cost_in_responses: bool,
    /// How often balances are checked against low-balance thresholds (webhooks).
    pub low_balance_check: Duration,
    /// BYOK: where the master key comes from, and the fee on BYOK requests (`[byok]`).
    pub byok: ByokSettings,
    /// Rate limits: local or shared through Redis, and the defaults (`[rate_limits]`).
    pub rate_limits: crate::ratelimit::RateLimitConfig,
    /// Retention: the logging plugin per mode, the content cap, the purge (`[retention]`).
    pub retention: RetentionSettings,
    /// Policy files (`[policy]`, docs/policies.md).
    pub policy: PolicySettings,
}

/// `[policy]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    /// The policy directory (`*.toml`), None when there is none.
    pub dir: Option<PathBuf>,
    /// The directory was named in the config file: it must exist.
    pub required: bool,
    pub watch: bool,
    pub debounce: Duration,
}

/// `[retention]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionSettings {
    /// The logging plugin deciding for each mode.
    pub plugins: BTreeMap<crate::retention::RetentionMode, String>,
    /// Request and response content captured for the logging stage, each at most this many
    /// bytes (the rest is cut and the record marked truncated).
    pub max_content_bytes: usize,
    /// How often the purge runs.
    pub purge_interval: Duration,
    /// Rows deleted or updated per statement (keeps each write transaction short).
    pub purge_batch: u64,
}

impl Config {
    /// Every plugin the config names, with the stage it serves: the four stage plugins, each
    /// provider's transform, the guardrails, the logging plugin of every retention mode.
    pub fn plugin_stages(&self) -> Vec<(String, crate::plugins::Stage)> {
        use crate::plugins::Stage;
        let mut out = vec![
            (self.auth_plugin.clone(), Stage::Auth),
            (self.routing_plugin.clone(), Stage::Routing),
            (self.billing_plugin.clone(), Stage::Billing),
            (self.logging_plugin.clone(), Stage::Logging),
        ];
        out.extend(
            self.guardrail_plugins
                .iter()
                .map(|n| (n.clone(), Stage::Guardrail)),
        );
        out.extend(
            self.providers
                .values()
                .map(|p| (p.transform.clone(), Stage::Transform)),
        );
        out.extend(
            self.retention
                .plugins
                .values()
                .map(|n| (n.clone(), Stage::Logging)),
        );
        out
    }
}

impl RetentionSettings {
    /// The logging plugin for `mode`.
    pub fn plugin(&self, mode: crate::retention::RetentionMode) -> &str {
        self.plugins.get(&mode).map_or("", String::as_str)
    }
}

/// `[byok]`: the master key that seals org-provided provider keys, and the fee on BYOK requests.
#[derive(Debug, Clone, PartialEq)]
pub struct ByokSettings {
    /// Env var holding the master key (base64 or 64 hex digits), checked first.
    pub master_key_env: String,
    /// File holding the master key (mode 0600), used when the env var is unset or empty.
    pub master_key_file: Option<PathBuf>,
    /// Percent of a BYOK request's cost charged as credits (0: BYOK requests are free).
    pub fee_percent: f64,
}

impl Default for ByokSettings {
    fn default() -> Self {
        ByokSettings {
            master_key_env: "TOLLGATE_MASTER_KEY".into(),
            master_key_file: None,
            fee_percent: 0.0,
        }
    }
}
