//! Limits and instance policy of a plugin. Every limit is configurable; the defaults suit
//! built-in plugins on the request path.

use std::sync::Arc;
use std::time::Duration;

/// How instances of a plugin are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceMode {
    /// Warm instances are kept in a pool and reused across requests (recycled after
    /// `max_calls_per_instance` calls or past `recycle_memory_bytes`). Fast: a call costs ~µs.
    Pooled,
    /// A fresh instance for every call: no state can leak between requests (tenants), at the
    /// cost of an instantiation (~10–30 µs) per call.
    PerCall,
}

/// Limits and options for one plugin.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// JSON handed to the plugin by `host.config()`.
    pub config_json: Arc<str>,
    pub instance_mode: InstanceMode,
    /// Wall-clock budget of one call; past it the call is interrupted.
    pub deadline: Duration,
    /// Cap on the instance's linear memory.
    pub memory_limit_bytes: u64,
    /// Largest byte payload (body, event data) accepted back from the plugin.
    pub max_output_bytes: u64,
    /// A pooled instance is dropped after this many calls.
    pub max_calls_per_instance: u64,
    /// A pooled instance whose memory grew past this is dropped after its call.
    pub recycle_memory_bytes: u64,
    /// Most warm instances kept idle per plugin version.
    pub pool_size: usize,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            config_json: Arc::from("{}"),
            instance_mode: InstanceMode::Pooled,
            deadline: Duration::from_millis(50),
            memory_limit_bytes: 64 << 20,
            max_output_bytes: 16 << 20,
            max_calls_per_instance: 10_000,
            recycle_memory_bytes: 16 << 20,
            pool_size: 64,
        }
    }
}
