//! Operator routing policy: what `policies/*.toml` say, checked into the form the request path
//! reads (`Policy`), and held live (`live.rs`: hot reload on file change and SIGHUP, the previous
//! policy kept when an edit is invalid).
//!
//! ```text
//! file.rs      the policy file schema, and its checks (errors name file, line and field)
//! live.rs      the live policy: ArcSwap, reload, the directory watch, the status shown by the admin API
//! strategy.rs  ordering candidates: ordered, weighted, cheapest, fastest, least errors
//! options.rs   OpenRouter request options (`models`, `provider`, `:nitro`, `:floor`)
//! trace.rs     the route trace: every candidate, chosen or skipped and why, and each attempt
//! simulate.rs  a dry run of a candidate policy over recorded usage (`tollgate policy simulate`)
//! ```
//!
//! The policy holds what operators change without a restart: models and aliases (over the config
//! file's), routes matched by model pattern, org and key (providers, strategy, attempts,
//! timeouts, fallback classes, the routing plugin and its config), plugin
//! config, and who gets route traces. Providers (their connections and CAs) stay in the config
//! file: changing one needs a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ModelInfo, Route};

pub mod file;
pub mod live;
pub mod options;
pub mod simulate;
pub mod strategy;
pub mod trace;

pub use live::PolicyHandle;
pub use strategy::Strategy;

/// Why an attempt failed, as far as fallback is concerned (`fallback_on` in a route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// 429.
    RateLimit,
    /// 5xx.
    ServerError,
    /// Connect, first-byte, stall or whole-attempt timeouts, and connection errors.
    Timeout,
    /// The prompt does not fit the provider's context window (→ a route with a larger one).
    ContextLength,
    /// The provider refused the content (moderation).
    ContentFilter,
}

impl FailureClass {
    pub const ALL: [FailureClass; 5] = [
        FailureClass::RateLimit,
        FailureClass::ServerError,
        FailureClass::Timeout,
        FailureClass::ContextLength,
        FailureClass::ContentFilter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::RateLimit => "rate-limit",
            FailureClass::ServerError => "server-error",
            FailureClass::Timeout => "timeout",
            FailureClass::ContextLength => "context-length",
            FailureClass::ContentFilter => "content-filter",
        }
    }

    pub fn parse(s: &str) -> Option<FailureClass> {
        FailureClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The failure classes that move a request to its next candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback(u8);

impl Fallback {
    /// Everything but content-filter refusals (a refusal is usually the same elsewhere; a
    /// policy opts in).
    pub const DEFAULT: Fallback = Fallback(0b01111);

    pub fn of(classes: &[FailureClass]) -> Fallback {
        Fallback(classes.iter().fold(0, |m, c| m | 1 << (*c as u8)))
    }

    pub fn allows(self, class: FailureClass) -> bool {
        self.0 & (1 << class as u8) != 0
    }

    pub fn names(self) -> Vec<&'static str> {
        FailureClass::ALL
            .into_iter()
            .filter(|c| self.allows(*c))
            .map(FailureClass::as_str)
            .collect()
    }
}

/// The routing plugin a route runs, and the config it sees (`host::config()`).
#[derive(Debug, Clone)]
pub struct PluginChoice {
    pub plugin: String,
    pub config: Arc<str>,
}

/// One `[[routes]]` entry, checked.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `file:line` it came from (shown in traces and the admin API).
    pub source: String,
    /// Model patterns (`*` any run, `?` one character); empty = every model.
    pub models: Vec<String>,
    /// Org ids; empty = every org.
    pub orgs: Vec<String>,
    /// Key ids; empty = every key.
    pub keys: Vec<String>,
    /// Providers allowed, in this order (None: the model's routes in catalog order).
    pub providers: Option<Vec<String>>,
    pub strategy: Strategy,
    pub weights: HashMap<String, u32>,
    /// At most this many attempts (None: every candidate).
    pub max_attempts: Option<usize>,
    /// Requests asking for more output tokens are refused (None: the gateway's `[limits]`).
    pub max_output_tokens: Option<u64>,
    /// Per-attempt bound in ms (0: the gateway's `[limits]`).
    pub timeout_ms: u32,
    /// On the last candidate, a 429 whose `Retry-After` is at most this is waited out and the
    /// provider tried once more (with candidates left, a 429 moves on at once).
    pub retry_after_max: Duration,
    pub fallback: Fallback,
    /// Route traces for every request this route serves.
    pub trace: bool,
    /// The routing plugin for these requests (None: `[stages] routing`).
    pub routing: Option<PluginChoice>,
    /// The billing plugin for these requests (None: `[stages] billing`).
    pub billing: Option<PluginChoice>,
}

impl Rule {
    /// The rule that applies when no `[[routes]]` entry matches.
    pub fn default_rule() -> Rule {
        Rule {
            name: "default".into(),
            source: "built-in".into(),
            models: Vec::new(),
            orgs: Vec::new(),
            keys: Vec::new(),
            providers: None,
            strategy: Strategy::Ordered,
            weights: HashMap::new(),
            max_attempts: None,
            max_output_tokens: None,
            timeout_ms: 0,
            retry_after_max: Duration::from_millis(DEFAULT_RETRY_AFTER_MAX_MS),
            fallback: Fallback::DEFAULT,
            trace: false,
            routing: None,
            billing: None,
        }
    }

    fn matches(&self, model: &str, org: &str, key: &str) -> bool {
        (self.models.is_empty() || self.models.iter().any(|p| glob(p, model)))
            && (self.orgs.is_empty() || self.orgs.iter().any(|o| o == org))
            && (self.keys.is_empty() || self.keys.iter().any(|k| k == key))
    }
}

/// A 429's `Retry-After` up to this is waited out on the same provider by default.
pub const DEFAULT_RETRY_AFTER_MAX_MS: u64 = 2_000;

/// A `[[retention]]` entry: the strictest a matching request's retention may be. It can only
/// make an org's own choice stricter (a shorter period, a stricter mode), never looser.
#[derive(Debug, Clone)]
pub struct RetentionRule {
    pub source: String,
    /// Org ids; empty = every org.
    pub orgs: Vec<String>,
    /// Key ids; empty = every key.
    pub keys: Vec<String>,
    pub mode: Option<crate::retention::RetentionMode>,
    /// At most this many days of usage rows and content.
    pub days: Option<i64>,
}

/// Who gets route traces (`x-tollgate-route`) without a route saying so.
#[derive(Debug, Clone, Default)]
pub struct TraceOptIn {
    pub all: bool,
    pub orgs: Vec<String>,
    pub keys: Vec<String>,
}

/// The policy the request path reads: swapped whole on reload, so a request sees one version.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Model name -> routes in catalog order (config file's models, then policy files').
    pub models: BTreeMap<String, Vec<Route>>,
    pub model_info: BTreeMap<String, ModelInfo>,
    /// Client-facing alias -> model name.
    pub aliases: HashMap<String, String>,
    /// First match wins.
    pub rules: Vec<Rule>,
    pub default_rule: Rule,
    /// Plugin name -> config JSON (overrides the config file's `[plugins.settings.X] config`).
    pub plugin_config: HashMap<String, Arc<str>>,
    pub trace: TraceOptIn,
    /// Retention ceilings, first match wins.
    pub retention: Vec<RetentionRule>,
    /// The files it was read from (empty: the config file alone).
    pub files: Vec<String>,
    /// SHA-256 of the files' contents, to tell versions apart.
    pub digest: String,
}

impl Policy {
    /// The policy of the config file alone (no policy directory).
    pub fn from_config(config: &Config) -> Policy {
        Policy {
            models: config.models.clone(),
            model_info: config.model_info.clone(),
            aliases: HashMap::new(),
            rules: Vec::new(),
            default_rule: Rule::default_rule(),
            plugin_config: HashMap::new(),
            trace: TraceOptIn::default(),
            retention: Vec::new(),
            files: Vec::new(),
            digest: String::new(),
        }
    }

    /// The model a client name means (through aliases).
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }

    /// The rule for a request: the first `[[routes]]` entry matching, else the default.
    pub fn rule_for(&self, model: &str, org: &str, key: &str) -> &Rule {
        self.rules
            .iter()
            .find(|r| r.matches(model, org, key))
            .unwrap_or(&self.default_rule)
    }

    /// `p` made no looser than the first `[[retention]]` entry matching the org and key.
    pub fn retention_ceiling(
        &self,
        mut p: crate::retention::Policy,
        org: &str,
        key: &str,
    ) -> crate::retention::Policy {
        let matching = self.retention.iter().find(|r| {
            (r.orgs.is_empty() || r.orgs.iter().any(|o| o == org))
                && (r.keys.is_empty() || r.keys.iter().any(|k| k == key))
        });
        if let Some(r) = matching {
            if let Some(mode) = r.mode {
                // Stricter is greater: retain-all < metadata-only < zero.
                p.mode = p.mode.max(mode);
            }
            if let Some(days) = r.days {
                p.days = p.days.min(days);
                p.ip_days = p.ip_days.min(days);
            }
        }
        p
    }

    /// Whether requests of this org and key get route traces regardless of their route.
    pub fn traced(&self, org: &str, key: &str) -> bool {
        self.trace.all
            || self.trace.orgs.iter().any(|o| o == org)
            || self.trace.keys.iter().any(|k| k == key)
    }

    /// The catalog route of `upstream_model` at `provider`: among `model`'s routes first, else
    /// any model's (a request's `models` fallback list is served by other models' routes).
    pub fn find_route(&self, model: &str, provider: &str, upstream_model: &str) -> Option<&Route> {
        let is = |r: &&Route| r.provider == provider && r.upstream_model == upstream_model;
        self.models
            .get(model)
            .and_then(|routes| routes.iter().find(is))
            .or_else(|| self.models.values().flatten().find(is))
    }

    /// The price of an attempt (zero when unknown: the billing stage decides what an unpriced
    /// route may do).
    pub fn route_price(
        &self,
        model: &str,
        provider: &str,
        upstream_model: &str,
    ) -> crate::plugins::bindings::Price {
        self.find_route(model, provider, upstream_model).map_or(
            crate::plugins::bindings::Price {
                input: 0,
                output: 0,
                cache_read: 0,
                cache_write: 0,
            },
            |r| r.price.into(),
        )
    }

    /// The config a plugin sees, when the policy sets one.
    pub fn plugin_config(&self, plugin: &str) -> Option<Arc<str>> {
        self.plugin_config.get(plugin).cloned()
    }
}

/// `*` matches any run of characters, `?` one; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matching with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("gpt-*", "gpt-4o-mini"));
        assert!(glob("*", ""));
        assert!(glob("*mini", "gpt-4o-mini"));
        assert!(glob("claude-?-5-*", "claude-3-5-haiku"));
        assert!(!glob("gpt-*", "claude"));
        assert!(!glob("gpt", "gpt-4o"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }

    #[test]
    fn fallback_sets() {
        assert!(!Fallback::DEFAULT.allows(FailureClass::ContentFilter));
        assert!(Fallback::DEFAULT.allows(FailureClass::ContextLength));
        let f = Fallback::of(&[FailureClass::RateLimit]);
        assert!(f.allows(FailureClass::RateLimit) && !f.allows(FailureClass::Timeout));
        assert_eq!(f.names(), ["rate-limit"]);
    }
}
