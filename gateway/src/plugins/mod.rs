//! The plugin host: one wasmtime engine, typed stage calls on pooled warm instances, limits,
//! a compiled-artifact cache, and hot reload.
//!
//! ```text
//! PluginEngine (Engine + Linker + epoch ticker + slow lane)
//!   └─ PluginRegistry (ArcSwap<name -> Arc<LoadedPlugin>>, load errors)
//!        └─ LoadedPlugin (one version: InstancePre + pool of warm instances + stats)
//! ```

pub mod bindings;
mod cache;
mod engine;
mod error;
mod instance;
mod lane;
mod loaded;
mod registry;
pub mod schema;
mod settings;
mod state;
mod wasi;
mod watch;

pub use engine::{EngineOptions, PluginEngine};
pub use error::{PluginError, PluginErrorKind};
pub use instance::WitVersion;
pub use lane::LaneOptions;
pub use loaded::{LoadedPlugin, PluginStats, PluginVersion, Retained};
pub use registry::{
    plugin_name, PluginRegistry, PluginStatus, SettingsTable, WIT_VERSION, WIT_VERSIONS,
};
pub use settings::{InstanceMode, PluginSettings};
pub use state::{HostContext, HostServices, NoServices};
pub use wasi::OutputLimits;
pub use watch::{watch, WatchHandle};

/// The stages a request passes through, in order (guardrails are optional: none by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Auth,
    Guardrail,
    Routing,
    Transform,
    Billing,
    Logging,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Auth,
        Stage::Guardrail,
        Stage::Routing,
        Stage::Transform,
        Stage::Billing,
        Stage::Logging,
    ];

    /// The stage for a WIT interface name (`auth`, `routing`, ...).
    pub fn from_interface(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Auth => "auth",
            Stage::Guardrail => "guardrail",
            Stage::Routing => "routing",
            Stage::Transform => "transform",
            Stage::Billing => "billing",
            Stage::Logging => "logging",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
