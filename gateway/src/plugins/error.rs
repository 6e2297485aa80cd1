//! Errors of the plugin host. Each says which plugin failed, at which stage, and why; the
//! pipeline maps them to a client error (fail-closed for auth and billing).

use std::fmt;

use super::Stage;

/// Why a plugin call or load failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginErrorKind {
    /// The plugin ran past its deadline and was interrupted.
    Timeout { deadline_ms: u64 },
    /// The plugin asked for more memory than its cap.
    MemoryExceeded { limit_bytes: u64 },
    /// The plugin trapped (panic, unreachable, out-of-bounds access, ...).
    Trap(String),
    /// The plugin returned more bytes than the host accepts.
    OutputTooLarge { bytes: u64, limit_bytes: u64 },
    /// A fresh instance could not be created.
    Instantiate(String),
    /// No plugin of that name is loaded.
    NotLoaded,
    /// The plugin exists but implements another stage.
    WrongStage { actual: Stage },
    /// The file could not be read, compiled or checked.
    Load(String),
}

/// A plugin failure, naming the plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PluginError {
    pub plugin: String,
    pub stage: Option<Stage>,
    pub kind: PluginErrorKind,
}

impl PluginError {
    pub fn new(plugin: &str, stage: Option<Stage>, kind: PluginErrorKind) -> Self {
        PluginError {
            plugin: plugin.to_string(),
            stage,
            kind,
        }
    }

    /// A short machine-readable class, used as a metric label.
    pub fn class(&self) -> &'static str {
        match self.kind {
            PluginErrorKind::Timeout { .. } => "timeout",
            PluginErrorKind::MemoryExceeded { .. } => "memory",
            PluginErrorKind::Trap(_) => "trap",
            PluginErrorKind::OutputTooLarge { .. } => "output_too_large",
            PluginErrorKind::Instantiate(_) => "instantiate",
            PluginErrorKind::NotLoaded => "not_loaded",
            PluginErrorKind::WrongStage { .. } => "wrong_stage",
            PluginErrorKind::Load(_) => "load",
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin '{}'", self.plugin)?;
        if let Some(stage) = self.stage {
            write!(f, " ({stage} stage)")?;
        }
        match &self.kind {
            PluginErrorKind::Timeout { deadline_ms } => {
                write!(f, " exceeded its {deadline_ms} ms deadline")
            }
            PluginErrorKind::MemoryExceeded { limit_bytes } => {
                write!(f, " exceeded its memory limit of {limit_bytes} bytes")
            }
            PluginErrorKind::Trap(msg) => write!(f, " trapped: {msg}"),
            PluginErrorKind::OutputTooLarge { bytes, limit_bytes } => write!(
                f,
                " returned {bytes} bytes, over the {limit_bytes}-byte output limit"
            ),
            PluginErrorKind::Instantiate(msg) => write!(f, " could not be instantiated: {msg}"),
            PluginErrorKind::NotLoaded => write!(f, " is not loaded"),
            PluginErrorKind::WrongStage { actual } => {
                write!(f, " implements the {actual} stage, not this one")
            }
            PluginErrorKind::Load(msg) => write!(f, " failed to load: {msg}"),
        }
    }
}
